"""How large a model reaches the executors of a Spark Connect session, by each path (run by hand, not in CI).

1. The closure: a mapInArrow function carrying N MiB of random (incompressible) bytes, as an inline
   ModelArtifact would; prints which sizes work and the error of the first that fails.
2. The whole job with a model of > 300 MB of weights (a Dense 9000x9000 + a softmax head), published to a
   real redis-server and shipped as a session artifact (job.connect_inline_model_mb default); the output is
   compared with Keras called directly.

Usage: PYTHONPATH=. python benchmarks/connect_model_size.py [closure sizes in MiB ...]
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def closure_sizes(spark, sizes_mib):
    import pyarrow as pa

    for mib in sizes_mib:
        payload = np.random.default_rng(mib).bytes(mib * 2**20)

        def carry(batches, payload=payload):
            for _ in batches:
                pass
            yield pa.RecordBatch.from_pydict({"n": [len(payload)]})

        started = time.monotonic()
        try:
            n = spark.range(0, 1, 1, 1).mapInArrow(carry, "n long").collect()[0][0]
            print(f"closure {mib:4d} MiB: ok ({n} bytes seen by the task) in {time.monotonic() - started:.1f}s",
                  flush=True)
        except Exception as e:
            print(f"closure {mib:4d} MiB: FAILED in {time.monotonic() - started:.1f}s: "
                  f"{type(e).__name__}: {str(e).splitlines()[0][:400]}", flush=True)
            return


def big_model(units=9000, window=8, features=6):
    import keras

    keras.utils.set_random_seed(0)
    inp = keras.Input((window, features))
    x = keras.layers.Dense(units, activation="relu")(inp)
    x = keras.layers.Dense(units, activation="relu")(x)
    out = keras.layers.Dense(3, activation="softmax")(x)
    return keras.Model(inp, out)


def big_job(spark, work: Path) -> None:
    from skol_spark.job.config import config_from_dict
    from skol_spark.job.run import run_job
    from skol_spark.store.connection import RedisSettings, connect
    from skol_spark.store.embedded import start_redis
    from skol_spark.store.model_store import ModelStore
    from tests.conftest import LABELS
    from tests.jobkit import assert_matches_reference, make_documents, read_output, reference_scores, write_input

    model = big_model()
    weights_mb = sum(w.nbytes for w in model.get_weights()) / 1e6
    redis = start_redis()
    try:
        store = ModelStore(connect(RedisSettings(url=redis.url, socket_timeout=60)), prefix="big")
        store.publish(model, "big", labels=LABELS, aliases=["production"])
        docs = make_documents("b", 6, seed=1)
        write_input(work / "in" / "part-0.parquet", docs)
        config = config_from_dict({
            "redis": {"url": redis.url, "prefix": "big", "socket_timeout": 60},
            "model": {"name": "big"}, "input": {"path": str(work / "in")}, "scoring": {"batch_size": 16},
            "output": {"path": str(work / "out"), "mode": "overwrite", "report": False},
            "job": {"progress": False}})
        started = time.monotonic()
        result = run_job(spark, config)
        print(f"job with {weights_mb:.0f} MB of weights: {result.rows_written} rows in "
              f"{time.monotonic() - started:.1f}s, shipped by {result.manifest['scoring']['model_shipped_by']}, "
              f"model builds {result.manifest['scoring']['model_builds']}", flush=True)
        assert_matches_reference(read_output(work / "out"), reference_scores(model, docs), atol=1e-4)
        print("every line once, equal to Keras called directly (1e-4)", flush=True)
    finally:
        redis.stop()


def main(argv) -> None:
    from pyspark.sql import SparkSession

    from tests.connect_server import start_connect_server

    sizes = [int(a) for a in argv] or [32, 64, 96, 120, 160]
    with tempfile.TemporaryDirectory(prefix="skol-connect-size-") as tmp:
        server = start_connect_server(Path(tmp), conf={"spark.driver.memory": "4g"})
        try:
            spark = SparkSession.builder.remote(server.url).getOrCreate()
            closure_sizes(spark, sizes)
            big_job(spark, Path(tmp))
            spark.stop()
        finally:
            server.stop()


if __name__ == "__main__":
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    main(sys.argv[1:])
