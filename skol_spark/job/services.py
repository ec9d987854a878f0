"""What the job asks of Spark besides DataFrames, behind one seam: a classic or a Spark Connect session.

A classic session reaches the JVM through ``sparkContext``: broadcast
variables, accumulators, job groups, the status tracker, Hadoop's FileSystem
through py4j. A Spark Connect session (Databricks serverless jobs and
standard-access clusters, ``SparkSession.builder.remote``) has none of them:
only DataFrames, session artifacts, operation tags and progress handlers. The
job asks ``services_for(spark)`` and calls the same methods either way; it
has no branches of its own on the kind of session. ``ConnectServices`` is in
``job.connect``.

The methods: ``facts`` (for the run manifest), ``master`` / ``parallelism``
/ ``conf`` (for ``skol_spark.local.environment``), ``check_sinks`` (refuse
what this session cannot write with its guarantees, before scoring),
``ship`` (the model to the executors), ``build_counter``, ``fs`` (staging,
publish and the lock), ``job_scope`` / ``cancel`` / ``cancel_all``, ``thread``
and ``task_progress``.
"""

from __future__ import annotations

import contextlib
import threading
from typing import Any, Callable, Iterator

from skol_spark.job.shipment import Shipment
from skol_spark.scoring.partition import BUILT_COLUMN  # noqa: F401  (re-exported for the driver side)


def is_connect(spark) -> bool:
    """Whether ``spark`` is a Spark Connect session (PySpark's public class)."""
    try:
        from pyspark.sql.connect.session import SparkSession as ConnectSession
    except Exception:  # pyspark without the connect extra: no Connect session can exist
        return False
    return isinstance(spark, ConnectSession)


def services_for(spark):
    """``ClassicServices`` or ``ConnectServices`` for ``spark``."""
    if is_connect(spark):
        from skol_spark.job.connect import ConnectServices

        return ConnectServices(spark)
    return ClassicServices(spark)


class AccumulatorBuilds:
    """Classic: the scoring and warm-up tasks add their model builds, and what they scored with, to one
    accumulator (``scoring.worker_log``)."""

    flag_column = False

    def __init__(self, sc) -> None:
        from skol_spark.scoring import worker_log

        self.tasks = worker_log.accumulator(sc)  # what executors get

    def frame(self, df):
        return df

    def warmed(self, built: int) -> None:
        """The warm-up's builds, as its rows report them (already counted by the accumulator)."""

    def total(self) -> int | str:
        from skol_spark.scoring import worker_log

        return worker_log.builds(self.tasks.value)

    def workers(self) -> list | str:
        """Per group of tasks: the device, precision, tolerance and predictor they scored with."""
        from skol_spark.scoring import worker_log

        return worker_log.workers(self.tasks.value)


class ClassicServices:
    kind = "classic"

    def __init__(self, spark) -> None:
        self.spark, self.sc = spark, spark.sparkContext

    def facts(self) -> dict[str, Any]:
        return {"session": self.kind, "application_id": self.sc.applicationId, "master": self.sc.master,
                "version": self.spark.version}

    @property
    def master(self) -> str:
        return self.sc.master

    def parallelism(self) -> int:
        return max(1, self.sc.defaultParallelism)

    def conf(self, key: str, default: str | None = None) -> str | None:
        return self.sc.getConf().get(key, default)

    def set_conf(self, key: str, value: str) -> None:
        self.spark.conf.set(key, value)

    def check_sinks(self, config) -> None:
        """Every sink keeps its guarantees through Hadoop's FileSystem API."""

    def ship(self, artifact, *, inline_max_bytes: int = 0) -> Shipment:
        handle = self.sc.broadcast(artifact)
        return Shipment(handle, "broadcast", handle.destroy)

    def build_counter(self) -> AccumulatorBuilds:
        return AccumulatorBuilds(self.sc)

    def fs(self, path: str):
        from skol_spark.job.sink import HadoopFS

        return HadoopFS(self.spark, path)

    @contextlib.contextmanager
    def job_scope(self, tag: str, description: str) -> Iterator[None]:
        """Spark jobs this thread starts inside belong to ``tag`` (a job group: a thread-local property)."""
        self.sc.setJobGroup(tag, description, interruptOnCancel=True)
        yield

    def cancel(self, tag: str) -> None:
        self.sc.cancelJobGroup(tag)

    def cancel_all(self) -> None:
        self.sc.cancelAllJobs()

    def thread(self, target: Callable[[], None], name: str) -> threading.Thread:
        from pyspark import InheritableThread  # cleans up its JVM thread's local properties (job group)

        return InheritableThread(target=target, name=name, daemon=True)

    @contextlib.contextmanager
    def task_progress(self) -> Iterator[Callable[[], tuple[int, int]]]:
        """A callable -> (finished, total) tasks over the active stages, polled from the status tracker."""
        tracker = self.sc.statusTracker()

        def tasks() -> tuple[int, int]:
            done = total = 0
            for stage_id in tracker.getActiveStageIds():
                info = tracker.getStageInfo(stage_id)
                if info is not None:
                    done += info.numCompletedTasks
                    total += info.numTasks
            return done, total

        yield tasks
