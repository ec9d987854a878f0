"""local_readback: which files the Arrow read-back counts, and where it declines (Spark counts instead).

The end-to-end comparison with Keras' labels and the fallback to Spark are in test_scoring_spark."""

from __future__ import annotations

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from skol_spark.local import readback as local_readback


def _write(path, labels):
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.table({"doc_id": [f"d{i}" for i in range(len(labels))], "label": labels}), path)


def test_counts_every_data_file_and_skips_sparks_bookkeeping(tmp_path):
    run = tmp_path / "run_id=r1"
    _write(run / "part-00000.parquet", ["a", "b", "a"])
    _write(run / "model_version=3" / "part-00001.parquet", ["b", "c"])
    _write(run / "part-00002.parquet", pa.array([], pa.string()))  # an empty run's schema-only file
    _write(run / "_temporary" / "part-9.parquet", ["a"] * 7)  # not data: a leftover of a failed commit
    (run / "_SUCCESS").write_text("")
    (run / ".part-00000.parquet.crc").write_bytes(b"\0")

    assert local_readback.label_counts(str(run)) == {"a": 2, "b": 2, "c": 1}


def test_an_empty_directory_counts_nothing(tmp_path):
    (tmp_path / "run").mkdir()
    assert local_readback.label_counts(str(tmp_path / "run")) == {}


def test_label_as_a_partition_directory_is_declined(tmp_path):
    _write(tmp_path / "run" / "label=a" / "part-0.parquet", pa.array([], pa.string()))
    with pytest.raises(local_readback.Declined, match="partition"):
        local_readback.label_counts(str(tmp_path / "run"))


def test_a_file_without_a_label_column_is_declined(tmp_path):
    (tmp_path / "run").mkdir()
    pq.write_table(pa.table({"doc_id": ["x"]}), tmp_path / "run" / "part-0.parquet")
    with pytest.raises(local_readback.Declined, match="no label column"):
        local_readback.label_counts(str(tmp_path / "run"))


def test_a_missing_directory_is_declined(tmp_path):
    with pytest.raises(local_readback.Declined, match="not a local directory"):
        local_readback.label_counts(str(tmp_path / "nowhere"))
