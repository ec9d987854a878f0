"""Saved stages -> Spark ML transformers built with public constructors, and what the pipeline reads and makes.

A rebuilt pipeline holds its fitted state (vocabularies, IDF weights) in the
transformers' params, so it is serialised into the query plan: executors
need no files, no Redis and no driver-local directory. Only the stages the
feature column depends on are kept (a ``StringIndexer`` on the training
label is left out: scoring input has no label). An IDF model becomes an
``ElementwiseProduct`` by its weights, which is what IDF's transform does.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any, Callable, Sequence

from skol_spark.errors import ModelFormatError
from skol_spark.text.saved import SUFFIX_CLASSES, SavedStage, vector_values

LABEL_STAGES = ("StringIndexerModel",)


@dataclass(frozen=True)
class FeaturePipeline:
    """A parsed feature pipeline: ``saved`` (the stages the feature column needs, in order) read ``text_col``
    and write the ``feature_size``-long vector ``features_col``; ``labels`` are a label StringIndexer's, if
    the pipeline had one. Parsing needs no Spark; ``build`` and ``transform`` do (an active SparkContext)."""

    saved: tuple[SavedStage, ...]
    text_col: str
    features_col: str
    feature_size: int
    stage_classes: tuple[str, ...]
    labels: tuple[str, ...] = ()

    def summary(self) -> dict[str, Any]:
        """What the manifest records and ``model show`` prints."""
        return {"stages": list(self.stage_classes), "text_col": self.text_col, "features_col": self.features_col,
                "feature_size": self.feature_size, "labels": list(self.labels)}

    def build(self) -> list[Any]:
        """The transformers, in order (a user-allowed module is imported here, never before)."""
        return [build_stage(s) for s in self.saved]

    def transform(self, df):
        for stage in self.build():
            df = stage.transform(df)
        return df


def _io(stage: SavedStage) -> dict[str, Any]:
    return {k: stage.params[k] for k in ("inputCol", "outputCol") if k in stage.params}


def _tokenizer(s: SavedStage):
    from pyspark.ml.feature import Tokenizer

    return Tokenizer(**_io(s))


def _regex_tokenizer(s: SavedStage):
    from pyspark.ml.feature import RegexTokenizer

    keys = ("minTokenLength", "gaps", "pattern", "toLowercase")
    return RegexTokenizer(**_io(s), **{k: s.params[k] for k in keys if k in s.params})


def _stop_words(s: SavedStage):
    from pyspark.ml.feature import StopWordsRemover

    keys = ("stopWords", "caseSensitive", "locale")
    return StopWordsRemover(**_io(s), **{k: s.params[k] for k in keys if k in s.params})


def _ngram(s: SavedStage):
    from pyspark.ml.feature import NGram

    return NGram(**_io(s), n=int(s.params.get("n", 2)))


def _hashing_tf(s: SavedStage):
    from pyspark.ml.feature import HashingTF

    return HashingTF(**_io(s), numFeatures=int(s.params["numFeatures"]), binary=bool(s.params.get("binary", False)))


def _count_vectorizer(s: SavedStage):
    from pyspark.ml.feature import CountVectorizerModel

    vocabulary = _one_row(s, "vocabulary")
    return CountVectorizerModel.from_vocabulary(list(vocabulary), s.params["inputCol"], s.params["outputCol"],
                                                minTF=float(s.params.get("minTF", 1.0)),
                                                binary=bool(s.params.get("binary", False)))


def _idf(s: SavedStage):
    from pyspark.ml.feature import ElementwiseProduct
    from pyspark.ml.linalg import Vectors

    weights = vector_values(_one_row(s, "idf"), f"stage {s.uid} idf")
    return ElementwiseProduct(scalingVec=Vectors.dense(weights), **_io(s))


def _assembler(s: SavedStage):
    from pyspark.ml.feature import VectorAssembler

    return VectorAssembler(inputCols=list(s.params["inputCols"]), outputCol=s.params["outputCol"],
                           handleInvalid=s.params.get("handleInvalid", "error"))


def _suffix(s: SavedStage):
    from skol_spark.text.suffix import SuffixTransformer

    return SuffixTransformer(**_io(s))


BUILDERS: dict[str, Callable[[SavedStage], Any]] = {
    "Tokenizer": _tokenizer, "RegexTokenizer": _regex_tokenizer, "StopWordsRemover": _stop_words,
    "NGram": _ngram, "HashingTF": _hashing_tf, "CountVectorizerModel": _count_vectorizer, "IDFModel": _idf,
    "VectorAssembler": _assembler,
}


def _one_row(s: SavedStage, column: str) -> Any:
    if len(s.data) != 1 or column not in s.data[0]:
        raise ModelFormatError(f"saved pipeline: stage {s.uid} ({s.short_name}) should hold one row with "
                               f"{column!r} in its data/; save the pipeline again")
    return s.data[0][column]


def build_stage(s: SavedStage):
    """One saved stage -> a transformer. Classes were allow-listed by ``read_saved_pipeline``; only a class
    from a user-allowed module is imported here, and only after that check."""
    return builder_for(s)(s)


def builder_for(s: SavedStage) -> Callable[[SavedStage], Any]:
    """How a stage is rebuilt; ModelFormatError (exit 13) naming the class when skol_spark cannot."""
    if s.cls in SUFFIX_CLASSES:
        return _suffix
    if s.cls.startswith(("org.apache.spark.ml.", "pyspark.ml.")):
        builder = BUILDERS.get(s.short_name)
        if builder is None:
            raise ModelFormatError(
                f"the feature pipeline's stage {s.uid} is a {s.cls}, which skol_spark cannot rebuild for the "
                f"executors; supported: {', '.join(sorted(BUILDERS))}, a label StringIndexer and the suffix "
                "stage. Refit the pipeline with those stages")
        return builder
    return _user_stage


def _user_stage(s: SavedStage):
    """A param-only Python stage from a module the user allowed (``model.pipeline_modules``)."""
    from pyspark.ml import Transformer

    module, _, name = s.cls.rpartition(".")
    cls = getattr(importlib.import_module(module), name, None)
    if not (isinstance(cls, type) and issubclass(cls, Transformer)):
        raise ModelFormatError(f"the feature pipeline's stage {s.uid} names {s.cls}, which is not a Spark ML "
                               "Transformer class in that module")
    stage = cls()
    stage._set(**{k: v for k, v in s.params.items() if stage.hasParam(k)})
    return stage


def plan_pipeline(saved: Sequence[SavedStage]) -> FeaturePipeline:
    """The stages the feature column needs; the feature column is the last non-label stage's output."""
    labels = tuple(str(x) for s in saved if s.short_name in LABEL_STAGES for x in _label_values(s))
    body = [s for s in saved if s.short_name not in LABEL_STAGES]
    if not body:
        raise ModelFormatError("the feature pipeline has no feature stages (only a label indexer)")
    features_col = body[-1].params.get("outputCol")
    needed, wanted = [], {features_col}
    for s in reversed(body):
        if s.params.get("outputCol") in wanted:
            needed.insert(0, s)
            wanted |= set(_inputs(s))
    for s in needed:
        builder_for(s)  # refuse an unsupported stage when the pipeline is published, not when it runs
    text_col = _inputs(needed[0])[0]
    size = feature_size(needed, features_col)
    return FeaturePipeline(saved=tuple(needed), text_col=text_col,
                           features_col=features_col, feature_size=size,
                           stage_classes=tuple(s.cls for s in saved), labels=labels)


