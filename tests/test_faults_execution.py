"""Fault matrix, execution rows E1-E9 (docs/reliability.md).

Faults are injected into the Python workers with ``SKOL_FAULT`` (skol_spark.scoring.faults):
in the shared ``local[2]`` session (one attempt per task) through
``SparkContext.environment``, or in a CLI subprocess (``local[2,2]``: one
retry) through its environment.
"""

from __future__ import annotations

import json
import time
import uuid
from pathlib import Path

import pytest

from skol_spark import errors
from skol_spark.store.model_store import ModelStore
from tests.fault_tools import kill_group, predict_args, run_cli, run_cli_subprocess, worker_fault
from tests.helpers import (LABELS, assert_no_output, by_key, close, documents_table, keys_of, make_documents,
                           read_output, tree_digest, write_config, write_table)

MODEL = "fe"


@pytest.fixture(scope="module")
def prefix(redis_client, closure_model):
    prefix = f"fe{uuid.uuid4().hex[:6]}"
    ModelStore(redis_client, prefix=prefix).publish(closure_model, MODEL, labels=LABELS, aliases=["production"])
    return prefix


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    path = tmp_path_factory.mktemp("fe-input") / "lines"
    lines = write_table(path, documents_table(make_documents("d", 40, seed=3)))
    return path, lines


def job(tmp_path: Path, redis_server, prefix, data, *, name="job.yaml", output=None, **sections) -> str:
    return write_config(tmp_path / name, redis_url=redis_server.url, prefix=prefix, model=MODEL,
                        input_path=data[0], output_path=output or tmp_path / "out", **sections)


def manifest_of(result) -> dict:
    line = [x for x in result.out.splitlines() if x.startswith("manifest: ")][-1]
    return json.loads(Path(line.split(": ", 1)[1].replace("file:", "")).read_text())


@pytest.fixture(scope="module")
def clean(spark, tmp_path_factory, redis_server, prefix, data):
    """A clean in-process run: the reference every faulted run is compared with."""
    tmp = tmp_path_factory.mktemp("fe-clean")
    result = run_cli(predict_args(job(tmp, redis_server, prefix, data)))
    assert result.code == 0, result.err[-2000:]
    return read_output(tmp / "out"), result


@pytest.fixture(scope="module")
def retried(tmp_path_factory, redis_server, prefix, data):
    """One CLI subprocess under local[2,2]: partition 0 crashes, partition 1 runs out of memory, on attempt 0."""
    tmp = tmp_path_factory.mktemp("fe-retry")
    conf = job(tmp, redis_server, prefix, data, job={"master": "local[2,2]", "progress": False},
               scoring={"partitions": 2})
    result = run_cli_subprocess(predict_args(conf), timeout=400,
                                env={"SKOL_FAULT": "crash:partition=0:attempt=0,oom:partition=1:attempt=0"})
    return tmp / "out", result


def test_E1_worker_crash_on_attempt_0_is_retried_no_duplicates(retried, data, clean):
    out, result = retried
    assert result.code == 0, result.err[-3000:]
    table = read_output(out)
    keys = keys_of(table)
    assert table.num_rows == data[1] and len(set(keys)) == len(keys)
    # the retried partition's rows are identical to a clean run's (R8: one model version throughout)
    assert set(table.column("model_version").to_pylist()) == {1}
    assert close(by_key(table), by_key(clean[0]))


def test_E6_worker_out_of_memory_retry_succeeds_or_fails_clearly(spark, retried, data, tmp_path, redis_server,
                                                                  prefix):
    out, result = retried
    assert result.code == 0, result.err[-3000:]  # attempt 0 of partition 1 raised MemoryError, the retry passed
    assert read_output(out).num_rows == data[1]
    # on every attempt: a clear failure and nothing partial
    with worker_fault(spark, "oom"):
        failed = run_cli(predict_args(job(tmp_path, redis_server, prefix, data)))
    assert failed.code == errors.JobFailedError.exit_code, failed.err[-2000:]
    assert "MemoryError: a Python worker ran out of memory" in failed.error_line
    assert "nothing was published" in failed.error_line
    assert_no_output(tmp_path / "out")


