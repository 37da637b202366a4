"""The evaluation page: the leaderboard drawn with plotly, as one self-contained HTML file.

Four charts: each scorer's AUC with its 95% interval, each GENRE variant's AUC difference to its
base (a forest plot around zero), warm vs cold users, and each scorer's AUC across nights (from
the nightly history, `history_rows`). plotly.js is embedded in the page (about 4.5 MB): the page
opens without a network, like the Evidently reports next to it. Pure logic, no Dagster.
"""

from __future__ import annotations

import html
import math
from datetime import UTC, date, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import polars as pl

PAGE_NAME = "evaluation"  # file names evaluation_<day>_<run>.html/.json, beside the reports
REFERENCE_ROWS = ("random", "oracle")
CHART_TITLES = {
    "auc": "AUC of each scorer with its 95% interval (all users)",
    "variants": "GENRE variants against their base: AUC difference with its 95% interval",
    "segments": "Warm vs cold users: AUC of each scorer",
    "nights": "AUC of each scorer across nights (all users)",
}
# What the nightly history keeps of each leaderboard row (the page's fourth chart reads it).
HISTORY_COLUMNS = (
    "day",
    "run_id",
    "evaluated_at",
    "split",
    "scorer",
    "variant",
    "segment",
    "auc",
    "auc_low",
    "auc_high",
    "impressions",
)
_SEGMENT_LABELS = {"all": "all users", "warm": "warm users", "cold": "cold users"}


def history_rows(
    leaderboard: pl.DataFrame, day: date, run_id: str, evaluated_at: datetime
) -> pl.DataFrame:
    """The leaderboard's rows as nightly-history rows: `HISTORY_COLUMNS`, tagged with the
    evaluated day (the split's newest), the run and the time of the evaluation (stored as UTC
    without a zone, so the history reads back the same whatever DuckDB's session zone)."""
    import polars as pl

    if evaluated_at.tzinfo is not None:
        evaluated_at = evaluated_at.astimezone(UTC).replace(tzinfo=None)
    return leaderboard.select(
        pl.lit(day, dtype=pl.Date).alias("day"),
        pl.lit(str(run_id)).alias("run_id"),
        pl.lit(evaluated_at, dtype=pl.Datetime("us")).alias("evaluated_at"),
        *HISTORY_COLUMNS[3:],
    )


def evaluation_summary(leaderboard: pl.DataFrame) -> dict[str, Any]:
    """The JSON summary listed in the report index: the best trained scorer's AUC as the
    headline; verdict `warn` when a GENRE variant's interval on all users is below zero (the
    LLM output made its base worse), else `ok`."""
    import polars as pl

    everyone = leaderboard.filter(pl.col("segment") == "all")
    trained = everyone.filter(~pl.col("scorer").is_in(REFERENCE_ROWS) & pl.col("auc").is_not_nan())
    best = trained.sort("auc", descending=True).head(1).to_dicts()
    hurting = (
        everyone.filter(pl.col("auc_delta_verdict") == "hurts")["scorer"].sort().to_list()
        if "auc_delta_verdict" in everyone.columns
        else []
    )
    return {
        "report": PAGE_NAME,
        "verdict": "warn" if hurting else "ok",
        "method": (
            "per-impression AUC averaged over impressions (MIND protocol); 95% percentile "
            "bootstrap over impressions; GENRE variants paired with their base"
        ),
        "headline": {
            "name": f"best AUC ({best[0]['scorer']})" if best else "best AUC",
            "value": best[0]["auc"] if best else None,
        },
        "split": leaderboard["split"][0] if "split" in leaderboard.columns else None,
        "auc": dict(zip(everyone["scorer"], everyone["auc"], strict=True)),
        "variants_hurting": hurting,
    }


