"""Fault matrix, data rows D1-D11 (RELIABILITY.md): the input contract, edge-sized documents, reruns."""

from __future__ import annotations

import uuid

import numpy as np
import pyarrow as pa
import pytest

from skol_spark import errors
from skol_spark.store.model_store import ModelStore
from tests.fault_tools import predict_args, run_cli
from tests.helpers import (FEATURES, LABELS, WINDOW, assert_no_output, by_key, close, documents_table, keys_of,
                           make_documents, read_output, tree_digest, write_config, write_table)

MODEL = "fd"


@pytest.fixture(scope="module")
def prefix(redis_client, closure_model):
    prefix = f"fd{uuid.uuid4().hex[:6]}"
    ModelStore(redis_client, prefix=prefix).publish(closure_model, MODEL, labels=LABELS, aliases=["production"])
    return prefix


def lines_table(rows, *, ingest_date: str = "2026-11-01") -> pa.Table:
    """rows: (doc_id, line_number, features list or None)."""
    docs, lines, feats = zip(*rows) if rows else ((), (), ())
    return pa.table({"doc_id": pa.array(list(docs), pa.string()), "line_number": pa.array(list(lines), pa.int32()),
                     "features": pa.array(list(feats), pa.list_(pa.float32())),
                     "ingest_date": pa.array([ingest_date] * len(lines), pa.string())})


def rows_of(docs: dict[str, np.ndarray]) -> list:
    return [(d, i, [float(v) for v in row]) for d, x in docs.items() for i, row in enumerate(x)]


def run(tmp_path, redis_server, prefix, table, *, name="out", mode="error", **sections):
    src = tmp_path / f"{name}-input"
    if table is not None:
        write_table(src, table)
    conf = write_config(tmp_path / f"{name}.yaml", redis_url=redis_server.url, prefix=prefix, model=MODEL,
                        input_path=src, output_path=tmp_path / name, mode=mode, **sections)
    return run_cli(predict_args(conf))


GOOD = make_documents("g", 10, seed=4)


def test_D1_wrong_feature_size_refused_before_writing(spark, tmp_path, redis_server, prefix):
    rows = rows_of(GOOD)
    rows += [("bad-doc", i, [0.5] * (FEATURES - 1)) for i in range(3)]

    result = run(tmp_path, redis_server, prefix, lines_table(rows))

    assert result.code == errors.InputContractError.exit_code, result.err[-2000:]
    message = result.err[result.err.index("skol-spark: error:"):]
    assert "input refused, nothing was written" in message
    assert f"3 line(s) with features not of size {FEATURES} (the model's feature size), e.g. doc_id='bad-doc'" \
        in message
    assert_no_output(tmp_path / "out")


def _bad_rows():
    rows = rows_of(GOOD)
    rows += [("nan-doc", 0, [0.1] * FEATURES), ("nan-doc", 1, [float("nan")] + [0.1] * (FEATURES - 1)),
             ("inf-doc", 0, [float("inf")] * FEATURES)]
    return rows


def test_D2_nan_inf_refused_or_quarantined_per_document(spark, tmp_path, redis_server, prefix):
    refused = run(tmp_path, redis_server, prefix, lines_table(_bad_rows()), name="refused")
    assert refused.code == errors.InputContractError.exit_code, refused.err[-2000:]
    assert "2 line(s) with NaN, inf or null values in features" in refused.err
    assert_no_output(tmp_path / "refused")

    quarantine = {"bad_input": "quarantine", "quarantine_path": str(tmp_path / "quarantine"),
                  "max_quarantine_fraction": 0.5, "batch_size": 64}
    result = run(tmp_path, redis_server, prefix, lines_table(_bad_rows()), name="q", scoring=quarantine)
    assert result.code == 0, result.err[-2000:]
    clean = run(tmp_path, redis_server, prefix, lines_table(rows_of(GOOD)), name="clean")
    assert clean.code == 0, clean.err[-2000:]

    out = read_output(tmp_path / "q")
    assert close(by_key(out), by_key(read_output(tmp_path / "clean")))  # other documents' rows unchanged
    q = read_output(tmp_path / "quarantine")
    assert sorted(keys_of(q)) == [("inf-doc", 0), ("nan-doc", 0), ("nan-doc", 1)]  # whole documents
    assert set(q.column("quarantine_reason").to_pylist()) == {"nonfinite"}
    assert out.num_rows + q.num_rows == len(_bad_rows())


