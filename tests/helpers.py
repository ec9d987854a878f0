"""The tests' one helpers module: constants, small real models, corpus builders, job configs, output
readers and the reference scorer. Fixtures live in ``tests/conftest.py``; the fault matrix's own tools
(running the CLI, link faults, certificates) in ``tests/fault_tools.py``.

The reference is ``skol_spark.scoring.windowing.score_document`` (a plain loop)
with the Keras model called directly: the independent answer every Spark path
must equal.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import yaml

LABELS = ["Nomenclature", "Description", "Misc"]
WINDOW = 8
FEATURES = 6


# ---- models --------------------------------------------------------------------------------------------
def make_closure_loss(class_weights):
    """The closure loss users train with: its name cannot be found again by Keras."""
    import keras.ops as ops

    weights = np.asarray(class_weights, dtype="float32")

    def weighted_categorical_crossentropy(y_true, y_pred):
        y_pred = ops.clip(y_pred, 1e-7, 1.0)
        return -ops.sum(y_true * ops.log(y_pred) * weights, axis=-1)

    return weighted_categorical_crossentropy


def build_bilstm(window=WINDOW, features=FEATURES, classes=len(LABELS), units=4, seed=0):
    import keras

    keras.utils.set_random_seed(seed)
    inp = keras.Input((window, features))
    x = keras.layers.Bidirectional(keras.layers.LSTM(units, return_sequences=True))(inp)
    out = keras.layers.TimeDistributed(keras.layers.Dense(classes, activation="softmax"))(x)
    return keras.Model(inp, out)


def train_closure_model(window=WINDOW, features=FEATURES, seed=0):
    """A small BiLSTM trained a few steps with a closure loss (real weights, not the init)."""
    import keras

    model = build_bilstm(window, features, seed=seed)
    model.compile(optimizer="adam", loss=make_closure_loss([1.0, 2.0, 0.5]), metrics=["accuracy"])
    rng = np.random.default_rng(seed)
    x = rng.random((32, window, features), dtype=np.float32)
    y = keras.utils.to_categorical(rng.integers(0, len(LABELS), (32, window)), len(LABELS))
    model.fit(x, y, epochs=2, batch_size=8, verbose=0)
    return model


@dataclass(frozen=True)
class Published:
    """A model version published by the ``publish_model`` fixture: what a job config needs to load it."""

    store: Any  # store.model_store.ModelStore
    url: str  # the redis-server's URL
    name: str
    version: int
    model: Any  # the Keras model that was published

    @property
    def prefix(self) -> str:
        return self.store.prefix

    def artifact(self):
        return self.store.load(self.name, self.version)


# ---- corpora -------------------------------------------------------------------------------------------
def make_documents(prefix: str, count: int, *, seed: int, min_lines: int = 1, max_lines: int = 21
                   ) -> dict[str, np.ndarray]:
    """``count`` documents ``{doc_id: float32[L, FEATURES]}`` of varied lengths (min_lines .. max_lines-1)."""
    rng = np.random.default_rng(seed)
    return {f"{prefix}-{i:03d}": rng.random((int(rng.integers(min_lines, max_lines)), FEATURES), dtype=np.float32)
            for i in range(count)}


def sparse_documents(lengths: list[int], *, seed: int = 0, density: float = 0.5) -> dict[str, np.ndarray]:
    """Documents ``doc-00``.. of the given lengths, ``{doc_id: float32[L, FEATURES]}``, with many exact zeros
    (so sparse encodings are really sparse)."""
    rng = np.random.default_rng(seed)
    docs = {}
    for i, n in enumerate(lengths):
        m = rng.random((n, FEATURES), dtype=np.float32)
        m[rng.random(m.shape) > density] = 0.0
        docs[f"doc-{i:02d}"] = m
    return docs


def documents_table(docs: dict[str, np.ndarray], *, ingest_date: str = "2026-11-01") -> pa.Table:
    """One row per line: (doc_id, line_number, features: list<float32>, ingest_date); a None row stays null."""
    doc_ids, lines, feats = [], [], []
    for doc, x in docs.items():
        for i, row in enumerate(x):
            doc_ids.append(doc)
            lines.append(i)
            feats.append(None if row is None else [float(v) for v in row])
    return pa.table({"doc_id": pa.array(doc_ids, pa.string()), "line_number": pa.array(lines, pa.int32()),
                     "features": pa.array(feats, pa.list_(pa.float32())),
                     "ingest_date": pa.array([ingest_date] * len(lines), pa.string())})


def write_input(path: str | os.PathLike[str], docs: dict[str, np.ndarray], *, ingest_date: str = "2026-11-01"
                ) -> int:
    """The documents as ONE parquet file at ``path`` (``documents_table``); returns the line count."""
    table = documents_table(docs, ingest_date=ingest_date)
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, str(path))
    return table.num_rows


def write_table(path: str | os.PathLike[str], table: pa.Table) -> int:
    """``table`` as the directory ``path`` holding one parquet file; returns its row count."""
    Path(path).mkdir(parents=True, exist_ok=True)
    pq.write_table(table, str(Path(path) / "part-0.parquet"))
    return table.num_rows


# ---- job configs ---------------------------------------------------------------------------------------
def write_config(path: str | os.PathLike[str], *, redis_url: str, prefix: str, model: str,
                 input_path: str | os.PathLike[str], output_path: str | os.PathLike[str], mode: str = "error",
                 timeouts: tuple[float, float] = (1, 2), extra: dict | None = None, **sections: dict) -> str:
    """A job YAML like conf/local.yaml, pointed at test data. ``timeouts``: Redis (connect, socket) seconds;
    ``sections`` (or ``extra``, a mapping of them) update or extend a section (``scoring={"partitions": 4}``)."""
    conf = {
        "redis": {"url": redis_url, "prefix": prefix, "connect_timeout": timeouts[0], "socket_timeout": timeouts[1],
                  "retries": 1},
        "model": {"name": model, "version": "production"},
        "input": {"path": str(input_path)},
        "scoring": {"batch_size": 64},
        "output": {"path": str(output_path), "mode": mode, "report": False},
        "job": {"progress": False},
    }
    for section, values in {**sections, **(extra or {})}.items():
        conf.setdefault(section, {}).update(values)
    Path(path).write_text(yaml.safe_dump(conf, sort_keys=False))
    return str(path)


# ---- reading output ------------------------------------------------------------------------------------
def read_output(path: str | os.PathLike[str]) -> pa.Table:
    """All published rows (hidden staging/lock files beside the output are not part of it)."""
    import pyarrow.dataset as ds

    return ds.dataset(str(path), format="parquet", partitioning="hive", exclude_invalid_files=True).to_table()


def run_manifests(output: str | os.PathLike[str]) -> list[dict]:
    """The run manifests beside an output, in the order they were written: run ids sort by their second and
    then by a random suffix, and two runs can start within one second."""
    import json

    paths = sorted(Path(f"{os.fspath(output).rstrip('/')}_runs").glob("*/manifest.json"),
                   key=lambda p: p.stat().st_mtime_ns)
    return [json.loads(p.read_text()) for p in paths]


def tree_digest(root: str | os.PathLike[str]) -> dict[str, str]:
    """``{relative path: sha256}`` of every file under ``root`` ({} when absent)."""
    root = Path(root)
    if not root.exists():
        return {}
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def assert_no_output(output: Path) -> None:
    """Destination absent, or holding no data file and no success marker."""
    if not output.exists():
        return
    files = [p for p in output.rglob("*") if p.is_file() and not p.name.startswith((".", "_"))
             and "_temporary" not in p.parts]
    assert not files, f"output files were published: {files[:5]}"
    assert not (output / "_SUCCESS").exists()


def keys_of(table: pa.Table) -> list[tuple[str, int]]:
    return list(zip(table.column("doc_id").to_pylist(), table.column("line_number").to_pylist()))


def by_key(table: pa.Table) -> dict[tuple[str, int], list[float]]:
    return dict(zip(keys_of(table), table.column("probabilities").to_pylist()))


def close(a: dict, b: dict, atol: float = 1e-6) -> bool:
    """Same keys, same probabilities up to float noise (runs with other TensorFlow thread counts may
    sum in another order)."""
    return a.keys() == b.keys() and all(np.allclose(a[k], b[k], atol=atol) for k in a)


# ---- the reference scorer ------------------------------------------------------------------------------
def keras_predict(model):
    """The Keras model called directly: ``float32[n, W, F] -> float32[n, W, C]``."""
    def predict(windows: np.ndarray) -> np.ndarray:
        return np.asarray(model(windows, training=False))
    return predict


def reference_scores(model, docs: dict[str, np.ndarray], *, stride: int = WINDOW, window: int = WINDOW
                     ) -> dict[tuple[str, int], np.ndarray]:
    """``{(doc_id, line_number): float32[C]}``: each document scored by ``score_document`` with the model."""
    from skol_spark.scoring.windowing import score_document

    predict = keras_predict(model)
    ref = {}
    for doc, x in docs.items():
        for i, p in enumerate(score_document(x, predict, window=window, stride=stride)):
            ref[(doc, i)] = p
    return ref


def assert_matches_reference(rows, ref: dict[tuple[str, int], np.ndarray], *, atol: float = 1e-5) -> None:
    """Every output line once, with the reference's probabilities (within ``atol``) and a label, prediction
    and confidence that agree with them. ``rows``: a pyarrow Table or Spark Rows / mappings."""
    if isinstance(rows, pa.Table):
        rows = rows.select(["doc_id", "line_number", "probabilities", "label", "prediction",
                            "confidence"]).to_pylist()
    keys = [(r["doc_id"], int(r["line_number"])) for r in rows]
    assert len(keys) == len(set(keys)), "duplicate (doc_id, line_number) rows"
    assert set(keys) == set(ref), (f"rows differ from the input lines: {len(set(keys) - set(ref))} extra, "
                                   f"{len(set(ref) - set(keys))} missing")
    worst, where = 0.0, None
    for key, r in zip(keys, rows):
        probs = np.asarray(r["probabilities"], dtype=np.float32)
        diff = float(np.max(np.abs(probs - ref[key])))
        if diff > worst:
            worst, where = diff, key
        assert r["prediction"] == int(np.argmax(probs))
        assert r["label"] == LABELS[r["prediction"]]
        assert abs(r["confidence"] - float(probs.max())) <= 1e-7
    assert worst <= atol, f"max |spark - keras| = {worst:g} > {atol:g} (at {where})"
