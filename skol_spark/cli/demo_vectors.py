"""The vector demo (``skol-spark demo --vectors``): a model on ready-made feature vectors, no text.

Trains a small BiLSTM with a closure loss on synthetic "pages" whose line
features carry their class, publishes it as model ``demo-vectors`` (alias
``production``) and writes a corpus of labelled documents (``doc_id``,
``line_number``, ``features``, ``gold_label``), so the report has per-class
metrics. Kept apart from the text demo (the default, ``demo_text.py``) under
its own model name, so that running it never replaces the model
``conf/local.yaml`` scores with.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)

MODEL = "demo-vectors"
LABELS = ["Nomenclature", "Description", "Misc"]
WINDOW, FEATURES, STRIDE = 16, 32, 8
CLASS_MIX = [0.08, 0.27, 0.65]  # imbalanced, like real taxonomic literature


def synthetic_lines(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
    """``(features: float32[n, F], labels: int[n])``: each class lights its own feature band, with noise."""
    labels = rng.choice(len(LABELS), size=n, p=CLASS_MIX)
    x = rng.random((n, FEATURES), dtype=np.float32) * 0.3
    band = FEATURES // len(LABELS)
    for c in range(len(LABELS)):
        rows = labels == c
        x[rows, c * band:(c + 1) * band] += rng.random((int(rows.sum()), band), dtype=np.float32) * 0.22
    return x, labels


def train_vector_model(seed: int = 7):
    import keras

    from skol_spark.model.losses import balanced_class_weights

    keras.utils.set_random_seed(seed)
    rng = np.random.default_rng(seed)
    x, y = synthetic_lines(rng, 400 * WINDOW)
    x, y = x.reshape(-1, WINDOW, FEATURES), y.reshape(-1, WINDOW)
    weights = np.asarray(balanced_class_weights(list(np.bincount(y.ravel(), minlength=len(LABELS)))), "float32")

    def weighted_categorical_crossentropy(y_true, y_pred):  # the closure loss users train with
        y_pred = keras.ops.clip(y_pred, 1e-7, 1.0)
        return -keras.ops.sum(y_true * keras.ops.log(y_pred) * weights, axis=-1)

    inp = keras.Input((WINDOW, FEATURES))
    h = keras.layers.Bidirectional(keras.layers.LSTM(16, return_sequences=True))(inp)
    out = keras.layers.TimeDistributed(keras.layers.Dense(len(LABELS), activation="softmax"))(h)
    model = keras.Model(inp, out)
    model.compile(optimizer=keras.optimizers.Adam(0.01), loss=weighted_categorical_crossentropy,
                  metrics=["accuracy"])
    model.fit(x, keras.utils.to_categorical(y, len(LABELS)), epochs=4, batch_size=32, verbose=0)
    return model


def write_corpus(path: Path, *, documents: int, seed: int = 11) -> int:
    """Parquet corpus: doc_id, line_number, features array<float>, gold_label. Returns lines written."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    rng = np.random.default_rng(seed)
    lengths = np.clip(rng.lognormal(mean=np.log(15), sigma=0.8, size=documents).astype(int), 1, 400)
    total = int(lengths.sum())
    x, y = synthetic_lines(rng, total)
    doc_ids = np.repeat([f"doc-{i:05d}" for i in range(documents)], lengths)
    line_numbers = np.concatenate([np.arange(n) for n in lengths])
    features = pa.FixedSizeListArray.from_arrays(pa.array(x.ravel()), FEATURES).cast(pa.list_(pa.float32()))
    table = pa.table({"doc_id": doc_ids, "line_number": line_numbers.astype(np.int32), "features": features,
                      "gold_label": np.asarray(LABELS)[y]})
    path.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, path / "part-00000.parquet")
    return total


VECTOR_CONF = """# Written by skol-spark demo --vectors. Redis comes from $SKOL_REDIS_URL.
model:
  name: {model}
  version: production
input:
  path: {input}
  label_col: gold_label
output:
  path: {output}
  mode: overwrite
job:
  master: {master}
"""


def run_vector_demo(store, workdir: Path, args, launch) -> tuple[int, Path]:
    """Train, publish, write the corpus and its config, run the job: ``(exit code, the config written)``."""
    log.info("training the demo BiLSTM on feature vectors (closure loss weighted_categorical_crossentropy)…")
    version = store.publish(train_vector_model(), MODEL, labels=LABELS, stride=STRIDE, aliases=["production"],
                            feature_kind="dense", notes="skol_spark vector demo model")
    corpus = workdir / "corpus.parquet"
    lines = write_corpus(corpus, documents=args.documents)
    log.info("published %s v%d; wrote %d documents, %d lines", MODEL, version, args.documents, lines)
    conf = workdir / "demo-vectors.yaml"
    conf.write_text(VECTOR_CONF.format(model=MODEL, input=corpus.resolve(), output=Path(args.output).resolve(),
                                       master=args.master))
    return launch(conf), conf
