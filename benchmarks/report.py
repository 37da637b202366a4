"""Render benchmarks/results/*.json into docs/benchmarks.md (the table the README links).

    python benchmarks/report.py

Every figure comes from a results file written by a script in benchmarks/; this script only
formats them, states each goal and whether the measured value reaches it.
"""

from __future__ import annotations

import json
import statistics
from datetime import date
from pathlib import Path
from typing import Any

from machine import label

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
OUT = ROOT / "docs" / "benchmarks.md"


def _get(data: dict, dotted: str) -> Any:
    for part in dotted.split("."):
        if not isinstance(data, dict) or part not in data:
            return None
        data = data[part]
    return data


def _load(name: str) -> dict | None:
    path = RESULTS / f"{name}.json"
    return json.loads(path.read_text()) if path.exists() else None


def _fmt(value: Any, digits: int = 3) -> str:
    if value is None:
        return "not measured"
    if isinstance(value, float):
        return f"{value:,.{digits}g}" if abs(value) < 1000 else f"{value:,.0f}"
    return str(value)


def _goal_rows() -> list[tuple[str, ...]]:
    rows = []
    enc = _load("encoder_throughput")
    if enc:
        ratio = _get(enc, "ratio") or _get(enc, "speedup")
        cosine = _get(enc, "cosine_to_fp32.mean") or _get(enc, "mean_cosine")
        ok = ratio is not None and cosine is not None and ratio >= 1.5 and cosine >= 0.995
        rows.append(
            (
                "Encoder throughput vs sentence-transformers (10k HuffPost texts)",
                ">= 1.5x at mean cosine >= 0.995",
                f"{_fmt(ratio)}x, cosine {_fmt(cosine, 5)}",
                "yes" if ok else "no",
                "benchmarks/encoder_throughput.py",
                label(enc.get("machine")),
            )
        )
    inc = _load("incremental_embedding")
    if inc:
        share = _get(inc, "incremental_share_of_cold")
        rows.append(
            (
                "Incremental refresh, 1% new items",
                "<= 5% of the cold encoding time",
                f"{_fmt(100 * share if share is not None else None)}%",
                "yes" if share is not None and share <= 0.05 else "no",
                "benchmarks/incremental_embedding.py",
                label(inc.get("machine")),
            )
        )
    # end_to_end_<preset>.json is the latest run; end_to_end_<preset>.<label>.json files keep
    # other runs (earlier code, another machine, oneDNN capped below AMX), each a row of its own.
    runs = [
        (preset, goals, name)
        for preset, goals in (
            ("small", None),
            # (cold seconds, peak MB, nightly seconds, as the goal is written)
            ("mind_small", (1200, 6144, 300, "<= 20 min, <= 6 GB; nightly <= 5 min")),
            ("mind_medium", None),
            ("mind_large", (3600, 12288, 600, "<= 60 min, <= 12 GB; nightly <= 10 min")),
        )
        for name in [
            f"end_to_end_{preset}",
            *sorted(p.stem for p in RESULTS.glob(f"end_to_end_{preset}.*.json")),
        ]
    ]
    for preset, goals, name in runs:
        e2e = _load(name)
        if not e2e:
            continue
        wall = _get(e2e, "full_refresh.wall_seconds")
        peak = _get(e2e, "full_refresh.peak_rss_mb")
        nightly = _get(e2e, "nightly_increment.wall_seconds")
        # a nightly-only run resumed on a folder starts past extra day 0 (--resume-at-night)
        first_day = (e2e.get("nightly_increments") or [e2e.get("nightly_increment") or {}])[0].get(
            "extra_day"
        )
        goal = "report" if goals is None else goals[3]
        ok = "-"
        if goals is not None and wall is None and nightly is not None:
            ok = "nightly " + ("yes" if nightly <= goals[2] else "no")  # --nightly-only
        if goals is not None and wall is not None:
            parts = {
                "cold time": wall <= goals[0],
                "memory": peak is not None and peak <= goals[1],
                "nightly": nightly is not None and nightly <= goals[2],
            }
            ok = (
                "yes"
                if all(parts.values())
                else "no: "
                + ", ".join(f"{part} {'yes' if met else 'no'}" for part, met in parts.items())
            )
        rows.append(
            (
                f"End to end, `genre-dagster run` on the {preset} world "
                f"(LLM backend: {e2e.get('llm_backend')})"
                + (f", run `{name}.json`" if "." in name else ""),
                goal,
                (
                    f"{_fmt(wall)} s, peak {_fmt(peak)} MB; "
                    if wall is not None
                    else "nightly only, "
                    + (
                        f"on the folder of the night before (extra day {first_day} on); "
                        if first_day
                        else "replayed from the latest run's saved cold state; "
                    )
                )
                + (
                    "nightly not measured"
                    if nightly is None
                    else f"nightly +1 day {_fmt(nightly)} s"
                    + _nights_before(e2e)
                    + (
                        " (nightly with GENRE_RETRAIN_EVERY_DAYS="
                        f"{e2e['nightly_retrain_every_days']})"
                        if "nightly_retrain_every_days" in e2e
                        else " (nightly retrains every scorer)"
                    )
                ),
                ok,
                "benchmarks/end_to_end.py",
                label(e2e.get("machine")),
            )
        )
    nt = _load("neural_training")
    if nt:
        rows.append(
            (
                "NRMS training throughput vs per-impression reference",
                "ratio",
                f"{_fmt(_get(nt, 'training.fast.impressions_per_s'))} impressions/s, "
                f"{_fmt(_get(nt, 'training.speedup'))}x",
                "-",
                "benchmarks/neural_training.py",
                label(nt.get("machine")),
            )
        )
        rows.append(
            (
                "Top-K pool scoring vs per-user reference (pool cached)",
                "ratio",
                f"{_fmt(_get(nt, 'pool_scoring.fast.scores_per_s'))} scores/s, "
                f"{_fmt(_get(nt, 'pool_scoring.speedup_vs_cached_pool'))}x "
                f"({_fmt(_get(nt, 'pool_scoring.speedup_vs_naive'))}x vs naive)",
                "-",
                "benchmarks/neural_training.py",
                label(nt.get("machine")),
            )
        )
    rows += _nightly_serving_rows()
    rows += _nightly_memo_rows()
    llm = _load("llm_throughput")
    for dtype, part in (llm or {}).get("dtypes", {}).items():
        runs = part.get("runs", [])
        best = max(runs, key=lambda r: r.get("tokens_per_second", 0), default=None)
        single = next((r for r in runs if r.get("batch_size") == 1), None)
        if best and single:
            rows.append(
                (
                    f"Local LLM (SmolLM2-135M GGUF via transformers, {dtype}), batched vs one at "
                    "a time; model load from GGUF vs from the converted folder",
                    "ratio",
                    f"{_fmt(best['tokens_per_second'])} vs {_fmt(single['tokens_per_second'])} "
                    f"tokens/s (batch {best['batch_size']}, {best['threads']} threads); load "
                    f"{_fmt(part['load_seconds'])} s vs {_fmt(part['converted_load_seconds'])} s",
                    "-",
                    "benchmarks/llm_throughput.py",
                    label(llm.get("machine")),
                )
            )
    rows += _decision_rows()
    rows += _structured_rows()
    return rows


