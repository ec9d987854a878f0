"""Driver-side model access: resolve the Redis URL, open the store, load one artifact.

The driver is the only Redis client: executors get the artifact through a
Spark broadcast and never open a connection.
"""

from __future__ import annotations

import os

from skol_spark.job.config import JobConfig
from skol_spark.store.connection import RedisSettings, connect, endpoint

EMBEDDED = "embedded"


def redis_settings(config: JobConfig, url: str | None = None) -> RedisSettings:
    r = config.redis
    return RedisSettings(url=url or r.url or os.environ.get("SKOL_REDIS_URL") or "redis://127.0.0.1:6379/0",
                         password_env=r.password_env, password_file=r.password_file, ssl_ca_file=r.ssl_ca_file,
                         password_secret=r.password_secret,
                         connect_timeout=r.connect_timeout, socket_timeout=r.socket_timeout, retries=r.retries)


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