def test_D3_null_features_and_keys_same_policy_counts_reconcile(spark, tmp_path, redis_server, prefix):
    rows = rows_of(GOOD) + [("nullfeat-doc", 0, [0.2] * FEATURES), ("nullfeat-doc", 1, None),
                            (None, 0, [0.3] * FEATURES), ("nullline-doc", None, [0.3] * FEATURES)]
    refused = run(tmp_path, redis_server, prefix, lines_table(rows), name="refused")
    assert refused.code == errors.InputContractError.exit_code, refused.err[-2000:]
    assert "2 line(s) with null doc_id/line_number" in refused.err
    assert "1 line(s) with null features" in refused.err
    assert_no_output(tmp_path / "refused")

    quarantine = {"bad_input": "quarantine", "quarantine_path": str(tmp_path / "quarantine"),
                  "max_quarantine_fraction": 0.5}
    result = run(tmp_path, redis_server, prefix, lines_table(rows), name="q", scoring=quarantine)
    assert result.code == 0, result.err[-2000:]
    out, q = read_output(tmp_path / "q"), read_output(tmp_path / "quarantine")
    assert out.num_rows + q.num_rows == len(rows)
    assert set(out.column("doc_id").to_pylist()) == set(GOOD)
    reasons = dict(zip(q.column("doc_id").to_pylist(), q.column("quarantine_reason").to_pylist()))
    assert reasons == {"nullfeat-doc": "null_features", None: "null_key", "nullline-doc": "null_key"}
    # deterministic: the same policy again gives the same rows
    again = run(tmp_path, redis_server, prefix, None, name="q", mode="overwrite",
                input={"path": str(tmp_path / "q-input")},
                scoring={**quarantine, "quarantine_path": str(tmp_path / "quarantine2")})
    assert again.code == 0, again.err[-2000:]
    assert close(by_key(read_output(tmp_path / "q")), by_key(out))
    assert sorted(keys_of(read_output(tmp_path / "quarantine2")), key=str) == sorted(keys_of(q), key=str)


@pytest.fixture(scope="module")
def edge_run(spark, tmp_path_factory, redis_server, prefix):
    """1-line, exactly-W-line and W+1-line documents; one document wholly outside the watermark;
    more partitions than documents (empty partitions)."""
    tmp = tmp_path_factory.mktemp("fd-edge")
    rng = np.random.default_rng(7)
    docs = {"one": rng.random((1, FEATURES), dtype=np.float32), "exact": rng.random((WINDOW, FEATURES), np.float32),
            "longer": rng.random((WINDOW + 1, FEATURES), np.float32)}
    table = pa.concat_tables([documents_table(docs, ingest_date="2026-11-02"),
                              documents_table({"old": rng.random((3, FEATURES), np.float32)},
                                              ingest_date="2026-10-01")])
    result = run(tmp, redis_server, prefix, table, input={"watermark_col": "ingest_date",
                                                          "watermark_min": "2026-11-01"},
                 scoring={"partitions": 8})
    return docs, tmp / "out", result


def test_D4_document_with_no_lines_gives_no_rows_no_crash(edge_run):
    docs, out, result = edge_run
    assert result.code == 0, result.err[-2000:]
    assert set(read_output(out).column("doc_id").to_pylist()) == set(docs)  # "old" has no lines in this batch


def test_D5_short_and_exact_documents_are_padded_padding_never_emitted(edge_run, closure_model):
    docs, out, result = edge_run
    assert result.code == 0, result.err[-2000:]
    table = read_output(out)
    got = by_key(table)
    assert sorted(got) == sorted((d, i) for d, x in docs.items() for i in range(len(x)))
    padded = np.zeros((1, WINDOW, FEATURES), np.float32)
    padded[0, :1] = docs["one"]
    np.testing.assert_allclose(got[("one", 0)], closure_model(padded).numpy()[0, 0], atol=1e-5)
    exact = closure_model(docs["exact"][None]).numpy()[0]
    for i in range(WINDOW):
        np.testing.assert_allclose(got[("exact", i)], exact[i], atol=1e-5)


def test_D7_empty_input_exits_0_with_an_empty_result(spark, tmp_path, redis_server, prefix):
    result = run(tmp_path, redis_server, prefix, lines_table([]))

    assert result.code == 0, result.err[-2000:]
    assert "manifest: " in result.out
    out = tmp_path / "out"
    assert (out / "_SUCCESS").exists()
    table = read_output(out)  # an empty file carries the schema
    assert table.num_rows == 0
    assert {"doc_id", "line_number", "label", "prediction", "confidence", "probabilities", "model_version",
            "run_id"} <= set(table.column_names)
    probabilities = table.schema.field("probabilities").type
    assert pa.types.is_list(probabilities) and probabilities.value_type == pa.float32()


