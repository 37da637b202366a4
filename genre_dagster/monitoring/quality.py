"""Data quality of a day's new items and behaviors against the reference window.

Evidently's `DataSummaryPreset` describes each table (counts, missing values, distributions)
next to the reference; its automatic tests are off (`Report(include_tests=False)`) because they
compare a one-day table with a multi-day window (the row count would always "fail").
(`DataSummaryPreset(include_tests=False)` itself raises KeyError in Evidently 0.7.23 when a
categorical column has a reference, so the flag is set on the Report only.) Instead the report
carries our explicit checks, as Evidently tests where Evidently has the metric (missing values,
categories outside the reference list) and all of them as numbers in the summary.

Verdict rule: `error` when an id is duplicated, a required value is missing or an impression
has no candidates; `warn` for new categories or titles that repeat within the day; else `ok`.
"""

from __future__ import annotations

from typing import Any

import polars as pl

from genre_dagster.monitoring.frames import require_columns
from genre_dagster.monitoring.reports import ReportResult, run_report, worst_verdict

ITEM_COLUMNS = ["news_id", "category", "subcategory", "title", "abstract", "text_length"]
BEHAVIOR_COLUMNS = [
    "impression_id",
    "user_id",
    "time",
    "history_length",
    "n_candidates",
    "n_clicks",
    "is_labeled",
]
REQUIRED_ITEM_VALUES = ["news_id", "category", "title"]
REQUIRED_BEHAVIOR_VALUES = ["impression_id", "user_id", "time"]
_LIST_CAP = 50  # names listed in the summary; the counts are always complete


def _missing(frame: pl.DataFrame, columns: list[str]) -> dict[str, int]:
    """Nulls, plus empty strings in text columns."""
    out = {}
    for column in columns:
        values = frame[column]
        count = values.null_count()
        if values.dtype == pl.Utf8:
            count += int((values.str.strip_chars() == "").sum())
        out[column] = int(count)
    return out


def _duplicates(values: pl.Series) -> int:
    """Rows beyond the first of each repeated value (nulls ignored)."""
    values = values.drop_nulls()
    return int(values.len() - values.n_unique())


def _unseen(new: pl.Series, reference: pl.Series) -> list[str]:
    known = set(reference.drop_nulls().to_list())
    return sorted({v for v in new.drop_nulls().to_list() if v not in known})


def item_checks(new_items: pl.DataFrame, reference_items: pl.DataFrame) -> dict[str, Any]:
    """Explicit quality numbers of the new items (see the module docstring for the verdict)."""
    new_categories = _unseen(new_items["category"], reference_items["category"])
    new_subcategories = _unseen(new_items["subcategory"], reference_items["subcategory"])
    known_titles = reference_items["title"].drop_nulls().unique()
    return {
        "n_items": new_items.height,
        "n_reference_items": reference_items.height,
        "missing": _missing(new_items, ITEM_COLUMNS),
        "duplicate_news_ids": _duplicates(new_items["news_id"]),
        "news_ids_in_reference": int(
            new_items["news_id"].is_in(reference_items["news_id"].implode()).sum()
        ),
        "duplicate_titles": _duplicates(new_items["title"]),
        "titles_in_reference": int(new_items["title"].is_in(known_titles.implode()).sum()),
        "new_categories": new_categories[:_LIST_CAP],
        "n_new_categories": len(new_categories),
        "new_subcategories": new_subcategories[:_LIST_CAP],
        "n_new_subcategories": len(new_subcategories),
    }


def behavior_checks(new: pl.DataFrame, reference: pl.DataFrame) -> dict[str, Any]:
    """Explicit quality numbers of the new impressions."""
    users = new["user_id"].drop_nulls().unique()
    unseen_users = int((~users.is_in(reference["user_id"].implode())).sum())
    labeled = new.filter(pl.col("is_labeled"))
    return {
        "n_impressions": new.height,
        "n_reference_impressions": reference.height,
        "missing": _missing(new, BEHAVIOR_COLUMNS),
        "duplicate_impression_ids": _duplicates(new["impression_id"]),
        "empty_candidate_lists": int((new["n_candidates"] == 0).sum()),
        "unlabeled_impressions": new.height - labeled.height,
        "labeled_without_click": int((labeled["n_clicks"] == 0).sum()),
        "n_users": users.len(),
        "users_not_in_reference": unseen_users,
        "new_user_share": unseen_users / users.len() if users.len() else 0.0,
    }


