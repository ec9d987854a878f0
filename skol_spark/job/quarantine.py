"""The opt-in ``quarantine`` policy: set bad documents aside, score the rest.

A document with any offending line (any rule of ``scoring.rules``: null or
NaN key, null/NaN/inf features, wrong size, bad sparse indices, duplicate
key) is quarantined whole, because scoring part of a document
would change the windows of the lines around the gap. Its lines go to
``scoring.quarantine_path/run_id=<run>/`` with a ``quarantine_reason``. The
run fails (nothing published) when the quarantined share of lines exceeds
``scoring.max_quarantine_fraction``. Output + quarantine lines = input lines.
"""

from __future__ import annotations

from skol_spark.job.config import JobConfig
from skol_spark.errors import InputContractError
from skol_spark.scoring import rules


def quarantine(spark, df, report, config: JobConfig, bad_docs, recorder):
    from pyspark.sql import functions as F

    doc = config.input.doc_id_col
    bad_docs = bad_docs.cache()
    # Null document ids cannot be joined: they are quarantined as their own group.
    keyed = df.withColumn("_qdoc", F.coalesce(F.col(doc).cast("string"), F.lit("\u0000null")))
    bad_keys = bad_docs.select(F.coalesce(F.col("_doc").cast("string"), F.lit("\u0000null")).alias("_qdoc"),
                               F.col("reason").alias("quarantine_reason"))
    bad_lines = keyed.join(bad_keys, "_qdoc", "inner").drop("_qdoc")
    n_bad = bad_lines.count()
    fraction = n_bad / report.lines if report.lines else 0.0
    limit = config.scoring.max_quarantine_fraction
    info = {"lines": n_bad, "documents": bad_docs.count(), "fraction": round(fraction, 6),
            "path": config.scoring.quarantine_path}
    recorder.quarantine(info)
    if fraction > limit:
        bad_docs.unpersist()
        raise InputContractError(
            f"{n_bad} of {report.lines} lines ({fraction:.2%}) would be quarantined, above "
            f"scoring.max_quarantine_fraction={limit:.2%}; nothing was written. Fix the input or raise the limit")
    features = config.input.features_col
    (bad_lines.withColumn(features, features_as_text(bad_lines, features))
     .withColumn("run_id", F.lit(recorder.run_id))
     .write.mode("append").partitionBy("run_id").parquet(config.scoring.quarantine_path))
    good = keyed.join(bad_keys, "_qdoc", "left_anti").drop("_qdoc")
    bad_docs.unpersist()
    return good


def features_as_text(df, features: str):
    """The feature column as a string, whatever its kind. A Spark ML vector is written as the JSON of its stored
    fields: casting it deserializes it, which fails the job on the very vectors (an index beyond the size, one
    repeated) that put a document in quarantine."""
    from pyspark.ml.linalg import VectorUDT
    from pyspark.sql import functions as F

    from skol_spark.job.validate import stored_vector

    if isinstance(df.schema[features].dataType, VectorUDT):
        return F.to_json(stored_vector(F.col(features)))
    return F.col(features).cast("string")


def bad_documents(df, *, doc_col: str, line_col: str, features_col: str, kind: str, feature_size: int):
    """Documents with any offending line, with a reason (the first flag of ``FLAGS`` it breaks, by name):
    DataFrame(_doc, reason). Vectors are read through their stored fields: this runs only when the scan found
    bad lines, and a vector the JVM cannot deserialize must be quarantined, not fail the job."""
    from pyspark.sql import functions as F
    from pyspark.sql.window import Window

    from skol_spark.job.validate import line_flags

    flags = line_flags(df, doc_col=doc_col, line_col=line_col, features_col=features_col, kind=kind,
                       feature_size=feature_size, raw_vectors=True)
    dup = F.count(F.lit(1)).over(Window.partitionBy("_doc", "_line")) > 1
    reason = F.coalesce(*[F.when(dup if name == "duplicate" else F.col(name), F.lit(name)) for name in rules.FLAGS])
    return (flags.withColumn("reason", reason).where(F.col("reason").isNotNull())
            .groupBy("_doc").agg(F.min("reason").alias("reason")))
