"""Fault matrix, output rows (docs/reliability-rows-hard-run.md): where a run writes, its lock, its ending.

Every row runs the real CLI (in process on the shared local Spark session, or
in a subprocess where a signal or a fresh JVM is the point) and checks the
exit code, the message, and that nothing was written or deleted: the input
byte-for-byte unchanged, no lock or staging left beside the output.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import time
import uuid
from pathlib import Path

import pyarrow as pa
import pytest

from skol_spark import errors
from skol_spark.store.model_store import ModelStore
from tests.fault_tools import kill_group, predict_args, run_cli, run_cli_subprocess
from tests.helpers import (LABELS, assert_no_output, documents_table, keys_of, make_documents, read_output, run_manifests,
                           tree_digest,
                           write_config, write_table)

MODEL = "fo"


@pytest.fixture(scope="module")
def prefix(redis_client, closure_model):
    prefix = f"fo{uuid.uuid4().hex[:6]}"
    ModelStore(redis_client, prefix=prefix).publish(closure_model, MODEL, labels=LABELS, aliases=["production"])
    return prefix


@pytest.fixture
def data(tmp_path):
    """A small input of this test's own: a refused run must leave it byte-for-byte as it was."""
    path = tmp_path / "lines"
    return path, write_table(path, documents_table(make_documents("d", 12, seed=5)))


def job(tmp_path: Path, redis_server, prefix, input_path, output_path, *, mode="error", name="job.yaml",
        **sections):
    return write_config(tmp_path / name, redis_url=redis_server.url, prefix=prefix, model=MODEL,
                        input_path=input_path, output_path=output_path, mode=mode, **sections)


def leftovers(directory: Path) -> list[str]:
    """Locks, staging or moved-aside outputs a run left beside its output."""
    return sorted(p.name for p in directory.iterdir() if ".skol-" in p.name)


def driver_traceback(err: str) -> bool:
    """A Python traceback printed by the CLI process itself (they start a line)."""
    return any(line.startswith("Traceback (most recent call last)") for line in err.splitlines())


# ---- item 1: the output over the input, and written locations over each other ----------------------------
OVERLAPS = {  # name: (output as written, given the input path; output.mode)
    "same-overwrite": (lambda i: str(i), "overwrite"),
    "same-append-trailing-slash": (lambda i: f"{i}/", "append"),
    "same-file-prefix": (lambda i: f"file:{i}", "overwrite"),
    "same-dotdot": (lambda i: f"{i.parent}/x/../{i.name}", "overwrite"),
    "output-inside-input": (lambda i: f"{i}/scored", "append"),
    "input-inside-output": (lambda i: str(i.parent), "overwrite"),
    "symlink-to-input": (lambda i: str(i.parent / "alias"), "overwrite"),
}


@pytest.mark.parametrize("case", sorted(OVERLAPS))
def test_output_overlapping_input_is_refused(spark, tmp_path, redis_server, prefix, data, case):
    spell, mode = OVERLAPS[case]
    input_path = data[0]
    (tmp_path / "alias").symlink_to(input_path)
    output = spell(input_path)
    conf = job(tmp_path, redis_server, prefix, input_path, output, mode=mode)
    before = tree_digest(tmp_path)

    result = run_cli(predict_args(conf))

    assert result.code == errors.ConfigError.exit_code, result.err[-2000:]
    assert f"input.path {input_path} " in result.error_line and f"output.path {output} " in result.error_line
    assert "nothing was written" in result.error_line
    assert tree_digest(tmp_path) == before  # the input, and everything beside it, byte-for-byte as it was
    assert leftovers(tmp_path) == [] and not Path(f"{tmp_path}/out_runs").exists()


WRITE_OVERLAPS = {  # name: (config sections, the two settings the message must name)
    "quarantine-inside-output": ({"scoring": {"bad_input": "quarantine", "quarantine_path": "{out}/bad"}},
                                 ("output.path", "scoring.quarantine_path")),
    "quarantine-is-input": ({"scoring": {"bad_input": "quarantine", "quarantine_path": "{inp}"}},
                            ("input.path", "scoring.quarantine_path")),
    "manifests-inside-output": ({"output": {"manifest_path": "{out}/runs"}}, ("output.path", "output.manifest_path")),
    "output-inside-manifests": ({"output": {"manifest_path": "{res}"}}, ("output.path", "output.manifest_path")),
    "manifests-inside-input": ({"output": {"manifest_path": "{inp}/runs"}}, ("input.path", "output.manifest_path")),
}


