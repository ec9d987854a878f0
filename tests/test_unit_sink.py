"""Output naming, the lock and the publish/recover steps (``job/sink.py``) on the local filesystem, through
Hadoop's FileSystem API of the real session Spark (no job runs)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from skol_spark.errors import ConfigError, OutputLockedError
from skol_spark.job.sink import (STALE_LOCK_SECONDS, HadoopFS, OutputLock, OutputPaths, check_mode, publish, recover,
                                 split_path)


# ---- naming (no Spark) ---------------------------------------------------------------------------------

@pytest.mark.parametrize(("output", "parent", "base"), [
    ("/data/scored", "/data", "scored"), ("/data/scored/", "/data", "scored"), ("scored", ".", "scored"),
    ("hdfs://nn:8020/data/scored", "hdfs://nn:8020/data", "scored"), ("s3a://bucket/scored", "s3a://bucket", "scored"),
])
def test_split_path(output, parent, base):
    assert split_path(output) == (parent, base)


def test_output_paths_sit_beside_the_output_never_inside_it():
    p = OutputPaths("hdfs://nn/data/scored/", "20261207-1")
    assert p.staging == "hdfs://nn/data/.scored.skol-staging-20261207-1"
    assert p.old == "hdfs://nn/data/.scored.skol-old-20261207-1"
    assert p.lock == "hdfs://nn/data/.scored.skol-lock"  # one per output, whatever the run
    assert p.runs == "hdfs://nn/data/scored_runs"
    assert p.run_dir() == "hdfs://nn/data/scored_runs/20261207-1"
    assert p.partition_dir == "run_id=20261207-1"
    assert OutputPaths("hdfs://nn/data/scored", "other").lock == p.lock


# ---- the filesystem wrapper ----------------------------------------------------------------------------

@pytest.fixture
def fs(spark, tmp_path):
    return HadoopFS(spark, str(tmp_path))


def test_hadoop_fs_on_the_local_filesystem(fs, tmp_path):
    d = str(tmp_path / "a" / "b")
    assert not fs.exists(d) and fs.list(d) == []
    fs.mkdirs(d)
    fs.write(f"{d}/x.bin", b"\x00payload\xff")
    assert (tmp_path / "a" / "b" / "x.bin").read_bytes() == b"\x00payload\xff"
    assert fs.read(f"{d}/x.bin") == b"\x00payload\xff"
    fs.rename(d, str(tmp_path / "c"))
    assert fs.list(str(tmp_path / "c")) == ["x.bin"] and not fs.exists(d)
    fs.delete(str(tmp_path / "c"))
    assert not (tmp_path / "c").exists()


def test_create_new_creates_once(fs, tmp_path):
    path = str(tmp_path / "lock")
    assert fs.create_new(path, b"first") is True
    assert fs.create_new(path, b"second") is False
    assert (tmp_path / "lock").read_bytes() == b"first"


# ---- the lock ------------------------------------------------------------------------------------------

def test_lock_records_its_holder_and_refuses_a_second_run(fs, tmp_path):
    output = str(tmp_path / "out")
    lock = OutputLock(fs, OutputPaths(output, "run-a"))
    lock.acquire()
    holder = json.loads((tmp_path / ".out.skol-lock").read_text())
    assert holder["run_id"] == "run-a" and holder["pid"] == os.getpid() and holder["host"] == socket.gethostname()

    with pytest.raises(OutputLockedError, match=rf"output {output} is locked by run run-a \(host .*, pid "
                                                rf"{os.getpid()}[,)].* delete {tmp_path}/.out.skol-lock"):
        OutputLock(fs, OutputPaths(output, "run-b")).acquire()
    lock.release()
    assert not (tmp_path / ".out.skol-lock").exists()
    lock.release()  # a second release is harmless
    second = OutputLock(fs, OutputPaths(output, "run-b"))
    second.acquire()
    assert second.held and json.loads((tmp_path / ".out.skol-lock").read_text())["run_id"] == "run-b"


def write_holder(tmp_path: Path, **holder) -> None:
    body = {"run_id": "old-run", "host": socket.gethostname(), "pid": os.getpid(), "started": time.time(), **holder}
    (tmp_path / ".out.skol-lock").write_text(json.dumps(body))


def dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


@pytest.mark.parametrize("holder", [
    {"pid": "dead"},                                             # its driver on this host is gone
    {"started": time.time() - STALE_LOCK_SECONDS - 60, "host": "elsewhere"},  # too old, wherever it ran
], ids=["dead pid", "too old"])
def test_a_stale_lock_is_broken(fs, tmp_path, holder):
    write_holder(tmp_path, **{k: dead_pid() if v == "dead" else v for k, v in holder.items()})
    lock = OutputLock(fs, OutputPaths(str(tmp_path / "out"), "run-new"))
    lock.acquire()
    assert lock.held and json.loads((tmp_path / ".out.skol-lock").read_text())["run_id"] == "run-new"


def test_a_live_or_remote_holder_keeps_the_lock(fs, tmp_path):
    for holder in ({"pid": os.getpid()}, {"pid": dead_pid(), "host": "another-host"}):
        write_holder(tmp_path, **holder)
        with pytest.raises(OutputLockedError, match="locked by run old-run"):
            OutputLock(fs, OutputPaths(str(tmp_path / "out"), "run-new")).acquire()


# ---- publish and recover -------------------------------------------------------------------------------

def stage(tmp_path: Path, run_id: str, content: str = "rows") -> OutputPaths:
    paths = OutputPaths(str(tmp_path / "out"), run_id)
    run = Path(paths.staging) / paths.partition_dir
    run.mkdir(parents=True)
    (run / "part-0.parquet").write_text(content)
    (Path(paths.staging) / "_SUCCESS").write_text("")
    return paths


def listing(root: Path) -> list[str]:
    """Files and directories under ``root``; Hadoop's hidden ``.crc`` checksum files left out."""
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if not p.name.endswith(".crc"))


