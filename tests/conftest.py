"""Shared fixtures: one real redis-server per test module, one local SparkSession per session,
and small real Keras models trained with a closure loss.

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

import numpy as np
import pytest

from skol_spark.store.embedded import start_redis

LABELS = ["Nomenclature", "Description", "Misc"]
WINDOW = 8
FEATURES = 6


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


def make_closure_loss(class_weights):
    """The closure loss users train with: its name cannot be found again by Keras."""
    import keras.ops as ops

    weights = np.asarray(class_weights, dtype="float32")

    def weighted_categorical_crossentropy(y_true, y_pred):
        y_pred = ops.clip(y_pred, 1e-7, 1.0)
        return -ops.sum(y_true * ops.log(y_pred) * weights, axis=-1)

    return weighted_categorical_crossentropy


def build_bilstm(window=WINDOW, features=FEATURES, classes=len(LABELS), units=4, seed=0):
    import keras

    keras.utils.set_random_seed(seed)
    inp = keras.Input((window, features))
    x = keras.layers.Bidirectional(keras.layers.LSTM(units, return_sequences=True))(inp)
    out = keras.layers.TimeDistributed(keras.layers.Dense(classes, activation="softmax"))(x)
    return keras.Model(inp, out)


def train_closure_model(window=WINDOW, features=FEATURES, seed=0):
    """A small BiLSTM trained a few steps with a closure loss (real weights, not the init)."""
    import keras

    model = build_bilstm(window, features, seed=seed)
    model.compile(optimizer="adam", loss=make_closure_loss([1.0, 2.0, 0.5]), metrics=["accuracy"])
    rng = np.random.default_rng(seed)
    x = rng.random((32, window, features), dtype=np.float32)
    y = keras.utils.to_categorical(rng.integers(0, len(LABELS), (32, window)), len(LABELS))
    model.fit(x, y, epochs=2, batch_size=8, verbose=0)
    return model


@pytest.fixture(scope="session")
def closure_model():
    return train_closure_model()


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
