"""The output lock: one run at a time writes an output; a lock whose holder is gone is broken.

A lock file beside the output (``.<name>.skol-lock``) holds the holder's run
id, host, pid and start time. It is created whole or not at all
(``HadoopFS.create_new``), so a full disk cannot leave an empty lock that no
rule could read.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import socket
import time

from skol_spark.errors import JobFailedError, OutputLockedError
from skol_spark.job.hadoop_fs import HadoopFS, first_line

SETTLE_SECONDS = 8.0  # how long a removed staging directory must stay gone: a cancelled Python task is killed
# after Spark's poll and spark.python.task.killTimeout, and only then aborts its writer
JOBS_STOP_SECONDS = 30  # how long an interrupted run waits for its cancelled Spark jobs before cleaning up

log = logging.getLogger(__name__)

STALE_LOCK_SECONDS = 24 * 3600
# A lock without a holder record was never completed (ours are written whole, then linked into place):
# older than this, no run can still be writing it.
INCOMPLETE_LOCK_SECONDS = 60


class OutputLock:
    """An exclusive lock file beside the output: holder, host, pid and start time inside.

    A lock is complete or absent (``HadoopFS.create_new``). One that blocks a
    run is broken when its holder is provably gone: a driver on this host
    whose pid no longer runs, a lock older than ``STALE_LOCK_SECONDS``, or a
    file without a holder record (left by a crash mid-write, by an older
    version) older than ``INCOMPLETE_LOCK_SECONDS``; ages of unreadable locks
    come from the file's modification time.
    """

    def __init__(self, fs: HadoopFS, paths) -> None:  # paths: sink.OutputPaths
        self.fs, self.paths, self.held = fs, paths, False

    def acquire(self) -> None:
        """Take the lock or raise OutputLockedError (32); JobFailedError (30) when it cannot be written."""
        body = json.dumps({"run_id": self.paths.run_id, "host": socket.gethostname(), "pid": os.getpid(),
                           "started": time.time()}).encode()
        if self._create(body):
            return
        holder = self._holder()
        reason = _stale_reason(holder) if holder is not None else "gone"
        if reason:
            if holder is not None:
                log.warning("breaking the output lock %s: %s (%s)", self.paths.lock, reason, _describe(holder))
                try:
                    self._remove(self.paths.lock)
                except Exception as e:
                    raise JobFailedError(f"cannot remove the stale output lock {self.paths.lock}: {first_line(e)}; "
                                         "delete it by hand. Nothing was written") from None
            if self._create(body):
                return
            holder = self._holder() or {}
        raise OutputLockedError(
            f"output {self.paths.output} is locked by {_describe(holder)}. Two runs must not write the same "
            f"output: wait for it, or if no run is writing, delete {self.paths.lock}")

    def _create(self, body: bytes) -> bool:
        try:
            self.fs.mkdirs(self.paths.lock.rsplit("/", 1)[0] or "/")
            self.held = self.fs.create_new(self.paths.lock, body)
        except Exception as e:  # a full disk, a read-only or unreachable filesystem: nothing was written
            raise JobFailedError(
                f"cannot create the output lock {self.paths.lock}: {first_line(e)}. Nothing was written; make "
                "the output's filesystem writable (free space, permissions) and rerun") from None
        return self.held

    def _holder(self) -> dict | None:
        """The lock's holder record; for a lock without one, ``unreadable`` says why and ``started`` is the
        file's modification time. None when the lock is gone."""
        try:
            status = self.fs.status(self.paths.lock)
        except Exception:
            status = None
        if status is None:
            return None
        try:
            record = json.loads(self.fs.read(self.paths.lock) or b"null")
            if isinstance(record, dict):
                float(record.get("started"))
                return record
            problem = "holds no holder record (empty or not JSON)"
        except (ValueError, TypeError):
            problem = "holds no holder record (empty or not JSON)"
        except Exception as e:
            problem = f"cannot be read ({first_line(e)})"
        return {"unreadable": problem, "started": status.getModificationTime() / 1000.0}

    def release(self) -> None:
        """Remove this run's unpublished staging, then the lock. Raises no error: it runs after a publish (a
        failure here must not report published rows as failed, inviting a retry that writes them twice) and
        after errors (which it must not hide). A signal (KeyboardInterrupt) that lands in here is raised
        again once both steps ran, so that it does not skip the lock's removal. A lock left behind is broken
        by the next run (dead pid)."""
        if not self.held:
            return
        self.held = False
        interrupt = None
        for step in (self._discard_staging, self._remove_lock):
            try:
                step()
            except KeyboardInterrupt as e:  # SIGINT, or SIGTERM (cli.signals.Terminated)
                interrupt = interrupt or e
        if interrupt is not None:
            raise interrupt

    def _discard_staging(self) -> None:
        discard_staging(self.fs, self.paths)

    def _remove_lock(self) -> None:
        try:
            self._remove(self.paths.lock)
        except Exception as e:
            log.warning("could not remove the output lock %s: %s. The next run on this host breaks it (this "
                        "process will be gone), or delete it by hand", self.paths.lock, first_line(e))

    def _remove(self, lock: str) -> None:
        local = self.fs.local_path(lock)  # created without Hadoop on a local disk: removed alike
        if local is None:
            self.fs.remove(lock)
            return
        with contextlib.suppress(FileNotFoundError):
            os.unlink(local)
        checksum = os.path.join(os.path.dirname(local), f".{os.path.basename(local)}.crc")
        with contextlib.suppress(FileNotFoundError):
            os.unlink(checksum)