def write_evaluation_page(
    leaderboard: pl.DataFrame,
    history: pl.DataFrame,
    path: Path,
    title: str = "Evaluation",
) -> Path:
    """Write the evaluation page of `leaderboard` (the `evaluation.leaderboard` table) and
    `history` (rows of `HISTORY_COLUMNS`, tonight's included) to `path`; returns `path`.

    Scorers with no AUC in a segment (no impression there) are left out of that segment's
    points; a history with one night shows one point per scorer."""
    missing = {"scorer", "segment", "auc", "auc_low", "auc_high"} - set(leaderboard.columns)
    if missing:
        raise ValueError(f"evaluation page: the leaderboard lacks columns {sorted(missing)}")
    missing = set(HISTORY_COLUMNS) - set(history.columns)
    if missing:
        raise ValueError(f"evaluation page: the history lacks columns {sorted(missing)}")
    figures = {
        "auc": _auc_figure(leaderboard),
        "variants": _variants_figure(leaderboard),
        "segments": _segments_figure(leaderboard),
        "nights": _nights_figure(leaderboard, history),
    }
    charts = []
    for i, (key, figure) in enumerate(figures.items()):
        figure.update_layout(title={"text": CHART_TITLES[key]}, template="plotly_white")
        charts.append(
            figure.to_html(
                full_html=False,
                include_plotlyjs=i == 0,  # inline, once: no CDN at run time
                div_id=f"chart-{key}",
                config={"displaylogo": False, "responsive": True},
            )
        )
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(_page(title, leaderboard, charts), encoding="utf-8")
    return path


def _num(value: Any) -> float | None:
    """A float for plotly, None (a gap) for missing or NaN."""
    if value is None:
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def _segment(leaderboard: pl.DataFrame, segment: str) -> pl.DataFrame:
    import polars as pl

    return leaderboard.filter(pl.col("segment") == segment)


def _scorer_order(leaderboard: pl.DataFrame) -> list[str]:
    """Scorers by AUC on all users, best first (scorers without one last)."""
    rows = _segment(leaderboard, "all").to_dicts()
    return [
        r["scorer"]
        for r in sorted(rows, key=lambda r: (_num(r["auc"]) is None, -(_num(r["auc"]) or 0.0)))
    ]


def _errors(rows: list[dict], value: str, low: str, high: str) -> dict[str, Any]:
    """Asymmetric error bars from interval columns."""
    plus, minus = [], []
    for r in rows:
        v, lo, hi = _num(r[value]), _num(r[low]), _num(r[high])
        plus.append(None if v is None or hi is None else hi - v)
        minus.append(None if v is None or lo is None else v - lo)
    return {"type": "data", "symmetric": False, "array": plus, "arrayminus": minus}


def _hover(rows: list[dict], value: str, low: str, high: str) -> list[str]:
    out = []
    for r in rows:
        v, lo, hi = _num(r[value]), _num(r[low]), _num(r[high])
        interval = f" [{lo:.4f}, {hi:.4f}]" if lo is not None and hi is not None else ""
        out.append(f"{v:.4f}{interval}" if v is not None else "no value")
    return out


def _height(n_rows: int) -> int:
    return 160 + 26 * max(n_rows, 1)


def _auc_figure(leaderboard: pl.DataFrame) -> Any:
    import plotly.graph_objects as go

    by = {r["scorer"]: r for r in _segment(leaderboard, "all").to_dicts()}
    rows = [by[s] for s in reversed(_scorer_order(leaderboard))]  # best at the top
    figure = go.Figure(
        go.Scatter(
            x=[_num(r["auc"]) for r in rows],
            y=[r["scorer"] for r in rows],
            mode="markers",
            marker={"size": 9},
            error_x=_errors(rows, "auc", "auc_low", "auc_high"),
            text=_hover(rows, "auc", "auc_low", "auc_high"),
            hovertemplate="%{y}: AUC %{text}<extra></extra>",
            name="AUC",
        )
    )
    figure.add_vline(x=0.5, line_dash="dot", annotation_text="random ranking (0.5)")
    figure.update_layout(height=_height(len(rows)), xaxis_title="AUC", showlegend=False)
    return figure