def test_E2_crash_on_every_attempt_exits_nonzero_nothing_visible(spark, tmp_path, redis_server, prefix, data):
    with worker_fault(spark, "crash"):
        result = run_cli(predict_args(job(tmp_path, redis_server, prefix, data)))

    assert result.code == errors.JobFailedError.exit_code, result.err[-2000:]
    assert "the Spark job failed, nothing was published" in result.error_line
    assert_no_output(tmp_path / "out")
    leftovers = [p.name for p in tmp_path.iterdir() if ".skol-" in p.name]
    assert leftovers == [], "staging and lock are removed when a run fails"


def test_E3_crash_leaves_earlier_output_unchanged(spark, tmp_path, redis_server, prefix, data):
    conf = job(tmp_path, redis_server, prefix, data, mode="overwrite", scoring={"partitions": 2})
    first = run_cli(predict_args(conf))
    assert first.code == 0, first.err[-2000:]
    before = tree_digest(tmp_path / "out")
    assert any(name.endswith(".parquet") for name in before)

    with worker_fault(spark, "fail:partition=1"):
        result = run_cli(predict_args(conf))

    assert result.code == errors.JobFailedError.exit_code, result.err[-2000:]
    assert "injected failure" in result.error_line and "Earlier output is unchanged" in result.error_line
    assert tree_digest(tmp_path / "out") == before


def test_E5_driver_killed_mid_write_rerun_gives_one_copy(spark, tmp_path, redis_server, prefix, data):
    conf = job(tmp_path, redis_server, prefix, data, job={"master": "local[2]", "progress": False},
               scoring={"partitions": 2})
    proc = run_cli_subprocess(predict_args(conf), background=True,
                              env={"SKOL_FAULT": "hang:partition=1:seconds=120"})
    try:
        deadline = time.monotonic() + 300
        staged = []
        while time.monotonic() < deadline and proc.poll() is None:
            staged = [p for p in tmp_path.glob(".out.skol-staging-*/**/*.parquet")]
            if staged:  # partition 0's rows are being committed while partition 1 hangs: kill the driver
                break
            time.sleep(0.5)
        assert staged, f"the run never reached the write stage (exit {proc.poll()})"
    finally:
        kill_group(proc)

    assert not (tmp_path / "out" / "_SUCCESS").exists()
    assert_no_output(tmp_path / "out")
    assert list(tmp_path.glob(".out.skol-staging-*")) and (tmp_path / ".out.skol-lock").exists()

    rerun = run_cli(predict_args(conf))

    assert rerun.code == 0, rerun.err[-2000:]
    table = read_output(tmp_path / "out")
    assert table.num_rows == data[1] and len(set(keys_of(table))) == data[1]
    assert len(set(table.column("run_id").to_pylist())) == 1
    assert not list(tmp_path.glob(".out.skol-staging-*")) and not (tmp_path / ".out.skol-lock").exists()


def test_E7_hung_task_hits_the_job_timeout(spark, tmp_path, redis_server, prefix, data):
    # no warm-up: its wait is bounded by the same timeout, and this row is about the scoring job's
    conf = job(tmp_path, redis_server, prefix, data, job={"timeout_seconds": 5, "progress": False},
               scoring={"warm_up": "never"})
    with worker_fault(spark, "hang:partition=0:seconds=90"):
        started = time.monotonic()
        result = run_cli(predict_args(conf))
        elapsed = time.monotonic() - started

    assert result.code == errors.JobTimeoutError.exit_code, result.err[-2000:]
    assert "longer than job.timeout_seconds=5" in result.error_line
    assert elapsed < 80, f"{elapsed:.0f}s"
    assert_no_output(tmp_path / "out")


def test_E8_second_run_of_a_locked_output_fails_clearly(spark, tmp_path, redis_server, prefix, data):
    from skol_spark.job.sink import HadoopFS, OutputLock, OutputPaths

    out = str(tmp_path / "out")
    holder = OutputLock(HadoopFS(spark, out), OutputPaths(out, "other-run"))
    holder.acquire()  # a concurrent run of the same batch, still running (this process is alive)
    try:
        result = run_cli(predict_args(job(tmp_path, redis_server, prefix, data)))
    finally:
        holder.release()

    assert result.code == errors.OutputLockedError.exit_code, result.err[-2000:]
    assert f"output {out} is locked by run other-run" in result.error_line
    assert_no_output(tmp_path / "out")


