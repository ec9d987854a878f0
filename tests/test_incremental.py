"""Scheduled, incremental scoring on local Spark + a real redis-server + a real Keras model.

The CLI runs in-process (``skol_spark.cli.main.main``) on the test session: ``main``
reuses the active session and does not stop a session it did not create.
"""

from __future__ import annotations


import pyarrow.compute as pc
import pytest

from skol_spark.cli.main import main
from tests.fault_tools import worker_fault
from tests.helpers import (LABELS, assert_matches_reference, make_documents, read_output, reference_scores, run_manifests,
                           train_closure_model, tree_digest, write_config, write_input)

MODEL = "lines"
INCREMENTAL = dict(mode="incremental", timeouts=(2, 5), input={"watermark_col": "ingest_date"})


@pytest.fixture(scope="module")
def published(publish_model, closure_model):
    """v1 (alias production) = the session's closure model; v2 = a differently trained one."""
    first = publish_model(closure_model, MODEL, aliases=["production"])
    second = publish_model(train_closure_model(seed=3), MODEL)
    v1, v2 = first.version, second.version
    return {"store": first.store, "prefix": first.prefix, "models": {v1: first.model, v2: second.model}, "v1": v1,
            "v2": v2}


@pytest.fixture
def job(tmp_path, redis_server, published):
    paths = {"input": tmp_path / "input", "output": tmp_path / "out" / "predictions"}
    paths["conf"] = write_config(tmp_path / "job.yaml", redis_url=redis_server.url, prefix=published["prefix"],
                                 model=MODEL, input_path=str(paths["input"]), output_path=str(paths["output"]),
                                 **INCREMENTAL)
    return paths


def run(conf: str, *extra: str) -> int:
    return main(["predict", "--conf", conf, "--quiet", *extra])


def rows_of_run(table, run_id: str):
    return table.filter(pc.equal(table.column("run_id"), run_id))


def test_incremental_runs_score_only_new_documents(spark, job, published):
    first = make_documents("a", 6, seed=1)
    n_lines = write_input(job["input"] / "part-0.parquet", first)

    assert run(job["conf"]) == 0
    out = read_output(job["output"])
    assert out.num_rows == n_lines
    assert_matches_reference(out, reference_scores(published["models"][published["v1"]], first))

    second = make_documents("b", 4, seed=2)
    m_lines = write_input(job["input"] / "part-1.parquet", second)
    assert run(job["conf"]) == 0
    out = read_output(job["output"])
    last = run_manifests(job["output"])[-1]
    assert rows_of_run(out, last["run_id"]).num_rows == m_lines
    assert set(rows_of_run(out, last["run_id"]).column("doc_id").to_pylist()) == set(second)
    assert out.num_rows == n_lines + m_lines
    assert_matches_reference(out, reference_scores(published["models"][published["v1"]], {**first, **second}))

    before = tree_digest(job["output"])
    assert run(job["conf"]) == 99  # job.nothing_to_do_exit_code: the same batch again adds nothing
    assert tree_digest(job["output"]) == before
    nothing = run_manifests(job["output"])[-1]
    assert nothing["status"] == "nothing-to-do" and nothing["exit_code"] == 99

    # a new model version re-scores everything, beside (not over) the old version's rows
    assert run(job["conf"], "--set", f"model.version={published['v2']}") == 0
    out = read_output(job["output"])
    v2 = out.filter(pc.equal(out.column("model_version"), published["v2"]))
    assert v2.num_rows == n_lines + m_lines
    assert_matches_reference(v2, reference_scores(published["models"][published["v2"]], {**first, **second}))
    assert out.num_rows == 2 * (n_lines + m_lines)
    assert run(job["conf"], "--set", f"model.version={published['v2']}") == 99


def test_manifest_counts_equal_the_output(spark, job, published):
    docs = make_documents("c", 5, seed=4)
    lines = write_input(job["input"] / "part-0.parquet", docs)
    assert run(job["conf"]) == 0
    manifest = run_manifests(job["output"])[-1]
    written = rows_of_run(read_output(job["output"]), manifest["run_id"])
    assert manifest["status"] == "succeeded" and manifest["exit_code"] == 0
    assert manifest["input"]["lines"] == lines == written.num_rows
    assert manifest["input"]["documents"] == len(docs)
    assert manifest["output"]["rows_written"] == written.num_rows
    labels = written.column("label").to_pylist()
    assert manifest["output"]["label_counts"] == {lab: labels.count(lab) for lab in LABELS}
    assert manifest["model"]["version"] == published["v1"]
    assert manifest["model"]["weights_sha256"] == published["store"].manifest(MODEL, 1)["weights"]["sha256"]