def _issues(items: dict[str, Any], behaviors: dict[str, Any]) -> tuple[list[str], list[str]]:
    errors, warnings = [], []
    if items["duplicate_news_ids"]:
        errors.append(f"{items['duplicate_news_ids']} duplicate news ids")
    for column in REQUIRED_ITEM_VALUES:
        if items["missing"][column]:
            errors.append(f"{items['missing'][column]} items without {column}")
    if behaviors["duplicate_impression_ids"]:
        errors.append(f"{behaviors['duplicate_impression_ids']} duplicate impression ids")
    for column in REQUIRED_BEHAVIOR_VALUES:
        if behaviors["missing"][column]:
            errors.append(f"{behaviors['missing'][column]} impressions without {column}")
    if behaviors["empty_candidate_lists"]:
        errors.append(f"{behaviors['empty_candidate_lists']} impressions without candidates")
    if items["n_new_categories"]:
        warnings.append(f"new categories {items['new_categories']}")
    if items["duplicate_titles"]:
        warnings.append(f"{items['duplicate_titles']} repeated titles")
    return errors, warnings


def _item_snapshot(new: pl.DataFrame, reference: pl.DataFrame) -> Any:
    from evidently import DataDefinition
    from evidently.metrics import MissingValueCount, OutListValueCount
    from evidently.presets import DataSummaryPreset
    from evidently.tests import eq

    definition = DataDefinition(
        id_column="news_id",
        numerical_columns=["text_length"],
        categorical_columns=["category", "subcategory"],
        text_columns=["title", "abstract"],
    )
    categories = sorted(reference["category"].drop_nulls().unique().to_list())
    metrics = [
        DataSummaryPreset(),
        *[MissingValueCount(column=c, tests=[eq(0)]) for c in REQUIRED_ITEM_VALUES[1:]],
        OutListValueCount(column="category", values=categories, tests=[eq(0)]),
    ]
    return run_report(
        metrics,
        new.select(ITEM_COLUMNS).to_pandas(),
        reference.select(ITEM_COLUMNS).to_pandas(),
        definition,
        include_tests=False,
    )


def _behavior_snapshot(new: pl.DataFrame, reference: pl.DataFrame) -> Any:
    from evidently import DataDefinition
    from evidently.metrics import MissingValueCount
    from evidently.presets import DataSummaryPreset
    from evidently.tests import eq

    columns = ["impression_id", "hour", "history_length", "n_candidates", "n_clicks", "is_labeled"]
    definition = DataDefinition(
        id_column="impression_id",
        numerical_columns=["hour", "history_length", "n_candidates", "n_clicks"],
        categorical_columns=["is_labeled"],
    )

    def prepare(frame: pl.DataFrame) -> Any:
        return (
            frame.with_columns(
                hour=pl.col("time").dt.hour().cast(pl.Float64),
                is_labeled=pl.col("is_labeled").cast(pl.Utf8),
            )
            .select(columns)
            .to_pandas()
        )

    metrics = [
        DataSummaryPreset(),
        *[MissingValueCount(column=c, tests=[eq(0)]) for c in ["hour", "n_candidates"]],
    ]
    return run_report(metrics, prepare(new), prepare(reference), definition, include_tests=False)


def data_quality_report(
    new_items: pl.DataFrame,
    reference_items: pl.DataFrame,
    new_behaviors: pl.DataFrame,
    reference_behaviors: pl.DataFrame,
) -> ReportResult:
    """Quality of the current day's new items (stg_news rows) and impressions (stg_behaviors
    rows) against the reference window.

    Summary: `items` and `behaviors` (explicit numbers: missing values, duplicate ids and
    titles, categories/users not in the reference, ...), `issues` (errors then warnings) and the
    verdict. Empty new tables are allowed (a day may publish no news) and reported as counts.
    """
    for frame, columns, name in (
        (new_items, ITEM_COLUMNS, "new_items"),
        (reference_items, ITEM_COLUMNS, "reference_items"),
        (new_behaviors, BEHAVIOR_COLUMNS, "new_behaviors"),
        (reference_behaviors, BEHAVIOR_COLUMNS, "reference_behaviors"),
    ):
        require_columns(frame, columns, name)
    if reference_items.height == 0 or reference_behaviors.height == 0:
        raise ValueError(
            "data_quality_report: the reference window is empty (items "
            f"{reference_items.height}, behaviors {reference_behaviors.height})"
        )
    items = item_checks(new_items, reference_items)
    behaviors = behavior_checks(new_behaviors, reference_behaviors)
    errors, warnings = _issues(items, behaviors)
    verdict = worst_verdict(["error"] * bool(errors) + ["warn"] * bool(warnings))
    sections = {}
    if new_items.height:
        sections["New items"] = _item_snapshot(new_items, reference_items)
    if new_behaviors.height:
        sections["New behaviors"] = _behavior_snapshot(new_behaviors, reference_behaviors)
    if not sections:
        raise ValueError("data_quality_report: no new items and no new behaviors to describe")
    summary = {
        "report": "data_quality",
        "verdict": verdict,
        "method": "Evidently DataSummaryPreset + explicit checks (missing, duplicates, unseen)",
        "headline": {"name": "issues", "value": len(errors) + len(warnings)},
        "issues": errors + warnings,
        "items": items,
        "behaviors": behaviors,
    }
    return ReportResult("data_quality", sections, summary)
