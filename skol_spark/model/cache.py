"""Per-Python-worker model cache.

Why this works: Spark keeps Python workers alive between tasks
(``spark.python.worker.reuse``, on by default), and a module-level dict lives
as long as the worker process. The first batch a worker sees builds the model
(TensorFlow import, ``model_from_json``, golden check, tracing: seconds);
every later batch and task of the same model reuses it. Keyed by the
artifact's fingerprint, so a new model version never reuses an old model.
Spark stops a worker idle for longer than its idle timeout; the next task then
builds again (counted in the run manifest's ``model_builds``).
"""

from __future__ import annotations

import threading
from typing import Any, Callable

_lock = threading.Lock()
_cache: dict[str, Any] = {}


def get_or_build(key: str, build: Callable[[], Any]) -> tuple[Any, bool]:
    """Return ``(value, built_now)``; ``build`` runs at most once per key per process."""
    with _lock:
        if key in _cache:
            return _cache[key], False
        value = build()
        _cache.clear()  # one model per worker: a new version replaces the old one
        _cache[key] = value
        return value, True


def clear() -> None:
    with _lock:
        _cache.clear()
