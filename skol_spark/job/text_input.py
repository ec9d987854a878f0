"""Text input: lines or whole documents of text -> the lines-with-features table the vector path scores.

Two shapes (docs/text.md):

- ``input.text_col``: one row per line (``doc_id``, ``line_number``, text);
- ``input.document_text_col``: one row per document; its text is split on
  ``\\n`` (a ``\\r`` before it is not part of the line), lines numbered from 0,
  every line kept, blank ones included.

The model version's feature pipeline (``skol_spark.store.pipeline``) is
rebuilt on the driver and applied as Spark ML stages, so featurizing runs on
the executors inside the scoring query. The text reaches the column the
pipeline's first stage reads; the result keeps the input's columns, the line's
text as ``text``, and the vector as ``input.features_col``. A null text gets
a null feature vector, so the input rules for null features apply to it as
they are (refused, or its document quarantined), counted as such.
"""

from __future__ import annotations

import logging

from skol_spark.errors import InputContractError

log = logging.getLogger(__name__)

TEXT = "text"
HIDDEN_TEXT = "__skol_text"


def uses_text(config) -> bool:
    return bool(config.input.text_col or config.input.document_text_col)


def as_feature_lines(df, config, artifact, *, pipeline=None):
    """The input as scoring lines with feature vectors; vector input is returned as it is.

    ``pipeline`` (a parsed ``FeaturePipeline``) defaults to the version's, read from the store: a version
    without one, or one whose output size differs from the model's, fails here, before anything is written.
    """
    if not uses_text(config):
        return df
    inp = config.input
    if inp.features_col in df.columns:
        raise InputContractError(f"the input has a {inp.features_col!r} column and text input is configured "
                                 f"(input.{'text_col' if inp.text_col else 'document_text_col'}); give one or "
                                 "the other, or set input.features_col to a name the input does not use")
    if pipeline is None:
        pipeline = load_pipeline(config, artifact)
    lines = document_lines(df, config) if inp.document_text_col else text_lines(df, config)
    return featurize(lines, pipeline, features_col=inp.features_col)


def load_pipeline(config, artifact):
    from skol_spark.job.model_loading import open_store, redis_settings
    from skol_spark.store import pipeline as stored

    store = open_store(redis_settings(config), prefix=config.redis.prefix)
    try:
        return stored.load(store, artifact.name, artifact.version, artifact.manifest,
                           allowed_modules=config.model.pipeline_modules)
    finally:
        store.client.close()


def _require_string(df, column: str, key: str) -> None:
    from pyspark.sql import types as T

    if column not in df.columns:
        raise InputContractError(f"input has no column {column!r} ({key}); columns: {df.columns}")
    if not isinstance(df.schema[column].dataType, T.StringType):
        raise InputContractError(f"input column {column!r} ({key}) is {df.schema[column].dataType.simpleString()}, "
                                 "expected a string")


def text_lines(df, config):
    """One row per line: the text column renamed to ``text``."""
    inp = config.input
    _require_string(df, inp.text_col, "input.text_col")
    if inp.text_col != TEXT and TEXT in df.columns:
        raise InputContractError(f"input has a {TEXT!r} column besides input.text_col={inp.text_col!r}; the output "
                                 f"names the line's text {TEXT!r}: rename or drop the other column")
    return df.withColumnRenamed(inp.text_col, TEXT)


def document_lines(df, config):
    """One row per document -> one row per line: ``line_col`` numbered from 0, ``text`` the line.

    A null document becomes one line with null text (refused or quarantined like any null text).
    """
    from pyspark.sql import functions as F

    inp = config.input
    _require_string(df, inp.document_text_col, "input.document_text_col")
    taken = sorted({inp.line_col, TEXT} & (set(df.columns) - {inp.document_text_col}))
    if taken:
        raise InputContractError(f"document text input makes the columns {inp.line_col!r} and {TEXT!r}, but the "
                                 f"input already has {taken}; rename or drop them")
    others = [F.col(c) for c in df.columns if c != inp.document_text_col]
    split = F.split(F.col(inp.document_text_col), r"\r?\n", -1)
    exploded = df.select(*others, F.posexplode_outer(split).alias("_pos", TEXT))
    return exploded.select(*others, F.coalesce(F.col("_pos"), F.lit(0)).cast("int").alias(inp.line_col), TEXT)


def featurize(lines, pipeline, *, features_col: str):
    """Lines with ``text`` -> the same lines with the pipeline's vector as ``features_col``.

    The pipeline's own columns (its input, its intermediate outputs) must not be input columns: they would be
    overwritten unseen.
    """
    from pyspark.sql import functions as F

    keep = [c for c in lines.columns if c != TEXT]
    used = {pipeline.text_col} | {s.params.get("outputCol") for s in pipeline.saved}
    clash = sorted(used & set(keep))
    if clash:
        raise InputContractError(f"input column(s) {clash} have names the feature pipeline uses for its own "
                                 f"columns ({sorted(c for c in used if c)}); rename or drop them")
    fed = lines.withColumnRenamed(TEXT, HIDDEN_TEXT) \
        .withColumn(pipeline.text_col, F.coalesce(F.col(HIDDEN_TEXT), F.lit("")))
    vectors = pipeline.transform(fed)
    features = F.when(F.col(HIDDEN_TEXT).isNull(), F.lit(None)).otherwise(F.col(pipeline.features_col))
    return vectors.select(*keep, F.col(HIDDEN_TEXT).alias(TEXT), features.alias(features_col))
