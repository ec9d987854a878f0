"""Comparing two scoring runs line by line: which labels changed, and did F1 move.

Runs are joined on (``doc_id``, ``line_number``), the output's unique key, so
a new model version or a changed window size can be judged on exactly the
lines both runs scored; lines only one run scored are counted, not compared.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any, Sequence

import pandas as pd
import pyarrow as pa

from skol_spark.errors import ConfigError
from skol_spark.report.metrics import compute_metrics, null_mask
from skol_spark.report.html import comparison_page
from skol_spark.report.files import TRUE_COLUMN, scored_columns

log = logging.getLogger(__name__)

KEYS = ["doc_id", "line_number"]
CHANGED_COLUMNS = ["doc_id", "line_number", "label_a", "label_b", "confidence_a", "confidence_b", TRUE_COLUMN]


def _keyed(table: pd.DataFrame | pa.Table, name: str) -> pd.DataFrame:
    frame = scored_columns(table)[[*KEYS, "label", "confidence", TRUE_COLUMN]]
    duplicated = frame.duplicated(KEYS)
    if duplicated.any():
        first = frame.loc[duplicated, KEYS].iloc[0].tolist()
        raise ConfigError(f"run {name} has {int(duplicated.sum())} duplicate (doc_id, line_number) keys, e.g. "
                          f"{first}: it holds more than one run; compare single runs (one run_id each)")
    return frame


def _native(value: Any) -> Any:
    """numpy/pandas scalars as plain Python (JSON-ready); missing values as None."""
    if value is None or (isinstance(value, float) and value != value) or value is pd.NA:
        return None
    return value.item() if hasattr(value, "item") else value


def _f1_deltas(both: pd.DataFrame, labels: list[str]) -> dict[str, Any] | None:
    """Per-class F1, macro F1 and accuracy of A and B on the common lines, with B − A; None without truth."""
    true_a, true_b = both[f"{TRUE_COLUMN}_a"].to_numpy(object), both[f"{TRUE_COLUMN}_b"].to_numpy(object)
    if null_mask(true_a).all() or null_mask(true_b).all():
        return None
    ma = compute_metrics(true_a, both["label_a"].to_numpy(object), labels)
    mb = compute_metrics(true_b, both["label_b"].to_numpy(object), labels)
    if not ma["evaluated_lines"] or not mb["evaluated_lines"]:
        return None

    def pair(a: float, b: float) -> dict[str, float]:
        return {"a": a, "b": b, "delta": b - a}

    return {"per_class": {n: pair(ma["per_class"][n]["f1"], mb["per_class"][n]["f1"]) for n in labels},
            "macro": pair(ma["macro"]["f1"], mb["macro"]["f1"]), "accuracy": pair(ma["accuracy"], mb["accuracy"]),
            "evaluated_lines": {"a": ma["evaluated_lines"], "b": mb["evaluated_lines"]}}


def compare_runs(table_a: pd.DataFrame | pa.Table, table_b: pd.DataFrame | pa.Table,
                 labels: Sequence[str]) -> dict[str, Any]:
    """Join runs A and B on (doc_id, line_number) and list what changed, as JSON-ready data.

    Returns ``lines_a``, ``lines_b``, ``common_lines``, ``only_a``,
    ``only_b``, ``changed_count``, ``changed_lines`` (every common line whose
    predicted label differs, sorted by key: ``doc_id``, ``line_number``,
    ``label_a``, ``label_b``, ``confidence_a``, ``confidence_b``,
    ``true_label`` (A's, else B's; None if unknown)), ``transitions`` (counts
    of each label_a → label_b change, most frequent first) and ``f1``
    (per-class F1 of A and B on the common lines with ``delta`` = B − A, plus
    macro F1 and accuracy; None unless both runs carry true labels).
    Raises ConfigError for duplicate keys within a run.
    """
    labels = list(labels)
    a, b = _keyed(table_a, "A"), _keyed(table_b, "B")
    if a["doc_id"].dtype != b["doc_id"].dtype:  # int ids in one run, string in the other: compare as text
        a["doc_id"], b["doc_id"] = a["doc_id"].astype(str), b["doc_id"].astype(str)
    merged = a.merge(b, on=KEYS, how="outer", suffixes=("_a", "_b"), indicator=True)
    both = merged[merged["_merge"] == "both"]
    changed = both[both["label_a"] != both["label_b"]].sort_values(KEYS, kind="stable")
    changed = changed.assign(**{TRUE_COLUMN: changed[f"{TRUE_COLUMN}_a"].where(
        ~pd.isna(changed[f"{TRUE_COLUMN}_a"]), changed[f"{TRUE_COLUMN}_b"])})
    transitions = changed.groupby(["label_a", "label_b"]).size().sort_values(ascending=False, kind="stable")
    result = {
        "labels": labels, "lines_a": len(a), "lines_b": len(b), "common_lines": len(both),
        "only_a": int((merged["_merge"] == "left_only").sum()), "only_b": int((merged["_merge"] == "right_only").sum()),
        "changed_count": len(changed),
        "changed_lines": [{k: _native(v) for k, v in zip(CHANGED_COLUMNS, row)}
                          for row in changed[CHANGED_COLUMNS].itertuples(index=False, name=None)],
        "transitions": [{"a": la, "b": lb, "count": int(n)} for (la, lb), n in transitions.items()],
        "f1": _f1_deltas(both, labels),
    }
    log.info("compared runs: %d common lines, %d changed label, %d only in A, %d only in B",
             result["common_lines"], result["changed_count"], result["only_a"], result["only_b"])
    return result


def write_comparison(comparison: dict[str, Any], out_dir: str | os.PathLike[str], *, title: str,
                     name_a: str = "A", name_b: str = "B", max_html_lines: int = 1000) -> dict[str, str]:
    """Write ``comparison.html`` (self-contained; at most ``max_html_lines`` changed lines) and
    ``changed_lines.csv`` (all of them, header even when none) into ``out_dir``; return their paths."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    html_path, csv_path = out / "comparison.html", out / "changed_lines.csv"
    html_path.write_text(comparison_page(comparison, title, name_a, name_b, max_html_lines), encoding="utf-8")
    pd.DataFrame(comparison["changed_lines"], columns=CHANGED_COLUMNS).to_csv(csv_path, index=False)
    return {"comparison.html": str(html_path), "changed_lines.csv": str(csv_path)}