@pytest.fixture(scope="module")
def incremental_runs(spark, tmp_path_factory, redis_server, prefix):
    """Output in incremental mode: batch "new", batch "new" again, then the older batch "old"."""
    tmp = tmp_path_factory.mktemp("fd-incr")
    new = make_documents("new", 6, seed=11)
    old = make_documents("old", 5, seed=12)
    write_table(tmp / "new-input", documents_table(new, ingest_date="2026-11-02"))
    write_table(tmp / "old-input", documents_table(old, ingest_date="2026-11-01"))
    results = {}
    for step, batch in (("first", "new"), ("again", "new"), ("older", "old")):
        conf = write_config(tmp / f"{step}.yaml", redis_url=redis_server.url, prefix=prefix, model=MODEL,
                            input_path=tmp / f"{batch}-input", output_path=tmp / "out", mode="incremental",
                            job={"nothing_to_do_exit_code": 99, "progress": False})
        results[step] = (run_cli(predict_args(conf)), tree_digest(tmp / "out"))
    return new, old, tmp / "out", results


def test_D8_same_batch_twice_gives_exactly_one_copy(incremental_runs, spark, tmp_path, redis_server, prefix):
    new, _, out, results = incremental_runs
    first, after_first = results["first"]
    again, after_again = results["again"]
    assert first.code == 0, first.err[-2000:]
    assert again.code == 99, again.err[-2000:]  # nothing to do
    assert after_again == after_first
    # output.mode=error: the second run refuses, output unchanged
    conf_rows = lines_table(rows_of(new))
    assert run(tmp_path, redis_server, prefix, conf_rows).code == 0
    before = tree_digest(tmp_path / "out")
    second = run(tmp_path, redis_server, prefix, conf_rows)
    assert second.code == errors.ConfigError.exit_code and "already exists" in second.error_line
    assert tree_digest(tmp_path / "out") == before


def test_D9_older_batch_after_newer_is_written(incremental_runs):
    new, old, out, results = incremental_runs
    older, _ = results["older"]
    assert older.code == 0, older.err[-2000:]
    table = read_output(out)
    keys = keys_of(table)
    assert len(keys) == len(set(keys))
    assert {d for d, _ in keys} == set(new) | set(old)


def test_D10_schema_drift_names_the_column(spark, tmp_path, redis_server, prefix):
    table = lines_table(rows_of(GOOD)).rename_columns(["doc_id", "line_number", "feature_vec", "ingest_date"])

    result = run(tmp_path, redis_server, prefix, table)

    assert result.code == errors.InputContractError.exit_code, result.err[-2000:]
    assert "input has no column 'features' (input.features_col)" in result.error_line
    assert "feature_vec" in result.error_line
    assert_no_output(tmp_path / "out")


def test_D11_duplicate_keys_refused_naming_an_example(spark, tmp_path, redis_server, prefix):
    rows = rows_of(GOOD)
    rows.append(("g-003", 0, [0.9] * FEATURES))

    result = run(tmp_path, redis_server, prefix, lines_table(rows))

    assert result.code == errors.InputContractError.exit_code, result.err[-2000:]
    assert "1 line(s) with duplicate (doc_id, line_number) rows, e.g. doc_id='g-003' line_number=0" in result.err
    assert_no_output(tmp_path / "out")


@pytest.mark.slow
def test_D6_100k_line_document_completes_under_a_memory_cap(spark, tmp_path, redis_server, prefix):
    import threading

    n = 100_000
    rng = np.random.default_rng(13)
    table = documents_table({"huge": rng.random((n, FEATURES), dtype=np.float32)})
    peak, stop = {"rss": 0}, threading.Event()

    def sample():
        import os

        while not stop.wait(0.2):
            for pid in os.listdir("/proc"):
                if not pid.isdigit():
                    continue
                try:
                    cmd = open(f"/proc/{pid}/cmdline", "rb").read()
                    if b"pyspark" not in cmd or b"daemon" not in cmd and b"worker" not in cmd:
                        continue
                    for line in open(f"/proc/{pid}/status"):
                        if line.startswith("VmRSS:"):
                            peak["rss"] = max(peak["rss"], int(line.split()[1]) * 1024)
                except OSError:
                    pass

    thread = threading.Thread(target=sample, daemon=True)
    thread.start()
    try:
        result = run(tmp_path, redis_server, prefix, table, scoring={"batch_size": 512})
    finally:
        stop.set()
        thread.join()
    assert result.code == 0, result.err[-2000:]
    out = read_output(tmp_path / "out")
    assert out.num_rows == n and len(set(out.column("line_number").to_pylist())) == n
    # documented cap: 1.5 GB per Python worker for a 100k x 6 document (TensorFlow itself is ~0.5-0.8 GB)
    assert peak["rss"] < 1_500 * 2**20, peak
