"""Cross-field checks of a parsed job config: what a type alone cannot express.

Every check names the setting to change (``output.mode: expected one of
...``), so a wrong config fails on the driver before Spark starts, not deep
inside a task. ``require_job_fields`` is separate because only ``predict``
needs an input, an output and a model; the ``model`` commands do not.
"""

from __future__ import annotations

from typing import Sequence

from skol_spark.errors import ConfigError
from skol_spark.job.config_sections import JobConfig

OUTPUT_MODES = ("error", "overwrite", "append", "incremental")
BAD_INPUT_POLICIES = ("refuse", "quarantine")
WARM_UP = ("auto", "always", "never")
PREDICTORS = ("auto", "keras")
SORT_POLICIES = ("auto", "always")
RESCORE_POLICIES = ("new-version", "never")
CONNECT_INLINE_MAX_MB = 100  # under Spark Connect's 128 MiB gRPC message limit, with room for the rest of the plan


def validate(config: JobConfig) -> None:
    """Cross-field checks that a type alone cannot express."""
    s, o = config.scoring, config.output
    _one_of("output.mode", o.mode, OUTPUT_MODES)
    _one_of("scoring.bad_input", s.bad_input, BAD_INPUT_POLICIES)
    _one_of("scoring.warm_up", s.warm_up, WARM_UP)
    _one_of("scoring.predictor", s.predictor, PREDICTORS)
    _one_of("scoring.sort", s.sort, SORT_POLICIES)
    _one_of("job.jvm_class_archive", config.job.jvm_class_archive, ("auto", "never"))
    _one_of("output.rescore", o.rescore, RESCORE_POLICIES)
    for where, v in (("scoring.window_size", s.window_size), ("scoring.stride", s.stride),
                     ("scoring.tf_threads", s.tf_threads), ("scoring.partitions", s.partitions),
                     ("scoring.predict_streams", s.predict_streams)):
        if v < 0:
            raise ConfigError(f"{where}: must be >= 0 (0 means automatic), got {v}")
    if s.batch_size < 1 or s.arrow_batch_size < 1:
        raise ConfigError("scoring.batch_size and scoring.arrow_batch_size must be >= 1")
    if s.window_size and s.stride > s.window_size:
        raise ConfigError(
            f"scoring.stride ({s.stride}) is larger than scoring.window_size ({s.window_size}): "
            "lines between windows would never be scored; use a stride <= window size")
    if not 0.0 <= s.max_quarantine_fraction <= 1.0:
        raise ConfigError("scoring.max_quarantine_fraction: expected a fraction between 0 and 1")
    if s.bad_input == "quarantine" and not s.quarantine_path:
        raise ConfigError("scoring.bad_input=quarantine needs scoring.quarantine_path (where bad lines go)")
    if o.format.lower() in ("csv", "text"):
        raise ConfigError(f"output.format: {o.format} cannot hold the probabilities column (an array of floats); "
                          "use parquet (the default), orc or json, or a table format")
    if o.mode == "incremental" and not o.path:
        raise ConfigError("output.mode=incremental needs output.path (incremental table sinks are not supported)")
    if o.dynamic_partition_overwrite and (not o.partition_by or o.mode != "overwrite"):
        raise ConfigError("output.dynamic_partition_overwrite needs output.mode=overwrite and output.partition_by "
                          "(the partitions to replace), e.g. partition_by: [model_version]")
    if config.input.watermark_min and not config.input.watermark_col:
        raise ConfigError("--watermark / input.watermark_min needs input.watermark_col (the column to compare, "
                          "e.g. ingest_date); without it every row would be scored")
    if config.redis.connect_timeout <= 0 or config.redis.socket_timeout <= 0:
        raise ConfigError("redis.connect_timeout and redis.socket_timeout must be > 0 seconds")
    if config.redis.retries < 0:
        raise ConfigError("redis.retries: must be >= 0")
    if config.job.remote and config.job.master:
        raise ConfigError("job.remote and job.master are both set: a Spark Connect session's master is the "
                          "server's; keep one of them")
    if not 0 <= config.job.connect_inline_model_mb <= CONNECT_INLINE_MAX_MB:
        raise ConfigError(
            f"job.connect_inline_model_mb: expected 0 to {CONNECT_INLINE_MAX_MB} (MiB), got "
            f"{config.job.connect_inline_model_mb:g}. A model in the closure travels in one gRPC message, which "
            "Spark Connect caps at 128 MiB (spark.connect.grpc.maxInboundMessageSize on the server, the same on the "
            "client); larger models go as a session artifact file by themselves (0: always)")
    if config.job.timeout_seconds < 0:
        raise ConfigError("job.timeout_seconds: must be >= 0 (0 disables the timeout)")
    validate_text(config)
    if "password" in config.redis.url.lower() and "@" not in config.redis.url:
        raise ConfigError("redis.url: put the password in SKOL_REDIS_PASSWORD, not in the URL")


def validate_text(config: JobConfig) -> None:
    """Text input and the annotated output (docs/text.md)."""
    i, o = config.input, config.output
    if i.text_col and i.document_text_col:
        raise ConfigError("input.text_col and input.document_text_col: set one (lines or whole documents)")
    _one_of("output.annotated_format", o.annotated_format, ("parquet", "json"))
    if not o.annotated_path:
        return
    if not (i.text_col or i.document_text_col):
        raise ConfigError("output.annotated_path needs text input (input.text_col or input.document_text_col)")
    if "*" not in i.passthrough and "text" not in i.passthrough:
        raise ConfigError("output.annotated_path is built from the scored lines' text: add text to input.passthrough")
    if not o.path or o.dynamic_partition_overwrite or o.format not in ("parquet", "orc", "avro", "json") \
            or o.annotated_path.rstrip("/") == o.path.rstrip("/"):
        raise ConfigError("output.annotated_path is built from the staged output files: it needs output.path in a "
                          "file format (parquet, orc, avro, json; not output.dynamic_partition_overwrite), and "
                          "must differ from output.path")


def require_job_fields(config: JobConfig) -> None:
    """Fields that `predict` needs but `model` commands do not."""
    missing = [name for name, v in (("model.name", config.model.name),
                                    ("input.path or input.table", config.input.path or config.input.table),
                                    ("output.path or output.table", config.output.path or config.output.table))
               if not v]
    if missing:
        raise ConfigError(f"missing required setting(s): {', '.join(missing)} "
                          "(set them in the YAML file or with --set section.key=value)")


def _one_of(where: str, value: str, allowed: Sequence[str]) -> None:
    if value not in allowed:
        hint = " (YAML reads on/off/yes/no as true/false: use one of the words above)" \
            if value in ("True", "False") else ""
        raise ConfigError(f"{where}: expected one of {', '.join(allowed)}; got {value!r}{hint}")
