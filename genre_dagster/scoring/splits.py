"""What the train / validation / test split holds, day by day, and what to change when a split
is empty: read by the blocking check on `impression_splits` and by every scorer before it trains.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date

SPLITS = ("train", "validation", "test")
# Where the boundaries are set: the launchpad config of the dbt step (or dbt_project.yml vars).
SETTINGS_HINT = (
    "set the split boundaries in the launchpad config of the features step "
    "(ops: dbt_features: config: validation_start / test_start as YYYY-MM-DD, or "
    "validation_days / test_days / holdout_share), or add labelled days"
)


@dataclass
class SplitReport:
    """Labelled impressions per split and day, and the rule that assigned them."""

    rule: str  # "time" | "user_holdout" | "none" (no impressions at all)
    days: dict[str, list[tuple[date, int]]] = field(default_factory=dict)

    @property
    def impressions(self) -> dict[str, int]:
        return {split: sum(n for _, n in self.days.get(split, [])) for split in SPLITS}

    @property
    def empty(self) -> list[str]:
        """The splits without a labelled impression."""
        return [split for split, n in self.impressions.items() if n == 0]

    def summary(self) -> str:
        """One line: each split's days and impressions."""
        parts = []
        for split in SPLITS:
            days = self.days.get(split, [])
            if not days:
                parts.append(f"{split}: no day")
                continue
            span = str(days[0][0]) if len(days) == 1 else f"{days[0][0]}..{days[-1][0]}"
            parts.append(
                f"{split}: {span} ({len(days)} day{'s' * (len(days) != 1)}, "
                f"{self.impressions[split]:,} impressions)"
            )
        rule = " (user holdout: no train day was left)" if self.rule == "user_holdout" else ""
        return "; ".join(parts) + rule

    def problem(self) -> str | None:
        """None when every split holds impressions, else what is wrong and how to fix it."""
        if not self.empty:
            return None
        empty = ", ".join(self.empty)
        return f"empty split: {empty}. Found {self.summary()}. To fix: {SETTINGS_HINT}."

    def table(self) -> str:
        """Markdown: day, split, impressions."""
        rows = sorted((d, split, n) for split, days in self.days.items() for d, n in days)
        return "| day | split | labelled impressions |\n|---|---|---|\n" + "\n".join(
            f"| {d} | {split} | {n:,} |" for d, split, n in rows
        )


def describe_splits(conn) -> SplitReport:
    """The split of the warehouse behind `conn` (a DuckDB connection), per day."""
    rows = conn.execute(
        """
        select s.split, s.day, count(*) as n, any_value(s.split_rule) as rule
        from main.impression_splits as s
        where s.split <> 'unlabeled'
        group by s.split, s.day
        order by s.day, s.split
        """
    ).fetchall()
    report = SplitReport(rule=rows[0][3] if rows else "none")
    for split, day, n, _ in rows:
        report.days.setdefault(split, []).append((day, int(n)))
    return report
