"""Test-only fault injection, triggered by an environment variable on executors.

``SKOL_FAULT="crash:partition=1:attempt=0"`` makes the Python worker exit
abruptly when it starts that partition on that attempt (``*`` matches any;
``partition=warm-up`` is the warm-up job's task, ``partition=prestart`` the CLI's pre-started
worker before it takes a connection);
``hang`` sleeps instead (``seconds=N``), ``fail`` raises, ``oom`` raises MemoryError.
Several specs may be joined with commas. Absent the variable this is a no-op,
so production runs pay one dict lookup per partition.
"""

from __future__ import annotations

import os
import time


def maybe_inject(partition: int | str, attempt: int) -> None:
    specs = os.environ.get("SKOL_FAULT")
    if not specs:
        return
    for spec in specs.split(","):  # several faults: "crash:partition=0:attempt=0,oom:partition=1:attempt=0"
        _inject(spec.strip(), partition, attempt)


def _inject(spec: str, partition: int | str, attempt: int) -> None:
    kind, *conds = spec.split(":")
    want = dict(c.split("=", 1) for c in conds if "=" in c)
    if want.get("partition", "*") not in ("*", str(partition)) or want.get("attempt", "*") not in ("*", str(attempt)):
        return
    if kind == "crash":
        os._exit(13)
    if kind == "hang":
        time.sleep(float(want.get("seconds", "3600")))
    if kind == "oom":
        bytearray(1 << 60)  # MemoryError, as when a worker exceeds its memory limit
    if kind == "fail":
        raise RuntimeError(f"injected failure (SKOL_FAULT) in partition {partition}, attempt {attempt}")
