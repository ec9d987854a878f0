"""The run's smoke test: the model rebuilt and golden-checked before any task scores.

Catches a model that cannot be rebuilt or cannot predict (a different
TensorFlow, a wrong weight order) before anything is written. Where the
environment warms the Python workers that will score (``local``), their build
is the smoke test and the driver never imports TensorFlow; elsewhere the
driver checks the model in a background thread while the validation scan runs.
"""

from __future__ import annotations

import concurrent.futures
import logging

from skol_spark.job.failures import spark_failure
from skol_spark.model.builder import predictor_kind
from skol_spark.scoring.specs import BuildSpec

log = logging.getLogger(__name__)


class SmokeTest:
    """Rebuild + golden check on the driver, overlapped with the validation scan.

    Started once the scan's query is planned (``scan_input(before_run=...)``),
    so that the query's py4j calls do not queue for the GIL behind it.
    ``deferred``: a warm-up job makes the same check in the workers, so
    ``start`` does nothing unless that job fails or times out.
    """

    def __init__(self, artifact, spec: BuildSpec, *, threads: int = 1, deferred: bool = False) -> None:
        self.artifact, self.spec, self.threads, self.deferred = artifact, spec, threads, deferred
        self.future: concurrent.futures.Future | None = None

    @property
    def where(self) -> str:
        """Where the model was smoke-tested (run manifest): ``driver`` or, deferred, ``warm-up`` (its workers)."""
        return "driver" if self.future is not None else "warm-up"

    def start(self) -> None:
        if self.deferred or self.future is not None:
            return
        pool = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="skol-smoke")
        self.future = pool.submit(self._smoke)
        pool.shutdown(wait=False)

    def result(self) -> str:
        """Wait for the smoke test (starting it if the scan never did, or now if it was deferred); re-raises its
        error. -> the predictor the driver chose: ``line_projection`` or ``keras`` (executors choose alike)."""
        self.deferred = False
        self.start()
        assert self.future is not None
        return self.future.result()

    def _smoke(self) -> str:
        from skol_spark.model.builder import build_predictor, configure_tensorflow

        configure_tensorflow(self.threads)
        predict = build_predictor(self.artifact, custom_modules=self.spec.custom_modules,
                                  allow_unsafe=self.spec.allow_unsafe, where="driver",
                                  line_projection=self.spec.line_projection)
        return predictor_kind(predict)


def checked_predictor(smoke: SmokeTest, warm, timeout: float = 0.0) -> str:
    """The model's predictor kind, once a smoke test passed; a model that fails it stops the job here.

    With a warm-up, its workers' build is the smoke test. If it fails, the
    driver runs its own so the error reads as it would without a warm-up;
    should the driver pass where the workers failed, their error stands. Still
    running after ``job.timeout_seconds``, the warm-up is cancelled, the
    driver checks the model, and scoring (which the timeout covers) builds it.
    """
    if warm is None:
        return smoke.result()
    try:
        ready = warm.wait(timeout or None)
    except Exception as e:
        error = spark_failure(e)
        log.warning("the warm-up job failed to build the model (%s); checking it on the driver", error)
        smoke.result()
        raise error from None
    if not ready:
        log.warning("the warm-up job did not finish within job.timeout_seconds=%g; cancelled, scoring "
                    "builds the model itself", timeout)
        return smoke.result()
    return warm.predictor
