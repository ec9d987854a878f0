"""One typed job config, parsed once at the edge.

A YAML file plus ``--set section.key=value`` overrides becomes a frozen
``JobConfig``. Every inner function takes the values it needs from it, so a
typo fails here, naming the field (``output.mode: expected one of ...``),
instead of deep inside a Spark task. Secrets never live in the config: the
Redis password is read from an environment variable or a file named here, and
``redacted()`` is what logs and manifests see.
"""

from __future__ import annotations

import dataclasses
import os
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

import yaml

from skol_spark.errors import ConfigError
from skol_spark.store.connection import RedisSettings
from skol_spark.store.connection import redact_url  # the one rule for what of a URL may be shown

OUTPUT_MODES = ("error", "overwrite", "append", "incremental")
BAD_INPUT_POLICIES = ("refuse", "quarantine")
WARM_UP = ("auto", "always", "never")
PREDICTORS = ("auto", "keras")
SORT_POLICIES = ("auto", "always")
RESCORE_POLICIES = ("new-version", "never")
CONNECT_INLINE_MAX_MB = 100  # under Spark Connect's 128 MiB gRPC message limit, with room for the rest of the plan


@dataclass(frozen=True)
class ModelConfig:
    name: str = ""
    version: str = "production"
    custom_layer_modules: tuple[str, ...] = ()
    allow_unsafe_deserialization: bool = False
    pipeline_modules: tuple[str, ...] = ()  # modules whose Python stages a stored feature pipeline may use


@dataclass(frozen=True)
class InputConfig:
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
    window_size: int = 0
    stride: int = 0
    batch_size: int = 512
    tf_threads: int = 0
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


def load_config(path: str | os.PathLike[str] | None, overrides: Sequence[str] = ()) -> JobConfig:
    """Read YAML (optional), apply ``section.key=value`` overrides, validate.

    Raises ConfigError naming the file, field or override that is wrong.
    """
    raw: dict[str, Any] = {}
    if path:
        p = Path(path)
        if not p.is_file():
            raise ConfigError(f"config file not found: {p} (pass --conf with a YAML file; see conf/)")
        try:
            loaded = yaml.safe_load(p.read_text()) or {}
        except yaml.YAMLError as e:
            raise ConfigError(f"{p}: not valid YAML: {e}") from e
        if not isinstance(loaded, dict):
            raise ConfigError(f"{p}: expected a mapping of sections (redis, model, input, ...)")
        raw = loaded
    for item in overrides:
        apply_override(raw, item)
    return config_from_dict(raw)


def apply_override(raw: dict[str, Any], item: str) -> None:
    """Apply one ``section.key=value`` override in place; the value is parsed as YAML."""
    if "=" not in item:
        raise ConfigError(f"--set {item!r}: expected section.key=value, e.g. output.mode=overwrite")
    key, _, value = item.partition("=")
    parts = key.strip().split(".")
    if parts[:2] == ["job", "spark_conf"] and len(parts) > 2:  # one Spark setting: job.spark_conf.spark.x.y=v
        conf = raw.setdefault("job", {}).setdefault("spark_conf", {})
        if not isinstance(conf, dict):
            raise ConfigError(f"--set {item!r}: job.spark_conf is not a mapping in the config file")
        conf[".".join(parts[2:])] = value
        return
    if len(parts) != 2 or not all(parts):
        raise ConfigError(f"--set {item!r}: expected section.key=value, e.g. model.version=3 (or "
                          "job.spark_conf.<spark setting>=value)")
    section, name = parts
    try:
        parsed = yaml.safe_load(value) if value.strip() else ""
    except yaml.YAMLError:
        parsed = value
    target = raw.setdefault(section, {})
    if not isinstance(target, dict):
        raise ConfigError(f"--set {item!r}: section {section!r} is not a mapping in the config file")
    target[name] = parsed


def config_from_dict(raw: Mapping[str, Any]) -> JobConfig:
    sections = [f.name for f in dataclasses.fields(JobConfig)]
    unknown = sorted(set(raw) - set(sections))
    if unknown:
        raise ConfigError(f"unknown config section(s) {unknown}; expected {sorted(sections)}")
    built = {}
    for name in sections:
        value = raw.get(name) or {}
        if not isinstance(value, Mapping):
            raise ConfigError(f"{name}: expected a mapping, got {type(value).__name__}")
        cls = typing.get_type_hints(JobConfig)[name]
        built[name] = _build_section(name, cls, value)
    config = JobConfig(**built)
    validate(config)
    return config


# Keys that existed once: a config that still sets one is refused with what replaced it, not "unknown key".
REMOVED_KEYS = {
    "input.validation": "the input is always validated by one Spark scan (the driver-side Arrow scan was a second "
                        "implementation of the same rules); delete the key",
    "job.jvm_jit": "JVMs keep HotSpot's own compiler settings; to tune them, set "
                   "job.spark_conf.spark.driver.extraJavaOptions; delete the key",
    "job.prestart_worker": "Python workers are started by Spark's own daemon; delete the key",
}


def _build_section(section: str, cls: type, values: Mapping[str, Any]) -> Any:
    hints = typing.get_type_hints(cls)
    known = {f.name for f in dataclasses.fields(cls)}
    removed = [f"{section}.{k}" for k in values if f"{section}.{k}" in REMOVED_KEYS]
    if removed:
        raise ConfigError("; ".join(f"{key} was removed: {REMOVED_KEYS[key]}" for key in removed))
    unknown = sorted(set(values) - known)
    if unknown:
        raise ConfigError(f"{section}: unknown key(s) {unknown}; expected some of {sorted(known)}")
    kwargs = {k: _coerce(f"{section}.{k}", hints[k], v) for k, v in values.items()}
    return cls(**kwargs)


def _coerce(where: str, hint: Any, value: Any) -> Any:
    origin = typing.get_origin(hint)
    if value is None:
        return _coerce(where, hint, {str: "", int: 0, float: 0.0, bool: False}.get(hint, ()))
    if hint is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"{where}: expected true or false, got {value!r}")
    if hint in (int, float):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{where}: expected a number, got {value!r}")
        if hint is int and int(value) != value:
            raise ConfigError(f"{where}: expected a whole number, got {value!r}")
        return hint(value)
    if hint is str:
        if isinstance(value, (dict, list)):
            raise ConfigError(f"{where}: expected a string, got {value!r}")
        return str(value)
    if origin is tuple:
        args = typing.get_args(hint)
        if args and typing.get_origin(args[0]) is tuple:  # tuple of (key, value) pairs
            if not isinstance(value, Mapping):
                raise ConfigError(f"{where}: expected a mapping of key: value")
            return tuple((str(k), str(v)) for k, v in value.items())
        if isinstance(value, str):
            value = [v.strip() for v in value.split(",") if v.strip()]
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where}: expected a list, got {value!r}")
        return tuple(str(v) for v in value)
    raise ConfigError(f"{where}: unsupported value {value!r}")  # pragma: no cover


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
                     ("scoring.tf_threads", s.tf_threads), ("scoring.partitions", s.partitions)):
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
