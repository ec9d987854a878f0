"""Import models saved by the original SKOL project into the model store.

The original project kept a model at one Redis key as a gzip'd tar (written
with ``tar.add(model_dir, arcname=".")``) holding::

    classifier_model.h5     Keras HDF5 (Keras 2 / tf.keras, or Keras 3's legacy h5)
    metadata.json           {"label_mapping": {name: index}, "config": {"model_type": "rnn",
                             "model_params": {"window_size", "prediction_stride", "input_size",
                             "num_classes", ...}}, "version": ...}
    feature_pipeline/       a Spark ML PipelineModel directory (opaque files)

``import_legacy`` turns one into a new immutable store version. The archive is
untrusted input: every member is vetted before anything is extracted
(``safe_tar.safe_extract``), the model architecture is vetted before Keras parses it
(``model.vetting.check_architecture``: no Lambda bytecode, no foreign modules),
and Keras loads it with ``compile=False`` (the training loss was a closure no
loader can find; prediction never needs it). Keras 2 differences Keras 3
rejects are translated in ``skol_spark.store.legacy_h5``.
"""

from __future__ import annotations

import json
import logging
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

from skol_spark.model.artifact import sha256
from skol_spark.errors import ModelFormatError, ModelNotFoundError, RedisUnavailableError
from skol_spark.store.safe_tar import MAX_TOTAL_BYTES, pack_directory, safe_extract
from skol_spark.store.legacy_h5 import load_h5_model

log = logging.getLogger(__name__)

H5_NAME = "classifier_model.h5"
METADATA_NAME = "metadata.json"
PIPELINE_DIR = "feature_pipeline"
SECRET_WORDS = ("password", "passwd", "secret", "credential", "apikey", "api_key", "private_key")
SECRET_TOKENS = {"pass", "pwd", "token", "auth"}
URL_USERINFO = re.compile(r"(?P<scheme>[a-z][a-z0-9+.\-]*://)[^/@\s]*@", re.I)


@dataclass(frozen=True, eq=False)
class LegacyModel:
    """One legacy archive, read and checked. ``model`` is an uncompiled ``keras.Model``.

    ``labels`` are ordered by class index; ``feature_pipeline`` is a tar.gz of the
    ``feature_pipeline/`` directory (or None when the archive has none);
    ``translations`` lists the Keras 2 config rewrites applied to load the h5.
    """

    model: Any
    labels: tuple[str, ...]
    window_size: int
    stride: int
    input_size: int
    feature_pipeline: bytes | None
    metadata: dict[str, Any]
    keras_version: str = ""
    translations: tuple[str, ...] = ()


# ---- reading the archive --------------------------------------------------
def read_archive_from_redis(client, key: str) -> bytes:
    """GET one legacy archive. Raises ModelNotFoundError naming the key when it is absent."""
    import redis

    try:
        data = client.get(key)
    except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError) as e:
        raise RedisUnavailableError(f"cannot read legacy model key {key!r} ({type(e).__name__}: {e})") from None
    except redis.exceptions.ResponseError as e:
        raise ModelFormatError(f"legacy model key {key!r} is not a string value ({e}); give the key the "
                               "original project wrote its tar.gz to (its redis_key)") from None
    if data is None:
        raise ModelNotFoundError(f"legacy model key {key!r} does not exist in Redis; check the key name "
                                 "(the original project's redis_key) and the database number in the URL")
    return data


def read_archive_file(path: str | Path) -> bytes:
    """Read a legacy archive saved to a local file (ModelNotFoundError when it is missing)."""
    try:
        return Path(path).read_bytes()
    except FileNotFoundError:
        raise ModelNotFoundError(f"legacy archive file {str(path)!r} does not exist") from None


