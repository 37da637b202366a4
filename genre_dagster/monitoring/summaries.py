"""Numbers from Evidently 0.7 snapshots (`snapshot.dict()`), as plain floats and bools.

`snapshot.dict()` has `metrics` (id, metric_name, config, value) and `tests` (status, and the
id of the metric they test in `metric_config.metric_id`). Per-column drift verdicts come from the
`ValueDrift` tests: their statistic may be a p-value (drift when small) or a distance (drift
when large), and the test already knows which.
"""

from __future__ import annotations

from typing import Any

import numpy as np


def _metrics(snapshot: Any) -> list[dict[str, Any]]:
    return snapshot.dict()["metrics"]


def _test_status_by_metric(snapshot: Any) -> dict[str, str]:
    statuses: dict[str, str] = {}
    for test in snapshot.dict()["tests"]:
        metric_id = (test.get("metric_config") or {}).get("metric_id")
        if metric_id is not None:
            statuses[metric_id] = str(test["status"]).rsplit(".", 1)[-1]
    return statuses


def metric_type(entry: dict[str, Any]) -> str:
    """`ValueDrift`, `RowCount`, ... from a snapshot metric entry."""
    return entry["config"]["type"].rsplit(":", 1)[-1]


def find_metrics(snapshot: Any, kind: str, **config: Any) -> list[dict[str, Any]]:
    """Metric entries of one type whose config has the given values."""
    return [
        m
        for m in _metrics(snapshot)
        if metric_type(m) == kind and all(m["config"].get(k) == v for k, v in config.items())
    ]


def single_value(snapshot: Any, kind: str, **config: Any) -> Any:
    """The value of exactly one metric of type `kind` (ValueError if none or several)."""
    found = find_metrics(snapshot, kind, **config)
    if len(found) != 1:
        raise ValueError(
            f"expected one {kind} metric with {config} in the snapshot, found {len(found)}"
        )
    return found[0]["value"]


def drift_summary(snapshot: Any) -> dict[str, Any]:
    """Drift numbers of a snapshot with `DataDriftPreset` run with `include_tests=True`.

    Returns `drift_share`, `n_drifted`, `n_columns`, `drifted_columns` (sorted), `dataset_drift`
    (share >= the preset's drift_share), `drift_share_threshold` and `columns`:
    {column: {method, statistic, threshold, drifted}}.
    """
    counts = find_metrics(snapshot, "DriftedColumnsCount")
    if len(counts) != 1:
        raise ValueError(f"expected one DriftedColumnsCount (DataDriftPreset), found {len(counts)}")
    statuses = _test_status_by_metric(snapshot)
    columns: dict[str, dict[str, Any]] = {}
    for entry in find_metrics(snapshot, "ValueDrift"):
        status = statuses.get(entry["id"])
        if status not in ("SUCCESS", "FAIL"):
            raise ValueError(
                f"ValueDrift for {entry['config']['column']!r} has no pass/fail test result "
                f"({status!r}); run the report with include_tests=True"
            )
        columns[entry["config"]["column"]] = {
            "method": entry["config"]["method"],
            "statistic": float(entry["value"]),
            "threshold": float(entry["config"]["threshold"]),
            "drifted": status == "FAIL",
        }
    share_threshold = float(counts[0]["config"]["drift_share"])
    share = float(counts[0]["value"]["share"])
    drifted = sorted(c for c, info in columns.items() if info["drifted"])
    if len(drifted) != round(float(counts[0]["value"]["count"])):
        raise ValueError(
            f"DriftedColumnsCount says {counts[0]['value']['count']} drifted columns but the "
            f"ValueDrift tests flag {len(drifted)}: {drifted}"
        )
    return {
        "drift_share": share,
        "n_drifted": len(drifted),
        "n_columns": len(columns),
        "drifted_columns": drifted,
        "dataset_drift": share >= share_threshold,
        "drift_share_threshold": share_threshold,
        "columns": columns,
    }


def top_k_value(snapshot: Any, kind: str, k: int, **config: Any) -> float:
    """The value at cut-off k of an Evidently top-k metric (PrecisionTopK, NDCG, MRR, ...).

    Their values are (rank, value) tables. Evidently 0.7.23 numbers the rows of NDCG and MRR
    from 2 (their internal series is already 1-based and gets +1 again), so ranks are
    re-based to start at 1 before picking k.
    """
    value = single_value(snapshot, kind, k=k, **config)
    ranks = np.asarray(list(value["rank"].values()), dtype=np.int64)
    values = np.asarray(list(value["value"].values()), dtype=np.float64)
    ranks = ranks - ranks.min() + 1
    hit = np.flatnonzero(ranks == k)
    if len(hit) != 1:
        # Evidently stops at the longest list: k beyond it equals the last value.
        if k > ranks.max():
            return float(values[np.argmax(ranks)])
        raise ValueError(f"{kind}: no value at k={k} (ranks {ranks.tolist()})")
    return float(values[hit[0]])
