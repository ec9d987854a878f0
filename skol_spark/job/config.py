"""One typed job config, parsed once at the edge.

A YAML file plus ``--set section.key=value`` overrides becomes a frozen
``JobConfig``. Every inner function takes the values it needs from it, so a
typo fails here, naming the field (``output.mode: expected one of ...``),
instead of deep inside a Spark task. Secrets never live in the config: the
Redis password is read from an environment variable or a file named here, and
``redacted()`` is what logs and manifests see.

This module reads and types the values; the sections themselves are in
``config_sections`` and the cross-field checks in ``config_checks``. Import
the config from here: every public name is re-exported.
"""

from __future__ import annotations

import dataclasses
import os
import typing
from pathlib import Path
from typing import Any, Mapping, Sequence

import yaml

from skol_spark.errors import ConfigError
from skol_spark.job.config_checks import require_job_fields, validate
from skol_spark.job.config_sections import (InputConfig, JobConfig, JobSettings, ModelConfig, OutputConfig,
                                            ScoringConfig, redact_url)

# The config's public names, importable from here as before the sections and checks had modules of their own.
__all__ = ["InputConfig", "JobConfig", "JobSettings", "ModelConfig", "OutputConfig", "ScoringConfig",
           "apply_override", "config_from_dict", "load_config", "redact_url", "require_job_fields", "validate"]


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
