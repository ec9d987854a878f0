"""A version's payloads (weights, extras) as numbered chunk keys: written in pieces, read back bounded.

A Redis string holds at most 512 MB and one large value blocks the server
while it moves, so a payload is cut into ``ModelStore.chunk_size`` pieces
under ``<version key>:<part>:<i>``. Reading trusts Redis, not the manifest:
the manifest's chunk and byte counts are claims, and a corrupt or hostile
manifest must not make the reader allocate what it claims.
"""

from __future__ import annotations

from typing import Any, Mapping

from skol_spark.errors import ModelIntegrityError

CHUNK_BATCH = 64  # chunk keys per MGET: memory for keys stays bounded whatever count a manifest claims


def queue_chunks(store, pipe, name: str, version: int, part: str, data: bytes) -> int:
    """Queue SETs of ``data`` in ``store.chunk_size`` pieces on ``pipe``; returns the chunk count."""
    count = 0
    for count, start in enumerate(range(0, len(data), store.chunk_size), start=1):
        pipe.set(store._vkey(name, version, part, count - 1), data[start:start + store.chunk_size])
    return count


def read_chunks(store, name: str, version: int, part: str, meta: Mapping[str, Any]) -> bytes:
    """The chunks of one payload, bounded by what Redis holds, not by what the manifest claims.

    The last claimed chunk must exist before any is read (a manifest claiming a billion chunks fails
    on one EXISTS); chunks are then read ``CHUNK_BATCH`` at a time against a running total that may
    not pass the manifest's byte count. ``meta``'s types were checked by ``check_manifest``.
    """
    count, size = int(meta["chunks"]), int(meta["bytes"])
    where = f"model {name!r} v{version}"
    if count and not store._call(store.client.exists, store._vkey(name, version, part, count - 1)):
        raise ModelIntegrityError(
            f"{where} is incomplete: its manifest says {part} has {count} chunk(s) but the last one "
            f"({store._vkey(name, version, part, count - 1)}) does not exist; the manifest was edited or "
            "the keys were deleted or evicted. Republish the model")
    values: list[bytes] = []
    total = 0
    for start in range(0, count, CHUNK_BATCH):
        keys = [store._vkey(name, version, part, i) for i in range(start, min(count, start + CHUNK_BATCH))]
        batch = store._call(store.client.mget, keys)
        missing = [k for k, v in zip(keys, batch) if v is None]
        if missing:
            raise ModelIntegrityError(
                f"{where} is incomplete: {len(missing)} of {count} {part} chunk(s) missing (first: "
                f"{missing[0]}); the key was deleted or evicted (check maxmemory-policy noeviction). "
                "Republish the model")
        total += sum(len(v) for v in batch)
        if total > size:
            break
        values += batch
    if total != size:
        raise ModelIntegrityError(f"{where}: {part} is {total if total < size else f'more than {size}'} "
                                  f"bytes, manifest says {size} ({'truncated' if total < size else 'oversized'});"
                                  " republish the model")
    return b"".join(values)
