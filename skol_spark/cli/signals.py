"""SIGTERM handled like SIGINT: the run stops where it is, cleans up and records how it ended.

Python turns SIGINT into ``KeyboardInterrupt`` (and pyspark's SparkContext
cancels the running Spark jobs first). SIGTERM, what schedulers and ``kill``
send, ends the process at once by default: the output lock, the staging
directory and a manifest with no status or finish time stay behind.
``interrupts`` makes SIGTERM cancel the Spark jobs and raise ``Terminated``,
a ``KeyboardInterrupt``: every ``except Exception`` lets it through and every
``finally`` runs (lock released, staging removed, manifest written with
status ``interrupted``), then the CLI exits 143 (130 for SIGINT, which gets
the same job cancellation).
"""

from __future__ import annotations

import contextlib
import logging
import signal
import sys
import threading
from typing import Iterator

log = logging.getLogger(__name__)


class Terminated(KeyboardInterrupt):
    """Raised in the main thread when the process receives SIGTERM."""

    exit_code = 143


def exit_code(interrupt: KeyboardInterrupt) -> int:
    return getattr(interrupt, "exit_code", 130)


@contextlib.contextmanager
def interrupts() -> Iterator[None]:
    """While inside, SIGTERM and SIGINT cancel the Spark jobs and raise ``Terminated`` / ``KeyboardInterrupt``
    in the main thread (elsewhere a no-op). See ``reclaim_sigint`` once a SparkContext started."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {sig: signal.signal(sig, _on_signal) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def reclaim_sigint() -> None:
    """Take SIGINT back from the SparkContext just started, inside ``interrupts``.

    pyspark installs its own SIGINT handler when a SparkContext starts; it
    asks the JVM to cancel the jobs through the main thread's py4j
    connection, which is busy waiting for the very job to cancel: the call
    fails and the job runs on until the session stops.
    """
    if threading.current_thread() is threading.main_thread() and signal.getsignal(signal.SIGTERM) is _on_signal:
        signal.signal(signal.SIGINT, _on_signal)


def _on_signal(signum, frame) -> None:
    if signum == signal.SIGTERM:  # one is enough: a second must not cut short the cleanup the first started
        signal.signal(signal.SIGTERM, _on_repeated_sigterm)
    _cancel_spark_jobs()
    if signum == signal.SIGTERM:
        raise Terminated("terminated by SIGTERM")
    raise KeyboardInterrupt()


def _on_repeated_sigterm(signum, frame) -> None:
    log.warning("SIGTERM again: still cleaning up after the first one")


def _cancel_spark_jobs() -> None:
    """Ask the JVM to cancel every job, from a thread of its own (its own py4j connection: the main thread's
    is waiting for the job), so that the driver's wait ends and cleanup can remove what the job wrote."""
    pyspark = sys.modules.get("pyspark")
    sc = getattr(getattr(pyspark, "SparkContext", None), "_active_spark_context", None)
    if sc is not None:
        threading.Thread(target=_cancel, args=(sc,), name="skol-cancel-jobs", daemon=True).start()


def _cancel(sc) -> None:
    try:
        sc.cancelAllJobs()
    except Exception as e:  # the JVM may be gone already (SIGTERM to the whole process group)
        log.debug("cancelling Spark jobs after a signal failed: %s", e)