def read_legacy_archive(archive_bytes: bytes, *, custom_modules: Sequence[str] = (),
                        max_bytes: int = MAX_TOTAL_BYTES) -> LegacyModel:
    """Archive bytes -> LegacyModel. Raises UnsafeModelError / ModelFormatError naming the fix.

    ``max_bytes`` caps the unpacked size (``model import-legacy --max-unpacked-bytes``).
    """
    with tempfile.TemporaryDirectory(prefix="skol-legacy-") as tmp:
        safe_extract(archive_bytes, Path(tmp), max_bytes=max_bytes)
        root = _archive_root(Path(tmp))
        metadata = _read_metadata(root / METADATA_NAME)
        labels = labels_from_mapping(metadata.get("label_mapping"))
        params = _model_params(metadata)
        model, keras_version, translations = load_h5_model(root / H5_NAME, custom_modules=custom_modules)
        window, stride, input_size = _check_against_model(model, labels, params)
        pipeline = root / PIPELINE_DIR
        packed = pack_directory(pipeline) if pipeline.is_dir() else None
    return LegacyModel(model=model, labels=tuple(labels), window_size=window, stride=stride, input_size=input_size,
                       feature_pipeline=packed, metadata=metadata, keras_version=keras_version,
                       translations=tuple(translations))


def _archive_root(tmp: Path) -> Path:
    """The directory holding the model files: the archive root, or its single top-level directory."""
    candidates = [tmp] + [p for p in tmp.iterdir() if p.is_dir() and p.name != PIPELINE_DIR]
    for candidate in candidates:
        if (candidate / METADATA_NAME).exists() or (candidate / H5_NAME).exists():
            root = candidate
            break
    else:
        root = tmp
    missing = [n for n in (H5_NAME, METADATA_NAME) if not (root / n).exists()]
    if missing:
        found = sorted(str(p.relative_to(tmp)) for p in tmp.iterdir())[:10]
        raise ModelFormatError(f"legacy archive has no {' or '.join(missing)} (top level holds: {found or 'nothing'}); "
                               "it is not a SKOL model archive: export the model with the original project's "
                               "save_model() (model_type 'rnn')")
    return root


def _read_metadata(path: Path) -> dict[str, Any]:
    try:
        metadata = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ModelFormatError(f"legacy {METADATA_NAME} is not valid JSON ({e}); fix or re-export the archive") from None
    if not isinstance(metadata, dict):
        raise ModelFormatError(f"legacy {METADATA_NAME} must be a JSON object, got {type(metadata).__name__}")
    model_type = (metadata.get("config") or {}).get("model_type")
    if model_type not in (None, "rnn"):
        raise ModelFormatError(f"legacy {METADATA_NAME} config.model_type is {model_type!r}: only Keras sequence "
                               "models (model_type 'rnn') can be imported; Spark ML classifiers are not supported")
    return metadata


def labels_from_mapping(mapping: Any) -> list[str]:
    """``{name: index}`` -> names ordered by index; indices must be exactly 0..n-1."""
    if not isinstance(mapping, dict) or not mapping:
        raise ModelFormatError(f"legacy {METADATA_NAME} label_mapping must be a non-empty object "
                               "{label: class index}; add it (the original StringIndexer's labels)")
    by_index: dict[int, str] = {}
    for name, index in mapping.items():
        ok = isinstance(index, (int, float)) and not isinstance(index, bool) and float(index).is_integer()
        if not ok or int(index) in by_index:
            raise ModelFormatError(f"legacy {METADATA_NAME} label_mapping[{name!r}] = {index!r}: each label needs "
                                   "a distinct integer class index")
        by_index[int(index)] = str(name)
    if sorted(by_index) != list(range(len(by_index))):
        raise ModelFormatError(f"legacy {METADATA_NAME} label_mapping indices are {sorted(by_index)}; they must be "
                               f"0..{len(by_index) - 1}, one per output class of the model")
    return [by_index[i] for i in range(len(by_index))]


def _model_params(metadata: Mapping[str, Any]) -> dict[str, int | None]:
    params = (metadata.get("config") or {}).get("model_params") or {}
    if not isinstance(params, dict):
        raise ModelFormatError(f"legacy {METADATA_NAME} config.model_params must be an object")
    out: dict[str, int | None] = {}
    for key in ("window_size", "prediction_stride", "input_size", "num_classes"):
        value = params.get(key)
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
            raise ModelFormatError(f"legacy {METADATA_NAME} config.model_params.{key} = {value!r}: expected a "
                                   "positive integer; fix the metadata or remove the key")
        out[key] = value
    return out