@pytest.mark.parametrize("case", sorted(WRITE_OVERLAPS))
def test_write_locations_overlapping_each_other_are_refused(spark, tmp_path, redis_server, prefix, data, case):
    sections, named = WRITE_OVERLAPS[case]
    out = tmp_path / "res" / "out"
    fill = {"out": str(out), "inp": str(data[0]), "res": str(out.parent)}
    sections = {s: {k: v.format(**fill) for k, v in values.items()} for s, values in sections.items()}
    sections["output"] = {"path": str(out), "report": False, **sections.get("output", {})}
    conf = job(tmp_path, redis_server, prefix, data[0], out, **sections)
    before = tree_digest(tmp_path)

    result = run_cli(predict_args(conf))

    assert result.code == errors.ConfigError.exit_code, result.err[-2000:]
    for key in named:
        assert key in result.error_line, result.error_line
    assert "overlap" in result.error_line or "same location" in result.error_line
    assert tree_digest(tmp_path) == before and leftovers(tmp_path) == []


# ---- item 2: a path Hadoop cannot handle; nothing after the publish fails the run --------------------------
@pytest.mark.parametrize("mode", ["error", "append"])
def test_output_path_hadoop_cannot_handle_is_refused_before_scoring(spark, tmp_path, redis_server, prefix, data,
                                                                   mode):
    output = tmp_path / "scored-2026-12-07T02:30"
    conf = job(tmp_path, redis_server, prefix, data[0], output, mode=mode)
    before = tree_digest(tmp_path)

    result = run_cli(predict_args(conf))

    assert result.code == errors.ConfigError.exit_code, result.err[-2000:]
    assert f"output.path {output}" in result.error_line and "contains ':'" in result.error_line
    assert "'scored-2026-12-07T0230'" in result.error_line  # the fix, spelled out
    assert tree_digest(tmp_path) == before and not output.exists() and leftovers(tmp_path) == []


def _chattr(flag: str, path: Path) -> bool:
    return subprocess.run(["chattr", flag, str(path)], capture_output=True).returncode == 0 \
        if shutil.which("chattr") else False


def test_cleanup_failure_after_publish_is_a_warning_not_a_failure(spark, tmp_path, redis_server, prefix, data):
    """An overwrite publishes, then cannot delete the earlier output it moved aside (a file in it is
    immutable: a real failing delete): the run succeeds, its manifest says so and records the warning."""
    out = tmp_path / "out"
    conf = job(tmp_path, redis_server, prefix, data[0], out, mode="overwrite")
    first = run_cli(predict_args(conf))
    assert first.code == 0, first.err[-2000:]
    pinned = next(out.rglob("*.parquet"))
    if not _chattr("+i", pinned):
        pytest.skip("chattr +i is not available here (needs root and an ext2/3/4-like file system)")
    try:
        second = run_cli(predict_args(conf))
    finally:
        moved = [p for p in tmp_path.rglob(pinned.name)]
        for p in moved:
            _chattr("-i", p)

    assert second.code == 0, second.err[-2000:]
    table = read_output(out)
    assert table.num_rows == data[1] and len(set(table.column("run_id").to_pylist())) == 1  # only the new run
    last = [m for m in run_manifests(out) if m["run_id"] == table.column("run_id")[0].as_py()][0]
    assert last["status"] == "succeeded" and last["exit_code"] == 0 and last["published"] is True
    assert any("moved aside" in w and "could not" in w for w in last["warnings"]), last.get("warnings")
    assert [p.parent.parent.name for p in moved if p.parent.parent != out] == \
        [n for n in leftovers(tmp_path) if ".skol-old-" in n]  # the leftover is the one it reported
    assert not (tmp_path / ".out.skol-lock").exists()
    rerun = run_cli(predict_args(conf))  # the next run removes the leftover (now deletable) and publishes
    assert rerun.code == 0 and leftovers(tmp_path) == [], rerun.err[-2000:]


