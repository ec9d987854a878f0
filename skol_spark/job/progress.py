"""Driver-side progress and the job-level timeout, both as small background threads.

Progress polls the session's task counts (``job.services``: the status tracker
on a classic session, the progress handler on a Spark Connect one; no extra
Spark jobs, no accumulators): the scoring stage's finished tasks over all
tasks, scaled to the input's line count, gives lines done, a rate and an ETA. It writes to stderr, so stdout
stays machine-readable, and stays silent in quiet mode.
"""

from __future__ import annotations

import contextlib
import sys
import threading
import time
from typing import Callable, TextIO


class Progress:
    def __init__(self, services, *, total_lines: int, interval: float = 5.0, stream: TextIO | None = None,
                 enabled: bool = True) -> None:
        self.services = services
        self._stack = contextlib.ExitStack()
        self.tasks: Callable[[], tuple[int, int]] = lambda: (0, 0)
        self.total = total_lines
        self.interval = interval
        self.stream = stream or sys.stderr
        self.enabled = enabled
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="skol-progress", daemon=True)
        self.started = time.monotonic()

    def __enter__(self) -> "Progress":
        if self.enabled:
            # -> (finished, total) tasks over the active stages
            self.tasks = self._stack.enter_context(self.services.task_progress())
            self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=2)
        self._stack.close()

    def _run(self) -> None:
        last: tuple[int, int] | None = None
        quiet_ticks = 0
        while not self._stop.wait(self.interval):
            try:
                done, total = self.tasks()
            except Exception:  # the context is shutting down
                return
            quiet_ticks += 1
            if (done, total) == last and quiet_ticks < 6:
                continue  # say something when tasks finish, else every ~30 s
            last, quiet_ticks = (done, total), 0
            elapsed = time.monotonic() - self.started
            frac = done / total if total else 0.0
            lines = int(frac * self.total)
            if lines:
                rate = lines / elapsed
                eta = (self.total - lines) / rate
                text = f"~{lines:,}/{self.total:,} lines ({frac:.0%}), {rate:,.0f} lines/s, ETA {eta:,.0f}s"
            else:
                text = f"0/{self.total:,} lines, {elapsed:,.0f}s elapsed, waiting for the first tasks"
            self.stream.write(f"[skol-spark] scoring: tasks {done}/{total}, {text}\n")
            self.stream.flush()


class Timeout:
    """Cancel all Spark jobs after ``seconds`` (0 = never); ``fired`` tells the caller why they failed."""

    def __init__(self, services, seconds: float) -> None:
        self.services = services
        self.seconds = seconds
        self.fired = threading.Event()
        self._timer: threading.Timer | None = None

    def __enter__(self) -> "Timeout":
        if self.seconds > 0:
            self._timer = threading.Timer(self.seconds, self._fire)
            self._timer.daemon = True
            self._timer.start()
        return self

    def _fire(self) -> None:
        self.fired.set()
        self.services.cancel_all()

    def __exit__(self, *exc: object) -> None:
        if self._timer is not None:
            self._timer.cancel()
