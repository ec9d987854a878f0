"""The sections of a job config, as frozen dataclasses: what each setting is and its default.

Kept apart from the parsing (``job.config``) and the cross-field checks
(``job.config_checks``) so that code that only reads settings depends on
these types alone. Secrets never live here: the Redis password is read from
an environment variable or a file the config names, and ``redacted()`` is
what logs and manifests see.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from skol_spark.store.connection import RedisSettings
from skol_spark.store.connection import redact_url  # the one rule for what of a URL may be shown


@dataclass(frozen=True)
class ModelConfig:
    """``model``: which stored version to score with, and which code its rebuild may import."""

    name: str = ""
    version: str = "production"
    custom_layer_modules: tuple[str, ...] = ()
    allow_unsafe_deserialization: bool = False
    pipeline_modules: tuple[str, ...] = ()  # modules whose Python stages a stored feature pipeline may use


@dataclass(frozen=True)
class InputConfig:
    """``input``: where the lines are and which columns hold the document, line and features."""

    path: str = ""
    format: str = "parquet"
    table: str = ""
    doc_id_col: str = "doc_id"
    line_col: str = "line_number"
    features_col: str = "features"
    label_col: str = ""
    passthrough: tuple[str, ...] = ("*",)
    watermark_col: str = ""
    watermark_min: str = ""
    clustered_by_doc: bool = False
    text_col: str = ""  # text input, one row per line (docs/text.md)
    document_text_col: str = ""  # text input, one row per document, split into lines on \n


@dataclass(frozen=True)
class ScoringConfig:
    """``scoring``: windowing, batching and what to do with bad lines (0 means chosen for the cluster)."""

    window_size: int = 0
    stride: int = 0
    batch_size: int = 512
    tf_threads: int = 0
    predict_streams: int = 0
    arrow_batch_size: int = 10000
    partitions: int = 0
    warm_up: str = "auto"
    predictor: str = "auto"
    sort: str = "auto"
    bad_input: str = "refuse"
    quarantine_path: str = ""
    max_quarantine_fraction: float = 0.01


@dataclass(frozen=True)
class OutputConfig:
    """``output``: where the scored lines go, how an existing output is treated, and the run's records."""

    path: str = ""
    format: str = "parquet"
    table: str = ""
    mode: str = "error"
    partition_by: tuple[str, ...] = ()
    dynamic_partition_overwrite: bool = False
    rescore: str = "new-version"
    manifest_path: str = ""
    report: bool = True
    annotated_path: str = ""  # text input: one YEDDA-annotated text per scored document (docs/text.md)
    annotated_format: str = "parquet"


@dataclass(frozen=True)
class JobSettings:
    """``job``: the Spark session (classic or Connect), timeouts and exit codes."""

    app_name: str = "skol-spark-predict"
    master: str = ""
    timeout_seconds: float = 0.0
    nothing_to_do_exit_code: int = 99
    quiet: bool = False
    progress: bool = True
    spark_conf: tuple[tuple[str, str], ...] = ()
    jvm_class_archive: str = "auto"
    remote: str = ""  # a Spark Connect URL (sc://host:port, or local[N]); else $SPARK_REMOTE; else a classic session
    connect_inline_model_mb: float = 16.0  # Spark Connect: larger models travel as a session artifact file


@dataclass(frozen=True)
class JobConfig:
    redis: RedisSettings = field(default_factory=RedisSettings)
    model: ModelConfig = field(default_factory=ModelConfig)
    input: InputConfig = field(default_factory=InputConfig)
    scoring: ScoringConfig = field(default_factory=ScoringConfig)
    output: OutputConfig = field(default_factory=OutputConfig)
    job: JobSettings = field(default_factory=JobSettings)

    def redacted(self) -> dict[str, Any]:
        """The config as plain data for logs and manifests: no secret can be in it.

        Passwords are never config values; a password embedded in the Redis URL
        is masked here.
        """
        data = dataclasses.asdict(self)
        data["redis"]["url"] = redact_url(self.redis.url)
        data["job"]["spark_conf"] = {k: v for k, v in self.job.spark_conf}
        return data
