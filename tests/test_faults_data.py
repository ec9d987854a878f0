"""Fault matrix, data rows D1-D11 (docs/reliability.md): the input contract, edge-sized documents, reruns."""

from __future__ import annotations

import json
import uuid
from collections import Counter
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
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
    assert "2 line(s) with null doc_id/line_number (or NaN)" in refused.err
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


# ---- issue 22, items 4-8 and 13: the data rules, one rule for the worker and the scan ----------------------

# Spark ML's VectorUDT as Spark stores it (struct<type, size, indices, values>)
VECTOR = pa.struct([pa.field("type", pa.int8(), nullable=False), pa.field("size", pa.int32()),
                    pa.field("indices", pa.list_(pa.field("element", pa.int32(), nullable=False))),
                    pa.field("values", pa.list_(pa.field("element", pa.float64(), nullable=False)))])
SPARSE = pa.struct([("indices", pa.list_(pa.int32())), ("values", pa.list_(pa.float64())), ("size", pa.int32())])
NAN, BIG = float("nan"), 1e300
OK_ROW = [0.5] * FEATURES


def dense(values):
    return {"type": 1, "size": None, "indices": None, "values": list(values)}


def sparse(indices, values, size=FEATURES):
    return {"type": 0, "size": size, "indices": list(indices), "values": list(values)}


# (case, features row, the one rule it breaks or None), per feature kind
RULE_CASES = {
    "array": (pa.list_(pa.float64()), [
        ("ok", OK_ROW, None), ("short", OK_ROW[1:], "bad_size"), ("nan", [NAN] + OK_ROW[1:], "nonfinite"),
        ("null-element", [None] + OK_ROW[1:], "nonfinite"), ("beyond-float32", [BIG] + OK_ROW[1:], "nonfinite"),
        ("below-float32", [-1e39] + OK_ROW[1:], "nonfinite"), ("float32-max", [3.0e38] * FEATURES, None)]),
    "struct": (SPARSE, [
        ("ok", {"indices": [0, 3], "values": [1.0, 2.0], "size": FEATURES}, None),
        ("unsorted", {"indices": [3, 0], "values": [1.0, 2.0], "size": None}, None),
        ("empty", {"indices": [], "values": [], "size": FEATURES}, None),
        ("beyond", {"indices": [FEATURES], "values": [1.0], "size": FEATURES}, "bad_index"),
        ("negative", {"indices": [-1], "values": [1.0], "size": FEATURES}, "bad_index"),
        ("null-index", {"indices": [None, 1], "values": [1.0, 2.0], "size": FEATURES}, "bad_index"),
        ("repeated", {"indices": [4, 1, 4], "values": [1.0, 2.0, 3.0], "size": FEATURES}, "repeated_index"),
        ("lengths", {"indices": [0, 1], "values": [1.0], "size": FEATURES}, "sparse_lengths"),
        ("declared-size", {"indices": [0], "values": [1.0], "size": FEATURES + 1}, "bad_size"),
        ("beyond-float32", {"indices": [2], "values": [BIG], "size": FEATURES}, "nonfinite"),
        # a null list is no feature vector (not an empty one: that would score as a line of zeros)
        ("null-lists", {"indices": None, "values": None, "size": FEATURES}, "null_features"),
        ("null-values", {"indices": [], "values": None, "size": FEATURES}, "null_features"),
        ("null-indices", {"indices": None, "values": [], "size": FEATURES}, "null_features")]),
    "vector": (VECTOR, [
        ("dense-ok", dense(OK_ROW), None), ("dense-short", dense(OK_ROW[1:]), "bad_size"),
        ("dense-beyond-float32", dense([BIG] + OK_ROW[1:]), "nonfinite"),
        ("sparse-ok", sparse([1, 4], [1.0, 2.0]), None), ("unsorted", sparse([4, 1], [1.0, 2.0]), None),
        ("beyond", sparse([0, 7], [1.0, 2.0]), "bad_index"), ("negative", sparse([-1], [1.0]), "bad_index"),
        ("repeated", sparse([2, 2], [1.0, 2.0]), "repeated_index"),
        ("lengths", sparse([0, 1], [1.0]), "sparse_lengths"), ("declared-size", sparse([8], [1.0], 9), "bad_size"),
        ("nan", sparse([3], [NAN]), "nonfinite"), ("inf", sparse([3], [float("inf")]), "nonfinite")]),
}


