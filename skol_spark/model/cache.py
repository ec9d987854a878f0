"""Per-Python-worker model cache.

Why this works: Spark keeps Python workers alive between tasks
(``spark.python.worker.reuse``, on by default), and a module-level dict lives
as long as the worker process. The first batch a worker sees builds the model
(TensorFlow import, ``model_from_json``, golden check, tracing: seconds);
every later batch and task of the same model reuses it. Keyed by the
artifact's fingerprint, so a new model version never reuses an old model.
"""

from __future__ import annotations

import threading
from typing import Any, Callable

_lock = threading.Lock()
_cache: dict[str, Any] = {}
_ahead: dict[str, bool] = {}  # built ahead of any task (worker_prestart) -> reported by a task yet


def get_or_build(key: str, build: Callable[[], Any]) -> tuple[Any, bool]:
    """Return ``(value, built_now)``; ``build`` runs at most once per key per process. A value built
    ahead (``build_ahead``) counts as built by the first task that gets it, so builds are counted once."""
    with _lock:
        if key in _cache:
            first = _ahead.get(key) is False  # the first task to get a value built ahead reports the build
            if first:
                _ahead[key] = True
            return _cache[key], first
        value = build()
        _store(key, value)
        return value, True


def build_ahead(key: str, build: Callable[[], Any]) -> None:
    """Build before any task asks (the pre-started worker, while the JVM plans the warm-up)."""
    with _lock:
        if key not in _cache:
            _store(key, build())
            _ahead[key] = False


def built_ahead(key: str) -> bool:
    """Whether the cached value for ``key`` was built before any task asked (the run manifest)."""
    with _lock:
        return key in _ahead


def _store(key: str, value: Any) -> None:
    _cache.clear()  # one model per worker: a new version replaces the old one
    _ahead.clear()
    _cache[key] = value


def clear() -> None:
    with _lock:
        _cache.clear()
        _ahead.clear()
