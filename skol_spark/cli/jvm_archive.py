"""``skol-spark jvm-archive``: record the JVM class archive that ``local.jvm_archive`` maps into local sessions.

Recording runs the real job, on a tiny model and corpus, in a child process
whose JVM dumps the classes it loaded when it exits.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from skol_spark.errors import ConfigError
from skol_spark.local.jvm_archive import QUIET, archive_path, java_binary, java_major


def create(*, log=print) -> Path:
    """Record the archive with a small representative Spark job in a child process; returns its path."""
    java = java_binary()
    path = archive_path()
    if not java or path is None:
        raise ConfigError("jvm-archive: no java found (set JAVA_HOME or put java on PATH)")
    major = java_major(java)
    if major < 13:
        raise ConfigError(f"jvm-archive: {java} is Java {major or '?'}; dynamic class archives need Java 13+")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    started = time.monotonic()
    log(f"recording a class archive with a small local Spark job (~30 s) -> {path}")
    with tempfile.TemporaryDirectory(prefix="skol-jsa-") as work:
        env = dict(os.environ, PYSPARK_PYTHON=os.environ.get("PYSPARK_PYTHON", sys.executable))
        env.pop("PYSPARK_GATEWAY_PORT", None)
        env.pop("PYSPARK_GATEWAY_SECRET", None)
        # communicate() returns when every pipe holder has exited, the JVM included: the archive is
        # written when the JVM exits, so it is complete once this returns
        child = subprocess.run([sys.executable, "-m", "skol_spark.cli.jvm_archive", str(tmp), work], env=env,
                               capture_output=True, text=True, timeout=900)
    if child.returncode != 0 or not tmp.is_file() or tmp.stat().st_size == 0:
        tmp.unlink(missing_ok=True)
        raise ConfigError("jvm-archive: recording failed (exit "
                          f"{child.returncode}): {(child.stderr or child.stdout).strip()[-800:]}")
    os.replace(tmp, path)  # atomic: a concurrent session sees the old file or the whole new one
    log(f"class archive written: {path} ({path.stat().st_size / 1e6:.0f} MB, "
        f"{time.monotonic() - started:.0f} s); sessions on local masters use it from now on")
    return path


def _record(tmp: str, work: str) -> None:
    """The child: the real job on a tiny model and corpus, in a JVM that dumps its loaded classes at exit."""
    import keras
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    from skol_spark.job.config import config_from_dict
    from skol_spark.store.embedded import start_redis
    from skol_spark.job.run import run_job
    from skol_spark.store.connection import RedisSettings, connect
    from skol_spark.job.session import build_session
    from skol_spark.store.model_store import ModelStore

    window, features = 8, 16
    inputs = keras.Input((window, features))
    hidden = keras.layers.LSTM(4, return_sequences=True)(inputs)
    model = keras.Model(inputs, keras.layers.TimeDistributed(keras.layers.Dense(3, activation="softmax"))(hidden))
    rng = np.random.default_rng(0)
    docs = np.repeat(np.arange(200), 20)
    nnz = 3
    # distinct, sorted indices per line: repeated ones are refused input
    indices = np.sort(rng.random((len(docs), features)).argsort(axis=1)[:, :nnz], axis=1).astype(np.int32)
    offsets = pa.array(np.arange(len(docs) + 1, dtype=np.int32) * nnz)
    feats = pa.StructArray.from_arrays(
        [pa.ListArray.from_arrays(offsets, pa.array(indices.ravel())),
         pa.ListArray.from_arrays(offsets, pa.array(rng.random(len(docs) * nnz, dtype=np.float32)))],
        ["indices", "values"])
    Path(f"{work}/in").mkdir(parents=True)
    pq.write_table(pa.table({"doc_id": pa.array([f"d{d}" for d in docs]),
                             "line_number": pa.array(np.tile(np.arange(20, dtype=np.int32), 200)),
                             "features": feats}), f"{work}/in/part-0.parquet")
    with start_redis() as server:
        ModelStore(connect(RedisSettings(url=server.url))).publish(model, "jsa", labels=["a", "b", "c"],
                                                                 aliases=["production"])
        config = config_from_dict({"redis": {"url": server.url}, "model": {"name": "jsa"},
                                   "input": {"path": f"{work}/in"},
                                   "output": {"path": f"{work}/out", "report": False},
                                   "job": {"progress": False, "quiet": True}})
        spark = build_session(master="local[2]", app_name="skol-spark-jvm-archive", class_archive="never",
                              conf={"spark.driver.extraJavaOptions": f"-XX:ArchiveClassesAtExit={tmp} {QUIET}"})
        run_job(spark, config)
        spark.stop()


if __name__ == "__main__":  # the recording child: python -m skol_spark.cli.jvm_archive TMP_ARCHIVE WORK_DIR
    _record(sys.argv[1], sys.argv[2])
