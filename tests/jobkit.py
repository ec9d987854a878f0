"""Helpers shared by the end-to-end job tests: tiny input tables, job configs, the numpy reference.

The reference is ``skol_spark.scoring.windowing.score_document`` with the Keras model
called directly: the independent answer every Spark path must equal.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import yaml

from skol_spark.scoring.windowing import score_document
from tests.conftest import FEATURES, LABELS, WINDOW


def make_documents(prefix: str, count: int, *, seed: int, min_lines: int = 1, max_lines: int = 21
                   ) -> dict[str, np.ndarray]:
    """``count`` documents ``{doc_id: float32[L, FEATURES]}`` of varied lengths (1 .. max_lines-1)."""
    rng = np.random.default_rng(seed)
    return {f"{prefix}-{i:03d}": rng.random((int(rng.integers(min_lines, max_lines)), FEATURES), dtype=np.float32)
            for i in range(count)}


def write_input(path: str | os.PathLike[str], docs: dict[str, np.ndarray], *, ingest_date: str = "2026-11-01"
                ) -> int:
    """One parquet file of lines (doc_id, line_number, features, ingest_date); returns the line count."""
    doc_ids, lines, feats = [], [], []
    for doc, x in docs.items():
        for i, row in enumerate(x):
            doc_ids.append(doc)
            lines.append(i)
            feats.append(row.tolist())
    table = pa.table({"doc_id": pa.array(doc_ids, pa.string()), "line_number": pa.array(lines, pa.int32()),
                      "features": pa.array(feats, pa.list_(pa.float32())),
                      "ingest_date": pa.array([ingest_date] * len(lines), pa.string())})
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, str(path))
    return len(lines)


def keras_predict(model):
    def predict(windows: np.ndarray) -> np.ndarray:
        return np.asarray(model(windows, training=False))
    return predict


def reference_scores(model, docs: dict[str, np.ndarray], *, stride: int = WINDOW) -> dict[tuple[str, int], np.ndarray]:
    predict = keras_predict(model)
    ref = {}
    for doc, x in docs.items():
        probs = score_document(x, predict, window=WINDOW, stride=stride)
        for i, p in enumerate(probs):
            ref[(doc, i)] = p
    return ref


def read_output(path: str | os.PathLike[str]) -> pa.Table:
    """All published rows (hidden staging/lock files beside the output are not part of it)."""
    import pyarrow.dataset as ds

    return ds.dataset(str(path), format="parquet", partitioning="hive",
                      exclude_invalid_files=True).to_table()


def assert_matches_reference(table: pa.Table, ref: dict[tuple[str, int], np.ndarray], *, atol: float = 1e-5) -> None:
    rows = table.select(["doc_id", "line_number", "probabilities", "label", "prediction", "confidence"]).to_pylist()
    keys = [(r["doc_id"], int(r["line_number"])) for r in rows]
    assert len(keys) == len(set(keys)), "duplicate (doc_id, line_number) rows"
    assert set(keys) == set(ref), (f"rows differ from the input lines: {len(set(keys) - set(ref))} extra, "
                                   f"{len(set(ref) - set(keys))} missing")
    worst = 0.0
    for key, r in zip(keys, rows):
        probs = np.asarray(r["probabilities"], dtype=np.float32)
        worst = max(worst, float(np.max(np.abs(probs - ref[key]))))
        assert r["prediction"] == int(np.argmax(probs))
        assert r["label"] == LABELS[r["prediction"]]
        assert abs(r["confidence"] - float(probs.max())) < 1e-6
    assert worst <= atol, f"max |spark - keras| = {worst:g} > {atol:g}"


def tree_digest(root: str | os.PathLike[str]) -> dict[str, str]:
    """``{relative path: sha256}`` of every file under ``root`` (empty when absent)."""
    root = Path(root)
    if not root.exists():
        return {}
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def write_config(path: str | os.PathLike[str], *, redis_url: str, prefix: str, model: str, input_path: str,
                 output_path: str, mode: str = "incremental", extra: dict | None = None) -> str:
    """A job YAML like conf/local.yaml, pointed at test data."""
    conf = {
        "redis": {"url": redis_url, "prefix": prefix, "connect_timeout": 2, "socket_timeout": 5, "retries": 1},
        "model": {"name": model, "version": "production"},
        "input": {"path": str(input_path), "watermark_col": "ingest_date"},
        "scoring": {"batch_size": 64},
        "output": {"path": str(output_path), "mode": mode, "report": False},
        "job": {"nothing_to_do_exit_code": 99, "progress": False},
    }
    for section, values in (extra or {}).items():
        conf.setdefault(section, {}).update(values)
    Path(path).write_text(yaml.safe_dump(conf, sort_keys=False))
    return str(path)
