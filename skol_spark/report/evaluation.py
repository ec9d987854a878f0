"""Evaluation and report at the end of a run, from the files the run wrote.

Metrics come from reading back the written output (a few columns), never from
re-running the model. The report (HTML + PNGs) is drawn locally and then
copied next to the run manifest through the session's file system
(``job.services``: Hadoop's FileSystem API on a classic session, so it lands
beside the output on HDFS/S3 as well; the driver's own on Spark Connect). Runs larger than ``REPORT_MAX_LINES``
skip the report with a warning (the per-label counts in the manifest remain).
"""

from __future__ import annotations

import logging
import tempfile
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

REPORT_MAX_LINES = 5_000_000


def evaluate_output(written, labels: list[str], *, doc_col: str, line_col: str, labelled: bool, report_dir: str,
                    write_report: bool, manifest: dict[str, Any], rows: int) -> dict[str, Any]:
    """Return manifest sections ``evaluation`` (metrics + class table) and ``report`` (paths)."""
    from pyspark.sql import functions as F

    from skol_spark.report.metrics import format_class_table
    from skol_spark.report.build import write_report as draw_report
    from skol_spark.job.services import services_for

    if rows > REPORT_MAX_LINES:
        log.warning("run has %d lines, more than %d: skipping the report (docs/operations.md, 'Evaluation and the "
                    "run report')",
                    rows, REPORT_MAX_LINES)
        return {}
    columns = [F.col(doc_col).alias("doc_id"), F.col(line_col).alias("line_number"), "label", "prediction",
               "confidence"]
    if labelled:
        columns.append("true_label")
    table = written.select(*columns).toArrow()
    with tempfile.TemporaryDirectory(prefix="skol-report-") as tmp:
        result = draw_report(table, labels, tmp, title=f"skol-spark run {manifest.get('run_id', '')}",
                             manifest=manifest)
        paths = {}
        if write_report:
            fs = services_for(written.sparkSession).fs(report_dir)
            fs.mkdirs(report_dir)
            for name in sorted(p.name for p in Path(tmp).iterdir()):
                fs.write(f"{report_dir}/{name}", (Path(tmp) / name).read_bytes())
                paths[name] = f"{report_dir}/{name}"
            log.info("wrote the run report to %s", report_dir)
    metrics = result["metrics"]
    out: dict[str, Any] = {"report": {"html": paths.get("report.html", ""), "files": paths}}
    if labelled:
        out["evaluation"] = {"metrics": metrics, "class_table": format_class_table(metrics)}
    return out
