"""The job on a Spark Connect session: a real Connect server (its own JVM), a real redis-server, a real
Keras model; ANSI mode on, as on Databricks serverless.

One server and one client session for the module (``connect``). Every run is
checked against the Keras model called directly (``tests.jobkit``), every
line once.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from skol_spark.errors import ConfigError, NothingToDo
from skol_spark.job.config import config_from_dict
from tests.connect_server import CONNECT_ENV, ROOT, start_connect_server
from tests.helpers import LABELS
from tests.helpers import assert_matches_reference, make_documents, read_output, reference_scores, write_input

pytest.importorskip("pyspark.sql.connect.session", reason="needs pyspark[connect]")

MODEL = "lines"


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    server = start_connect_server(tmp_path_factory.mktemp("connect-server"))
    yield server
    server.stop()


@pytest.fixture(scope="module")
def connect(server):
    """A Spark Connect client session; the process's Connect mode is undone afterwards for classic tests.

    Built with the Connect session's own builder: the classic builder refuses a remote session in a process
    that already runs the suite's classic session (SESSION_ALREADY_EXIST)."""
    from pyspark.sql.connect.session import SparkSession

    saved = {k: os.environ.get(k) for k in CONNECT_ENV}
    os.environ["SPARK_CONNECT_MODE_ENABLED"] = "1"  # pyspark.sql.functions build Connect columns (is_remote)
    session = SparkSession.builder.remote(server.url).getOrCreate()
    yield session
    session.stop()
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


@pytest.fixture(scope="module")
def published(redis_client, closure_model):
    from skol_spark.store.model_store import ModelStore

    store = ModelStore(redis_client, prefix=f"cx{uuid.uuid4().hex[:8]}")
    store.publish(closure_model, MODEL, labels=LABELS, aliases=["production"])
    return store.prefix


def job_config(redis_server, prefix: str, input_path: Path, *, output: dict, **sections) -> dict:
    raw = {"redis": {"url": redis_server.url, "prefix": prefix, "connect_timeout": 2, "socket_timeout": 5},
           "model": {"name": MODEL, "version": "production"},
           "input": {"path": str(input_path)}, "scoring": {"batch_size": 64},
           "output": {"report": False, **output}, "job": {"progress": False, "nothing_to_do_exit_code": 99}}
    for section, values in sections.items():
        raw.setdefault(section, {}).update(values)
    return raw


def test_the_session_is_connect_with_ansi_on(connect):
    from skol_spark.job.services import services_for

    services = services_for(connect)
    assert services.kind == "connect"
    assert connect.conf.get("spark.sql.ansi.enabled") == "true"
    assert services.master == "local[2]" and services.parallelism() == 2


@pytest.mark.slow
def test_path_sink_every_line_once_equal_to_keras(connect, redis_server, published, closure_model, tmp_path):
    from skol_spark.job.run import run_job

    docs = make_documents("p", 12, seed=11)
    n = write_input(tmp_path / "in" / "part-0.parquet", docs)
    out = tmp_path / "out" / "predictions"
    config = config_from_dict(job_config(redis_server, published, tmp_path / "in",
                                         output={"path": str(out), "mode": "overwrite"}))
    result = run_job(connect, config)
    table = read_output(out)
    assert table.num_rows == n == result.rows_written
    assert_matches_reference(table, reference_scores(closure_model, docs))
    manifest = json.loads(Path(result.manifest_path).read_text())
    assert manifest["spark"]["session"] == "connect" and manifest["status"] == "succeeded"
    assert manifest["scoring"]["model_shipped_by"] == "closure"
    assert 1 <= manifest["scoring"]["model_builds"] <= 2  # built by the warm-up (or a restarted worker), once
    assert sorted(p.name for p in out.parent.iterdir() if p.name.startswith(".")) == []  # no staging, no lock


@pytest.mark.slow
def test_a_model_over_the_closure_limit_goes_as_a_session_artifact(connect, redis_server, published, closure_model,
                                                                   tmp_path):
    """``job.connect_inline_model_mb: 0`` sends even the test model the way a large one goes."""
    from skol_spark.job.run import run_job

    docs = make_documents("a", 8, seed=12)
    write_input(tmp_path / "in" / "part-0.parquet", docs)
    out = tmp_path / "out"
    config = config_from_dict(job_config(redis_server, published, tmp_path / "in", job={"connect_inline_model_mb": 0},
                                         output={"path": str(out), "mode": "overwrite"}))
    result = run_job(connect, config)
    assert result.manifest["scoring"]["model_shipped_by"] == "session-artifact"
    assert_matches_reference(read_output(out), reference_scores(closure_model, docs))