def test_the_read_back_of_a_run_reads_only_its_own_directory(spark, job, published):
    """The manifest's counts come from the run's own files, not from a listing of every earlier run."""
    from skol_spark.job.sink import OutputPaths, read_published_run

    write_input(job["input"] / "part-0.parquet", make_documents("a", 3, seed=1))
    assert run(job["conf"]) == 0
    write_input(job["input"] / "part-1.parquet", make_documents("b", 4, seed=2))
    assert run(job["conf"]) == 0
    first, second = run_manifests(job["output"])
    output = str(job["output"])
    for manifest in (first, second):
        run_id = manifest["run_id"]
        written = read_published_run(spark, OutputPaths(output, run_id), fmt="parquet")
        assert written.inputFiles() and all(f"/run_id={run_id}/" in f for f in written.inputFiles())
        assert {r["run_id"] for r in written.select("run_id").distinct().collect()} == {run_id}
        assert written.count() == manifest["output"]["rows_written"] == manifest["input"]["lines"]
    assert first["output"]["rows_written"] != second["output"]["rows_written"]


def test_watermark_restricts_input_and_an_older_batch_is_still_written(spark, job, published):
    old = make_documents("old", 3, seed=5)
    new = make_documents("new", 4, seed=6)
    old_lines = write_input(job["input"] / "day1.parquet", old, ingest_date="2026-11-21")
    new_lines = write_input(job["input"] / "day2.parquet", new, ingest_date="2026-11-22")

    assert run(job["conf"], "--watermark", "2026-11-22") == 0
    out = read_output(job["output"])
    assert out.num_rows == new_lines and set(out.column("doc_id").to_pylist()) == set(new)

    # D9: the older day's batch, run after the newer one, is written, not skipped
    assert run(job["conf"], "--watermark", "2026-11-21") == 0
    out = read_output(job["output"])
    assert out.num_rows == old_lines + new_lines
    assert_matches_reference(out, reference_scores(published["models"][published["v1"]], {**old, **new}))
    assert run(job["conf"], "--watermark", "2026-11-21") == 99


def test_failed_run_leaves_output_byte_for_byte_unchanged(spark, job, published, capsys):
    docs = make_documents("d", 4, seed=7)
    write_input(job["input"] / "part-0.parquet", docs)
    assert run(job["conf"]) == 0
    write_input(job["input"] / "part-1.parquet", make_documents("e", 4, seed=8))
    before = tree_digest(job["output"])
    assert before

    # os.environ does not reach Python workers the JVM already started: SparkContext.environment does
    capsys.readouterr()
    with worker_fault(spark, "fail:partition=*:attempt=*"):
        code = run(job["conf"])
    err = capsys.readouterr().err
    assert code == 30, err
    assert "injected failure" in err
    assert tree_digest(job["output"]) == before
    failed = run_manifests(job["output"])[-1]
    assert failed["status"] == "failed" and failed["exit_code"] == 30
    leftovers = [p.name for p in job["output"].parent.iterdir() if ".skol-" in p.name]
    assert leftovers == [], f"staging/lock left beside the output: {leftovers}"

    # the next run (fault gone) scores the new documents exactly once
    assert run(job["conf"]) == 0
    out = read_output(job["output"])
    keys = list(zip(out.column("doc_id").to_pylist(), out.column("line_number").to_pylist()))
    assert len(keys) == len(set(keys))
    assert {d for d, _ in keys} == set(docs) | {f"e-{i:03d}" for i in range(4)}


def test_incremental_with_model_version_partitions_as_in_cluster_yaml(spark, tmp_path, redis_server, published):
    """conf/cluster.yaml partitions by model_version: the anti-join must still see what is scored."""
    docs = make_documents("p", 4, seed=10)
    lines = write_input(tmp_path / "input" / "part-0.parquet", docs)
    output = tmp_path / "out" / "predictions"
    conf = write_config(tmp_path / "job.yaml", redis_url=redis_server.url, prefix=published["prefix"], model=MODEL,
                        input_path=str(tmp_path / "input"), output_path=str(output), **INCREMENTAL,
                        output={"partition_by": ["model_version"]})
    assert run(conf) == 0
    assert list(output.glob("run_id=*/model_version=1/*.parquet"))
    assert read_output(output).num_rows == lines
    assert run(conf) == 99
    assert_matches_reference(read_output(output), reference_scores(published["models"][published["v1"]], docs))
