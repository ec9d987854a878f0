"""The Python worker the CLI starts beside the JVM (skol_spark.local.worker_prestart, skol_spark.local.worker_daemon).

Real processes throughout: a pre-started worker that really imports
TensorFlow, this test playing Spark's daemon and JVM over real sockets, and
CLI runs in fresh interpreters with their own local JVM, Redis and model.
"""

from __future__ import annotations

import json
import os
import select
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import pytest

from skol_spark.local import worker_prestart
from skol_spark.job.config import ConfigError, load_config
from skol_spark.store.model_store import ModelStore
from skol_spark.local.worker_prestart import PrestartedWorker, hand_over
from tests.conftest import LABELS
from tests.fault_tools import (documents_table, make_documents, predict_args, read_output, run_cli_subprocess,
                               write_config, write_table)

MODEL = "pw"


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"


def prestart_processes() -> list[int]:
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if b"skol_spark.local.worker_prestart" in (entry / "cmdline").read_bytes():
                    pids.append(int(entry.name))
            except OSError:
                pass
    return [p for p in pids if alive(p)]


def test_the_setting_and_where_it_applies():
    assert load_config(None, ["job.prestart_worker=never"]).job.prestart_worker == "never"
    with pytest.raises(ConfigError, match="job.prestart_worker"):
        load_config(None, ["job.prestart_worker=sometimes"])
    wanted = worker_prestart.wanted
    local = dict(master="local[2]", creates_session=True, warm_up=True, spark_conf={})
    assert wanted("auto", **local)
    assert not wanted("never", **local)
    assert not wanted("auto", **{**local, "master": "spark://host:7077"})  # executors are elsewhere
    assert not wanted("auto", **{**local, "creates_session": False})  # spark-submit's or a notebook's JVM is up
    assert not wanted("auto", **{**local, "warm_up": False})  # the worker would start after the scan
    assert not wanted("auto", **{**local, "spark_conf": {"spark.python.use.daemon": "false"}})
    assert not wanted("auto", **{**local, "spark_conf": {"spark.python.daemon.module": "my.daemon"}})
    assert not wanted("auto", **{**local, "spark_conf": {"spark.pyspark.python": "/usr/bin/true"}})  # other Python
    assert wanted("auto", **{**local, "spark_conf": {"spark.pyspark.python": sys.executable}})


@pytest.fixture
def prestarted(tmp_path, monkeypatch):
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    monkeypatch.setenv("PYTHONHASHSEED", os.environ.get("PYTHONHASHSEED", "0"))
    worker = PrestartedWorker.spawn()
    yield worker
    worker.close()
    assert not Path(worker.directory).exists() and worker_prestart.SOCKET_ENV not in os.environ


def test_a_handed_over_connection_is_served_as_sparks_forked_worker_would(prestarted, monkeypatch):
    """This test is Spark's daemon (``hand_over`` with its environment) and its JVM (the socket's other end):
    the worker must send its pid first, then authenticate with the secret of the daemon's environment,
    which its own environment never had."""
    from pyspark.serializers import UTF8Deserializer, read_int, write_with_length

    monkeypatch.setenv("PYTHON_WORKER_FACTORY_SECRET", "secret-of-this-jvm")
    jvm, daemon = socket.socketpair()
    pid = hand_over(daemon, prestarted.path, timeout=180)
    daemon.close()  # as Spark's daemon closes its copy after a fork
    assert pid == prestarted.pid
    jvm.settimeout(60)
    reader, writer = jvm.makefile("rb"), jvm.makefile("wb")
    assert read_int(reader) == prestarted.pid
    write_with_length(b"secret-of-this-jvm", writer)
    writer.flush()
    assert UTF8Deserializer().loads(reader) == "ok"
    for end in (reader, writer, jvm):  # Spark closes the connection: the worker exits
        end.close()
    prestarted.process.wait(timeout=60)


def test_a_wrong_secret_is_refused(prestarted, monkeypatch):
    from pyspark.serializers import UTF8Deserializer, read_int, write_with_length

    monkeypatch.setenv("PYTHON_WORKER_FACTORY_SECRET", "the-real-one")
    jvm, daemon = socket.socketpair()
    assert hand_over(daemon, prestarted.path, timeout=180) == prestarted.pid
    daemon.close()
    jvm.settimeout(60)
    reader, writer = jvm.makefile("rb"), jvm.makefile("wb")
    read_int(reader)
    write_with_length(b"a-guess", writer)
    writer.flush()
    assert UTF8Deserializer().loads(reader) == "err"
    for end in (reader, writer, jvm):
        end.close()
    assert prestarted.process.wait(timeout=60) == 1