def _inputs(s: SavedStage) -> list[str]:
    cols = s.params.get("inputCols") or ([s.params["inputCol"]] if "inputCol" in s.params else [])
    if not cols:
        raise ModelFormatError(f"saved pipeline: stage {s.uid} ({s.short_name}) names no input column")
    return list(cols)


def _label_values(s: SavedStage) -> list[str]:
    row = s.data[0] if s.data else {}
    arrays = row.get("labelsArray") or [row.get("labels") or []]
    return list(arrays[0]) if arrays else []


def feature_size(stages: Sequence[SavedStage], column: str) -> int:
    """The length of the vector ``column`` from the stages' fitted state, without running Spark."""
    sizes: dict[str, int] = {}
    for s in stages:
        out, name = s.params.get("outputCol"), s.short_name
        if name == "CountVectorizerModel":
            sizes[out] = len(_one_row(s, "vocabulary"))
        elif name == "IDFModel":
            sizes[out] = len(vector_values(_one_row(s, "idf"), f"stage {s.uid} idf"))
        elif name == "HashingTF":
            sizes[out] = int(s.params["numFeatures"])
        elif name == "VectorAssembler":
            missing = [c for c in s.params["inputCols"] if c not in sizes]
            if missing:
                raise ModelFormatError(f"the feature pipeline's VectorAssembler {s.uid} reads {missing}, whose "
                                       "vector size skol_spark cannot tell from the saved stages")
            sizes[out] = sum(sizes[c] for c in s.params["inputCols"])
    if column not in sizes:
        raise ModelFormatError(f"the feature pipeline's last stage writes {column!r}, which is not a feature "
                               "vector (expected a CountVectorizer, IDF, HashingTF or VectorAssembler output)")
    return sizes[column]
