"""SIGTERM handled like SIGINT: the run stops where it is, cleans up and records how it ended.

Python turns SIGINT into ``KeyboardInterrupt`` (and pyspark's SparkContext
cancels the running Spark jobs first). SIGTERM, what schedulers and ``kill``
send, ends the process at once by default: the output lock, the staging
directory and a manifest with no status or finish time stay behind.
``sigterm_interrupts`` makes SIGTERM cancel the Spark jobs and raise
``Terminated``, a ``KeyboardInterrupt``: every ``except Exception`` lets it
through and every ``finally`` runs (lock released, staging removed, manifest
written with status ``interrupted``), then the CLI exits 143 (130 for SIGINT).
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
def sigterm_interrupts() -> Iterator[None]:
    """While inside, SIGTERM raises ``Terminated`` (main thread only; elsewhere a no-op)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGTERM, _on_sigterm)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _on_sigterm(signum, frame) -> None:
    # One is enough: a second SIGTERM must not cut short the cleanup the first one started.
    signal.signal(signal.SIGTERM, _on_repeated_sigterm)
    _cancel_spark_jobs()
    raise Terminated("terminated by SIGTERM")


def _on_repeated_sigterm(signum, frame) -> None:
    log.warning("SIGTERM again: still cleaning up after the first one")


def _cancel_spark_jobs() -> None:
    """What pyspark's own SIGINT handler does: stop the JVM's jobs, so that the driver's wait returns."""
    pyspark = sys.modules.get("pyspark")
    sc = getattr(getattr(pyspark, "SparkContext", None), "_active_spark_context", None)
    if sc is None:
        return
    try:
        sc.cancelAllJobs()
    except Exception as e:  # the JVM may be gone already (SIGTERM to the whole process group)
        log.debug("cancelling Spark jobs on SIGTERM failed: %s", e)