def _nights_before(e2e: dict) -> str:
    """How the reported night follows others (`end_to_end.py --nights N`): '' for one night."""
    nights = e2e.get("nightly_increments") or []
    if len(nights) < 2:
        return ""
    before = ", ".join(f"{_fmt(n['wall_seconds'])} s" for n in nights[:-1])
    return f" (night {len(nights)} of {len(nights)} in a row; the nights before: {before})"


def _nightly_serving_rows() -> list[tuple[str, ...]]:
    """The lists and the leaderboard on a sample of a MIND-large work folder, per code tree."""
    data = _load("nightly_serving")
    if not data or len(data.get("runs", [])) < 2:
        return []
    before, after = data["runs"][0], data["runs"][-1]
    rows = []
    for step, same in (
        ("lists", data["same_lists"] and data["same_explanations"]),
        ("leaderboard", data["same_metrics"]),
    ):
        old, new = before[step]["seconds"], after[step]["seconds"]
        size = (
            f"{data['users']:,} users"
            if step == "lists"
            else f"{data['impressions']:,} test impressions"
        )
        rows.append(
            (
                f"Nightly {step} on a sample of MIND-large ({size}), code {before['code']} vs "
                f"{after['code']}",
                "ratio",
                f"{_fmt(old)} s vs {_fmt(new)} s ({_fmt(old / new)}x); "
                + ("the same results" if same else "DIFFERENT results"),
                "-",
                "benchmarks/nightly_serving.py",
                label(data.get("machine")),
            )
        )
    return rows


def _seconds_per_model(old: dict, new: dict) -> str:
    """ "model X s vs Y s, ..." for two runs of a benchmark that scored models per code tree."""
    before = {m["scorer"]: m["seconds"] for m in old["models"]}
    return ", ".join(
        f"{m['scorer']} {_fmt(before[m['scorer']])} s vs {_fmt(m['seconds'])} s"
        for m in new["models"]
    )


def _nightly_memo_rows() -> list[tuple[str, ...]]:
    """The profiler's prompt rendering per code tree, and what keeping a night's scores costs."""
    rows = []
    prompts = _load("profiler_prompts")
    if prompts and len(prompts.get("runs", [])) >= 2:
        old, new = prompts["runs"][0], prompts["runs"][-1]
        a, b = old["render_and_hash_seconds"], new["render_and_hash_seconds"]
        rows.append(
            (
                f"Profiler prompts rendered and hashed for {new['users']:,} MIND-large users, "
                f"code {old['code']} vs {new['code']}",
                "ratio",
                f"{_fmt(a)} s vs {_fmt(b)} s ({_fmt(a / b)}x); "
                + ("the same cache keys" if prompts["same_keys"] else "DIFFERENT cache keys"),
                "-",
                "benchmarks/profiler_prompts.py",
                label(prompts.get("machine")),
            )
        )
    memo = _load("score_memo_cost")
    if memo:
        scored = [m for m in memo["models"] if "score_seconds" in m]
        rows.append(
            (
                f"Keeping a MIND-large test day's scores for the next night "
                f"({memo['impressions']:,} impressions, {len(memo['models'])} models)",
                "-",
                f"fingerprints {_fmt(memo['fingerprint_seconds_total'])} s in all; "
                + "scoring instead: "
                + ", ".join(f"{m['scorer']} {_fmt(m['score_seconds'])} s" for m in scored),
                "-",
                "benchmarks/score_memo_cost.py",
                label(memo.get("machine")),
            )
        )
    order = _load("chunk_order")
    if order and len(order.get("runs", [])) >= 2:
        old, new = order["runs"][0], order["runs"][-1]
        rows.append(
            (
                f"score_in_chunks by user instead of the day's order, MIND-large test day "
                f"({new['impressions']:,} impressions), code {old['code']} vs {new['code']}",
                "-",
                f"user encodings {old['user_encodings']:,} vs {new['user_encodings']:,}, item "
                f"encodings {old['item_encodings']:,} vs {new['item_encodings']:,}; "
                + _seconds_per_model(old, new)
                + " (not landed)",
                "-",
                "benchmarks/chunk_order.py",
                label(order.get("machine")),
            )
        )
    lengths = _load("user_length_chunks")
    if lengths and len(lengths.get("runs", [])) >= 2:
        old, new = lengths["runs"][0], lengths["runs"][-1]
        before = {m["scorer"]: m for m in old["models"]}
        same_auc = all(abs(before[m["scorer"]]["auc"] - m["auc"]) < 5e-7 for m in new["models"])
        rows.append(
            (
                f"Neural scoring with users encoded in chunks sorted by history length, "
                f"MIND-large test day ({new['impressions']:,} impressions), code {old['code']} "
                f"vs {new['code']}",
                "ratio",
                _seconds_per_model(old, new)
                + ("; the same AUCs" if same_auc else "; the AUCs differ"),
                "-",
                "benchmarks/chunk_order.py",
                label(lengths.get("machine")),
            )
        )
    dbt = _load("dbt_nightly")
    if dbt and len(dbt.get("runs", [])) >= 2:
        old, new = dbt["runs"][0], dbt["runs"][-1]
        nodes = ("impressions", "user_histories")
        rows.append(
            (
                f"Nightly `dbt build` with one new day ({new['new_day_impressions']:,} "
                f"impressions after {new['days_before']} days), incremental models: code "
                f"{old['code']} vs {new['code']}",
                "-",
                f"{_fmt(old['nightly_build_seconds'])} s vs {_fmt(new['nightly_build_seconds'])} "
                "s; "
                + ", ".join(
                    f"{n} {_fmt(old['nightly_nodes'][n])} vs {_fmt(new['nightly_nodes'][n])} s"
                    for n in nodes
                ),
                "-",
                "benchmarks/dbt_nightly.py",
                label(dbt.get("machine")),
            )
        )
    lookup = _load("profiler_lookup")
    if lookup and len(lookup.get("runs", [])) >= 2:
        old, new = lookup["runs"][0], lookup["runs"][-1]
        rows.append(
            (
                f"Profiler pass with budget 0 (the look-up of {new['users']:,} users), a night "
                f"where {new['users_with_a_new_click']:,} of them clicked: code {old['code']} vs "
                f"{new['code']}",
                "-",
                f"{_fmt(old['night_2_seconds'])} s vs {_fmt(new['night_2_seconds'])} s, "
                f"{old['night_2_rendered']:,} vs {new['night_2_rendered']:,} prompts rendered; "
                f"the first night of the new code {_fmt(new['night_1_seconds'])} s (it keeps "
                "every input hash)"
                + ("; the same rows" if lookup.get("same_rows") else "; the rows differ"),
                "-",
                "benchmarks/profiler_lookup.py",
                label(lookup.get("machine")),
            )
        )
    profile = _load("leaderboard_profile")
    if profile:
        parts = ", ".join(f"{k} {_fmt(v['seconds'])} s" for k, v in profile["parts"].items())
        rows.append(
            (
                f"Leaderboard step's computation, MIND-large test day "
                f"({profile['impressions']:,} impressions, code {profile.get('code', '?')})",
                "-",
                f"{_fmt(profile['table_seconds'])} s: {parts}",
                "-",
                "benchmarks/leaderboard_profile.py",
                label(profile.get("machine")),
            )
        )
    return rows


