"""The default demo, in text: a pipeline fitted on synthetic taxonomic text, a model trained on its output,
both published as model ``demo`` (alias ``production``), documents scored as plain text, a few annotated blocks
printed (``skol-spark demo``; docs/text.md).

It is what ``conf/local.yaml`` scores: the documents go to ``<workdir>/documents.parquet`` (one row per
document, its text in ``body``), the annotated documents beside the output (``demo-output/annotated``). It starts
a local Spark in this process to fit the pipeline, then hands the job to the demo's launcher.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)

MODEL, CORPUS, TEXT_COL = "demo", "documents.parquet", "body"
LABELS = ["Nomenclature", "Description", "Misc"]
WINDOW, STRIDE = 16, 8
GENERA = ["Agaricus", "Russula", "Boletus", "Amanita", "Cortinarius", "Lactarius", "Inocybe", "Mycena", "Xerula"]
EPITHETS = ["campestris", "emetica", "edulis", "muscaria", "violaceus", "deliciosus", "geophylla", "pura"]
DESCRIPTION = ["pileus", "convex", "brown", "lamellae", "adnate", "crowded", "stipe", "white", "spores",
               "ellipsoid", "smooth", "hyaline", "basidia", "clavate", "cystidia", "absent", "mm", "broad"]
MISC = ["the", "collection", "was", "made", "in", "a", "forest", "near", "river", "by", "author", "see",
        "figure", "table", "we", "thank", "herbarium", "for", "loans", "of", "material"]


def synthetic_document(rng: np.random.Generator) -> tuple[list[str], list[int]]:
    """One page: a species heading, a description, some discussion; ``(lines, label indices)``."""
    lines: list[str] = []
    labels: list[int] = []
    for _ in range(int(rng.integers(1, 4))):
        head = f"{rng.choice(GENERA)} {rng.choice(EPITHETS)} sp. nov. {int(rng.integers(1800, 2024))}"
        body = [" ".join(rng.choice(DESCRIPTION, size=int(rng.integers(4, 10)))) for _ in range(rng.integers(2, 7))]
        misc = [" ".join(rng.choice(MISC, size=int(rng.integers(4, 12)))) for _ in range(rng.integers(1, 6))]
        for label, block in ((0, [head]), (1, body), (2, misc + [""])):
            lines += block
            labels += [label] * len(block)
    return lines, labels


def pipeline_stages(words: int = 64, suffixes: int = 32) -> list:
    """The original project's pipeline shape, unfitted (skol_spark's suffix stage): reads ``value``, makes
    ``combined_idf``, at most ``words + suffixes`` long (the vocabulary caps)."""
    from pyspark.ml.feature import IDF, CountVectorizer, Tokenizer, VectorAssembler

    from skol_spark.text.suffix import SuffixTransformer

    return [Tokenizer(inputCol="value", outputCol="words"),
            CountVectorizer(inputCol="words", outputCol="word_tf", vocabSize=words),
            IDF(inputCol="word_tf", outputCol="word_idf", minDocFreq=2),
            SuffixTransformer(inputCol="words", outputCol="suffixes"),
            CountVectorizer(inputCol="suffixes", outputCol="suffix_tf", vocabSize=suffixes),
            IDF(inputCol="suffix_tf", outputCol="suffix_idf"),
            VectorAssembler(inputCols=["word_idf", "suffix_idf"], outputCol="combined_idf")]


def fit_demo_pipeline(directory: Path, lines: list[str]) -> np.ndarray:
    """Fit the original project's pipeline shape on ``lines``, save it (skol_spark's suffix stage); returns
    the training lines' vectors, ``float32[n, F]``."""
    from pyspark.ml import Pipeline
    from pyspark.sql import SparkSession

    spark = SparkSession.builder.master("local[2]").appName("skol-demo-fit").getOrCreate()
    try:
        df = spark.createDataFrame([(t,) for t in lines], ["value"])
        fitted = Pipeline(stages=pipeline_stages()).fit(df)
        fitted.write().overwrite().save(str(directory))
        features = [r["combined_idf"].toArray() for r in fitted.transform(df).select("combined_idf").collect()]
    finally:
        spark.stop()
    return np.asarray(features, dtype=np.float32)


