"""Driver-side model access: resolve the Redis URL, open the store, load one artifact.

The driver is the only Redis client: executors get the artifact through a
Spark broadcast and never open a connection.
"""

from __future__ import annotations

import dataclasses

from skol_spark.job.config import JobConfig
from skol_spark.store.connection import RedisSettings, connect, endpoint, resolved_url

EMBEDDED = "embedded"


def redis_settings(config: JobConfig, url: str | None = None) -> RedisSettings:
    """The config's Redis settings with the URL resolved (``url`` overrides it, e.g. an embedded server's)."""
    return dataclasses.replace(config.redis, url=url or resolved_url(config.redis))


def open_store(settings: RedisSettings, *, prefix: str = "skol", chunk_size: int | None = None):
    from skol_spark.store.model_store import DEFAULT_CHUNK_SIZE, ModelStore

    client = connect(settings)
    return ModelStore(client, prefix=prefix, chunk_size=chunk_size or DEFAULT_CHUNK_SIZE,
                      where=endpoint(settings.url))


def load_artifact(config: JobConfig, *, url: str | None = None):
    """Load and verify ``model.name`` @ ``model.version``; closes the connection afterwards."""
    store = open_store(redis_settings(config, url), prefix=config.redis.prefix)
    try:
        return store.load(config.model.name, config.model.version)
    finally:
        store.client.close()


def check_model_reachable(config: JobConfig) -> int:
    """Connect, PING and resolve ``model.name`` @ ``model.version``; returns the version number.

    The CLI calls this before it starts Spark, so an unreachable, frozen or
    refusing Redis, or a missing model, is reported within the Redis timeouts
    instead of after a JVM start (seconds to a minute on a busy host).
    """
    store = open_store(redis_settings(config), prefix=config.redis.prefix)
    try:
        return store.resolve(config.model.name, config.model.version)
    finally:
        store.client.close()