def _decision_rows() -> list[tuple[str, ...]]:
    """Benchmarks behind a default: the training batches and the title+abstract field."""
    rows = []
    for preset in ("nrms", "naml"):
        opt = _load(f"training_options_{preset}")
        if not opt:
            continue
        by = {json.dumps(v["overrides"], sort_keys=True): v for v in opt["variants"]}
        # by_history is the default: '{}' runs it, '{"batching": "shuffled"}' the alternative.
        grouped = by.get('{"batching": "by_history"}') or by.get("{}")
        base = by.get('{"batching": "shuffled"}')
        if base and grouped:
            rows.append(
                (
                    f"{preset.upper()} training on the {opt['data']['world']} world: "
                    "history-grouped vs shuffled batches",
                    "faster at the same validation AUC",
                    f"{_fmt(base['mean_epoch_seconds'] / grouped['mean_epoch_seconds'])}x per "
                    f"epoch ({_fmt(grouped['mean_epoch_seconds'])} vs "
                    f"{_fmt(base['mean_epoch_seconds'])} s), fit {_fmt(grouped['fit_seconds'])} "
                    f"vs {_fmt(base['fit_seconds'])} s; best validation AUC "
                    f"{grouped['best_val_auc']:.4f} vs {base['best_val_auc']:.4f}",
                    "yes"
                    if grouped["mean_epoch_seconds"] < base["mean_epoch_seconds"]
                    and grouped["best_val_auc"] >= base["best_val_auc"] - 0.005
                    else "no",
                    "benchmarks/training_options.py",
                    label(opt.get("machine")),
                )
            )
    fusion = _load("field_fusion")
    if fusion:
        acc = fusion["knn_category_accuracy"]
        rows.append(
            (
                "Title+abstract: one encoded text (early) vs mean of title and abstract vectors "
                "(late), HuffPost kNN category accuracy",
                "the default (late) costs no extra encoding and little accuracy",
                f"early {acc['title_abstract']:.4f} vs late {acc['title+abstract']:.4f} (title "
                f"alone {acc['title']:.4f}); encoding the joined "
                f"text too is {100 * fusion['early_fusion_share_of_encoding']:.0f}% of the three "
                "fields' encoding time",
                f"late is the default ({acc['title+abstract'] - acc['title_abstract']:+.4f}); "
                "`title_abstract` stays available",
                "benchmarks/field_fusion.py",
                label(fusion.get("machine")),
            )
        )
    return rows


_CASE_LABELS = {
    "summarizer": "summarizer",
    "profiler_closed": "profiler, 19 topics + 51 regions",
    "profiler_open": "profiler, open topics",
    "generator": "generator, 20 categories",
    "enum500": "profiler, 500-term enum",
}


def _structured_rows() -> list[tuple[str, ...]]:
    """The decision row behind constrained decoding with llguidance."""
    data = _load("structured_engines")
    if not data:
        return []
    rows = {r["engine"]: r for r in data.get("table", [])}
    ours = rows.get("llguidance")
    if not ours:
        return []
    valid = ours.get("valid_share") or {}
    generation = _get(data, "results.llguidance.generation") or {}
    shares = [v["mask_share_of_time"] for v in generation.values() if "mask_share_of_time" in v]
    all_valid = [
        name
        for name, row in rows.items()
        if not row.get("measured_as")
        and row.get("valid_share")
        and all(v == 1.0 for v in row["valid_share"].values())
        and not row.get("errors")
    ]
    ok = (
        ours.get("installs_from_wheel")
        and ours.get("imports")
        and ours.get("integration_import") == "ok"
        and len(valid) == 4
        and all(v == 1.0 for v in valid.values())
        and not ours.get("errors")
        and bool(shares)
        and max(shares) < 0.05
    )
    worst_compile = max((ours.get("compile_ms") or {}).values(), default=None)
    return [
        (
            "Structured generation engine for the local LLM (SmolLM2, transformers 5): "
            f"{len(rows)} engines on PyPI compared",
            "the chosen engine (llguidance) installs from a wheel, imports with our pins, "
            "compiles every role schema, gives 100% schema-valid answers, its masks < 5% of "
            "generation time",
            f"llguidance: valid {', '.join(_pct(v) for v in valid.values())}; compile "
            f"<= {_fmt(worst_compile)} ms; masks {_fmt(100 * max(shares) if shares else None)}% "
            f"of generation time at most; engines with every answer of every role valid: "
            f"{', '.join(all_valid) or 'none'}",
            "yes" if ok else "no",
            "benchmarks/structured_engines.py",
            label(data.get("machine")),
        )
    ]


def _enrichment_runs() -> list[tuple[str, dict]]:
    """(results file, data) of every enrichment_quality*.json, in name order."""
    return [
        (path.stem, json.loads(path.read_text()))
        for path in sorted(RESULTS.glob("enrichment_quality*.json"))
    ]