# ---- item 3: a lock nobody holds ------------------------------------------------------------------------
@contextlib.contextmanager
def full_disk(directory: Path, size: str = "2m"):
    """A real small file system (tmpfs), filled up: writes fail with ENOSPC, creating an empty file works."""
    directory.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(directory)],
                      capture_output=True).returncode:
        pytest.skip("cannot mount a tmpfs here (needs root)")
    try:
        filler = directory / "filler"
        with open(filler, "wb", buffering=0) as f, contextlib.suppress(OSError):
            while True:
                f.write(b"\0" * 65536)
                f.flush()
        yield filler
    finally:
        subprocess.run(["umount", "-l", str(directory)], capture_output=True)


def test_lock_is_complete_or_absent_when_the_disk_is_full(spark, tmp_path, redis_server, prefix, data):
    disk = tmp_path / "disk"
    with full_disk(disk) as filler:
        out = disk / "out"
        conf = job(tmp_path, redis_server, prefix, data[0], out, mode="append")

        result = run_cli(predict_args(conf))

        assert result.code == errors.JobFailedError.exit_code, result.err[-2000:]
        assert f"cannot create the output lock {disk}/.out.skol-lock" in result.error_line
        assert "No space left on device" in result.error_line and "Nothing was written" in result.error_line
        # no lock, not even an empty one, and no output (the failed run's manifest could not be written either)
        assert [p for p in disk.rglob("*") if p.is_file()] == [filler] and not out.exists()

        filler.unlink()  # space again: the next run is not locked out
        rerun = run_cli(predict_args(conf))

        assert rerun.code == 0, rerun.err[-2000:]
        assert read_output(out).num_rows == data[1] and leftovers(disk) == []


LOCKS = {"empty": b"", "garbage": b"\x00\xff not json", "truncated": b'{"run_id": "x", "ho',
         "not-a-record": b"[1, 2]"}


@pytest.mark.parametrize("content", sorted(LOCKS))
def test_unreadable_lock_is_broken_by_the_same_rules(spark, tmp_path, content):
    """A lock without a holder record (disk full mid-write, an older version): fresh, it blocks (a run may be
    writing it); once older than INCOMPLETE_LOCK_SECONDS by its mtime, it is broken; a day old, always."""
    from skol_spark.job.sink import INCOMPLETE_LOCK_SECONDS, HadoopFS, OutputLock, OutputPaths

    out = str(tmp_path / "out")
    lock_file = tmp_path / ".out.skol-lock"
    lock_file.write_bytes(LOCKS[content])
    lock = OutputLock(HadoopFS(spark, out), OutputPaths(out, "mine"))

    with pytest.raises(errors.OutputLockedError) as locked:
        lock.acquire()
    assert "a lock file that holds no holder record" in str(locked.value) and str(lock_file) in str(locked.value)
    assert lock_file.read_bytes() == LOCKS[content]

    old = time.time() - INCOMPLETE_LOCK_SECONDS - 5
    os.utime(lock_file, (old, old))
    lock.acquire()
    assert lock.held and json.loads(lock_file.read_bytes())["run_id"] == "mine"
    lock.release()
    assert not lock_file.exists()


def test_unreadable_lock_left_by_a_crash_does_not_lock_the_output_forever(spark, tmp_path, redis_server, prefix,
                                                                         data):
    out = tmp_path / "out"
    conf = job(tmp_path, redis_server, prefix, data[0], out, mode="append")
    lock_file = tmp_path / ".out.skol-lock"
    lock_file.write_bytes(b"")
    blocked = run_cli(predict_args(conf))
    assert blocked.code == errors.OutputLockedError.exit_code, blocked.err[-2000:]
    assert f"delete {lock_file}" in blocked.error_line and "holds no holder record" in blocked.error_line

    old = time.time() - 3600
    os.utime(lock_file, (old, old))  # what a crash an hour ago leaves
    result = run_cli(predict_args(conf))

    assert result.code == 0, result.err[-2000:]
    assert read_output(out).num_rows == data[1] and not lock_file.exists()
    assert any("breaking the output lock" in w for w in run_manifests(out)[-1]["warnings"])


# ---- item 13: a file where the output goes; signals ------------------------------------------------------
@pytest.mark.parametrize("mode", ["append", "incremental"])
def test_output_path_that_is_a_file_is_refused_before_scoring(spark, tmp_path, redis_server, prefix, data, mode):
    out = tmp_path / "out"
    out.write_bytes(b"someone's file")
    conf = job(tmp_path, redis_server, prefix, data[0], out, mode=mode)
    before = tree_digest(tmp_path)

    result = run_cli(predict_args(conf))

    assert result.code == errors.ConfigError.exit_code, result.err[-2000:]
    assert f"output.path {out} is an existing file" in result.error_line
    assert tree_digest(tmp_path) == before and leftovers(tmp_path) == []


