"""Helpers for the raw-text tests: a synthetic taxonomic corpus, pipelines fitted on it, the reference scorer.

The pipelines are the original project's shape (Tokenizer, CountVectorizer, IDF, a Python suffix stage,
CountVectorizer, IDF, VectorAssembler, StringIndexer on the label), fitted with real Spark ML. The legacy
variant's suffix stage is ``skol_classifier.preprocessing.SuffixTransformer`` from tests/legacy_stages.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

from skol_spark.scoring.windowing import score_document
from tests.helpers import LABELS, WINDOW

LEGACY_STAGES = str(Path(__file__).parent / "legacy_stages")
GENERA = ["Agaricus", "Russula", "Boletus", "Amanita", "Cortinarius", "Lactarius", "Inocybe", "Mycena"]
EPITHETS = ["campestris", "emetica", "edulis", "muscaria", "violaceus", "deliciosus", "geophylla", "pura"]
DESCRIPTION = ["pileus", "convex", "brown", "lamellae", "adnate", "crowded", "stipe", "white", "spores",
               "ellipsoid", "smooth", "hyaline", "basidia", "clavate", "cystidia", "absent"]
MISC = ["the", "collection", "was", "made", "in", "forest", "near", "river", "by", "author", "see", "figure"]


def legacy_suffix_class():
    """The test stand-in for the original project's suffix stage, shipped by value to Python workers."""
    if LEGACY_STAGES not in sys.path:
        sys.path.insert(0, LEGACY_STAGES)
    from pyspark import cloudpickle

    import skol_classifier.preprocessing as legacy

    cloudpickle.register_pickle_by_value(legacy)
    return legacy.SuffixTransformer


def make_line(rng, label: str) -> str:
    if label == "Nomenclature":
        return f"{rng.choice(GENERA)} {rng.choice(EPITHETS)} sp. nov. {int(rng.integers(1800, 2020))}"
    words = DESCRIPTION if label == "Description" else MISC
    return " ".join(rng.choice(words, size=int(rng.integers(2, 9))))


def make_text_documents(prefix: str, count: int, *, seed: int, max_lines: int = 19) -> dict[str, list[str]]:
    """``{doc_id: [line, ...]}``: runs of one label's lines, blank lines between some runs."""
    rng = np.random.default_rng(seed)
    docs = {}
    for i in range(count):
        lines: list[str] = []
        while len(lines) < int(rng.integers(1, max_lines)):
            label = LABELS[int(rng.integers(0, len(LABELS)))]
            lines += [make_line(rng, label) for _ in range(int(rng.integers(1, 4)))]
            if rng.random() < 0.3:
                lines.append("")
        docs[f"{prefix}-{i:03d}"] = lines
    return docs


def training_rows(seed: int = 5, count: int = 60) -> list[tuple[str, str]]:
    rng = np.random.default_rng(seed)
    return [(make_line(rng, label), label) for label in LABELS for _ in range(count)]


def fit_pipeline(spark, path: str | Path, *, legacy: bool = True, words: int = 24, suffix_words: int = 12):
    """Fit the original project's pipeline shape on the synthetic corpus and save it to ``path``;
    returns the fitted PipelineModel (features: ``words + suffix_words``)."""
    from pyspark.ml import Pipeline
    from pyspark.ml.feature import IDF, CountVectorizer, StringIndexer, Tokenizer, VectorAssembler

    if legacy:
        suffix_stage = legacy_suffix_class()(inputCol="words", outputCol="suffixes")
    else:
        from skol_spark.text.suffix import SuffixTransformer

        suffix_stage = SuffixTransformer(inputCol="words", outputCol="suffixes")
    df = spark.createDataFrame(training_rows(), ["value", "label"])
    stages = [Tokenizer(inputCol="value", outputCol="words"),
              CountVectorizer(inputCol="words", outputCol="word_tf", vocabSize=words),
              IDF(inputCol="word_tf", outputCol="word_idf", minDocFreq=2),
              suffix_stage,
              CountVectorizer(inputCol="suffixes", outputCol="suffix_tf", vocabSize=suffix_words),
              IDF(inputCol="suffix_tf", outputCol="suffix_idf"),
              VectorAssembler(inputCols=["word_idf", "suffix_idf"], outputCol="combined_idf"),
              StringIndexer(inputCol="label", outputCol="label_indexed")]
    model = Pipeline(stages=stages).fit(df)
    model.write().overwrite().save(str(path))
    return model


def featurize_in_process(fitted, spark, docs: dict[str, list[str]]) -> dict[str, np.ndarray]:
    """The fitted pipeline applied directly (Spark ML's own transform) -> ``{doc_id: float32[L, F]}``."""
    rows = [(doc, i, text) for doc, lines in docs.items() for i, text in enumerate(lines)]
    df = spark.createDataFrame(rows, "doc_id string, line_number int, value string")
    out = _transform(fitted, df)
    features: dict[str, dict[int, np.ndarray]] = {}
    for r in out.select("doc_id", "line_number", "combined_idf").collect():
        features.setdefault(r["doc_id"], {})[r["line_number"]] = r["combined_idf"].toArray().astype(np.float32)
    return {doc: np.stack([features[doc][i] for i in range(len(lines))]) for doc, lines in docs.items()}


def _transform(fitted, df):
    """All stages but the label indexer (scoring text has no label), in order."""
    for stage in fitted.stages:
        if type(stage).__name__ != "StringIndexerModel":
            df = stage.transform(df)
    return df


def reference_text_scores(model, fitted, spark, docs: dict[str, list[str]], *, stride: int = WINDOW
                          ) -> dict[tuple[str, int], np.ndarray]:
    """Every line's probabilities: the pipeline in-process, then Keras called directly on the windows."""
    features = featurize_in_process(fitted, spark, docs)
    ref = {}
    for doc, x in features.items():
        probs = score_document(x, lambda w: np.asarray(model(w, training=False)), window=WINDOW, stride=stride)
        for i, p in enumerate(probs):
            ref[(doc, i)] = p
    return ref