def _variants_figure(leaderboard: pl.DataFrame) -> Any:
    import plotly.graph_objects as go
    import polars as pl

    figure = go.Figure()
    if "base" not in leaderboard.columns:
        variants = leaderboard.clear()
    else:
        variants = leaderboard.filter(pl.col("base").is_not_null())
    names = [s for s in reversed(_scorer_order(leaderboard)) if s in set(variants["scorer"])]
    for segment in ("all", "warm", "cold"):
        by = {r["scorer"]: r for r in _segment(variants, segment).to_dicts()}
        rows = [by[s] for s in names if s in by]
        if not rows:
            continue
        figure.add_trace(
            go.Scatter(
                x=[_num(r["auc_delta"]) for r in rows],
                y=[f"{r['scorer']} vs {r['base']}" for r in rows],
                orientation="h",  # segments side by side along the variant axis
                mode="markers",
                marker={"size": 9},
                error_x=_errors(rows, "auc_delta", "auc_delta_low", "auc_delta_high"),
                text=[
                    f"{h} ({r['auc_delta_verdict']})"
                    for h, r in zip(
                        _hover(rows, "auc_delta", "auc_delta_low", "auc_delta_high"),
                        rows,
                        strict=True,
                    )
                ],
                hovertemplate="%{y}, " + _SEGMENT_LABELS[segment] + ": %{text}<extra></extra>",
                name=_SEGMENT_LABELS[segment],
            )
        )
    figure.add_vline(x=0, line_color="#444", annotation_text="no difference")
    if not names:
        figure.add_annotation(
            text="no GENRE variant in this leaderboard", showarrow=False, x=0, y=0.5
        )
    figure.update_layout(
        height=max(320, _height(len(names) * 2)),
        xaxis_title="AUC difference to the base (variant - base), same impressions",
        scattermode="group",
        legend={"traceorder": "reversed"},  # as drawn: the first segment lowest
    )
    return figure


def _segments_figure(leaderboard: pl.DataFrame) -> Any:
    import plotly.graph_objects as go

    order = _scorer_order(leaderboard)
    lows = [_num(v) for v in leaderboard["auc_low"]]
    lowest = min([v for v in lows if v is not None], default=0.5)
    figure = go.Figure()
    for segment in ("warm", "cold"):
        by = {r["scorer"]: r for r in _segment(leaderboard, segment).to_dicts()}
        rows = [by[s] for s in order if s in by]
        figure.add_trace(
            go.Bar(
                x=[r["scorer"] for r in rows],
                y=[_num(r["auc"]) for r in rows],
                error_y=_errors(rows, "auc", "auc_low", "auc_high"),
                text=_hover(rows, "auc", "auc_low", "auc_high"),
                textposition="none",  # the numbers are in the hover and the table below
                hovertemplate="%{x}, " + _SEGMENT_LABELS[segment] + ": AUC %{text}<extra></extra>",
                name=_SEGMENT_LABELS[segment],
            )
        )
    figure.add_hline(y=0.5, line_dash="dot")
    figure.update_layout(
        barmode="group",
        height=460,
        yaxis_title="AUC",
        yaxis_range=[min(0.3, lowest - 0.02), 1.0],  # bars start low enough to be seen
        xaxis_tickangle=-35,
    )
    return figure