def spark_vector_schema(table: pa.Table, vector_col: str = "features") -> pa.Table:
    """``table`` with Spark's schema metadata, so that Spark reads ``vector_col`` as a Spark ML vector (Spark
    writes vectors so; PySpark cannot build the invalid ones these tests need)."""
    from pyspark.ml.linalg import VectorUDT
    from pyspark.sql import types as T
    from pyspark.sql.pandas.types import from_arrow_type

    schema = T.StructType([T.StructField(f.name, VectorUDT() if f.name == vector_col else from_arrow_type(f.type))
                           for f in table.schema])
    return table.replace_schema_metadata({"org.apache.spark.sql.parquet.row.metadata": schema.json()})


def worker_flag(column: pa.Array) -> str | None:
    """The rule the worker's decoder (the reference) says the LAST row breaks, or None."""
    from skol_spark.scoring.features import decode_features, nonfinite_rows
    from skol_spark.scoring.rules import FLAGS, describe

    try:
        source = decode_features(column, FEATURES)
    except ValueError as e:
        named = [f for f in FLAGS if describe(f, doc="doc", line="line", col="features", size=FEATURES) in str(e)]
        assert len(named) == 1 and f"(first row {len(column) - 1})" in str(e), str(e)
        return named[0]
    return "nonfinite" if nonfinite_rows(source).tolist() == [len(column) - 1] else None


def scan_flags(spark, tmp_path, kind: str, table: pa.Table) -> dict:
    """``{doc_id: set of flags}`` from the driver's SQL form of the rules (``line_flags``) on ``table``."""
    from skol_spark.job.validate import FLAGS, line_flags

    path = tmp_path / f"rules-{kind}"
    write_table(path, spark_vector_schema(table) if kind == "vector" else table)
    df = spark.read.parquet(str(path))
    rows = line_flags(df, doc_col="doc_id", line_col="line_number", features_col="features", kind=kind,
                      feature_size=FEATURES, raw_vectors=True).collect()
    return {r["_doc"]: {f for f in FLAGS if f != "duplicate" and r[f]} for r in rows}


@pytest.mark.parametrize("kind", sorted(RULE_CASES))
def test_line_rules_agree_between_worker_and_scan(spark, tmp_path, kind):
    """Each feature rule, on the same cases: the worker's decoder (reference) and the scan's SQL agree."""
    from skol_spark.job.validate import scan_input

    arrow_type, cases = RULE_CASES[kind]
    first = dense(OK_ROW) if kind == "vector" else cases[0][1]  # vectors: also through the mixed path
    for name, row, expected in cases:
        assert worker_flag(pa.array([row], arrow_type)) == expected, name
        assert worker_flag(pa.array([first, row], arrow_type)) == expected, name
    table = pa.table({"doc_id": [c[0] for c in cases], "line_number": pa.array([0] * len(cases), pa.int32()),
                      "features": pa.array([c[1] for c in cases], arrow_type)})
    flags = scan_flags(spark, tmp_path, kind, table)
    assert flags == {name: {expected} - {None} for name, _, expected in cases}
    # the whole scan (for vectors: the fast scan fails on what the JVM refuses, then reads stored fields)
    report = scan_input(spark.read.parquet(str(tmp_path / f"rules-{kind}")), doc_col="doc_id",
                        line_col="line_number", features_col="features", kind=kind, feature_size=FEATURES)
    counts = {f: c for f, (c, _) in report.bad.items() if c}
    assert counts == dict(Counter(e for _, _, e in cases if e))


def test_null_like_key_rule_agrees_between_worker_and_scan(spark, tmp_path):
    from skol_spark.scoring.rules import null_like

    docs = pa.array([1.0, NAN, None, -0.0, float("inf")], pa.float64())
    table = pa.table({"doc_id": docs, "line_number": pa.array(range(5), pa.int32()),
                      "features": pa.array([OK_ROW] * 5, pa.list_(pa.float32()))})
    write_table(tmp_path / "keys", table)
    from skol_spark.job.validate import line_flags

    rows = line_flags(spark.read.parquet(str(tmp_path / "keys")), doc_col="doc_id", line_col="line_number",
                      features_col="features", kind="array", feature_size=FEATURES).orderBy("_line").collect()
    assert [r["null_key"] for r in rows] == null_like(docs).tolist() == [False, True, True, False, False]


