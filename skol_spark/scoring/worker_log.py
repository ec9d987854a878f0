"""What each Python worker scored with, gathered for the run manifest through one Spark accumulator.

The device a worker scores on is known only inside it (TensorFlow's view
of the GPUs it was given), so every task adds one entry: its facts (host,
device, TF32, golden tolerance, predictor, batch size) and whether it built
the model. The driver reads the merged value once the job is done: the
model build count (``scoring.model_builds``) and one row per distinct set
of facts with its task count (``scoring.workers``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Callable

from pyspark.accumulators import AccumulatorParam


@dataclass(frozen=True)
class WorkerModel:
    """A Python worker's built predictor and the facts of its build (``worker_log``: the run manifest)."""

    predict: Callable
    facts: dict
    gpu: bool = False

    def batch_size(self, configured: int) -> int:
        from skol_spark.model.device import predict_batch_size

        return predict_batch_size(configured, gpu=self.gpu)


class WorkerLogParam(AccumulatorParam):
    """Merges ``{"builds": int, "facts": {json facts: [tasks, builds]}}`` values."""

    def zero(self, value: dict[str, Any]) -> dict[str, Any]:
        return {"builds": 0, "facts": {}}

    def addInPlace(self, total: dict[str, Any], more: dict[str, Any]) -> dict[str, Any]:
        total["builds"] += more["builds"]
        for key, (tasks, builds) in more["facts"].items():
            seen = total["facts"].setdefault(key, [0, 0])
            seen[0] += tasks
            seen[1] += builds
        return total


def accumulator(sc):
    return sc.accumulator({"builds": 0, "facts": {}}, WorkerLogParam())


def entry(facts: dict[str, Any], built: bool) -> dict[str, Any]:
    """One task's contribution."""
    return {"builds": int(built), "facts": {json.dumps(facts, sort_keys=True): [1, int(built)]}}


def builds(value: dict[str, Any]) -> int:
    return int(value["builds"])


def workers(value: dict[str, Any]) -> list[dict[str, Any]]:
    """The manifest's ``scoring.workers``: each distinct set of facts with its tasks and builds."""
    rows = [{**json.loads(key), "tasks": tasks, "builds": built} for key, (tasks, built) in value["facts"].items()]
    return sorted(rows, key=lambda r: (r.get("job", ""), r.get("host", ""), r.get("device", "")))


def record_task(builds, model: WorkerModel, built: bool, *, job: str = "scoring", batch_size: int = 0,
                streams: int = 0) -> None:
    """Add one task's entry to ``builds`` (a ``worker_log`` accumulator; None: not recorded); a scoring task's
    batch size and predict streams (``scoring.predict_streams``) with it."""
    if builds is not None:
        facts = {**model.facts, "job": job, **({"batch_size": batch_size} if batch_size else {}),
                 **({"predict_streams": streams} if streams else {})}
        builds.add(entry(facts, built))
