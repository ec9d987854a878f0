"""Annotated documents out: one YEDDA text per scored document, staged and published with the main output.

YEDDA marks a span as ``[@ TEXT #Label*]``. As the original project wrote
it with line coalescing, consecutive lines that got the same label form one
block whose TEXT is those lines joined with ``\\n``, and a document's blocks are
joined with ``\\n``. ``yedda`` is that rule, Spark-free; the Spark side
groups the run's staged rows by document and applies it (docs/text.md).

The annotated rows are computed from the main output's staged files (the
scoring query runs once), written to a staging directory beside
``output.annotated_path``, and published right after the main output with the
same renames (``sink.publish``): a failure before that publishes neither.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Iterable

from skol_spark.job.sink import HadoopFS, OutputPaths, check_mode, publish, recover, write_staged

log = logging.getLogger(__name__)


def yedda(lines: Iterable[tuple[str, str]]) -> str:
    """``[(text, label), ...]`` in line order -> the annotated document ('' for no lines)."""
    blocks: list[tuple[str, list[str]]] = []
    for text, label in lines:
        if blocks and blocks[-1][0] == label:
            blocks[-1][1].append(text)
        else:
            blocks.append((label, [text]))
    return "\n".join(f"[@ {chr(10).join(texts)} #{label}*]" for label, texts in blocks)


@dataclass(frozen=True)
class StagedAnnotations:
    fs: HadoopFS
    paths: OutputPaths
    mode: str
    fmt: str


def stage(spark, config, paths: OutputPaths, schema, plan) -> StagedAnnotations | None:
    """Compute and stage this run's annotated documents (None when ``output.annotated_path`` is unset).

    ``paths`` / ``schema`` are the main output's (its staged run is read back); ``plan`` names the model.
    On failure the annotated staging is removed and the error re-raised.
    """
    out = config.output
    if not out.annotated_path:
        return None
    target = OutputPaths(out.annotated_path, paths.run_id)
    from skol_spark.job.services import services_for

    fs = services_for(spark).fs(out.annotated_path)
    check_mode(fs, out.annotated_path, out.mode)
    recover(fs, target)
    try:
        rows = annotated_rows(spark, config, f"{paths.staging}/{paths.partition_dir}", schema, plan)
        write_staged(rows, target, fmt=out.annotated_format, partition_by=())
    except BaseException:
        fs.delete(target.staging)
        raise
    return StagedAnnotations(fs, target, out.mode, out.annotated_format)


def annotated_rows(spark, config, staged_run: str, schema, plan):
    """The staged scored rows -> one row per document: doc, annotated, model_name, model_version, run_id."""
    from pyspark.sql import functions as F
    from pyspark.sql import types as T

    doc, line = config.input.doc_id_col, config.input.line_col
    needed = T.StructType([schema[c] for c in (doc, line, "text", "label")])
    scored = spark.read.format(config.output.format).schema(needed).load(staged_run)
    out_schema = T.StructType([schema[doc], T.StructField("annotated", T.StringType(), False)])

    def merge(frame):
        import pandas as pd

        frame = frame.sort_values(line)
        return pd.DataFrame({doc: frame[doc].iloc[:1].tolist(),
                             "annotated": [yedda(zip(frame["text"].fillna(""), frame["label"]))]})

    return (scored.groupBy(doc).applyInPandas(merge, out_schema)
            .withColumn("model_name", F.lit(plan.model_name))
            .withColumn("model_version", F.lit(plan.model_version).cast("int"))
            .withColumn("run_id", F.lit(plan.run_id)))


def publish_staged(staged: StagedAnnotations | None, spark, recorder) -> None:
    """Publish the staged annotations (after the main output) and count them in the run manifest."""
    if staged is None:
        return
    publish(staged.fs, staged.paths, staged.mode)
    documents = spark.read.format(staged.fmt).load(f"{staged.paths.output}/{staged.paths.partition_dir}").count()
    recorder.data["annotated"] = {"path": staged.paths.output, "format": staged.fmt, "documents": documents}
    log.info("published %d annotated document(s) to %s", documents, staged.paths.output)