def refused(result, *phrases: str) -> str:
    """The one error line of a refused run: exit 20, every phrase in it, no traceback."""
    assert result.code == errors.InputContractError.exit_code, result.err[-3000:]
    assert "Traceback" not in result.err, result.err[-3000:]
    message = result.err[result.err.index("skol-spark: error:"):]
    for phrase in phrases:
        assert phrase in message, message
    return message


def float_keyed(docs: dict[float, np.ndarray]) -> pa.Table:
    """Lines with a double ``doc_id`` and array<double> features (what pandas pipelines write)."""
    rows = [(d, i, [float(v) for v in row]) for d, x in docs.items() for i, row in enumerate(x)]
    return pa.table({"doc_id": pa.array([r[0] for r in rows], pa.float64()),
                     "line_number": pa.array([r[1] for r in rows], pa.int64()),
                     "features": pa.array([r[2] for r in rows], pa.list_(pa.float64()))})


FLOAT_GOOD = {float(i): x for i, x in enumerate(make_documents("f", 6, seed=21).values())}
FLOAT_BAD = {NAN: np.full((2, FEATURES), 0.25), 99.0: np.vstack([np.full((1, FEATURES), 0.5),
                                                              np.full((1, FEATURES), BIG)])}


@pytest.fixture(scope="module")
def float_keyed_runs(spark, tmp_path_factory, redis_server, prefix):
    """Good documents with double ids, plus a NaN document id and a line holding 1e300 (inf as float32):
    refused, quarantined, and the good documents alone."""
    tmp = tmp_path_factory.mktemp("fd-float")
    bad = pa.concat_tables([float_keyed(FLOAT_GOOD), float_keyed(FLOAT_BAD)])
    quarantine = {"bad_input": "quarantine", "quarantine_path": str(tmp / "quarantine"),
                  "max_quarantine_fraction": 0.5}
    return tmp, {"refused": run(tmp, redis_server, prefix, bad, name="refused"),
                 "q": run(tmp, redis_server, prefix, bad, name="q", scoring=quarantine),
                 "clean": run(tmp, redis_server, prefix, float_keyed(FLOAT_GOOD), name="clean")}


def assert_quarantined(tmp, results, expected: dict, *, bad_lines: int) -> None:
    """The quarantine run succeeded, set aside exactly the ``bad_lines`` lines of ``expected`` ({doc: reason}),
    whole documents, and every other document's rows equal the clean run's."""
    assert results["q"].code == 0, results["q"].err[-3000:]
    assert results["clean"].code == 0, results["clean"].err[-3000:]
    out, q = read_output(tmp / "q"), read_output(tmp / "quarantine")
    docs = [("nan" if isinstance(d, float) and np.isnan(d) else d) for d in q.column("doc_id").to_pylist()]
    assert dict(zip(docs, q.column("quarantine_reason").to_pylist())) == expected
    assert q.num_rows == bad_lines
    assert close(by_key(out), by_key(read_output(tmp / "clean")))  # same keys, same probabilities


def test_nan_document_id_is_refused_as_a_null_key(float_keyed_runs):
    """Item 4: NaN is not equal to itself: the worker would score each line as its own document, Spark groups
    them. Refused like a null key, and quarantined like one."""
    tmp, results = float_keyed_runs
    refused(results["refused"], "2 line(s) with null doc_id/line_number (or NaN), e.g. doc_id='NaN'",
            "NaN is not equal to itself")
    assert_no_output(tmp / "refused")
    assert_quarantined(tmp, results, {"nan": "null_key", 99.0: "nonfinite"}, bad_lines=4)


def test_float_line_numbers_are_refused_by_the_schema(spark, tmp_path, redis_server, prefix):
    """Item 4's sibling: a float line number can be NaN, which orders nowhere; the schema refuses it."""
    table = float_keyed(FLOAT_GOOD)
    table = table.set_column(1, "line_number", table.column("line_number").cast(pa.float64()))
    result = run(tmp_path, redis_server, prefix, table)
    refused(result, "column 'line_number' (input.line_col) must be an integer line number, got double")
    assert_no_output(tmp_path / "out")


