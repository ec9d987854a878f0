"""Score and publish: one Spark job maps the input through the scoring function and writes the result.

The scoring step runs exactly once: nothing re-evaluates the scored
DataFrame. A failed or timed-out job leaves nothing behind (not even hidden
staging); only a complete result is published (``sink``).
"""

from __future__ import annotations

import time

from skol_spark.errors import JobTimeoutError
from skol_spark.job import annotated
from skol_spark.job.config import JobConfig
from skol_spark.job.failures import spark_failure
from skol_spark.job.inputs import with_true_label
from skol_spark.job.plan import reads_input_partitions
from skol_spark.job.services import BUILT_COLUMN
from skol_spark.job.sink import OutputPaths, publish, write_dynamic_overwrite, write_staged, write_table
from skol_spark.scoring.partition import ScoringPlan, make_partition_scorer


def scoring_frame(df, plan: ScoringPlan, config: JobConfig, handle, builds):
    """Group documents into partitions, sort by line, and map each partition through the scorer.

    ``handle.value`` is the artifact on the executors; ``builds`` the
    session's model-build counter (``job.services``): an accumulator the
    tasks add to, or (``plan.flag_builds``) a flag column it observes and drops.

    A document must not span partitions. One partition holds every document,
    and partitions of input clustered by document hold whole documents, so
    both are kept or merged with ``coalesce`` (no shuffle: the scoring task
    reads the input itself); only the general case pays a shuffle by document.

    The sort is blocking: the task reads its whole partition before the
    first batch reaches Python. Input whose documents are already runs of
    rows (``plan.presorted``, from the validation scan) skips it, so reading
    overlaps predicting; measured in benchmarks/results/ab-stream-unsorted.md.
    """
    from pyspark.sql import functions as F

    df = with_true_label(df, config, list(plan.labels))
    needed = list(dict.fromkeys([*plan.carry_cols, plan.features_col]))
    df = df.select(*needed)
    if not plan.partitions:
        pass  # keep the input's partitions as they are (clustered by document)
    elif reads_input_partitions(config, plan.partitions):
        df = df.coalesce(plan.partitions)
    else:
        df = df.repartition(plan.partitions, F.col(plan.doc_col))
    if not plan.presorted:
        df = df.sortWithinPartitions(plan.doc_col, plan.line_col)
    schema = output_schema(df.schema, plan)
    if builds is None:  # nothing counts the builds (a plan inspected, not run)
        return df.mapInArrow(make_partition_scorer(plan, handle), schema)
    return builds.frame(df.mapInArrow(make_partition_scorer(plan, handle, builds.tasks), schema))


def output_schema(input_schema, plan: ScoringPlan):
    from pyspark.sql import types as T

    fields = [input_schema[c] for c in plan.carry_cols]
    fields += [
        T.StructField("label", T.StringType(), False),
        T.StructField("prediction", T.IntegerType(), False),
        T.StructField("confidence", T.FloatType(), False),
        T.StructField("probabilities", T.ArrayType(T.FloatType(), False), False),
        T.StructField("model_name", T.StringType(), False),
        T.StructField("model_version", T.IntegerType(), False),
        T.StructField("run_id", T.StringType(), False),
    ]
    if plan.flag_builds:
        fields.append(T.StructField(BUILT_COLUMN, T.IntegerType(), False))
    return T.StructType(fields)


def score_and_publish(spark, df, plan: ScoringPlan, handle, builds, config: JobConfig, paths: OutputPaths, fs,
                      recorder, *, lines: int, services) -> tuple[object, float]:
    """Score and write in one Spark job, then publish. -> (the written rows' schema, seconds it took).

    ``handle`` carries the artifact, ``builds`` counts model builds (``scoring_frame``); ``services`` are
    the session's (``job.services``): the timeout cancels through them, progress polls them.
    """
    from skol_spark.job.progress import Progress, Timeout

    out = config.output
    started = time.monotonic()
    scored = scoring_frame(df, plan, config, handle, builds)
    annotations = None
    with Timeout(services, config.job.timeout_seconds) as timeout, \
            Progress(services, total_lines=lines, enabled=config.job.progress and not config.job.quiet):
        try:
            if out.table:
                write_table(scored, out.table, fmt=out.format if out.format != "parquet" else "",
                            mode=out.mode, partition_by=out.partition_by)
            elif out.dynamic_partition_overwrite:
                write_dynamic_overwrite(scored, out.path, fmt=out.format, partition_by=out.partition_by)
            else:
                write_staged(scored, paths, fmt=out.format, partition_by=out.partition_by, fs=fs)
                annotations = annotated.stage(spark, config, paths, scored.schema, plan)  # docs/text.md
        except Exception as e:
            if fs and not out.dynamic_partition_overwrite:
                fs.delete(paths.staging)  # a failed run leaves nothing behind (the lock's release checks again)
            if timeout.fired.is_set():
                raise JobTimeoutError(f"the job ran longer than job.timeout_seconds="
                                      f"{config.job.timeout_seconds:g} and was cancelled; nothing was "
                                      "published") from None
            raise spark_failure(e) from None
    if fs and not out.dynamic_partition_overwrite:
        publish(fs, paths, out.mode)
        annotated.publish_staged(annotations, spark, recorder)
    return scored.schema, time.monotonic() - started
