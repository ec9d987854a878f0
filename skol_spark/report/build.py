"""The run report: metrics, charts and one self-contained HTML page per scoring run.

``write_report`` is called by the job right after a run (with the table it just
wrote) and by ``skol-spark report`` later, from the output Parquet alone, so a
report can be rebuilt, or two runs compared, without rescoring. The HTML embeds
its PNGs as base64 data URIs and its CSS inline, and references nothing else:
it can be mailed, attached to a ticket or opened on an air-gapped cluster.

Run manifest keys read (all optional except ``output.path`` when a manifest is
given instead of an output directory): ``output.path``, ``report_dir``,
``run_id``, ``model.name``, ``model.version``, ``model.checksum``,
``model.labels``, ``started_at``, ``counts.lines``, ``counts.documents``,
``duration_seconds``, ``lines_per_second``.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pandas as pd
import pyarrow as pa

from skol_spark.report import charts
from skol_spark.report.cli import REPORT_DESCRIPTION, add_report_arguments
from skol_spark.report.compare import compare_runs, write_comparison
from skol_spark.errors import ConfigError, SkolError
from skol_spark.report.metrics import compute_metrics, confidence_summary, format_class_table, label_indices
from skol_spark.report.html import report_page
from skol_spark.report.files import TRUE_COLUMN, labels_from_data, load_output, load_run, read_manifest, \
     scored_columns

__all__ = ["write_report", "load_output", "compare_runs", "write_comparison", "report_main", "run_report",
           "add_report_arguments", "CHART_FILES"]

log = logging.getLogger(__name__)

CHART_FILES = ("confusion_matrix.png", "class_metrics.png", "label_counts.png", "confidence.png")


def write_report(output_table: pd.DataFrame | pa.Table, labels: Sequence[str], out_dir: str | os.PathLike[str],
                 *, title: str, manifest: dict[str, Any] | None = None) -> dict[str, Any]:
    """Write ``report.html``, ``metrics.json`` and the PNG charts of one run into ``out_dir``.

    ``output_table`` is the scoring output (``doc_id``, ``line_number``,
    ``label``, ``confidence``, optional ``true_label``); ``labels`` the model's
    labels in index order. ``confusion_matrix.png`` and ``class_metrics.png``
    are written only when some true label is a model label (stale copies from
    an earlier report in the same directory are removed); ``label_counts.png``
    and ``confidence.png`` always. Returns ``{"paths": {file name: path},
    "metrics": compute_metrics(...), "confidence": confidence_summary(...)}``.
    """
    frame, labels = scored_columns(output_table), list(labels)
    predicted = frame["label"].to_numpy(dtype=object)
    predicted_idx = label_indices(predicted, labels)
    metrics = compute_metrics(frame[TRUE_COLUMN].to_numpy(dtype=object), predicted, labels,
                              doc_ids=frame["doc_id"].to_numpy())
    confidence = frame["confidence"].to_numpy(dtype=np.float64)
    summary = confidence_summary(confidence, predicted, labels)
    pngs: dict[str, bytes] = {}
    truth = metrics["evaluated_lines"] > 0
    if truth:
        pngs["confusion_matrix.png"] = charts.confusion_matrix_png(metrics["confusion_matrix"], labels)
        pngs["class_metrics.png"] = charts.class_metrics_png(metrics)
    true_counts = {name: metrics["per_class"][name]["support"] for name in labels} if truth else None
    pngs["label_counts.png"] = charts.label_counts_png(metrics["predicted_counts"], true_counts)
    pngs["confidence.png"] = charts.confidence_png(confidence, predicted_idx, labels)

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths: dict[str, str] = {}
    for name in CHART_FILES:
        if name in pngs:
            (out / name).write_bytes(pngs[name])
            paths[name] = str(out / name)
        else:
            (out / name).unlink(missing_ok=True)
    facts = {"documents": int(frame["doc_id"].nunique())}
    page = report_page(title, metrics, summary, pngs, manifest=manifest, facts=facts)
    (out / "report.html").write_text(page, encoding="utf-8")
    (out / "metrics.json").write_text(json.dumps({"metrics": metrics, "confidence": summary}, indent=2),
                                      encoding="utf-8")
    paths["report.html"], paths["metrics.json"] = str(out / "report.html"), str(out / "metrics.json")
    # DEBUG: the job draws into a temporary directory and copies the files beside the manifest, which it logs
    log.debug("drew the run report in %s (%d lines, %d labelled)", out, metrics["lines"], metrics["labelled_lines"])
    return {"paths": paths, "metrics": metrics, "confidence": summary}


def _parse_labels(text: str) -> list[str]:
    labels = [name.strip() for name in text.split(",") if name.strip()]
    if not labels or len(set(labels)) != len(labels):
        raise ConfigError(f"--labels {text!r}: expected distinct comma-separated label names in model index "
                          "order, e.g. --labels Nomenclature,Description,Misc")
    return labels


def _read_run(source: str) -> tuple[pa.Table, dict[str, Any] | None]:
    """The rows of ``source`` and its manifest, if any: a manifest's own run only (``load_run``), an
    output directory as it is."""
    if source.endswith(".json"):
        manifest = read_manifest(source)
        return load_run(manifest, f"run manifest {source}"), manifest
    return load_output(source), None


def _labels_for(explicit: str | None, manifest: dict[str, Any] | None, table: pa.Table) -> list[str]:
    if explicit:
        return _parse_labels(explicit)
    labels = ((manifest or {}).get("model") or {}).get("labels")
    return [str(name) for name in labels] if labels else labels_from_data(table)


def _out_dir(explicit: str | None, source: str, manifest: dict[str, Any] | None) -> Path:
    """--out, else the manifest's report_dir, else ``<manifest or output name>_report`` beside it."""
    if explicit:
        return Path(explicit)
    if manifest and manifest.get("report_dir"):
        return Path(manifest["report_dir"])
    if "://" in source:
        raise ConfigError(f"{source} is not a local path, so the report has no default place; pass --out DIR")
    path = Path(source.rstrip("/"))
    return path.parent / f"{path.stem if path.suffix == '.json' else path.name}_report"