def test_float64_features_beyond_float32_are_refused_or_quarantined(float_keyed_runs):
    """Item 7: 1e300 is finite as a double and inf as the float32 the model sees: the scan checks the value
    after the cast, so quarantine sets the document aside instead of failing the run with 20."""
    tmp, results = float_keyed_runs
    refused(results["refused"], "1 line(s) with NaN, inf or null values in features, e.g. doc_id='99.0' "
                                "line_number=1", "a double beyond +-3.4e38 is inf")
    assert_no_output(tmp / "refused")
    assert_quarantined(tmp, results, {"nan": "null_key", 99.0: "nonfinite"}, bad_lines=4)


def test_line_numbers_spanning_int64_are_ordered_without_overflow(spark, tmp_path, redis_server, prefix,
                                                                   closure_model):
    """Item 5: lines [INT64_MAX, -2, 0, 5] streamed as read: ``np.diff`` overflowed and called them ordered."""
    numbers = [np.iinfo(np.int64).max, -2, 0, 5]
    x = np.random.default_rng(17).random((4, FEATURES), dtype=np.float32)
    table = pa.concat_tables([float_keyed(FLOAT_GOOD),
                              float_keyed({50.0: x}).set_column(1, "line_number", pa.array(numbers, pa.int64()))])
    result = run(tmp_path, redis_server, prefix, table)

    assert result.code == 0, result.err[-3000:]
    manifest = json.loads(next(Path(f"{tmp_path / 'out'}_runs").glob("*/manifest.json")).read_text())
    assert manifest["scoring"]["sort"] == "input order"  # the streamed path, where the worker orders lines
    got = by_key(read_output(tmp_path / "out"))
    order = np.argsort(numbers)  # -2, 0, 5, INT64_MAX
    window = np.zeros((1, WINDOW, FEATURES), np.float32)
    window[0, :4] = x[order]
    expected = closure_model(window).numpy()[0, :4]
    for position, line in enumerate(np.asarray(numbers)[order]):
        np.testing.assert_allclose(got[(50.0, int(line))], expected[position], atol=1e-5)
    as_read = np.zeros_like(window)
    as_read[0, :4] = x
    assert np.abs(closure_model(as_read).numpy()[0, 0] - expected[3]).max() > 1e-3  # the order matters


def test_true_label_index_outside_the_classes_counts_as_unknown(spark, tmp_path, redis_server, prefix):
    """Item 6: an index >= the number of classes, negative, or beyond int, with ANSI mode on: counted as an
    unknown true label (as an unknown name is), not exit 30."""
    indices = [0, 1, 2, 3, -1, 2**40]
    table = lines_table(rows_of(GOOD))
    table = table.append_column("true_idx", pa.array([indices[i % len(indices)] for i in range(table.num_rows)],
                                                     pa.int64()))
    before = spark.conf.get("spark.sql.ansi.enabled")
    spark.conf.set("spark.sql.ansi.enabled", "true")
    try:
        result = run(tmp_path, redis_server, prefix, table, input={"label_col": "true_idx"})
    finally:
        spark.conf.set("spark.sql.ansi.enabled", before)

    assert result.code == 0, result.err[-3000:]
    out = read_output(tmp_path / "out")
    names = {0: LABELS[0], 1: LABELS[1], 2: LABELS[2], 3: "3", -1: "-1", 2**40: str(2**40)}
    truth = dict(zip(keys_of(table), table.column("true_idx").to_pylist()))
    assert {k: names[truth[k]] for k in keys_of(out)} == dict(zip(keys_of(out), out.column("true_label").to_pylist()))
    manifest = json.loads(next(Path(f"{tmp_path / 'out'}_runs").glob("*/manifest.json")).read_text())
    unknown = manifest["evaluation"]["metrics"]["unknown_true_labels"]
    assert unknown["by_label"] == {n: sum(names[v] == n for v in truth.values()) for n in ("3", "-1", str(2**40))}
    assert manifest["evaluation"]["metrics"]["evaluated_lines"] == sum(v in (0, 1, 2) for v in truth.values())