def _stale_reason(holder: dict) -> str:
    """Why a lock may be broken, or "" while its holder may still be running."""
    age = time.time() - float(holder.get("started") or 0)
    if age > STALE_LOCK_SECONDS:
        return f"older than {STALE_LOCK_SECONDS / 3600:g} h"
    if "unreadable" in holder and "no holder record" in holder["unreadable"] and age > INCOMPLETE_LOCK_SECONDS:
        return f"it {holder['unreadable']} and is {age:.0f} s old: no run completed it"
    if _holder_died(holder):
        return "its driver's process no longer runs on this host"
    return ""


def _describe(holder: dict) -> str:
    started = time.ctime(float(holder.get("started") or 0))
    if "unreadable" in holder:
        return f"a lock file that {holder['unreadable']}, last modified {started}"
    return (f"run {holder.get('run_id', '?')} (host {holder.get('host', '?')}, pid {holder.get('pid', '?')}, "
            f"since {started})")


def _holder_died(holder: dict) -> bool:
    """True when the lock's driver ran on this host and its process is gone (a killed run)."""
    if holder.get("host") != socket.gethostname():
        return False
    try:
        os.kill(int(holder.get("pid", 0)), 0)
    except ProcessLookupError:
        return True
    except (PermissionError, ValueError, TypeError, OSError):
        return False
    return False


def discard_staging(fs: HadoopFS, paths) -> None:
    """Remove this run's staging directory, if any, once its Spark jobs (cancelled by an interrupt) stopped
    writing into it. Never raises: the next run's ``recover`` removes what is left."""
    try:
        if not fs.exists(paths.staging):
            return
        spark = getattr(fs, "spark", None)  # a LocalFS (Spark Connect) has none: interrupts are synchronous there
        if spark is None:
            fs.remove(paths.staging)
            return
        tracker = spark.sparkContext.statusTracker()
        deadline = time.monotonic() + JOBS_STOP_SECONDS
        while list(tracker.getActiveJobsIds()) and time.monotonic() < deadline:
            time.sleep(0.2)
        _remove_until_quiet(fs, paths.staging, deadline + SETTLE_SECONDS)
    except Exception as e:
        log.warning("could not remove the staging directory %s: %s (the next run removes it)", paths.staging,
                    first_line(e))


def _remove_until_quiet(fs: HadoopFS, path: str, deadline: float) -> None:
    """Remove ``path``, and again whenever it reappears, until it stays gone ``SETTLE_SECONDS`` (or ``deadline``).

    A cancelled job leaves the active list before its killed tasks have
    closed their files, and closing a file on a local filesystem writes its
    checksum beside it, recreating the directory just removed."""
    fs.remove(path)
    quiet_since = time.monotonic()
    while time.monotonic() < deadline and time.monotonic() - quiet_since < SETTLE_SECONDS:
        time.sleep(0.25)
        if fs.exists(path):
            fs.remove(path)
            quiet_since = time.monotonic()
