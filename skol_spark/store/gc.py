"""Find and remove the payload keys of publishes that never finished (``skol-spark model gc``).

A publish writes a version's payload keys (architecture, weight and extra chunks: tens of MB) first and
makes the version visible in one transaction at the end (``publishing.commit_version``). A publish
killed in between (SIGKILL, a lost connection, a dead host) leaves keys that no other command reaches,
because the version never appears in ``versions``. Each publish records the server time it started in
``<p>:model:<name>:pending`` until it commits; the age of keys left by a publish from before that
record existed is their idle time in Redis (never read, so idle since written).

A version is an orphan when it is not published and its publish started more than ``grace`` seconds
ago. Published versions are never touched, and younger unpublished versions are taken to be publishes
in progress. Removal re-checks both inside a WATCH transaction, and a publish whose record gc removed
refuses to commit, so a slow publish cannot become a version with missing chunks.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from skol_spark.errors import RedisUnavailableError

DEFAULT_GRACE_SECONDS = 3600.0
VERSION_PART = re.compile(r"v([0-9]+)")


@dataclass(frozen=True)
class Unpublished:
    """The keys of one version that was never published. ``age``: seconds since its publish started
    (None when Redis cannot say: an LFU eviction policy keeps no idle times)."""

    name: str
    version: int
    keys: tuple[str, ...]
    bytes: int
    age: float | None

    def is_orphan(self, grace: float) -> bool:
        return self.age is not None and self.age >= grace


def find_unpublished(store, name: str | None = None) -> list[Unpublished]:
    """Every unpublished version under ``store.prefix`` (of ``name`` only, when given), oldest first.

    Reads nothing that would touch the keys (SCAN, OBJECT IDLETIME, MEMORY USAGE): their idle time is
    the age of keys that have no publish record."""
    client = store.client
    base = f"{store.prefix}:model:"
    pattern = _glob_escape(base + (f"{name}:" if name else "")) + "*"
    groups: dict[tuple[str, int], list[str]] = {}
    names: set[str] = set()
    for raw in store._call(lambda: list(client.scan_iter(match=pattern, count=1000))):
        parts = raw.decode()[len(base):].split(":")
        names.add(parts[0])
        match = VERSION_PART.fullmatch(parts[1]) if len(parts) > 2 else None
        if match:
            groups.setdefault((parts[0], int(match.group(1))), []).append(raw.decode())
    now = server_time(store)
    found = []
    for model in sorted(names):
        published = set(store.versions(model))
        started = _publish_starts(store._call(client.hgetall, store._key(model, "pending")))
        for version in sorted({v for (n, v) in groups if n == model} | set(started)):
            if version in published:
                continue
            keys = tuple(sorted(groups.get((model, version), [])))
            age = now - started[version] if version in started else _idle_seconds(store, keys)
            found.append(Unpublished(model, version, keys, _size(store, keys), age))
    return sorted(found, key=lambda u: -(u.age or 0.0))


def remove_orphan(store, orphan: Unpublished) -> bool:
    """Delete one orphan's keys and its publish record, in one transaction that first re-checks that the
    version is still unpublished (WATCH: a concurrent commit makes it retry). Returns False if it was
    published meanwhile (nothing is deleted then)."""
    import redis

    versions, pending = store._key(orphan.name, "versions"), store._key(orphan.name, "pending")

    def transaction() -> bool:
        with store.client.pipeline(transaction=True) as pipe:
            while True:
                try:
                    pipe.watch(versions, pending)
                    if pipe.zscore(versions, str(orphan.version)) is not None:
                        return False
                    pipe.multi()
                    pipe.hdel(pending, str(orphan.version))
                    if orphan.keys:
                        pipe.delete(*orphan.keys)
                    pipe.execute()
                    return True
                except redis.WatchError:
                    continue

    return store._call(transaction)


def server_time(store) -> float:
    """Seconds since the epoch on the Redis server's clock, so publisher and gc, on different hosts, age
    publishes by one clock; this host's clock where the ACL user may not run TIME."""
    import time

    try:
        seconds, micros = store._call(store.client.time)
        return seconds + micros / 1e6
    except RedisUnavailableError:  # NOPERM; a lost connection fails the next command anyway
        return time.time()


def _publish_starts(raw: dict[bytes, bytes]) -> dict[int, float]:
    """``pending`` as {version: start time}; entries that are not numbers (written by hand) are left out,
    so their keys are aged by their idle time instead."""
    starts = {}
    for version, started in raw.items():
        try:
            starts[int(version)] = float(started)
        except ValueError:
            continue
    return starts


def _idle_seconds(store, keys: tuple[str, ...]) -> float | None:
    """The shortest idle time of ``keys`` (the newest write), or None when Redis keeps none (LFU)."""
    import redis

    if not keys:
        return None
    try:
        return float(min(store.client.object("idletime", key) or 0 for key in keys))
    except redis.exceptions.ResponseError:
        return None


def _size(store, keys: tuple[str, ...]) -> int:
    """Bytes the keys take in Redis. MEMORY USAGE, not STRLEN: a read would reset the idle time that ages
    keys without a publish record."""
    pipe = store.client.pipeline(transaction=False)
    for key in keys:
        pipe.memory_usage(key, samples=0)
    return int(sum(n or 0 for n in store._call(pipe.execute))) if keys else 0


def _glob_escape(text: str) -> str:
    return re.sub(r"([*?\[\]\\])", r"\\\1", text)