def _run_name(manifest: dict[str, Any] | None, table: pa.Table, fallback: str) -> str:
    """The run id from the manifest, else the single run_id in the data, else ``fallback``."""
    if manifest and manifest.get("run_id"):
        return str(manifest["run_id"])
    if "run_id" in table.column_names:
        ids = table.column("run_id").unique().to_pylist()
        if len(ids) == 1 and ids[0] is not None:
            return str(ids[0])
    return fallback


def _parser() -> argparse.ArgumentParser:
    return add_report_arguments(argparse.ArgumentParser(prog="skol-spark report", description=REPORT_DESCRIPTION))


def _print_written(paths: dict[str, str]) -> None:
    for name, path in paths.items():
        print(f"wrote {name}: {path}")


def report_main(argv: list[str]) -> int:
    """``skol-spark report`` from an argument list: 0 on success, else the error's exit code."""
    try:
        args = _parser().parse_args(argv)
    except SystemExit as e:  # --help, or a usage error argparse already printed
        return int(e.code or 0)
    return run_report(args)


def run_report(args: argparse.Namespace) -> int:
    """``skol-spark report`` on parsed arguments: 0 on success, else the error's exit code (2 for a bad
    path, no data, or a run whose rows are gone)."""
    try:
        table, manifest = _read_run(args.source)
        labels = _labels_for(args.labels, manifest, table)
        out_dir = _out_dir(args.out, args.source, manifest)
        name = _run_name(manifest, table, Path(args.source.rstrip("/")).name)
        result = write_report(table, labels, out_dir, title=args.title or f"skol_spark run {name}",
                              manifest=manifest)
        written = dict(result["paths"])
        if args.compare:
            other, other_manifest = _read_run(args.compare)
            comparison = compare_runs(other, table, labels)
            other_name = _run_name(other_manifest, other, Path(args.compare.rstrip("/")).name)
            written.update(write_comparison(comparison, out_dir, title=f"skol_spark runs {other_name} → {name}",
                                            name_a=other_name, name_b=name))
    except SkolError as e:
        print(f"skol-spark report: error: {e}", file=sys.stderr)
        return e.exit_code
    _print_written(written)
    print()
    print(format_class_table(result["metrics"]))
    if args.compare:
        print(f"\ncompared with {other_name}: {comparison['changed_count']} of {comparison['common_lines']} "
              f"common lines changed label; {comparison['only_a']} only in {other_name}, "
              f"{comparison['only_b']} only in {name}")
    return 0
