"""The input as the job reads it: the source, the carried columns, the true label, the unscored documents."""

from __future__ import annotations

from skol_spark.errors import InputContractError
from skol_spark.job.config import JobConfig
from skol_spark.scoring.partition import RESULT_COLUMNS

TRUE_LABEL = "true_label"


def read_input(spark, config: JobConfig):
    from pyspark.sql import functions as F

    inp = config.input
    try:
        df = spark.table(inp.table) if inp.table else spark.read.format(inp.format).load(inp.path)
    except Exception as e:  # AnalysisException: path or table missing; FAILED_READ_FILE: not Parquet, corrupt
        from skol_spark.job.input_errors import java_summary, unreadable_input

        error = unreadable_input(spark, e, fmt=inp.format, source=inp.table or inp.path)
        raise error or InputContractError(f"cannot read input {inp.table or inp.path} ({inp.format}): "
                                          f"{java_summary(e)}. Check input.path / input.table") from None
    if inp.watermark_col:
        if inp.watermark_col not in df.columns:
            raise InputContractError(f"input has no watermark column {inp.watermark_col!r} (input.watermark_col)")
        if inp.watermark_min:
            df = df.where(F.col(inp.watermark_col) >= F.lit(inp.watermark_min))
    return df


def carried_columns(df, config: JobConfig) -> list[str]:
    """Key + passthrough (+ true label) columns, in input order, checked against result names."""
    inp = config.input
    keys = [inp.doc_id_col, inp.line_col]
    skip = set(keys) | {inp.features_col, inp.label_col}
    if "*" in inp.passthrough:
        passthrough = [c for c in df.columns if c not in skip]
    else:
        missing = [c for c in inp.passthrough if c not in df.columns]
        if missing:
            raise InputContractError(f"input.passthrough names column(s) {missing} the input does not have "
                                     f"(columns: {df.columns})")
        passthrough = [c for c in inp.passthrough if c not in skip]
    clash = sorted(set(passthrough) & (set(RESULT_COLUMNS) | {TRUE_LABEL}))
    if clash:
        raise InputContractError(
            f"input column(s) {clash} would collide with output columns of the same name. If it is the true "
            "label, set input.label_col to it; otherwise drop or rename it, or list input.passthrough explicitly")
    return keys + passthrough + ([TRUE_LABEL] if inp.label_col else [])


def with_true_label(df, config: JobConfig, labels: list[str]):
    """Normalise the true label to a label name (indices map through the model's labels)."""
    from pyspark.sql import functions as F
    from pyspark.sql import types as T

    col = config.input.label_col
    if not col:
        return df
    if isinstance(df.schema[col].dataType, (T.IntegerType, T.LongType, T.ShortType, T.ByteType)):
        # an index outside the model's classes stays its number, counted as unknown like an unknown name; the
        # range is tested before anything indexes or narrows it (ANSI mode fails element_at and int casts)
        index, names = F.col(col), F.array(*[F.lit(x) for x in labels])
        known = (index >= F.lit(0)) & (index < F.lit(len(labels)))
        value = F.when(index.isNull(), F.lit(None)) \
            .when(known, F.element_at(names, index.cast("int") + F.lit(1))) \
            .otherwise(index.cast("string"))
    else:
        value = F.col(col).cast("string")
    return df.withColumn(TRUE_LABEL, value)


def unscored_documents(spark, df, config: JobConfig, artifact):
    """Incremental mode: drop documents the output already holds for this model (version)."""
    from pyspark.sql import functions as F

    out = config.output
    from skol_spark.job.services import services_for

    fs = services_for(spark).fs(out.path)
    if not fs.exists(out.path) or not any(n.startswith("run_id=") for n in fs.list(out.path)):
        return df
    done = spark.read.format(out.format).load(out.path).where(F.col("model_name") == artifact.name)
    if out.rescore == "new-version":
        done = done.where(F.col("model_version") == artifact.version)
    doc = config.input.doc_id_col
    done_docs = done.select(F.col(doc).alias("_done_doc")).distinct()
    return df.join(done_docs, df[doc] == done_docs["_done_doc"], "left_anti")
