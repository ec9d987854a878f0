"""The benchmark workload: the model, its publication to Redis, and the Parquet corpora.

Model: ``Input(50, 1000) -> BiLSTM(128, seq) -> BiLSTM(128, seq) -> TimeDistributed(Dense(3, softmax))``
(1,554,947 parameters), compiled with a closure loss (``weighted_categorical_crossentropy``
capturing a class-weight array) so ``to_json()`` names a function Keras cannot find again.

Corpus: documents with lognormal line counts (median 100, sigma 1; one ~2,000-line
document per 100k lines is planted so the long tail is always there), every line a
TF-IDF-like sparse vector of ~10 non-zeros out of 1,000 (Zipf-ish term ids, L2-normalised
positive weights). Stored as ``struct<indices: array<int32>, values: array<float>>``
(skol_spark's sparse-struct input kind): it is what a TF-IDF step that writes Parquet
directly produces, and it is written by pyarrow without a Spark job.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

WINDOW = 50
FEATURES = 1000
UNITS = 128
LABELS = ("Nomenclature", "Description", "Misc")
STRIDE = 25
MODEL_NAME = "bench-bilstm"
NNZ_PER_LINE = 10


def build_model(seed: int = 7):
    """The BiLSTM, compiled with a closure loss (never called: prediction does not need it)."""
    import keras
    import keras.ops as ops

    keras.utils.set_random_seed(seed)
    inp = keras.Input((WINDOW, FEATURES))
    x = keras.layers.Bidirectional(keras.layers.LSTM(UNITS, return_sequences=True))(inp)
    x = keras.layers.Bidirectional(keras.layers.LSTM(UNITS, return_sequences=True))(x)
    out = keras.layers.TimeDistributed(keras.layers.Dense(len(LABELS), activation="softmax"))(x)
    model = keras.Model(inp, out)
    weights = np.asarray([2.0, 1.0, 0.5], dtype="float32")

    def weighted_categorical_crossentropy(y_true, y_pred):
        y_pred = ops.clip(y_pred, 1e-7, 1.0)
        return -ops.sum(y_true * ops.log(y_pred) * weights, axis=-1)

    model.compile(optimizer="adam", loss=weighted_categorical_crossentropy)
    return model


def publish_model(redis_url: str, name: str = MODEL_NAME, feature_pipeline: Path | None = None) -> tuple[int, int]:
    """Build the model and publish it (stride 25, alias production), with ``feature_pipeline`` (a saved
    PipelineModel directory) when given. -> (version, parameters)."""
    from skol_spark.store.connection import RedisSettings, connect
    from skol_spark.store.model_store import ModelStore

    model = build_model()
    client = connect(RedisSettings(url=redis_url))
    try:
        store = ModelStore(client)
        version = store.publish(model, name, labels=LABELS, stride=STRIDE, feature_kind="sparse",
                                aliases=("production",), feature_pipeline=feature_pipeline)
    finally:
        client.close()
    return version, int(model.count_params())


def document_lengths(total_lines: int, seed: int) -> np.ndarray:
    """Lognormal line counts (median 100) summing to ``total_lines``, with the planted long documents."""
    rng = np.random.default_rng(seed)
    long_docs = max(1, round(total_lines / 100_000)) if total_lines >= 20_000 else 0
    lengths = [int(rng.integers(1900, 2100)) for _ in range(long_docs)]
    remaining = total_lines - sum(lengths)
    while remaining > 0:
        n = int(np.clip(round(rng.lognormal(np.log(100), 1.0)), 1, 1500))
        n = min(n, remaining)
        lengths.append(n)
        remaining -= n
    lengths = np.asarray(lengths, dtype=np.int64)
    rng.shuffle(lengths)
    return lengths


def sparse_lines(n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """CSR of ``n`` lines: ``(offsets int32[n+1], indices int32[nnz], values float32[nnz])``."""
    counts = np.clip(rng.poisson(NNZ_PER_LINE, n), 1, 40)
    offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int32)
    total = int(offsets[-1])
    # Zipf-ish term ids, deduplicated per line by sorting and nudging collisions.
    ids = (rng.pareto(1.2, total) * 40).astype(np.int64) % FEATURES
    row = np.repeat(np.arange(n), counts)
    order = np.lexsort((ids, row))
    ids = ids[order]
    dup = np.concatenate([[False], (ids[1:] == ids[:-1]) & (row[1:] == row[:-1])])
    ids[dup] = (ids[dup] + 1 + rng.integers(0, FEATURES - 1, int(dup.sum()))) % FEATURES
    values = rng.lognormal(0.0, 0.6, total).astype(np.float32)
    norms = np.sqrt(np.bincount(row, weights=values.astype(np.float64) ** 2, minlength=n))
    values = (values / norms[row]).astype(np.float32)
    # keep indices sorted and unique per line (a Spark ML sparse vector's contract)
    key = row * FEATURES + ids
    order = np.argsort(key, kind="stable")
    key, values = key[order], values[order]
    keep = np.concatenate([[True], key[1:] != key[:-1]])
    key, values = key[keep], values[keep]
    row, ids = key // FEATURES, (key % FEATURES).astype(np.int32)
    offsets = np.concatenate([[0], np.cumsum(np.bincount(row, minlength=n))]).astype(np.int32)
    return offsets, ids, values


def write_corpus(path: Path, total_lines: int, *, seed: int, files: int = 4) -> dict:
    """Write the corpus as ``files`` Parquet files (documents whole, in order). -> summary."""
    lengths = document_lengths(total_lines, seed)
    rng = np.random.default_rng(seed + 1)
    offsets, indices, values = sparse_lines(int(lengths.sum()), rng)
    write_documents(path, lengths, seed, lambda lo, hi: {"features": sparse_struct(offsets[lo:hi + 1], indices,
                                                                                   values)}, files=files)
    return corpus_summary(path, lengths, nnz_per_line=round(len(indices) / max(1, int(lengths.sum())), 2))


def sparse_struct(offsets: np.ndarray, indices: np.ndarray, values: np.ndarray):
    """CSR rows ``offsets[0]..offsets[-1]`` of ``(indices, values)`` as skol_spark's sparse-struct input kind."""
    import pyarrow as pa

    off = offsets - offsets[0]
    feature_type = pa.struct([("indices", pa.list_(pa.int32())), ("values", pa.list_(pa.float32()))])
    return pa.StructArray.from_arrays(
        [pa.ListArray.from_arrays(pa.array(off, pa.int32()), pa.array(indices[offsets[0]:offsets[-1]], pa.int32())),
         pa.ListArray.from_arrays(pa.array(off, pa.int32()),
                                  pa.array(values[offsets[0]:offsets[-1]], pa.float32()))],
        fields=list(feature_type))


