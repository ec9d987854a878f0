"""Writing one version so that readers see all of it or none of it.

Two steps. The payloads (architecture, weight and extra chunks) go first, in
one pipeline, under keys nobody reads yet, while ``pending`` records when the
publish started. Then one MULTI/EXEC (``commit_version``) writes the manifest,
adds the version to ``versions`` and moves the aliases: that transaction is
the moment of publication. A publish killed between the steps leaves only
unread keys, which ``store.gc`` finds by the ``pending`` marker; a publish
whose marker gc already removed refuses to commit.
"""

from __future__ import annotations

import json
import logging
from typing import Any, Iterable, Mapping, Sequence

from skol_spark.errors import ModelStoreError
from skol_spark.model.artifact import sha256
from skol_spark.store.chunks import queue_chunks
from skol_spark.store.gc import server_time

log = logging.getLogger(__name__)


def with_pipeline(extras: Mapping[str, bytes] | None, source: str | bytes | None, features: int,
                  modules: Sequence[str]) -> tuple[dict[str, bytes], dict[str, Any] | None]:
    """The extras plus the packed feature pipeline, and its manifest summary (None without one)."""
    if source is None:
        return dict(extras or {}), None
    from skol_spark.store import pipeline

    packed, summary = pipeline.prepare(source, features, allowed_modules=modules)
    return {**(extras or {}), pipeline.EXTRA: packed}, summary


def write_version(store, name: str, manifest: dict[str, Any], architecture: str, weights: bytes,
                  extras: Mapping[str, bytes], aliases: Iterable[str]) -> int:
    """Take the next version number, write the payloads, then commit; returns the version.

    ``manifest`` gets the version number, the chunk counts and the extras' checksums here.
    """
    version = int(store._call(store.client.incr, store._key(name, "next")))
    manifest["version"] = version
    started = int(server_time(store))  # gc ages the publish by the same clock
    store._call(store.client.hset, store._key(name, "pending"), str(version), started)
    pipe = store.client.pipeline(transaction=False)
    pipe.set(store._vkey(name, version, "architecture"), architecture)
    manifest["weights"]["chunks"] = queue_chunks(store, pipe, name, version, "weights", weights)
    manifest["extras"] = {}
    for key, data in extras.items():
        chunks = queue_chunks(store, pipe, name, version, f"extra:{key}", data)
        manifest["extras"][key] = {"sha256": sha256(data), "bytes": len(data), "chunks": chunks}
    store._call(pipe.execute)
    store._call(commit_version, store, name, version, json.dumps(manifest, sort_keys=True), list(aliases))
    log.info("published model %s v%d (%d weight bytes in %d chunk(s))", name, version,
             len(weights), manifest["weights"]["chunks"])
    return version


def commit_version(store, name: str, version: int, manifest: str, aliases: Sequence[str]) -> None:
    """One MULTI/EXEC publishes the version: manifest, ``versions``, ``latest`` and the requested aliases.

    ``latest`` only moves forward, even when two publishes race (WATCH retries the loser).
    """
    import redis

    key, pending = store._key(name, "aliases"), store._key(name, "pending")
    with store.client.pipeline(transaction=True) as pipe:
        while True:
            try:
                pipe.watch(key, pending)
                current = pipe.hget(key, "latest")
                if pipe.hget(pending, str(version)) is None:
                    pipe.reset()
                    raise ModelStoreError(
                        f"publishing model {name!r} v{version} took longer than the grace period of "
                        "skol-spark model gc, which removed its keys; publish again (and give gc a "
                        "longer --grace)")
                pipe.multi()
                pipe.hdel(pending, str(version))
                pipe.set(store._vkey(name, version, "manifest"), manifest)
                pipe.zadd(store._key(name, "versions"), {str(version): version})
                pipe.sadd(f"{store.prefix}:models", name)
                moves = {alias: version for alias in aliases}
                if current is None or int(current) < version:
                    moves["latest"] = version
                if moves:
                    pipe.hset(key, mapping=moves)
                pipe.execute()
                return
            except redis.WatchError:
                continue