def test_E8_racing_lock_attempts_leave_exactly_one_holder(spark, tmp_path):
    """Runs that reach the lock at the same instant: one holds it, every other gets OutputLockedError
    (Hadoop's createNewFile checks then creates, so a race used to fail with FileAlreadyExistsException)."""
    import threading

    from skol_spark.job.sink import HadoopFS, OutputLock, OutputPaths

    out = str(tmp_path / "out")
    fs = HadoopFS(spark, out)
    for attempt in range(5):
        locks = [OutputLock(fs, OutputPaths(out, f"run-{attempt}-{i}")) for i in range(12)]
        start, outcomes = threading.Barrier(len(locks)), []

        def take(lock, start=start, outcomes=outcomes):
            start.wait()
            try:
                lock.acquire()
                outcomes.append("held")
            except Exception as e:  # anything but OutputLockedError is the bug
                outcomes.append(type(e).__name__)

        threads = [threading.Thread(target=take, args=(lock,)) for lock in locks]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=60)
        holders = [lock for lock in locks if lock.held]

        assert sorted(outcomes) == ["OutputLockedError"] * (len(locks) - 1) + ["held"], outcomes
        assert len(holders) == 1
        assert json.loads(fs.read(holders[0].paths.lock))["run_id"] == holders[0].paths.run_id
        holders[0].release()
        assert not fs.exists(holders[0].paths.lock)