def _enrichment_rows() -> list[tuple[str, ...]]:
    """Goal rows of the GENRE enrichment with the default local model (issue: valid, useful)."""
    runs = _enrichment_runs()
    if not runs:
        return []
    valid, shares, machine = [], [], None
    summary = None
    for _, data in runs:
        machine = machine or data.get("machine")
        for source, roles in data["results"].items():
            for role, modes in roles.items():
                constrained = modes.get("constrained")
                if constrained:
                    valid.append((f"{source}/{role}", constrained["schema_valid_share"],
                                  constrained["prompts"]))  # fmt: skip
                    shares.append(constrained.get("constraint_share_of_generation", 0.0))
                    if role == "summarizer" and source == "huffpost":
                        summary = constrained.get("summary_quality")
    scripts = "benchmarks/enrichment_quality.py"
    worst = min(valid, key=lambda v: v[1]) if valid else None
    rows = [
        (
            "GENRE roles with the default local model (SmolLM2-135M), schema-constrained: "
            "schema-valid answers",
            ">= 99% for every role",
            f"worst {worst[0]}: {_pct(worst[1])} of {worst[2]}; "
            + ", ".join(f"{n} {_pct(v)}" for n, v, _ in valid),
            "yes" if worst and all(v >= 0.99 for _, v, _ in valid) else "no",
            scripts,
            label(machine),
        ),
        (
            "Cost of constrained decoding (time in the schema constraint / generation time)",
            "<= 20% (tokens/s cost)",
            f"at most {_pct(max(shares))}" if shares else "not measured",
            "yes" if shares and max(shares) <= 0.2 else "no",
            scripts,
            label(machine),
        ),
    ]
    if summary and "faithfulness_cosine" in summary:
        knn = summary["knn_category_accuracy"]
        rows += [
            (
                f"Summaries of {summary['summaries']} HuffPost items: faithfulness (cosine of "
                "item text to its summary, MiniLM)",
                ">= 0.5 and >= 0.3 above a random other item's summary",
                f"{_fmt(summary['faithfulness_cosine'])} (random pair "
                f"{_fmt(summary['random_pair_cosine'])}, margin "
                f"{_fmt(summary['faithfulness_margin'])})",
                "yes"
                if summary["faithfulness_cosine"] >= 0.5 and summary["faithfulness_margin"] >= 0.3
                else "no",
                scripts,
                label(machine),
            ),
            (
                "Summaries that copy the title (new title equal to it; near copies: word "
                "Jaccard >= 0.8)",
                "<= 10%",
                f"{_pct(summary['title_copy_share'])} exact, "
                f"{_pct(summary['title_near_copy_share'])} near",
                "yes" if summary["title_near_copy_share"] <= 0.1 else "no",
                scripts,
                label(machine),
            ),
            (
                "Informativeness: kNN category accuracy of summary vectors vs title vectors",
                "summary > title",
                f"summary {_fmt(knn['summary'])}, title {_fmt(knn['title'])}, title+summary "
                f"{_fmt(knn['title+summary'])}"
                + (
                    f"; the item's own title + description {_fmt(knn['item_text'])}"
                    if "item_text" in knn
                    else ""
                )
                + _knn_gain(summary.get("knn_gain_over_title", {})),
                _knn_verdict(knn, summary.get("knn_gain_over_title", {})),
                scripts,
                label(machine),
            ),
        ]
    return rows


def _knn_gain(gains: dict) -> str:
    """Summary minus title accuracy with its paired-bootstrap interval (newer runs only)."""
    if "summary" not in gains:
        return ""
    g = gains["summary"]
    return f"; summary - title {g['delta']:+.3f} [{g['ci95'][0]:+.3f}, {g['ci95'][1]:+.3f}]"


def _knn_verdict(knn: dict, gains: dict) -> str:
    """Met when the summary beats the title: beyond its interval when one was measured."""
    if "summary" in gains:
        return "yes" if gains["summary"]["ci95"][0] > 0 else "no"
    return "yes" if knn["summary"] > knn["title"] else "no"


def _oracle_runs() -> list[tuple[str, dict]]:
    """(results file, data) of every genre_oracle*.json, in name order."""
    return [
        (path.stem, json.loads(path.read_text()))
        for path in sorted(RESULTS.glob("genre_oracle*.json"))
    ]


def _oracle_worlds(data: dict) -> list[dict]:
    """The worlds of one results file: one per seed (older files held a single world)."""
    return list(data["seeds"].values()) if "seeds" in data else [data]


def _oracle_rows() -> list[tuple[str, ...]]:
    """Goal rows of the oracle worlds: every GENRE variant above its base beyond its interval."""
    rows = []
    for name, data in _oracle_runs():
        for run in _oracle_worlds(data):
            informed = run["results"]["informative"]["validation"]
            shuffled = run["results"]["shuffled"]["validation"]
            above = run["goals"]["variants_above_base"]
            world = run["world"]
            cold = run["goals"].get("variants_above_base_on_cold_users")
            rows.append(
                (
                    f"Oracle demo world (seed {world['seed']}, {world['n_users']:,} users, "
                    f"{world['impressions_per_day']:,} impressions/day; `{name}`), informative "
                    "LLM answers: each GENRE variant's validation AUC minus its base's (95% "
                    "paired-bootstrap interval over impressions)",
                    "low end > 0 for every variant",
                    f"{len(above)} of {len(informed)} variants (smallest low end "
                    f"{_fmt(min(v['low'] for v in informed.values()), 4)})"
                    + (
                        f"; on cold users {len(cold)} of {len(informed)}"
                        if cold is not None
                        else ""
                    )
                    + "; shuffled answers (control): "
                    f"{len(run['goals']['shuffled_variants_above_base'])} of {len(shuffled)}",
                    "yes" if run["goals"]["every_variant_above_base_beyond_interval"] else "no",
                    "benchmarks/genre_oracle.py",
                    label(data.get("machine")),
                )
            )
    return rows


def _delta_cell(r: dict | None) -> str:
    if r is None:
        return "-"
    return f"{r['auc_delta']:+.4f} [{r['low']:+.4f}, {r['high']:+.4f}] {r['verdict']}"


def _oracle_table(name: str, data: dict) -> list[str]:
    lines = []
    for run in _oracle_worlds(data):
        world = run["world"]
        lines += [
            f"### GENRE variants vs base on the oracle demo world: `{name}`, seed {world['seed']}",
            "",
            f"Seed {world['seed']}, {world['n_users']:,} users, "
            f"{world['impressions_per_day']:,} impressions a day. AUC of the variant minus its "
            "base's over the same impressions, 95% paired-bootstrap interval "
            f"({data['bootstrap_resamples']} resamples); the tests' small networks, one "
            "training each.",
            "",
            "| variant | base | split | informative answers | informative, cold users | "
            "shuffled answers (control) |",
            "|---|---|---|---|---|---|",
        ]
        results = run["results"]
        for split in ("validation", "test"):
            for variant, row in sorted(results["informative"][split].items()):
                control = _delta_cell(results["shuffled"][split].get(variant))
                cold = _delta_cell(row.get("cold_users"))
                lines.append(
                    f"| {variant} | {row['base']} | {split} | {_delta_cell(row)} | {cold} "
                    f"| {control} |"
                )
        lines += [
            "",
            f"`{data['command']}` ({label(data.get('machine'))}, {run['seconds']:.0f} s)",
            "",
        ]
    return lines[:-1]