def write_documents(path: Path, lengths: np.ndarray, seed: int, columns, *, files: int = 4) -> None:
    """Documents of ``lengths`` lines as ``files`` Parquet files, whole and in order: ``doc_id``
    (``doc-<seed>-<n>``), ``line_number`` and ``columns(lo, hi)`` (a dict of Arrow arrays for lines
    ``lo..hi-1``). Every corpus of the same lengths and seed has the same keys in the same files."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    path.mkdir(parents=True, exist_ok=True)
    doc_ids = np.repeat(np.arange(lengths.size), lengths)
    lines = np.concatenate([np.arange(n, dtype=np.int32) for n in lengths])
    bounds = np.linspace(0, lengths.size, files + 1).astype(int)
    starts = np.concatenate([[0], np.cumsum(lengths)])
    for i in range(files):
        lo, hi = int(starts[bounds[i]]), int(starts[bounds[i + 1]])
        table = pa.table({"doc_id": pa.array([f"doc-{seed}-{d:06d}" for d in doc_ids[lo:hi]]),
                          "line_number": pa.array(lines[lo:hi]), **columns(lo, hi)})
        pq.write_table(table, path / f"part-{i:05d}.parquet", row_group_size=64_000)


def corpus_summary(path: Path, lengths: np.ndarray, **extra) -> dict:
    return {"path": str(path), "lines": int(lengths.sum()), "documents": int(lengths.size),
            "median_length": float(np.median(lengths)), "max_length": int(lengths.max()), **extra,
            "bytes": sum(os.path.getsize(p) for p in path.glob("*.parquet"))}


def read_corpus(path: str):
    """The corpus as numpy, in file order: ``(doc_ids, lines, SparseFeatures, lengths)``."""
    import pyarrow.parquet as pq

    from skol_spark.scoring.features import decode_features
    from skol_spark.scoring.partition import document_lengths as run_lengths

    table = pq.read_table(path)
    feats = decode_features(table.column("features"), FEATURES)
    docs = table.column("doc_id")
    return (docs.to_numpy(zero_copy_only=False), table.column("line_number").to_numpy(), feats,
            run_lengths(docs))
