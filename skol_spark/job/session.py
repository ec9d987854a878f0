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

from skol_spark.local import session_conf

DEFAULT_CONF = {
    "spark.sql.execution.arrow.pyspark.enabled": "true",
    # Python workers are kept between tasks so the model is built once per worker (see worker_cache).
    "spark.python.worker.reuse": "true",
    "spark.sql.adaptive.enabled": "true",
    "spark.ui.showConsoleProgress": "false",
    "spark.sql.parquet.compression.codec": "snappy",
}


def connect_remote(remote: str = "") -> str:
    """The Spark Connect URL to use: ``job.remote``, else PySpark's own ``SPARK_REMOTE``; "" for a classic session."""
    return remote or os.environ.get("SPARK_REMOTE", "")


def build_session(*, master: str = "", app_name: str = "skol-spark", conf: Mapping[str, str] | None = None,
                  preload_tensorflow: bool = True, class_archive: str = "auto", remote: str = ""):
    """Return the active SparkSession, or build one with our defaults.

    With a Spark Connect URL (``remote``, else ``SPARK_REMOTE``) the session
    is a Connect session and no master is set: the server has its own
    (``local[N]`` starts PySpark's local Connect server, which takes our
    settings; a remote server takes only those a session may change).

    ``master`` applies only when no session exists yet (spark-submit passes
    its own ``--master``; an empty value leaves the choice to it). A local
    JVM we start maps the class archive when ``skol-spark jvm-archive``
    recorded one (``class_archive``, see ``local.jvm_archive``); the caller's
    own ``spark.driver.extraJavaOptions`` come after it. When a session is
    created, TensorFlow is imported in a background thread while the JVM
    starts (see ``start_tensorflow_import``).
    """
    from pyspark.sql import SparkSession

    if connect_remote(remote):
        return build_connect_session(connect_remote(remote), app_name=app_name, conf=conf)
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
        settings = session_conf(master, settings, class_archive=class_archive)
    for key, value in settings.items():
        builder = builder.config(key, value)
    if preload_tensorflow:
        start_tensorflow_import()
    session = builder.getOrCreate()
    session.sparkContext.setLogLevel(os.environ.get("SKOL_SPARK_LOG_LEVEL", "WARN"))
    return session


def build_connect_session(remote: str, *, app_name: str, conf: Mapping[str, str] | None):
    """A Spark Connect session (the active one if any); settings it cannot take are skipped, as on Databricks."""
    import warnings

    from pyspark.sql import SparkSession

    settings = {**DEFAULT_CONF, **dict(conf or {})}
    with warnings.catch_warnings():  # "Failed to set <static setting>": fixed when the server started
        warnings.simplefilter("ignore", UserWarning)
        active = SparkSession.getActiveSession()
        if active is not None:
            for key, value in settings.items():
                _try_set(active, key, value)
            return active
        os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
        builder = SparkSession.builder.remote(remote).appName(app_name)
        for key, value in settings.items():  # a local server starts with them; a remote one takes the runtime ones
            builder = builder.config(key, value)
        return builder.getOrCreate()


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


def submitted_with_master() -> bool:
    """True when running under spark-submit, which sets spark.master itself."""
    return "PYSPARK_GATEWAY_PORT" in os.environ or "spark.master" in os.environ.get("PYSPARK_SUBMIT_ARGS", "")


def _try_set(session, key: str, value: str) -> None:
    try:
        session.conf.set(key, value)
    except Exception:  # static settings cannot change on a live session (e.g. Databricks)
        pass