def _finetuned_rows() -> list[tuple[str, ...]]:
    """Issue 22's goals on the real-text world: the tuned encoder vs the frozen one (3 seeds)
    and the layer cache's epoch-time ratio."""
    data = _load("finetuned_encoder")
    if not data or not data.get("complete"):
        return []
    auc, epoch, cache = data["auc"], data["epoch_seconds"], data["layer_cache"]
    frozen, tuned = auc["frozen"]["test_aucs"], auc["tuned"]["test_aucs"]
    paired = [t - f for t, f in zip(tuned, frozen, strict=True)]
    spread = max(auc["seed_spread_frozen"], auc["seed_spread_tuned"])
    refs = data.get("reference_test_auc", {})
    world = data["world"]
    where = (
        f"{world['users']} simulated users over {len(frozen)} seeds, "
        f"{world['impressions']['train']:,} training impressions"
    )
    machine = label(data.get("machine"))
    epochs = {
        name: [s for r in data["runs"] if r["encoder"] == name for s in r["epoch_seconds"]]
        for name in ("tuned", "frozen")
    }
    tuned_epochs, frozen_epochs = epochs["tuned"], epochs["frozen"]
    return [
        (
            f"Fine-tuned text encoder (LoRA on MiniLM's top 2 layers over cached layer-4 "
            f"states) vs frozen MiniLM vectors, NRMS, HuffPost headlines ({where})",
            "tuned - frozen test AUC > the seed spread",
            f"frozen {_fmt(statistics.mean(frozen), 4)}, tuned {_fmt(statistics.mean(tuned), 4)}: "
            f"{auc['tuned_minus_frozen']:+.4f} (per seed {', '.join(f'{d:+.4f}' for d in paired)}"
            f"; spread {spread:.4f}); references: click model "
            f"{_fmt(refs.get('click_model'), 3)}, history category count "
            f"{_fmt(refs.get('history_category_count'), 3)}",
            "yes" if auc["tuned_minus_frozen"] > spread else "no",
            "benchmarks/finetuned_encoder.py",
            machine,
        ),
        (
            "Layer cache: one training epoch of the tuned encoder with cached lower layers vs "
            f"running them every batch ({epoch['impressions']:,} impressions, same seed)",
            ">= 3x faster, same result",
            f"{epoch['speedup']:.2f}x ({_fmt(epoch['cached'])} vs {_fmt(epoch['uncached'])} s); "
            f"first-epoch loss {epoch['loss_cached']:.6f} vs {epoch['loss_uncached']:.6f}; "
            f"cache of {cache['texts']:,} texts built in {_fmt(cache['seconds'])} s, "
            f"{cache['state_bytes'] / 2**20:.1f} MB; a refresh computes "
            f"{cache['refresh_computed']}",
            "yes" if epoch["speedup"] >= 3 else "no",
            "benchmarks/finetuned_encoder.py",
            machine,
        ),
        (
            "Training cost of the tuned encoder: seconds per epoch of the same NRMS over the same "
            f"{world['impressions']['train']:,} impressions, tuned (cached states) vs frozen "
            "vectors (median over the seeds' epochs: the machine is shared)",
            "whole training within 2x of NAML's (asked on the MIND-small-sized world)",
            f"{_fmt(statistics.median(tuned_epochs))} vs {_fmt(statistics.median(frozen_epochs))}"
            f" s: {statistics.median(tuned_epochs) / statistics.median(frozen_epochs):,.0f}x; "
            "the MIND-small-sized world was not run",
            "no",
            "benchmarks/finetuned_encoder.py",
            machine,
        ),
    ]


def _comparison_runs() -> list[tuple[str, dict]]:
    """(results file, data) of every scorer_comparison*.json, in name order."""
    return [
        (path.stem, json.loads(path.read_text()))
        for path in sorted(RESULTS.glob("scorer_comparison*.json"))
    ]


def _spread_cell(stat: dict | None, digits: int = 4) -> str:
    """'mean ± std' over seeds ('mean' alone with one seed)."""
    if not stat or stat.get("mean") is None:
        return "-"
    if stat.get("std") is None:
        return f"{stat['mean']:.{digits}f}"
    return f"{stat['mean']:.{digits}f} ± {stat['std']:.{digits}f}"


def _met(value: bool | None) -> str:
    """A goal's verdict; None: the seed spread needs two seeds or more."""
    if value is None:
        return "not measured (one seed)"
    return "yes" if value else "no"


def _versus(c: dict) -> str:
    """'a 0.6500 vs b 0.6300: +0.0200 (seed spread 0.0040)' from a comparison record."""
    if c.get("difference") is None:
        return f"{c['a']} vs {c['b']}: not measured"
    spread = "one seed" if c["spread"] is None else f"seed spread {c['spread']:.4f}"
    return (
        f"{c['a']} {c['mean_a']:.4f} vs {c['b']} {c['mean_b']:.4f}: {c['difference']:+.4f} "
        f"({spread})"
    )


def _comparison_rows() -> list[tuple[str, ...]]:
    """Goal rows of the scorer comparison (issue 21), one set per results file and world."""
    rows = []
    for name, data in _comparison_runs():
        script, machine = "benchmarks/scorer_comparison.py", label(data.get("machine"))
        for world, run in data["worlds"].items():
            g = run["goals"]
            seeds = ", ".join(run["seeds"])
            where = f"Scorer comparison, {world} world (seeds {seeds}; `{name}`)"
            share = g["best_scorer_oracle_gain_share"]
            ratios = g["seconds_per_epoch_over_naml"]
            goals = [
                (
                    "best single scorer vs the ensemble, test AUC",
                    "above by more than the seed spread (larger std)",
                    _versus(g["best_single_vs_ensemble"]),
                    _met(g["best_single_beats_ensemble_beyond_spread"]),
                ),
                (
                    "hybrid_naml vs naml (content only) and its id-only ablation, test AUC",
                    "above both",
                    f"{_versus(g['hybrid_vs_content'])}; {_versus(g['hybrid_vs_id_only'])}",
                    _met(g["hybrid_beats_content_and_id_only"]),
                ),
                (
                    "hybrid_naml vs naml on cold users and on cold items (candidates the train "
                    "split never shows), test AUC",
                    "not below by more than the seed spread",
                    f"{_versus(g['hybrid_vs_content_cold_users'])}; "
                    f"{_versus(g['hybrid_vs_content_cold_items'])}",
                    f"users {_met(g['hybrid_not_worse_on_cold_users'])}, items "
                    f"{_met(g['hybrid_not_worse_on_cold_items'])}",
                ),
                (
                    "training seconds per epoch over naml's",
                    "<= 2x",
                    ", ".join(f"{n} {_fmt(r)}x" for n, r in ratios.items()),
                    _met(g["new_scorers_within_2x_of_naml_per_epoch"]),
                ),
            ]
            if g["oracle_gain_share_at_least_0.6"] is not None:  # news-style worlds only
                goals.append(
                    (
                        "best scorer's share of the oracle's AUC gain over random (all users)",
                        ">= 0.6",
                        f"{share['scorer']} {_fmt(share['share'])}",
                        _met(g["oracle_gain_share_at_least_0.6"]),
                    )
                )
            rows += [
                (f"{where}: {what}", goal, got, ok, script, machine)
                for what, goal, got, ok in goals
            ]
    return rows