def sparse_docs(docs: dict[str, np.ndarray], *, vector: bool) -> list[tuple[str, int, dict]]:
    rows = []
    for d, x in docs.items():
        for i, r in enumerate(x):
            nz = np.flatnonzero(r > 0.5)
            rows.append((d, i, sparse(nz.tolist(), r[nz].astype(float).tolist()) if vector else
                         {"indices": nz.tolist(), "values": r[nz].astype(float).tolist(), "size": FEATURES}))
    return rows


def sparse_table(rows, *, vector: bool) -> pa.Table:
    table = pa.table({"doc_id": pa.array([r[0] for r in rows], pa.string()),
                      "line_number": pa.array([r[1] for r in rows], pa.int32()),
                      "features": pa.array([r[2] for r in rows], VECTOR if vector else SPARSE)})
    return spark_vector_schema(table) if vector else table


SPARSE_GOOD = make_documents("s", 6, seed=23)
# one document per broken sparse rule; line 1 is the bad one
SPARSE_BAD = {"dup-doc": ([2, 2], [1.0, 2.0]), "beyond-doc": ([0, 7], [1.0, 2.0]), "neg-doc": ([-1], [1.0]),
              "len-doc": ([0, 1, 2], [1.0])}


def bad_sparse_rows(*, vector: bool, only=None):
    rows = []
    for doc, (indices, values) in SPARSE_BAD.items():
        if only and doc not in only:
            continue
        rows.append((doc, 0, sparse([1], [0.5]) if vector else {"indices": [1], "values": [0.5], "size": FEATURES}))
        rows.append((doc, 1, sparse(indices, values) if vector else
                     {"indices": indices, "values": values, "size": FEATURES}))
    return rows


@pytest.fixture(scope="module")
def vector_runs(spark, tmp_path_factory, redis_server, prefix):
    """Sparse Spark ML vectors, one document per broken sparse rule: refused, quarantined, good alone."""
    tmp = tmp_path_factory.mktemp("fd-vector")
    good = sparse_docs(SPARSE_GOOD, vector=True)
    bad = sparse_table(good + bad_sparse_rows(vector=True), vector=True)
    quarantine = {"bad_input": "quarantine", "quarantine_path": str(tmp / "quarantine"),
                  "max_quarantine_fraction": 0.5}
    return tmp, {"refused": run(tmp, redis_server, prefix, bad, name="refused"),
                 "q": run(tmp, redis_server, prefix, bad, name="q", scoring=quarantine),
                 "clean": run(tmp, redis_server, prefix, sparse_table(good, vector=True), name="clean")}


def test_duplicate_sparse_indices_are_refused_with_count_and_example(vector_runs, spark, tmp_path, redis_server,
                                                                      prefix):
    """Item 8: an index twice in one sparse line kept the last value silently; refused as Spark ML refuses it
    (vectors and indices/values structs alike), and quarantined per document."""
    tmp, results = vector_runs
    refused(results["refused"], "1 line(s) with the same sparse index twice in one line of features, "
                                "e.g. doc_id='dup-doc' line_number=1", "sum or deduplicate")
    assert_no_output(tmp / "refused")
    assert_quarantined(tmp, results, {"dup-doc": "repeated_index", "beyond-doc": "bad_index",
                                      "neg-doc": "bad_index", "len-doc": "sparse_lengths"}, bad_lines=8)
    q = read_output(tmp / "quarantine").to_pylist()
    # a vector the JVM cannot deserialize is kept as its stored fields
    assert [r["features"] for r in q if (r["doc_id"], r["line_number"]) == ("dup-doc", 1)] == \
        ['{"type":0,"size":6,"indices":[2,2],"values":[1.0,2.0]}']

    struct = sparse_table(sparse_docs(SPARSE_GOOD, vector=False) + bad_sparse_rows(vector=False, only={"dup-doc"}),
                          vector=False)
    result = run(tmp_path, redis_server, prefix, struct)
    refused(result, "1 line(s) with the same sparse index twice in one line of features, "
                    "e.g. doc_id='dup-doc' line_number=1")
    assert_no_output(tmp_path / "out")


