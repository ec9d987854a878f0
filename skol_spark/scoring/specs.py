"""What a scoring task is told, besides the model: small frozen dataclasses that pickle into the closure.

The driver decides everything about a run (columns, window, batch size,
how the model is rebuilt) before Spark sees the scoring function; the
executors get these values, never the config, the session or the store.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class BuildSpec:
    """How a Python worker rebuilds the model, besides the artifact itself (small, picklable).

    Known before the input is read, so the warm-up job can build with the
    same spec, and the same cache key, as the scoring tasks.
    """

    custom_modules: tuple[str, ...] = ()
    allow_unsafe: bool = False
    line_projection: bool = True  # scoring.predictor: auto
    tf_threads: int = 0  # TensorFlow's threads; 0: the cores the task owns (spark.task.cpus)
    streams: int = 0  # predicts a task runs at once (scoring.predict_streams); 0: auto (device.predict_streams)


@dataclass(frozen=True)
class ScoringPlan:
    """Everything a scoring task needs besides the broadcast artifact (small, picklable)."""

    doc_col: str
    line_col: str
    features_col: str
    carry_cols: tuple[str, ...]
    labels: tuple[str, ...]
    window: int
    stride: int
    batch_size: int
    feature_size: int
    model_name: str
    model_version: int
    run_id: str
    build: BuildSpec = BuildSpec()
    partitions: int = 0  # scoring partitions (0: keep the input's, it is clustered by document)
    presorted: bool = False  # stream the input as read: the scan found each document one run of rows
    flag_builds: bool = False  # Spark Connect (no accumulators): a last column, 1 on a task's first row if it built
