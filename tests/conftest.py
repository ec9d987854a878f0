"""Shared fixtures: one real redis-server per test module, one local SparkSession per session,
a small real Keras model trained with a closure loss, and a factory that publishes models into the
module's store. Helpers that are not fixtures live in ``tests/helpers.py``.

Set SKOL_REDIS_URL to run against an existing server instead (keys go under a
unique prefix per module so nothing collides).
"""

from __future__ import annotations

import os
import sys
import uuid

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
os.environ.setdefault("PYSPARK_DRIVER_PYTHON", sys.executable)

import pytest

from skol_spark.store.embedded import start_redis
from tests.helpers import LABELS, Published, train_closure_model


@pytest.fixture(scope="module")
def redis_server():
    """A real redis-server on a free loopback port (or SKOL_REDIS_URL when given)."""
    external = os.environ.get("SKOL_REDIS_URL")
    if external:
        yield type("External", (), {"url": external, "process": None})()
        return
    server = start_redis()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def redis_client(redis_server):
    from skol_spark.store.connection import RedisSettings, connect

    client = connect(RedisSettings(url=redis_server.url))
    yield client
    client.close()


@pytest.fixture
def store(redis_client):
    """A ModelStore under a fresh key prefix, so tests never see each other's models."""
    from skol_spark.store.model_store import ModelStore

    return ModelStore(redis_client, prefix=f"t{uuid.uuid4().hex[:8]}")


@pytest.fixture(scope="session")
def closure_model():
    return train_closure_model()


@pytest.fixture(scope="module")
def publish_model(redis_server, redis_client):
    """A factory: ``publish_model(model, name="lines", *, prefix=None, labels=LABELS, **publish options)``
    publishes ``model`` into the module's store (its own fresh key prefix unless ``prefix`` is given) and
    returns a ``helpers.Published`` (store, url, name, version, model)."""
    from skol_spark.store.model_store import ModelStore

    module_prefix = f"t{uuid.uuid4().hex[:8]}"

    def publish(model, name: str = "lines", *, prefix: str | None = None, labels=LABELS, **options) -> Published:
        store = ModelStore(redis_client, prefix=prefix or module_prefix)
        version = store.publish(model, name, labels=labels, **options)
        return Published(store=store, url=redis_server.url, name=name, version=version, model=model)

    return publish


@pytest.fixture(scope="session")
def spark():
    """One real local SparkSession for the whole test session."""
    from skol_spark.job.session import build_session

    session = build_session(master="local[2]", app_name="skol-spark-tests",
                            conf={"spark.sql.shuffle.partitions": "4", "spark.ui.enabled": "false",
                                  # Spark 4's default and Databricks serverless': every job test runs with it
                                  "spark.sql.ansi.enabled": "true"})
    yield session
    session.stop()