def train_text_model(x: np.ndarray, y: np.ndarray, seed: int = 7):
    """A small BiLSTM on windows of the pipeline's vectors (``x: float32[n, F]``, ``y: int[n]``)."""
    import keras

    keras.utils.set_random_seed(seed)
    n = len(x) // WINDOW * WINDOW
    xw, yw = x[:n].reshape(-1, WINDOW, x.shape[1]), y[:n].reshape(-1, WINDOW)
    inp = keras.Input((WINDOW, x.shape[1]))
    h = keras.layers.Bidirectional(keras.layers.LSTM(16, return_sequences=True))(inp)
    out = keras.layers.TimeDistributed(keras.layers.Dense(len(LABELS), activation="softmax"))(h)
    model = keras.Model(inp, out)
    model.compile(optimizer=keras.optimizers.Adam(0.01), loss="categorical_crossentropy")
    model.fit(xw, keras.utils.to_categorical(yw, len(LABELS)), epochs=6, batch_size=16, verbose=0)
    return model


def prepare_text_demo(store, workdir: Path, *, documents: int, seed: int = 11) -> Path:
    """Fit, train, publish (model + pipeline as ``demo``), write the documents; returns the corpus path."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    rng = np.random.default_rng(seed)
    training = [synthetic_document(rng) for _ in range(120)]
    lines = [t for doc, _ in training for t in doc]
    labels = np.asarray([c for _, lab in training for c in lab])
    pipeline_dir = workdir / "feature_pipeline"
    log.info("fitting the demo feature pipeline on %d lines of synthetic text…", len(lines))
    x = fit_demo_pipeline(pipeline_dir, lines)
    log.info("training the demo BiLSTM on the pipeline's %d features…", x.shape[1])
    version = store.publish(train_text_model(x, labels), MODEL, labels=LABELS, stride=STRIDE,
                            aliases=["production"], notes="skol_spark demo model (text)",
                            feature_pipeline=pipeline_dir)
    corpus = workdir / CORPUS
    corpus.mkdir(parents=True, exist_ok=True)
    texts = ["\n".join(synthetic_document(rng)[0]) for _ in range(documents)]
    pq.write_table(pa.table({"doc_id": [f"page-{i:05d}" for i in range(documents)], TEXT_COL: texts}),
                   corpus / "part-00000.parquet")
    log.info("published %s v%d with its pipeline; wrote %d documents as plain text", MODEL, version, documents)
    return corpus


def text_conf(corpus: Path, output: Path, master: str) -> str:
    return TEXT_CONF.format(model=MODEL, text_col=TEXT_COL, input=corpus.resolve(), output=output.resolve(),
                            annotated=output.resolve().parent / "annotated", master=master)


def print_annotated(output: Path, count: int = 3) -> None:
    """A few annotated blocks of the run, after the job's own summary."""
    import pyarrow.dataset as ds

    path = output.resolve().parent / "annotated"
    rows = ds.dataset(str(path), format="parquet", partitioning="hive").to_table().slice(0, count).to_pylist()
    print(f"\nannotated documents (YEDDA, one per document): {path}; the first {len(rows)}:")
    for row in rows:
        blocks = row["annotated"].split("\n[@ ")
        print(f"\n{row['doc_id']} ({len(blocks)} blocks):\n" + "\n[@ ".join(blocks[:4]))


TEXT_CONF = """# Written by skol-spark demo (conf/local.yaml is the same job on the default paths).
# Redis comes from $SKOL_REDIS_URL.
model:
  name: {model}
  version: production
input:
  path: {input}
  document_text_col: {text_col}
output:
  path: {output}
  mode: overwrite
  annotated_path: {annotated}
job:
  master: {master}
"""


def run_text_demo(store, workdir: Path, args, launch) -> tuple[int, Path]:
    """Prepare the text demo, run the job through ``launch(conf_path) -> exit code``, print annotated blocks;
    ``(exit code, the config written)``."""
    corpus = prepare_text_demo(store, workdir, documents=args.documents)
    conf = workdir / "demo.yaml"
    conf.write_text(text_conf(corpus, Path(args.output), args.master))
    code = launch(conf)
    if code == 0:
        print_annotated(Path(args.output))
    return code, conf