_FIRST_ENSEMBLE = ["popularity", "content_similarity", "matrix_factorization", "nrms"]


def _comparison_table(name: str, data: dict) -> list[str]:
    """One table per world: each scorer's test metrics, mean ± std over seeds."""
    lines = []
    for world, run in data["worlds"].items():
        summary = run["summary"]
        order = sorted(
            (n for n in summary if n not in ("random", "oracle")),
            key=lambda n: -(summary[n]["all"]["auc"]["mean"] or 0),
        )
        small = isinstance(data["networks"], dict)  # the small networks' settings
        # runs before the field was recorded had the ensemble before naml joined it
        members = ", ".join(data.get("ensemble_members") or _FIRST_ENSEMBLE) + (
            "" if data.get("ensemble_members") else " (before naml joined it)"
        )
        lines += [
            f"### Scorer comparison on the {world} demo world: `{name}`",
            "",
            f"Test split, mean ± std over world seeds {', '.join(run['seeds'])}; networks: "
            f"{'the tests’ small ones' if small else 'product defaults'}. Cold users: at most "
            f"{data['cold_max_clicks']} clicks; cold items: candidates the train split never "
            "shows (AUC over them alone). Oracle-gain share: (AUC - random) / (oracle - random). "
            f"The ensemble's members: {members}.",
            "",
            "| scorer | AUC all | AUC warm users | AUC cold users | AUC cold items | MRR | "
            "nDCG@10 | oracle-gain share | s/epoch |",
            "|---|---|---|---|---|---|---|---|---|",
        ]
        for scorer in [*order, "random", "oracle"]:
            by = summary.get(scorer)
            if by is None:
                continue
            cells = [
                _spread_cell(by["all"]["auc"]),
                _spread_cell(by["warm"]["auc"]),
                _spread_cell(by["cold"]["auc"]),
                _spread_cell(by.get("cold_items", {}).get("auc")),
                _spread_cell(by["all"]["mrr"]),
                _spread_cell(by["all"]["ndcg@10"]),
                _spread_cell(by.get("oracle_gain_share"), 3),
                _spread_cell(by.get("seconds_per_epoch"), 2),
            ]
            lines.append(f"| {scorer} | " + " | ".join(cells) + " |")
        lines += ["", f"`{data['command']}` ({label(data.get('machine'))})", ""]
    return lines[:-1]