@pytest.mark.parametrize("mode", ["error", "overwrite"])
def test_publish_swaps_the_whole_output_in(fs, tmp_path, mode):
    if mode == "overwrite":
        (tmp_path / "out" / "run_id=old").mkdir(parents=True)
        (tmp_path / "out" / "run_id=old" / "part-0.parquet").write_text("old rows")
    paths = stage(tmp_path, "r1")
    publish(fs, paths, mode)
    assert listing(tmp_path / "out") == ["_SUCCESS", "run_id=r1", "run_id=r1/part-0.parquet"]
    assert (tmp_path / "out" / "run_id=r1" / "part-0.parquet").read_text() == "rows"
    assert sorted(os.listdir(tmp_path)) == ["out"]  # no staging, no moved-aside old output


@pytest.mark.parametrize("mode", ["append", "incremental"])
def test_publish_adds_one_run_directory_and_keeps_the_others(fs, tmp_path, mode):
    (tmp_path / "out" / "run_id=r0").mkdir(parents=True)
    (tmp_path / "out" / "run_id=r0" / "part-0.parquet").write_text("earlier rows")
    publish(fs, stage(tmp_path, "r1"), mode)
    assert listing(tmp_path / "out") == ["run_id=r0", "run_id=r0/part-0.parquet", "run_id=r1",
                                         "run_id=r1/part-0.parquet"]
    assert (tmp_path / "out" / "run_id=r0" / "part-0.parquet").read_text() == "earlier rows"
    assert sorted(os.listdir(tmp_path)) == ["out"]


def test_publish_of_an_empty_result_still_publishes_the_run(fs, tmp_path):
    paths = OutputPaths(str(tmp_path / "out"), "r1")
    (tmp_path / ".out.skol-staging-r1").mkdir()
    publish(fs, paths, "append")
    assert listing(tmp_path / "out") == ["run_id=r1"]


def test_recover_restores_an_output_moved_aside_and_drops_staging(fs, tmp_path):
    old = tmp_path / ".out.skol-old-dead-run"
    (old / "run_id=r0").mkdir(parents=True)
    (old / "run_id=r0" / "part-0.parquet").write_text("published rows")
    (tmp_path / ".out.skol-staging-dead-run" / "run_id=x").mkdir(parents=True)
    (tmp_path / ".other.skol-staging-y").mkdir()  # another output's: not ours to touch
    recover(fs, OutputPaths(str(tmp_path / "out"), "new-run"))
    assert (tmp_path / "out" / "run_id=r0" / "part-0.parquet").read_text() == "published rows"
    assert sorted(os.listdir(tmp_path)) == [".other.skol-staging-y", "out"]


def test_recover_drops_an_old_copy_when_the_output_is_in_place(fs, tmp_path):
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "new.parquet").write_text("new")
    (tmp_path / ".out.skol-old-r").mkdir()
    (tmp_path / ".out.skol-old-r" / "old.parquet").write_text("old")
    recover(fs, OutputPaths(str(tmp_path / "out"), "r2"))
    assert sorted(os.listdir(tmp_path)) == ["out"] and os.listdir(tmp_path / "out") == ["new.parquet"]


def test_check_mode_refuses_an_existing_output_in_error_mode_only(fs, tmp_path):
    output = str(tmp_path / "out")
    check_mode(fs, output, "error")  # absent
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "_SUCCESS").write_text("")
    (tmp_path / "out" / ".hidden").write_text("")
    check_mode(fs, output, "error")  # markers and hidden files are no data
    (tmp_path / "out" / "run_id=r0").mkdir()
    with pytest.raises(ConfigError, match=rf"output {output} already exists and output.mode is 'error'"):
        check_mode(fs, output, "error")
    for mode in ("overwrite", "append", "incremental"):
        check_mode(fs, output, mode)


def test_an_output_at_the_root_gets_single_slash_siblings():
    """``//.out...`` would be read by Hadoop as a host name: siblings of ``/out`` are ``/.out...``."""
    paths = OutputPaths("/out", "r")
    assert (paths.staging, paths.lock, paths.runs) == ("/.out.skol-staging-r", "/.out.skol-lock", "/out_runs")


class InterruptedOnce(HadoopFS):
    """The real local filesystem, with a signal landing at the first ``exists`` (as SIGTERM can, mid-cleanup)."""

    def __init__(self, spark, path: str) -> None:
        super().__init__(spark, path)
        self.armed = self.interrupted = False

    def exists(self, p: str) -> bool:
        if self.armed and not self.interrupted:
            self.interrupted = True
            raise KeyboardInterrupt("a signal during the release")
        return super().exists(p)


def test_a_signal_during_the_release_still_removes_the_lock_then_is_raised(spark, tmp_path):
    output = str(tmp_path / "out")
    paths = stage(tmp_path, "run-a")  # unpublished staging, as an interrupted run leaves it
    fs = InterruptedOnce(spark, output)
    lock = OutputLock(fs, paths)
    lock.acquire()
    fs.armed = True
    with pytest.raises(KeyboardInterrupt, match="during the release"):
        lock.release()
    assert fs.interrupted and not os.path.exists(paths.lock), "the lock is removed before the signal is raised"
    OutputLock(HadoopFS(spark, output), OutputPaths(output, "run-b")).acquire()  # the next run is not blocked