def _nights_figure(leaderboard: pl.DataFrame, history: pl.DataFrame) -> Any:
    """One line per scorer over the evaluated days of this split (a day evaluated more than
    once shows its latest run)."""
    import plotly.graph_objects as go
    import polars as pl

    split = leaderboard["split"][0] if "split" in leaderboard.columns and len(leaderboard) else None
    nights = history.filter(pl.col("segment") == "all")
    if split is not None:
        nights = nights.filter(pl.col("split") == split)
    nights = (
        nights.sort("evaluated_at")
        .group_by("scorer", "day", maintain_order=True)
        .last()
        .sort("scorer", "day")
    )
    figure = go.Figure()
    for scorer in _scorer_order(leaderboard) + sorted(
        set(nights["scorer"]) - set(leaderboard["scorer"])
    ):
        rows = nights.filter(pl.col("scorer") == scorer).to_dicts()
        if not rows:
            continue
        figure.add_trace(
            go.Scatter(
                x=[r["day"].isoformat() for r in rows],
                y=[_num(r["auc"]) for r in rows],
                mode="lines+markers",
                text=[
                    f"{h}, run {r['run_id'][:8]}"
                    for h, r in zip(_hover(rows, "auc", "auc_low", "auc_high"), rows, strict=True)
                ],
                hovertemplate=scorer + ", %{x}: AUC %{text}<extra></extra>",
                name=scorer,
            )
        )
    days = nights["day"].n_unique()
    figure.update_layout(
        height=460,
        xaxis={"title": "evaluated day (newest day of the split)", "type": "category"},
        yaxis_title="AUC",
    )
    if days < 2:
        figure.add_annotation(
            text=f"{days} night so far: the lines grow one point a night",
            showarrow=False,
            xref="paper",
            yref="paper",
            x=0.5,
            y=1.05,
        )
    return figure


def _table(leaderboard: pl.DataFrame) -> str:
    """Every scorer's numbers as an HTML table (readable without the charts)."""
    by = {(r["scorer"], r["segment"]): r for r in leaderboard.to_dicts()}

    def interval(r: dict | None, value: str, low: str, high: str) -> str:
        if r is None or _num(r.get(value)) is None:
            return "-"
        return _hover([r], value, low, high)[0]

    lines = []
    for scorer in _scorer_order(leaderboard):
        everyone = by[scorer, "all"]
        delta = interval(everyone, "auc_delta", "auc_delta_low", "auc_delta_high")
        base = everyone.get("base")
        cells = [
            scorer,
            str(everyone.get("variant") or ""),
            interval(everyone, "auc", "auc_low", "auc_high"),
            interval(by.get((scorer, "warm")), "auc", "auc_low", "auc_high"),
            interval(by.get((scorer, "cold")), "auc", "auc_low", "auc_high"),
            f"{delta} vs {base} ({everyone.get('auc_delta_verdict')})" if base else "",
        ]
        lines.append("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in cells) + "</tr>")
    return (
        "<table><tr><th>scorer</th><th>variant</th><th>AUC [95% interval]</th>"
        "<th>warm users</th><th>cold users</th><th>GENRE variant: AUC difference</th></tr>\n"
        + "\n".join(lines)
        + "\n</table>"
    )


def _page(title: str, leaderboard: pl.DataFrame, charts: list[str]) -> str:
    everyone = _segment(leaderboard, "all")
    impressions = everyone["impressions"][0] if "impressions" in everyone.columns else "?"
    split = leaderboard["split"][0] if "split" in leaderboard.columns and len(leaderboard) else "?"
    about = (
        f"Split <b>{html.escape(str(split))}</b>, "
        f"{html.escape(str(impressions))} impressions. AUC per impression, averaged "
        "over impressions (MIND protocol); intervals are 95% percentile bootstraps over the "
        "impressions. A GENRE variant is compared with its base on the same impressions "
        "(paired): an interval entirely right of zero means the LLM output helped."
    )
    body = "\n".join(f'<section class="chart">{chart}</section>' for chart in charts)
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>
body {{ font-family: sans-serif; margin: 1.5em; max-width: 1400px; }}
table {{ border-collapse: collapse; margin: 1em 0; }}
th, td {{ border: 1px solid #ccc; padding: 2px 8px; text-align: left; font-size: 0.85em; }}
section.chart {{ margin-bottom: 1.5em; }}
</style></head>
<body>
<h1>{html.escape(title)}</h1>
<p>{about} <a href="index.html">All reports</a>.</p>
{body}
<h2>Numbers</h2>
{_table(leaderboard)}
</body></html>
"""