def _enrichment_table() -> list[str]:
    lines = [
        "### GENRE enrichment with the local model, per role",
        "",
        "| results file | source | role | mode | prompts | schema-valid | exact terms | "
        "completion tokens/s | s per answer | constraint share of time |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, data in _enrichment_runs():
        for source, roles in data["results"].items():
            for role, modes in roles.items():
                for mode in ("constrained", "unconstrained"):
                    m = modes.get(mode)
                    if not m:
                        continue
                    lines.append(
                        f"| {name} | {source} | {role} | {mode} | {m['prompts']} | "
                        f"{_pct(m['schema_valid_share'])} | {_pct(m['terms_exact_share'])} | "
                        f"{_fmt(m['completion_tokens_per_second'])} | "
                        f"{_fmt(m['seconds_per_answer'])} | "
                        f"{_pct(m.get('constraint_share_of_generation'))} |"
                    )
        lines.append("")
        lines.append(f"`{name}`: `{data['command']}` ({label(data.get('machine'))})")
        lines.append("")
    lines.append(
        "Unconstrained answers run on to the token cap, so their tokens/s spreads the prompt "
        "over more tokens: the constraint's own cost is its share of generation time."
    )
    return lines


def _pct(share: float | None) -> str:
    return "not measured" if share is None else f"{100 * share:.0f}%"


def _failure(text: str | None) -> str:
    """'exit code 1 in phase X: <source line> | <exception>' -> 'in phase X: <exception>'."""
    if not text:
        return "-"
    where, _, rest = text.partition(": ")
    return f"{where.removeprefix('exit code 1 ')}: {rest.split(' | ')[-1]}".replace("|", "/")


def _structured_engines(data: dict) -> list[str]:
    """The engines side by side: install, compile, mask cost, generation."""
    table = data.get("table", [])
    cases = list(data.get("cases", {})) or list(_CASE_LABELS)
    results = data.get("results", {})
    lines = [
        "### Structured generation engines",
        "",
        f"`{data.get('command')}` on {label(data.get('machine'))} (load average before/after "
        f"{data.get('load_average_before_after')}); SmolLM2-135M, {data.get('threads')} torch "
        f"thread(s), batches of {data.get('batch_size')}, {data.get('prompts_per_role')} prompts "
        "per role. Sizes count the engine and the extra dependencies pip adds to our venv.",
        "",
        "| engine | installs from a wheel | size MB | imports with our pins | transformers "
        "integration imports | fails with |",
        "|---|---|---|---|---|---|",
    ]
    for row in table:
        install = _get(results, f"{row['engine']}.install") or {}
        loaded = _get(results, f"{row['engine']}.extra_dependencies_imported") or {}
        sizes = ", ".join(
            f"{name} {d['mb']}" + (" not imported" if loaded.get(name) is False else "")
            for name, d in install.get("distributions", {}).items()
        )
        integration = row.get("integration_import")
        if integration and "(raised by " in integration:
            integration = integration.split("(raised by ", 1)[1].rstrip(")")
        integration = {None: "-", "ok": "yes"}.get(integration, f"no: {integration}")
        lines.append(
            f"| {row['engine']}"
            + (f" (measured as {row['measured_as']})" if row.get("measured_as") else "")
            + f" | {'yes' if row.get('installs_from_wheel') else 'no'} | {_fmt(row.get('size_mb'))}"
            f" ({sizes}) | {'yes' if row.get('imports') else 'no'} | "
            f"{integration} | "
            f"{_failure(row.get('failure'))} |"
        )
    head = "| engine | " + " | ".join(_CASE_LABELS.get(c, c) for c in cases) + " |"
    rule = "|---|" + "---|" * len(cases)
    lines += [
        "",
        "Compile: JSON schema to a matcher ready for the first token (compile + matcher + first "
        "mask), ms. Mask: µs per decoding step for one row over the 49,152-token vocabulary, "
        "replaying a fixed valid answer (median of the replays' means; `!` = the engine's mask "
        "refused the answer's own tokenization at some step).",
        "",
        head.replace("| engine |", "| compile ms |"),
        rule,
    ]

    def cell(row: dict, part: str, key: str, case: str) -> str:
        measured = results.get(row.get("measured_as") or row["engine"], {})
        value = _get(measured, f"{part}.{case}") or {}
        if "error" in value:
            return "fails: " + value["error"][:90].replace("|", "/")
        text = _fmt(value.get(key))
        return text + ("" if value.get("replay_ok", True) else " !")

    for row in table:
        if row.get("compile_ms") and not row.get("measured_as"):
            lines.append(
                f"| {row['engine']} | "
                + " | ".join(cell(row, "compile", "ms", c) for c in cases)
                + " |"
            )
    lines += ["", head.replace("| engine |", "| mask µs/token |"), rule]
    for row in table:
        if row.get("mask_us_per_token") and not row.get("measured_as"):
            lines.append(
                f"| {row['engine']} | "
                + " | ".join(cell(row, "mask", "us_per_token", c) for c in cases)
                + " |"
            )
    generated = [c for c in cases if c != "enum500"]
    lines += [
        "",
        "Generation: share of answers valid against the strict schema with no repair; "
        "completion tokens/s (and the ratio to the same prompts unconstrained); the share of "
        "the wall time spent computing masks. Unconstrained answers are far longer (a small "
        "model seldom closes a JSON object unconstrained, so it writes up to the token cap), "
        "which amortizes the prompt and keeps every row of a batch busy: the tokens/s ratio "
        "measures answer length more than engine cost, the mask share measures the engine. "
        "The engines run "
        "one after another on a shared machine, so rows were measured under different loads "
        "(see the load average): compare the tokens/s of two rows with care.",
        "",
        "| generation | " + " | ".join(_CASE_LABELS.get(c, c) for c in generated) + " |",
        "|---|" + "---|" * len(generated),
    ]
    base = _get(results, "unconstrained.generation") or {}
    if base:
        lines.append(
            "| unconstrained | "
            + " | ".join(
                f"{_pct(base.get(c, {}).get('valid_share'))} valid "
                f"({_pct(base.get(c, {}).get('valid_after_repair_share'))} after repair), "
                f"{_fmt(base.get(c, {}).get('tokens_per_second'))} tokens/s"
                for c in generated
            )
            + " |"
        )
    for row in table:
        measured = results.get(row.get("measured_as") or row["engine"], {})
        gen = measured.get("generation") or {}
        if not gen or row.get("measured_as"):
            continue
        cells = []
        for c in generated:
            g = gen.get(c, {})
            if "error" in g:
                cells.append("fails: " + g["error"][:90].replace("|", "/"))
                continue
            if g.get("errors") == g.get("prompts"):
                cells.append(f"fails: {g['failure_examples'][0][:90]}".replace("|", "/"))
                continue
            ratio = _get(row, f"tokens_per_second_vs_unconstrained.{c}")
            cells.append(
                f"{_pct(g.get('valid_share'))} valid ({_pct(g.get('valid_after_repair_share'))} "
                f"after repair), {_fmt(g.get('tokens_per_second'))} tokens/s "
                f"({'-' if ratio is None else f'x{ratio:.2f}'}), masks "
                f"{100 * g.get('mask_share_of_time', 0):.2f}% of the time"
            )
        lines.append(f"| {row['engine']} | " + " | ".join(cells) + " |")
    return [*lines, ""]


def _peak_cell(figures: dict | None) -> str:
    if not figures:
        return "-"
    return f"{figures['peak']:,.0f} (+{figures['growth']:,.0f})"


def _time_breakdown(name: str, data: dict, top: int = 12) -> list[str]:
    """Where an end-to-end run spends its time (per Dagster step), and the model stages' rates."""
    full = _get(data, "full_refresh.step_seconds") or {}
    nightly = _get(data, "nightly_increment.step_seconds") or {}
    if not full:
        return []
    steps = sorted(set(full) | set(nightly), key=lambda k: -full.get(k, 0.0))[:top]
    lines = [
        f"### Where the time goes: {name}",
        "",
        f"Step seconds summed over the runs (top {top} of {len(full)} steps of the full refresh).",
        "",
        "Peak MB: the run's process and its children while the step ran, and in brackets what "
        "the step added over its start (`step_peak_rss_mb`, `step_rss_at_start_mb` metadata; "
        "runs before that metadata existed show -).",
        "",
        "| step | full refresh s | peak MB (+added) | nightly +1 day s | peak MB (+added) |",
        "|---|---|---|---|---|",
    ]
    full_peak = _get(data, "full_refresh.step_peak_rss_mb") or {}
    nightly_peak = _get(data, "nightly_increment.step_peak_rss_mb") or {}
    lines += [
        f"| {k} | {_fmt(full.get(k))} | {_peak_cell(full_peak.get(k))} | {_fmt(nightly.get(k))} "
        f"| {_peak_cell(nightly_peak.get(k))} |"
        for k in steps
    ]
    stages = _get(data, "full_refresh.model_stages") or {}
    if stages:
        lines += [
            "",
            "| model stage (full refresh) | answered / encoded | cached / reused | failed | "
            "completion tokens/s | texts/s |",
            "|---|---|---|---|---|---|",
        ]
        for key, meta in stages.items():
            cells = [
                meta.get("answered", meta.get("texts_encoded")),
                meta.get("cached", meta.get("texts_reused")),
                meta.get("failed"),
                meta.get("completion_tokens_per_second"),
                meta.get("texts_per_second"),
            ]
            lines.append(
                f"| {key} | " + " | ".join("-" if c is None else _fmt(c) for c in cells) + " |"
            )
    return [*lines, ""]


# The demo presets of the scaling curve (issue 19), smallest first.
SCALING_PRESETS = ("small", "mind_small", "mind_medium", "mind_large")
# Step keys grouped into the stages the curve draws, by prefix (`raw_news`, `scoring__nrms`).
STAGES = {
    "raw": "ingestion",
    "dbt_features": "dbt features",
    "enrichment": "LLM enrichment",
    "embeddings": "embeddings",
    "scoring": "training",
    "evaluation": "evaluation",
    "serving": "serving (lists)",
    "monitoring": "monitoring",
}
FIGURE = ROOT / "docs" / "scaling.png"


def _stage(step_key: str) -> str | None:
    for prefix, stage in STAGES.items():
        if step_key == prefix or step_key.startswith(f"{prefix}_"):
            return stage
    return None


def _scaling_points() -> list[tuple[str, dict]]:
    """(preset, end-to-end result) of the presets measured with the world's size recorded."""
    points = []
    for preset in SCALING_PRESETS:
        data = _load(f"end_to_end_{preset}")
        if data and "world" in data and _get(data, "full_refresh.wall_seconds") is not None:
            points.append((preset, data))
    return points


def _stage_figures(data: dict) -> dict[str, tuple[float, float | None]]:
    """Per stage of a full refresh: (seconds summed over its steps, largest step peak MB)."""
    seconds = _get(data, "full_refresh.step_seconds") or {}
    peaks = _get(data, "full_refresh.step_peak_rss_mb") or {}
    out: dict[str, tuple[float, float | None]] = {}
    for key, value in seconds.items():
        stage = _stage(key)
        if stage is None:
            continue
        total, peak = out.get(stage, (0.0, None))
        step_peak = (peaks.get(key) or {}).get("peak")
        if step_peak is not None:
            peak = step_peak if peak is None else max(peak, step_peak)
        out[stage] = (total + value, peak)
    return out


def _scaling_figure(points: list[tuple[str, dict]]) -> Path:
    """Time and peak memory of a full refresh against impressions, log-log, a line per stage."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    x = [data["world"]["n_impressions"] for _, data in points]
    per_stage = [_stage_figures(data) for _, data in points]
    stages = [s for s in STAGES.values() if any(s in f for f in per_stage)]
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.5))
    left.plot(x, [d["full_refresh"]["wall_seconds"] for _, d in points], "k-o", label="whole run")
    right.plot(x, [d["full_refresh"]["peak_rss_mb"] for _, d in points], "k-o", label="whole run")
    for stage in stages:
        left.plot(x, [f.get(stage, (None,))[0] for f in per_stage], "-o", ms=3, label=stage)
        peaks = [f.get(stage, (None, None))[1] for f in per_stage]
        if any(p is not None for p in peaks):
            right.plot(x, peaks, "-o", ms=3, label=stage)
    for axis, title in ((left, "seconds"), (right, "peak resident MB")):
        axis.set_xscale("log")
        axis.set_yscale("log")
        axis.set_xlabel("impressions in the world (train + dev)")
        axis.set_title(f"full refresh: {title}")
        axis.grid(True, which="both", alpha=0.3)
    for (preset, data), xi in zip(points, x, strict=True):
        left.annotate(preset, (xi, data["full_refresh"]["wall_seconds"]), fontsize=7)
    left.legend(fontsize=7)
    fig.tight_layout()
    FIGURE.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(FIGURE, dpi=110)
    plt.close(fig)
    return FIGURE


def _scaling_table(points: list[tuple[str, dict]]) -> list[str]:
    if not points:
        return []
    figure = _scaling_figure(points)
    lines = [
        "### Cost against data size (full refresh)",
        "",
        f"![time and peak memory against impressions]({figure.name})",
        "",
        "`python benchmarks/end_to_end.py --preset P` for each preset (alone on the machine). "
        "Stage seconds are summed over its steps, stage MB is its largest step's peak.",
        "",
        "| preset | impressions | users | news | wall s | peak MB | nightly +1 day s | "
        "largest stages (s / peak MB) | machine |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for preset, data in points:
        world = data["world"]
        stages = sorted(_stage_figures(data).items(), key=lambda kv: -kv[1][0])[:4]
        shown = "; ".join(f"{name} {_fmt(s)} / {_fmt(m)}" for name, (s, m) in stages)
        lines.append(
            f"| {preset} | {world['n_impressions']:,} | {world['n_users']:,} | "
            f"{world['n_news']:,} | {_fmt(_get(data, 'full_refresh.wall_seconds'))} | "
            f"{_fmt(_get(data, 'full_refresh.peak_rss_mb'))} | "
            f"{_fmt(_get(data, 'nightly_increment.wall_seconds'))} | {shown} | "
            f"{label(data.get('machine'))} |"
        )
    return [*lines, ""]


def _details(name: str, data: dict) -> list[str]:
    lines = [f"### {name}", ""]
    for key in ("command", "when"):
        if key in data:
            lines.append(f"- {key}: `{data[key]}`")
    if "machine" in data:
        lines.append(f"- machine: `{json.dumps(data['machine'], sort_keys=True)}`")
    lines += ["", "```json", json.dumps(data, indent=1, default=str)[:6000], "```", ""]
    return lines


def main() -> None:
    lines = [
        "# Benchmarks",
        "",
        f"Rendered {date.today().isoformat()} from `benchmarks/results/*.json` by "
        "`benchmarks/report.py`. Machines: 2 cores, 24 GiB, no GPU, Python 3.11, torch 2.13 "
        "CPU; the CPU model of each run is in its row (bf16 encoding is much faster on AMX "
        "tiles than on AVX512-BF16). These machines are shared and noisy: compare the ratios "
        "measured inside one run, not absolute numbers across runs or machines; each file "
        "records the load average.",
        "",
        "| benchmark | goal | measured | goal reached | script | machine |",
        "|---|---|---|---|---|---|",
    ]
    for row in [*_goal_rows(), *_enrichment_rows(), *_oracle_rows(), *_comparison_rows(),
                *_finetuned_rows()]:  # fmt: skip
        lines.append("| " + " | ".join(row) + " |")
    lines += ["", *_scaling_table(_scaling_points())]
    for preset in SCALING_PRESETS:
        e2e = _load(f"end_to_end_{preset}")
        if e2e:
            lines += ["", *_time_breakdown(f"end to end, {preset}", e2e)]
    structured = _load("structured_engines")
    if structured:
        lines += ["", *_structured_engines(structured)]
    if _enrichment_runs():
        lines += ["", *_enrichment_table()]
    for name, data in _oracle_runs():
        lines += ["", *_oracle_table(name, data)]
    for name, data in _comparison_runs():
        lines += ["", *_comparison_table(name, data)]
    lines += ["", "## Raw results", ""]
    for path in sorted(RESULTS.glob("*.json")):
        lines += _details(path.stem, json.loads(path.read_text()))
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text("\n".join(lines) + "\n")
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