def test_it_declines_a_daemon_whose_workers_get_another_hash_seed(prestarted, monkeypatch):
    """String hashes (and so Python-side partitioning) depend on the seed an interpreter started with."""
    monkeypatch.setenv("PYTHONHASHSEED", "4242")
    jvm, daemon = socket.socketpair()
    assert hand_over(daemon, prestarted.path, timeout=180) == 0  # the daemon forks a worker instead
    assert prestarted.process.wait(timeout=60) == 0
    assert select.select([jvm], [], [], 0.5)[0] == []  # nothing was written to the JVM's connection
    daemon.sendall(b"x")  # and the daemon still holds it, usable
    assert jvm.recv(1) == b"x"


def test_a_long_tmpdir_still_gives_a_socket_path_that_fits(tmp_path, monkeypatch):
    deep = tmp_path / ("d" * 60) / ("e" * 60)
    deep.mkdir(parents=True)
    monkeypatch.setattr(tempfile, "tempdir", str(deep))
    worker = PrestartedWorker.spawn()
    try:
        assert len(worker.path.encode()) <= worker_prestart.MAX_SOCKET_PATH and not list(deep.iterdir())
        jvm, daemon = socket.socketpair()
        monkeypatch.setenv("PYTHONHASHSEED", "4242")  # decline: this test only needs it reachable
        assert hand_over(daemon, worker.path, timeout=180) == 0
        assert worker.process.wait(timeout=60) == 0
    finally:
        worker.close()
    assert not Path(worker.directory).exists()


def test_a_model_built_ahead_counts_as_one_build_of_the_first_task():
    from skol_spark.model import cache as worker_cache

    calls = []
    worker_cache.clear()
    try:
        worker_cache.build_ahead("m1", lambda: calls.append(1) or "model")
        worker_cache.build_ahead("m1", lambda: calls.append(1) or "again")  # built once
        assert worker_cache.get_or_build("m1", lambda: "never") == ("model", True)  # reported by the first task
        assert worker_cache.get_or_build("m1", lambda: "never") == ("model", False)  # and only by it
        assert calls == [1]
    finally:
        worker_cache.clear()


def plan_for(artifact, **changes):
    from skol_spark.scoring.partition import ScoringPlan

    return ScoringPlan(doc_col="doc_id", line_col="line_number", features_col="features", carry_cols=(),
                       labels=tuple(artifact.labels), window=artifact.window_size, stride=artifact.stride,
                       batch_size=64, feature_size=artifact.feature_size, tf_threads=1, model_name=artifact.name,
                       model_version=artifact.version, run_id="r", **changes)


def test_a_model_that_fails_to_build_ahead_leaves_the_worker_usable(capfd, tmp_path, monkeypatch, redis_client,
                                                                     closure_model):
    """The build ahead is an optimisation: a model it cannot build (here its weights do not match their
    checksum) is left to the warm-up task, which reports the error; the worker still takes Spark's
    connection."""
    import dataclasses

    from pyspark.serializers import read_int

    prefix = f"pwa{uuid.uuid4().hex[:6]}"
    ModelStore(redis_client, prefix=prefix).publish(closure_model, MODEL, labels=LABELS, aliases=["production"])
    artifact = ModelStore(redis_client, prefix=prefix).load(MODEL)
    flipped = bytes([artifact.weights[100] ^ 0xFF])
    tampered = dataclasses.replace(artifact, weights=artifact.weights[:100] + flipped + artifact.weights[101:])
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    monkeypatch.setenv("PYTHONHASHSEED", os.environ.get("PYTHONHASHSEED", "0"))
    monkeypatch.setenv("PYTHON_WORKER_FACTORY_SECRET", "x")
    prestarted = PrestartedWorker.spawn()  # here, not in a fixture: its stderr is then the test's (capfd)
    try:
        worker_prestart.send_model(plan_for(tampered), tampered).join(timeout=180)
        jvm, daemon = socket.socketpair()
        assert hand_over(daemon, prestarted.path, timeout=180) == prestarted.pid
        daemon.close()
        jvm.settimeout(60)
        reader = jvm.makefile("rb")
        assert read_int(reader) == prestarted.pid
        for end in (reader, jvm):
            end.close()
        prestarted.process.wait(timeout=60)
    finally:
        prestarted.close()
    assert "could not build the model ahead (ModelIntegrityError" in capfd.readouterr().err