def test_sparse_index_problems_say_what_is_wrong(vector_runs):
    """Item 13: an index beyond the vector's size failed the Spark scan with a traceback (exit 1); negative
    indices and indices/values of different lengths read "features not of size N". Each is named."""
    tmp, results = vector_runs
    message = refused(results["refused"],
                      "2 line(s) with a sparse index outside 0..5 in features, e.g. doc_id=",
                      "1 line(s) with sparse features whose indices and values differ in length, "
                      "e.g. doc_id='len-doc' line_number=1", "every index must be in 0..size-1")
    assert "not of size" not in message


def test_corrupt_parquet_file_ends_with_one_clear_line(spark, tmp_path, redis_server, prefix):
    """Item 13: a corrupt Parquet file made the validation scan end with a Py4J traceback and exit 1."""
    src = tmp_path / "out-input"
    write_table(src, lines_table(rows_of(GOOD)))
    data = bytearray((src / "part-0.parquet").read_bytes())
    data[8:400] = b"\xff" * 392  # page headers gone, footer intact: Spark plans the scan, then cannot read it
    (src / "part-1.parquet").write_bytes(bytes(data))
    assert pq.read_metadata(src / "part-1.parquet").num_rows == len(rows_of(GOOD))  # the footer still reads
    conf = write_config(tmp_path / "out.yaml", redis_url=redis_server.url, prefix=prefix, model=MODEL,
                        input_path=src, output_path=tmp_path / "out")
    result = run_cli(predict_args(conf))
    refused(result, f"input file file://{src}/part-1.parquet is a corrupt or truncated Parquet file",
            "Rewrite the file")
    assert_no_output(tmp_path / "out")


def test_csv_given_as_parquet_says_it_is_not_parquet(spark, tmp_path, redis_server, prefix):
    """Item 13: "An error occurred while calling o96.load" said nothing; the file is not Parquet."""
    src = tmp_path / "out-input"
    src.mkdir()
    (src / "lines.csv").write_text("doc_id,line_number,features\nd,0,0.5\n")
    conf = write_config(tmp_path / "out.yaml", redis_url=redis_server.url, prefix=prefix, model=MODEL,
                        input_path=src, output_path=tmp_path / "out")
    result = run_cli(predict_args(conf))
    message = refused(result, "lines.csv is not a Parquet file (it begins with b'doc_id,l'",
                      "Set input.format to the file's format")
    assert "An error occurred while calling" not in message
    assert_no_output(tmp_path / "out")


def test_stray_non_parquet_file_in_the_input_is_named(spark, tmp_path, redis_server, prefix):
    """Item 13's sibling: Spark infers the schema from the first file; a stray text file beside it fails the
    validation scan itself, which names it."""
    src = tmp_path / "out-input"
    write_table(src, lines_table(rows_of(GOOD)))
    (src / "zz-notes.txt").write_text("scored on Monday\n")
    conf = write_config(tmp_path / "out.yaml", redis_url=redis_server.url, prefix=prefix, model=MODEL,
                        input_path=src, output_path=tmp_path / "out")
    refused(run_cli(predict_args(conf)), "zz-notes.txt is not a Parquet file (it begins with b'scored o'",
            "move it out of the input directory")
    assert_no_output(tmp_path / "out")


def test_document_ids_that_spark_and_the_worker_would_group_differently_are_refused(spark):
    """Item 4's siblings: a key must mean the same document to Spark's grouping and to the worker's
    comparison. A collated string (Spark: 'A' = 'a'), or an array/struct id, is refused by the schema."""
    from pyspark.sql import functions as F

    from skol_spark.job.validate import check_schema

    df = spark.createDataFrame([("A", 0, [0.5] * FEATURES)], "doc_id string, line_number int, features array<float>")
    keys = dict(doc_col="doc_id", line_col="line_number", features_col="features")
    assert check_schema(df, **keys) == "array"
    with pytest.raises(errors.InputContractError, match="has collation UTF8_LCASE: Spark would group ids"):
        check_schema(df.withColumn("doc_id", F.collate("doc_id", "UTF8_LCASE")), **keys)
    with pytest.raises(errors.InputContractError, match=r"must be a string or a number naming the document, "
                                                        r"got array<string>"):
        check_schema(df.withColumn("doc_id", F.array("doc_id")), **keys)
