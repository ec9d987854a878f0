"""Build the model in the Python workers while the driver validates the input.

A scoring task's first seconds go to starting a Python worker, importing
TensorFlow and building + golden-checking the model: seconds of CPU for a
real model. None of it depends on the input, so a one-row
``mapInArrow`` job does it in a background thread while the validation scan
runs; it is also the run's smoke test (``job.smoke.checked_predictor``), so the
driver does not build the model a second time. The scoring job then finds
the worker idle with the model in its cache
(``worker_cache``), because Spark reuses Python workers between SQL jobs that
run Arrow UDFs (``spark.python.worker.reuse``; an RDD job would get a
different worker pool, which is why this is a DataFrame job).

Spark stops Python workers idle for a minute: if validation takes longer than
that, the scoring task starts a new worker and builds again (counted in
``model_builds``). Nothing breaks; the overlap is only lost.

Only where it pays: a local master, whose task slots are the workers the
scoring job will use (``skol_spark.local.environment``). On a cluster, one
warmed worker of one executor would mostly build a model no scoring task uses
(``scoring.warm_up: always`` forces it).
"""

from __future__ import annotations

import os
import time
from typing import Iterator

import pyarrow as pa

from skol_spark.model.builder import predictor_kind
from skol_spark.scoring.partition import BuildSpec, errors_for_the_driver, inject_test_fault, worker_predictor

_GROUP = "skol-spark-warm-up"


class WarmUp:
    """One background Spark job that builds the model in ``workers`` Python workers."""

    def __init__(self, spark, services, spec: BuildSpec, handle, builds, workers: int) -> None:
        """``services``: the session's (``job.services``); ``builds``: its build counter."""
        self.spark, self.services, self.spec, self.handle, self.builds = spark, services, spec, handle, builds
        self.workers = max(1, workers)
        self.error: BaseException | None = None
        self.built = 0  # workers that built the model (the others held it from an earlier run)
        self.intra_op_threads: list[int] = []  # TensorFlow's pool size in the warmed workers, as set
        self.predictor = ""  # line_projection or keras, as the workers built it (the run manifest)
        self.seconds = 0.0
        self.thread = services.thread(self._run, "skol-warm-up")

    def start(self) -> WarmUp:
        self.thread.start()
        return self

    def _run(self) -> None:
        spec, handle, builds = self.spec, self.handle, self.builds.tasks

        def warm(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
            with errors_for_the_driver():
                inject_test_fault("warm-up")  # tests: SKOL_FAULT=...:partition=warm-up
                for _ in batches:
                    pass
                predict, built = worker_predictor(spec, handle.value, builds, job="warm-up")
                import tensorflow as tf  # imported by the build; the worker's pool as it took effect (manifest)

                threads = tf.config.threading.get_intra_op_parallelism_threads()
                yield pa.RecordBatch.from_pydict({"pid": pa.array([os.getpid()], pa.int64()),
                                                  "built": pa.array([built], pa.bool_()),
                                                  "threads": pa.array([threads], pa.int32()),
                                                  "predictor": pa.array([predictor_kind(predict)], pa.string())})

        started = time.monotonic()
        try:
            # a job group / operation tag is thread-local, so that cancel() reaches this job only
            with self.services.job_scope(_GROUP, "skol-spark: build the model in the Python workers"):
                rows = self.spark.range(0, self.workers, 1, self.workers).mapInArrow(
                    warm, "pid long, built boolean, threads int, predictor string"
                ).collect()
            self.built = sum(r["built"] for r in rows)
            self.builds.warmed(self.built)
            self.intra_op_threads = sorted({r["threads"] for r in rows})
            self.predictor = "+".join(sorted({r["predictor"] for r in rows}))  # one kind unless a worker fell back
        except BaseException as e:  # re-raised on the main thread by wait()
            self.error = e
        finally:
            self.seconds = time.monotonic() - started

    def wait(self, timeout: float | None = None) -> bool:
        """Block until the workers are warm (True) or ``timeout`` passes (False: the job is cancelled and
        scoring builds its own model); re-raise a build failure (e.g. a golden mismatch)."""
        self.thread.join(timeout)
        if self.thread.is_alive():
            self.cancel()
            return False
        if self.error is not None:
            raise self.error
        return True

    def summary(self) -> dict:
        """For the run manifest: workers warmed, how many built the model, seconds the warm-up job took."""
        return {"workers": self.workers, "built": self.built, "intra_op_threads": self.intra_op_threads,
                "seconds": round(self.seconds, 3)}

    def cancel(self) -> None:
        """The run is failing before scoring: stop the job instead of leaving it to finish."""
        if self.thread.is_alive():
            self.services.cancel(_GROUP)
        self.thread.join()
