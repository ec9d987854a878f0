"""Create or reuse the SparkSession: only entry points call this.

``getOrCreate`` means a Databricks job (or a notebook) reuses the session it
was given; settings that cannot change on a live session are applied only
when we create it. Arrow is on because scoring moves Arrow batches.
"""

from __future__ import annotations

import os
import sys
import threading
from typing import Mapping

DEFAULT_CONF = {
    "spark.sql.execution.arrow.pyspark.enabled": "true",
    # Python workers are kept between tasks so the model is built once per worker (see worker_cache).
    "spark.python.worker.reuse": "true",
    "spark.sql.adaptive.enabled": "true",
    "spark.ui.showConsoleProgress": "false",
    "spark.sql.parquet.compression.codec": "snappy",
}


def build_session(*, master: str = "", app_name: str = "skol-spark", conf: Mapping[str, str] | None = None,
                  preload_tensorflow: bool = True, class_archive: str = "auto", jit: str = "auto",
                  input_path: str = "", input_format: str = "parquet"):
    """Return the active SparkSession, or build one with our defaults.

    ``master`` applies only when no session exists yet (spark-submit passes
    its own ``--master``; an empty value leaves the choice to it). A local
    JVM we start gets the JIT settings of ``jit`` (``job.jvm_jit``; ``auto``
    counts the rows of ``input_path``, see ``jvm_jit``) and the class archive
    when one was recorded; the caller's own
    ``spark.driver.extraJavaOptions`` come after ours, so they win. When a
    session is created, TensorFlow is imported in a background thread while
    the JVM starts (see ``start_tensorflow_import``).
    """
    from pyspark.sql import SparkSession

    active = SparkSession.getActiveSession()
    if active is not None:
        for key, value in (conf or {}).items():
            _try_set(active, key, value)
        return active
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    builder = SparkSession.builder.appName(app_name)
    settings = {**DEFAULT_CONF, **dict(conf or {})}
    if not submitted_with_master():
        master = master or "local[*]"
        builder = builder.master(master)
        if is_local_master(master):
            from skol_spark.local.jvm_archive import session_java_options
            from skol_spark.local.jvm_jit import java_options

            # we start this JVM: it may map the class archive; in HotSpot the last of repeated flags wins
            options = (java_options(jit, input_path, input_format),
                       settings.get("spark.driver.extraJavaOptions", ""), session_java_options(class_archive))
            if any(options):
                settings["spark.driver.extraJavaOptions"] = " ".join(x for x in options if x)
    for key, value in settings.items():
        builder = builder.config(key, value)
    if preload_tensorflow:
        start_tensorflow_import()
    session = builder.getOrCreate()
    session.sparkContext.setLogLevel(os.environ.get("SKOL_SPARK_LOG_LEVEL", "WARN"))
    return session


def start_tensorflow_import() -> threading.Thread:
    """Import Keras (and TensorFlow) on a daemon thread; returns the thread.

    The driver needs TensorFlow for its smoke test (unless the warm-up
    makes it: ``cli.driver_needs_tensorflow``), and the import costs
    seconds of CPU. Started before ``getOrCreate``, it overlaps the JVM's
    start-up (a separate process; the main thread only waits on a socket)
    instead of running later beside the validation scan, where it holds the
    GIL through long C-extension loads and stalls the main thread's Spark calls
    (the gap before the validation job shrank: benchmarks/README.md). An
    import error is not raised here: the smoke test imports again and reports it.
    """
    def load() -> None:
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
        try:
            import keras  # noqa: F401  (imports TensorFlow)
        except Exception:  # reported by the smoke test
            pass

    thread = threading.Thread(target=load, name="skol-tf-import", daemon=True)
    thread.start()
    return thread


def is_local_master(master: str) -> bool:
    """``local``/``local[N]``/``local[N,R]``: driver and executors in one JVM whose cores are all ours
    (``local-cluster`` is a real cluster of separate executor JVMs)."""
    return master.startswith("local") and not master.startswith("local-cluster")


def submitted_with_master() -> bool:
    """True when running under spark-submit, which sets spark.master itself."""
    return "PYSPARK_GATEWAY_PORT" in os.environ or "spark.master" in os.environ.get("PYSPARK_SUBMIT_ARGS", "")


def _try_set(session, key: str, value: str) -> None:
    try:
        session.conf.set(key, value)
    except Exception:  # static settings cannot change on a live session (e.g. Databricks)
        pass


def task_cpus(default: int = 1) -> int:
    """Cores this task owns (``spark.task.cpus``); used to size TensorFlow's thread pools."""
    try:
        from pyspark import TaskContext

        ctx = TaskContext.get()
        if ctx is not None:
            return max(1, int(ctx.cpus()))
    except Exception:
        pass
    return default