def test_output_below_a_file_is_refused_before_scoring(spark, tmp_path, redis_server, prefix, data):
    (tmp_path / "file").write_bytes(b"x")
    out = tmp_path / "file" / "out"
    result = run_cli(predict_args(job(tmp_path, redis_server, prefix, data[0], out, mode="append")))
    assert result.code == errors.ConfigError.exit_code, result.err[-2000:]
    assert f"{tmp_path}/file is a file" in result.error_line


@pytest.mark.parametrize("sig", ["SIGTERM", "SIGINT"])
def test_signal_mid_run_is_recorded_and_cleaned_up(tmp_path, redis_server, prefix, data, sig):
    """SIGTERM to the driver (``kill``, a scheduler) or SIGINT to the process group (Ctrl-C in a terminal)
    while the scoring job runs: exit 143 / 130, manifest ``interrupted`` with exit code and finish time,
    lock released, staging removed, no pre-started worker's directory left in the temp dir."""
    out, temp = tmp_path / "out", tmp_path / "tmp"
    temp.mkdir()
    conf = job(tmp_path, redis_server, prefix, data[0], out, mode="append",
               job={"master": "local[2]", "progress": False})
    proc = run_cli_subprocess(predict_args(conf), background=True,
                              env={"SKOL_FAULT": "hang:partition=0:seconds=300", "TMPDIR": str(temp)})
    try:
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline and proc.poll() is None and not list(tmp_path.glob(".out.skol-staging-*")):
            time.sleep(0.3)
        assert proc.poll() is None, f"the run ended before the write stage: {proc.communicate()[1][-3000:]}"
        time.sleep(1)  # inside the scoring job, its task hanging
        if sig == "SIGTERM":
            os.kill(proc.pid, signal.SIGTERM)
        else:
            os.killpg(proc.pid, signal.SIGINT)
        _, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            kill_group(proc)

    assert proc.returncode == {"SIGTERM": 143, "SIGINT": 130}[sig], err[-3000:]
    # no driver traceback (after SIGINT to the group, Spark's log quotes the interrupted Python worker's)
    assert not driver_traceback(err) and "skol-spark: interrupted" in err
    (manifest,) = run_manifests(out)
    assert manifest["status"] == "interrupted" and manifest["exit_code"] == proc.returncode
    assert manifest["finished_at"] and manifest["published"] is False
    assert leftovers(tmp_path) == [], f"lock and staging are removed: {err[-3000:]}"
    assert_no_output(out)
    assert not list(temp.glob("skol-spark-worker-*"))


def test_signal_after_publish_keeps_the_run_succeeded(tmp_path, redis_server, prefix, data):
    """A SIGTERM once the rows are published (the report is being written): the run is a success, so a
    scheduler does not retry it and append every row a second time."""
    out = tmp_path / "out"
    docs = documents_table(make_documents("d", 12, seed=5))
    labels = pa.array([n % len(LABELS) for n in docs.column("line_number").to_pylist()], pa.int32())
    write_table(tmp_path / "labelled", docs.append_column("label", labels))  # true labels: the report has work
    conf = job(tmp_path, redis_server, prefix, tmp_path / "labelled", out, mode="append",
               input={"path": str(tmp_path / "labelled"), "label_col": "label"},
               output={"path": str(out), "report": True}, job={"master": "local[2]", "progress": False})
    proc = run_cli_subprocess(predict_args(conf), background=True)
    try:
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline and proc.poll() is None and not list(out.glob("run_id=*")):
            time.sleep(0.01)
        if proc.poll() is not None:
            pytest.fail(f"the run ended before the signal could land after its publish: {proc.communicate()[1][-2000:]}")
        os.kill(proc.pid, signal.SIGTERM)
        _, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            kill_group(proc)

    assert proc.returncode == 0 and not driver_traceback(err), err[-3000:]
    (manifest,) = run_manifests(out)
    assert manifest["status"] == "succeeded" and manifest["published"] is True
    assert any("published and complete" in w and "Terminated" in w for w in manifest["warnings"])
    table = read_output(out)
    assert table.num_rows == data[1] and len(set(keys_of(table))) == data[1]
    assert leftovers(tmp_path) == []