def _check_against_model(model, labels: Sequence[str], params: Mapping[str, int | None]) -> tuple[int, int, int]:
    """Metadata vs. model: window, stride, feature and class counts must agree (names both numbers)."""
    in_shape, out_shape = tuple(model.inputs[0].shape), tuple(model.outputs[0].shape)
    if len(in_shape) != 3 or len(out_shape) != 3:
        raise ModelFormatError(f"legacy {H5_NAME} is not a sequence model [batch, lines, features] -> "
                               f"[batch, lines, classes]: {in_shape} -> {out_shape}")
    window = params["window_size"] or in_shape[1]
    where = f"legacy {METADATA_NAME} config.model_params"
    if window is None:
        raise ModelFormatError(f"{where}.window_size is missing and {H5_NAME} accepts any length; add window_size")
    for what, meta_value, model_value in ((f"{where}.window_size", window, in_shape[1]),
                                          (f"{where}.input_size", params["input_size"], in_shape[2]),
                                          (f"{where}.num_classes", params["num_classes"], out_shape[2]),
                                          (f"the label_mapping size in {METADATA_NAME}", len(labels), out_shape[2])):
        if meta_value is not None and model_value is not None and int(meta_value) != int(model_value):
            raise ModelFormatError(f"{what} is {meta_value} but {H5_NAME} has {model_value}; the metadata does not "
                                   "belong to this model: export both from the same training run")
    stride = params["prediction_stride"] or window
    if stride > window:
        raise ModelFormatError(f"{where}.prediction_stride {stride} is larger than window_size {window}")
    return int(window), int(stride), int(in_shape[2] or params["input_size"] or 0)


def import_legacy(store, archive_bytes: bytes, name: str, *, notes: str = "", aliases: Iterable[str] = (),
                  custom_modules: Sequence[str] = (), max_bytes: int = MAX_TOTAL_BYTES) -> int:
    """Read a legacy archive and publish it as a new version of ``name``; returns the version.

    The feature pipeline (if any) is stored as the ``feature_pipeline`` extra, with its summary in the
    manifest when it can be read (``skol_spark.store.pipeline.for_import``);
    the legacy metadata, minus anything that looks like a secret, goes into the
    manifest's ``source``.
    """
    legacy = read_legacy_archive(archive_bytes, custom_modules=custom_modules, max_bytes=max_bytes)
    metadata, redacted = redact_secrets(legacy.metadata)
    if redacted:
        log.warning("legacy metadata: left out %d secret-looking value(s): %s", len(redacted), ", ".join(redacted))
    source = {"kind": "import-legacy", "archive_sha256": sha256(archive_bytes), "h5_keras_version": legacy.keras_version,
              "keras2_translations": list(legacy.translations), "metadata": metadata}
    from skol_spark.store.pipeline import for_import

    extras, pipeline = for_import(legacy.feature_pipeline, legacy.input_size)
    version = store.publish(legacy.model, name, labels=legacy.labels, window_size=legacy.window_size,
                            stride=legacy.stride, feature_kind="any", notes=notes, aliases=aliases,
                            extras=extras, source=source, feature_pipeline=pipeline)
    log.info("imported legacy model as %s v%d (h5 written by Keras %s, %d Keras 2 translation(s))", name, version,
             legacy.keras_version or "?", len(legacy.translations))
    return version


def redact_secrets(value: Any, path: str = "") -> tuple[Any, list[str]]:
    """Drop keys that look like secrets and passwords inside URLs; returns (clean copy, dropped paths)."""
    dropped: list[str] = []
    if isinstance(value, dict):
        clean = {}
        for key, item in value.items():
            where = f"{path}.{key}" if path else str(key)
            if _looks_secret(str(key)):
                dropped.append(where)
                continue
            clean[key], inner = redact_secrets(item, where)
            dropped += inner
        return clean, dropped
    if isinstance(value, list):
        pairs = [redact_secrets(item, f"{path}[{i}]") for i, item in enumerate(value)]
        return [p[0] for p in pairs], [d for p in pairs for d in p[1]]
    if isinstance(value, str) and URL_USERINFO.search(value):
        return URL_USERINFO.sub(r"\g<scheme>***@", value), [path]
    return value, dropped


def _looks_secret(key: str) -> bool:
    lowered = key.lower()
    return any(w in lowered for w in SECRET_WORDS) or bool(SECRET_TOKENS & set(re.split(r"[^a-z0-9]+", lowered)))