def test_no_daemon_no_worker_the_hand_over_says_so(tmp_path):
    jvm, daemon = socket.socketpair()
    assert hand_over(daemon, str(tmp_path / "nobody.sock"), timeout=5) == 0


def test_it_exits_when_the_process_that_started_it_dies(tmp_path):
    """A CLI killed before its JVM asked for a worker must not leave a TensorFlow process behind."""
    code = ("import sys, tempfile; tempfile.tempdir = sys.argv[1]\n"
            "from skol_spark.local.worker_prestart import PrestartedWorker\n"
            "print(PrestartedWorker.spawn().pid, flush=True)\n")
    parent = subprocess.run([sys.executable, "-c", code, str(tmp_path)], capture_output=True, text=True,
                            timeout=60, env={**os.environ, "PYTHONPATH": str(Path(__file__).parent.parent)})
    pid = int(parent.stdout.strip())
    deadline = time.monotonic() + 120
    while alive(pid) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert not alive(pid)


# ---- the CLI ----------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def published(redis_client, closure_model, tmp_path_factory):
    prefix = f"pw{uuid.uuid4().hex[:6]}"
    ModelStore(redis_client, prefix=prefix).publish(closure_model, MODEL, labels=LABELS, aliases=["production"])
    path = tmp_path_factory.mktemp("pw-input") / "lines"
    docs = make_documents("p", 30, seed=5)
    write_table(path, documents_table(docs))
    return prefix, path, docs


def cli_run(tmp_path, redis_server, published, name: str, env: dict | None = None, **job):
    prefix, path, _ = published
    conf = write_config(tmp_path / f"{name}.yaml", redis_url=redis_server.url, prefix=prefix, model=MODEL,
                        input_path=path, output_path=tmp_path / name,
                        job={"master": "local[2]", "progress": False, **job})
    tmp = Path(tempfile.mkdtemp(dir="/tmp"))  # a short TMPDIR: the pytest one is too long for a socket path
    result = run_cli_subprocess(predict_args(conf), env={"TMPDIR": str(tmp), **(env or {})}, timeout=300)
    assert result.code == 0, result.err[-3000:]
    line = [x for x in result.out.splitlines() if x.startswith("manifest: ")][-1]
    manifest = json.loads(Path(line.split(": ", 1)[1].replace("file:", "")).read_text())
    assert not [p for p in tmp.iterdir() if p.name.startswith("skol-spark-worker-")]  # its socket dir is gone
    assert not prestart_processes()  # and so is the process
    shutil.rmtree(tmp)
    return manifest["scoring"], read_output(tmp_path / name), result


def test_a_cli_run_scores_in_the_prestarted_worker_and_falls_back_when_it_died(tmp_path, redis_server,
                                                                                published, closure_model):
    from tests.jobkit import assert_matches_reference, reference_scores

    auto, auto_table, auto_run = cli_run(tmp_path, redis_server, published, "auto")
    assert auto["warm_up"]["prestarted"] == 1, auto_run.err[-3000:]
    assert auto["warm_up"]["built"] == 1 and auto["model_builds"] == 1
    assert auto["warm_up"]["built_ahead"] == 1  # while the JVM planned the warm-up (send_model)
    # TensorFlow's pool in that worker is the task's cores, though TensorFlow was imported before the task
    assert auto["warm_up"]["intra_op_threads"] == [auto["tf_threads"]] == [2]

    never, never_table, _ = cli_run(tmp_path, redis_server, published, "never", prestart_worker="never")
    assert never["warm_up"]["prestarted"] == never["warm_up"]["built_ahead"] == 0
    assert never["warm_up"]["built"] == 1 and never["model_builds"] == 1
    assert never["warm_up"]["intra_op_threads"] == [2]

    # the pre-started worker dies before the JVM asks for one: Spark's daemon forks one instead
    died, died_table, result = cli_run(tmp_path, redis_server, published, "died",
                                       env={"SKOL_FAULT": "crash:partition=prestart"})
    assert died["warm_up"]["prestarted"] == died["warm_up"]["built_ahead"] == 0 and died["model_builds"] == 1
    assert "the pre-started Python worker was not used" in result.err

    # every line once, equal to Keras called directly on the same windows
    reference = reference_scores(closure_model, published[2], stride=auto["stride"])
    for table in (auto_table, never_table, died_table):
        assert_matches_reference(table, reference)