@pytest.mark.slow
def test_table_sink_every_line_once_equal_to_keras(connect, redis_server, published, closure_model, tmp_path):
    from skol_spark.job.run import run_job

    docs = make_documents("t", 10, seed=13)
    n = write_input(tmp_path / "in" / "part-0.parquet", docs)
    table_name = f"skol_connect_{uuid.uuid4().hex[:6]}"
    config = config_from_dict(job_config(redis_server, published, tmp_path / "in",
                                         output={"table": table_name, "mode": "append",
                                                 "manifest_path": str(tmp_path / "runs")}))
    result = run_job(connect, config)
    written = connect.table(table_name).where(f"run_id = '{result.run_id}'").toArrow()
    assert written.num_rows == n == result.rows_written
    assert_matches_reference(written, reference_scores(closure_model, docs))
    assert (tmp_path / "runs" / result.run_id / "manifest.json").is_file()


@pytest.mark.slow
def test_incremental_then_nothing_to_do(connect, redis_server, published, closure_model, tmp_path):
    from skol_spark.job.run import run_job

    docs = make_documents("i", 6, seed=14)
    n = write_input(tmp_path / "in" / "part-0.parquet", docs)
    out = tmp_path / "out"
    config = config_from_dict(job_config(redis_server, published, tmp_path / "in",
                                         output={"path": str(out), "mode": "incremental"}))
    assert run_job(connect, config).rows_written == n
    more = make_documents("j", 3, seed=15)
    m = write_input(tmp_path / "in" / "part-1.parquet", more)
    assert run_job(connect, config).rows_written == m
    assert_matches_reference(read_output(out), reference_scores(closure_model, {**docs, **more}))
    with pytest.raises(NothingToDo):
        run_job(connect, config)
    assert read_output(out).num_rows == n + m


@pytest.mark.parametrize("path", ["s3a://bucket/predictions", "dbfs:/mnt/skol/predictions", "relative/predictions"])
def test_a_path_sink_without_local_access_is_refused_before_scoring(connect, redis_server, tmp_path, monkeypatch,
                                                                   path):
    """Staging, the atomic publish and the lock need the driver's own file system on Connect."""
    from skol_spark.job.run import run_job

    monkeypatch.chdir(tmp_path)

    config = config_from_dict(job_config(redis_server, "nothing-published", tmp_path / "in",
                                         output={"path": path, "mode": "overwrite"}))
    with pytest.raises(ConfigError, match=r"output\.table .*(/Volumes|Delta)") as info:
        run_job(connect, config)
    assert "Spark Connect" in str(info.value)
    assert not (tmp_path / "relative" / "predictions").exists() and not (tmp_path / "s3a:").exists()


@pytest.mark.slow
def test_cli_with_spark_remote_runs_incrementally_and_exits_99(server, redis_server, published, closure_model,
                                                              tmp_path):
    import yaml

    docs = make_documents("c", 5, seed=16)
    n = write_input(tmp_path / "in" / "part-0.parquet", docs)
    out = tmp_path / "out"
    conf = tmp_path / "job.yaml"
    conf.write_text(yaml.safe_dump(job_config(redis_server, published, tmp_path / "in",
                                              output={"path": str(out), "mode": "incremental"})))
    env = {k: v for k, v in os.environ.items() if k not in CONNECT_ENV}
    env.update(SPARK_REMOTE=server.url, PYTHONPATH=str(ROOT))

    def cli() -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "skol_spark.cli", "predict", "--conf", str(conf), "--quiet"],
                              env=env, cwd=tmp_path, capture_output=True, text=True, timeout=300)

    first = cli()
    assert first.returncode == 0, first.stderr[-3000:]
    table = read_output(out)
    assert table.num_rows == n
    assert_matches_reference(table, reference_scores(closure_model, docs))
    manifest = json.loads(Path(first.stdout.split("manifest: ")[-1].strip()).read_text())
    assert manifest["spark"]["session"] == "connect"
    second = cli()
    assert second.returncode == 99, second.stderr[-3000:]
    assert read_output(out).num_rows == n


def small_artifact():
    import numpy as np

    from skol_spark.model.artifact import ModelArtifact, encode_weights, sha256

    weights, arch = encode_weights([np.arange(6, dtype=np.float32).reshape(2, 3)]), '{"class_name": "Model"}'
    return ModelArtifact(name="m", version=3, architecture=arch, weights=weights,
                         manifest={"architecture": {"sha256": sha256(arch)}, "weights": {"sha256": sha256(weights)}})


def test_the_artifact_file_round_trips_and_is_verified(tmp_path):
    import zipfile

    from skol_spark.errors import ModelFormatError, ModelIntegrityError
    from skol_spark.model.artifact_file import read_artifact_file, write_artifact_file

    artifact = small_artifact()
    path = tmp_path / "model.zip"
    write_artifact_file(artifact, str(path))
    assert read_artifact_file(str(path)) == artifact
    tampered = tmp_path / "tampered.zip"
    with zipfile.ZipFile(path) as src, zipfile.ZipFile(tampered, "w") as dst:
        for name in src.namelist():
            data = src.read(name)
            dst.writestr(name, data[:-1] + bytes([data[-1] ^ 1]) if name == "weights.npz" else data)
    with pytest.raises(ModelIntegrityError, match="weights checksum mismatch"):
        read_artifact_file(str(tampered))
    pickled = tmp_path / "pickled.zip"
    pickled.write_bytes(b"\x80\x04K\x01.")
    with pytest.raises(ModelFormatError, match="cannot read the model file"):
        read_artifact_file(str(pickled))