@pytest.mark.slow
def test_E8_two_concurrent_runs_write_exactly_one_copy(tmp_path, redis_server, prefix, data):
    conf = job(tmp_path, redis_server, prefix, data, job={"master": "local[1]", "progress": False})
    procs = [run_cli_subprocess(predict_args(conf), background=True) for _ in range(2)]
    try:
        outputs = [p.communicate(timeout=400) for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                kill_group(p)
    codes = sorted(p.returncode for p in procs)
    assert codes[0] == 0 and codes[1] in (errors.OutputLockedError.exit_code, errors.ConfigError.exit_code), \
        [o[1][-1500:] for o in outputs]
    loser = outputs[[p.returncode for p in procs].index(codes[1])][1]
    assert "is locked by run" in loser or "already exists and output.mode is 'error'" in loser
    table = read_output(tmp_path / "out")
    assert table.num_rows == data[1] and len(set(keys_of(table))) == data[1]


def test_E9_model_built_once_per_worker_not_per_batch(spark, tmp_path, redis_server, redis_client, data):
    from tests.helpers import train_closure_model

    prefix = f"fe9{uuid.uuid4().hex[:6]}"  # a new model: no worker has it cached yet
    ModelStore(redis_client, prefix=prefix).publish(train_closure_model(seed=9), MODEL, labels=LABELS,
                                                    aliases=["production"])
    conf = job(tmp_path, redis_server, prefix, data, scoring={"arrow_batch_size": 16, "partitions": 4})

    result = run_cli(predict_args(conf))

    assert result.code == 0, result.err[-2000:]
    builds = manifest_of(result)["scoring"]["model_builds"]
    batches = -(-data[1] // 16)
    # each Python worker (reused between tasks) builds once: never once per task, never once per Arrow batch
    assert 1 <= builds <= 4 < batches, (builds, batches)


def _executor_jvms(group: int) -> list[int]:
    """Executor JVM pids (CoarseGrainedExecutorBackend) in the given process group (our subprocess's)."""
    import os

    pids = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            if os.getpgid(int(pid)) != group:
                continue
            if b"CoarseGrainedExecutorBackend" in Path(f"/proc/{pid}/cmdline").read_bytes():
                pids.append(int(pid))
        except (OSError, ProcessLookupError):
            continue
    return sorted(pids)


@pytest.mark.slow
def test_E4_executor_jvm_killed_job_succeeds_without_duplicates(tmp_path, redis_server, prefix, data):
    import os
    import signal

    conf = job(tmp_path, redis_server, prefix, data, job={"master": "local-cluster[2,1,1024]", "progress": False},
               scoring={"partitions": 2})
    # attempt 0 of every scoring task hangs long enough to kill an executor while it runs one (the kill comes
    # 3-4 s after the write stage began)
    proc = run_cli_subprocess(predict_args(conf), background=True,
                              env={"SKOL_FAULT": "hang:attempt=0:seconds=12"})
    try:
        deadline = time.monotonic() + 420
        killed = None
        while time.monotonic() < deadline and proc.poll() is None:
            executors = _executor_jvms(proc.pid)
            staging = list(tmp_path.glob(".out.skol-staging-*"))
            if len(executors) == 2 and staging:  # both executors up and the write stage has begun
                time.sleep(3)
                killed = executors[0]
                os.kill(killed, signal.SIGKILL)
                break
            time.sleep(1)
        assert killed, f"never saw two executors and a running write (exit {proc.poll()})"
        out, err = proc.communicate(timeout=600)
    finally:
        if proc.poll() is None:
            kill_group(proc)
    assert proc.returncode == 0, err[-3000:]
    table = read_output(tmp_path / "out")
    assert table.num_rows == data[1] and len(set(keys_of(table))) == data[1]


def test_warm_up_builds_the_model_once_in_the_worker_that_then_scores(tmp_path, redis_server, redis_client, data,
                                                                      clean):
    """A fresh CLI process on local[2]: while the driver validates the input, a one-task job builds the model in a
    Python worker; the scoring task then runs in that same worker, so the run builds the model once, not twice."""
    from tests.helpers import train_closure_model

    prefix = f"fwu{uuid.uuid4().hex[:6]}"
    model = train_closure_model(seed=9)
    ModelStore(redis_client, prefix=prefix).publish(model, MODEL, labels=LABELS, aliases=["production"])
    runs = {}
    for setting in ("auto", "never"):
        conf = job(tmp_path, redis_server, prefix, data, name=f"{setting}.yaml", output=tmp_path / setting,
                   scoring={"warm_up": setting}, job={"master": "local[2]", "progress": False})
        result = run_cli_subprocess(predict_args(conf), probe_driver=True)
        assert result.code == 0, result.err[-2000:]
        runs[setting] = manifest_of(result)["scoring"], read_output(tmp_path / setting)
        # the warm-up is the smoke test: the driver never imports TensorFlow, not even in the background
        assert f"driver imported tensorflow: {setting == 'never'}" in result.out

    scoring, table = runs["auto"]
    assert scoring["partitions"] == 1 and scoring["warm_up"]["workers"] == 1
    assert scoring["warm_up"]["built"] == 1  # the warm-up job built it ...
    assert scoring["model_builds"] == 1  # ... and the scoring task did not build it again
    assert scoring["smoke_test"] == "warm-up"  # ... nor did the driver
    assert scoring["predictor"] == runs["never"][0]["predictor"] == "line_projection"
    assert runs["never"][0]["warm_up"] == {"workers": 0} and runs["never"][0]["model_builds"] == 1
    assert runs["never"][0]["smoke_test"] == "driver"
    assert table.num_rows == data[1] and close(by_key(table), by_key(runs["never"][1]))


def test_a_failed_warm_up_fails_the_run_before_scoring_after_the_driver_checked_the_model(spark, tmp_path,
                                                                                        redis_server, prefix, data):
    """The warm-up is the run's smoke test: when it fails for a reason that is not the model's (the driver's own
    check passes), its error stands and nothing is written. (In process: the shared local[2] session warms up
    too; the warm-up's fresh CLI process is the test above.)"""
    with worker_fault(spark, "fail:partition=warm-up"):
        result = run_cli(predict_args(job(tmp_path, redis_server, prefix, data)))

    assert result.code == errors.JobFailedError.exit_code, result.err[-3000:]
    assert "injected failure (SKOL_FAULT) in partition warm-up" in result.error_line
    assert "the warm-up job failed to build the model" in result.err and "checking it on the driver" in result.err
    assert_no_output(tmp_path / "out")


def test_a_hung_warm_up_is_cancelled_at_the_timeout_and_scoring_builds_the_model_itself(spark, tmp_path, redis_server,
                                                                                        prefix, data, clean):
    """In process, as the failed warm-up above. The timeout also bounds scoring, which starts a Python worker
    (TensorFlow import, model build) after the warm-up is cancelled: 20 s leaves it four times what it needs
    on a quiet machine, whose speed varies up to 3x."""
    conf = job(tmp_path, redis_server, prefix, data, job={"timeout_seconds": 20, "progress": False})
    with worker_fault(spark, "hang:partition=warm-up:seconds=600"):
        result = run_cli(predict_args(conf))

    assert result.code == 0, result.err[-3000:]
    assert "warm-up job did not finish within job.timeout_seconds=20" in result.err
    scoring = manifest_of(result)["scoring"]
    assert scoring["warm_up"]["built"] == 0 and scoring["model_builds"] == 1  # the scoring task built it
    assert scoring["smoke_test"] == "driver"  # and the driver checked the model before scoring started
    table = read_output(tmp_path / "out")
    assert table.num_rows == data[1] and close(by_key(table), by_key(clean[0]))