def test_local_fs_keeps_the_lock_and_rename_guarantees(tmp_path):
    from skol_spark.errors import OutputLockedError
    from skol_spark.job.localfs import LocalFS
    from skol_spark.job.sink import OutputLock, OutputPaths

    fs, out = LocalFS(), f"file://{tmp_path}/out"
    assert fs.create_new(f"{tmp_path}/x", b"1") and not fs.create_new(f"{tmp_path}/x", b"2")
    assert fs.read(f"{tmp_path}/x") == b"1"
    fs.write(f"{tmp_path}/a/b/c", b"data")
    fs.mkdirs(f"{tmp_path}/d")
    with pytest.raises(OSError, match="destination exists"):
        fs.rename(f"{tmp_path}/a", f"{tmp_path}/d")
    fs.rename(f"{tmp_path}/a", f"{tmp_path}/e")
    assert fs.list(str(tmp_path)) == ["d", "e", "x"] and fs.read(f"{tmp_path}/e/b/c") == b"data"
    with pytest.raises(OSError, match="not on the driver's file system"):
        fs.exists("s3a://bucket/key")
    first = OutputLock(fs, OutputPaths(out, "run-1"))
    first.acquire()
    with pytest.raises(OutputLockedError, match="locked by run run-1"):
        OutputLock(fs, OutputPaths(out, "run-2")).acquire()
    first.release()
    assert not fs.exists(OutputPaths(out, "run-1").lock)


def slow_batches(seconds: float):
    def slow(batches):
        import time

        for batch in batches:
            time.sleep(seconds)
            yield batch
    return slow


def test_a_tagged_job_is_cancelled_and_the_timeout_interrupts_the_session(connect):
    """The warm-up's cancel (operation tag) and ``job.timeout_seconds`` (``interruptAll``) without sparkContext."""
    import threading
    import time

    from skol_spark.job.progress import Timeout
    from skol_spark.job.services import services_for

    services = services_for(connect)
    failed = []

    def tagged():
        with services.job_scope("skol-test-tag", "a slow job"):
            try:
                connect.range(0, 4, 1, 2).mapInArrow(slow_batches(60), "id long").collect()
            except Exception as e:
                failed.append(e)

    thread = threading.Thread(target=tagged)
    started = time.monotonic()
    thread.start()
    time.sleep(3)
    services.cancel("skol-test-tag")
    thread.join(30)
    assert failed and time.monotonic() - started < 30
    assert "cancel" in str(failed[0]).lower() or "interrupt" in str(failed[0]).lower(), failed[0]
    assert connect.getTags() == set()  # the scope removed its tag (this thread never had it)
    with pytest.raises(Exception, match="(?i)cancel|interrupt"):
        with Timeout(services, 2) as timeout:
            connect.range(0, 4, 1, 2).mapInArrow(slow_batches(60), "id long").collect()
    assert timeout.fired.is_set()


def test_progress_comes_from_the_connect_progress_handler(connect):
    import io

    from skol_spark.job.progress import Progress
    from skol_spark.job.services import services_for

    stream = io.StringIO()
    with Progress(services_for(connect), total_lines=400, interval=0.3, stream=stream):
        connect.range(0, 400, 1, 4).mapInArrow(slow_batches(2.5), "id long").collect()
    lines = [x for x in stream.getvalue().splitlines() if x.startswith("[skol-spark] scoring: tasks")]
    assert lines, stream.getvalue()
    assert any(re.search(r"tasks [1-4]/4,", x) for x in lines), lines  # the stage's 4 tasks, some finished


def test_a_closure_over_the_grpc_message_limit_is_refused_naming_the_setting():
    from skol_spark.job.config import config_from_dict

    with pytest.raises(ConfigError, match=r"job\.connect_inline_model_mb.*128 MiB.*maxInboundMessageSize"):
        config_from_dict({"job": {"connect_inline_model_mb": 200}})
    assert config_from_dict({"job": {"connect_inline_model_mb": 0}}).job.connect_inline_model_mb == 0


def test_the_same_model_shipped_twice_in_one_session_is_one_artifact(connect):
    """A long-lived session (a notebook, a shared cluster) runs the job again with the same model."""
    from skol_spark.job.services import services_for

    services, artifact = services_for(connect), small_artifact()
    first = services.ship(artifact, inline_max_bytes=0)
    second = services.ship(artifact, inline_max_bytes=0)
    assert first.how == second.how == "session-artifact" and first.handle == second.handle
    assert services.ship(artifact, inline_max_bytes=2**20).how == "closure"
