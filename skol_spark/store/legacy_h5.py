"""Load a Keras HDF5 model written by Keras 2 (tf.keras, tf_keras) or Keras 3, with Keras 3.

Keras 3 reads its own h5 files but rejects parts of Keras 2 configs (e.g.
``Unrecognized keyword arguments passed to LSTM: {'time_major': False}``).
``load_h5_model`` reads the ``model_config`` attribute with h5py, translates
the known differences, vets the result with ``model.vetting.check_architecture``
(Lambda bytecode and foreign modules are refused before Keras parses
anything), and, when something changed, writes the translated config with the
original ``model_weights`` group into a sibling h5. Keras 3's own h5 loader
then reads it with ``compile=False`` and ``safe_mode=True``: it already knows
the rest of the Keras 2 layout (top-level layers without ``module`` keys,
nested-list inbound nodes, weights matched in Keras 2 layer order), and
``model_from_json`` stays in one place (``model.builder.rebuild_model``).

Translated (Keras 2 -> Keras 3):

- ``time_major: false`` on RNN layers -> dropped (``true`` is refused: Keras 3 is batch-major)
- ``batch_input_shape`` -> ``batch_shape`` on InputLayer, ``input_shape`` (no batch dim) on other layers
- dtype policy ``{"class_name": "Policy", "config": {"name": n}}`` -> ``n``
- ``dtype`` inside initializer configs (tf.keras 1.x) -> dropped
- BatchNormalization ``axis: [n]`` -> ``axis: n``
- nested layers without ``module`` (wrappers from tf.keras <= 2.12) -> ``module: keras.layers``
- modules ``tf_keras.*``, ``tensorflow.keras.*``, ``tensorflow.python.keras.*`` -> ``keras.<category>``
"""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path
from typing import Any, Sequence

from skol_spark.errors import ModelFormatError
from skol_spark.model.builder import import_custom_objects
from skol_spark.model.vetting import check_architecture, check_keras_floor

HDF5_MAGIC = b"\x89HDF\r\n\x1a\n"
KERAS2_MODULE_PREFIXES = ("tf_keras.", "tensorflow.python.keras.", "tensorflow.keras.")
PUBLIC_CATEGORIES = ("layers", "initializers", "regularizers", "constraints", "activations")
NESTED_LAYER_KEYS = ("layer", "backward_layer", "cell", "cells")


def load_h5_model(path: Path, *, custom_modules: Sequence[str] = ()) -> tuple[Any, str, list[str]]:
    """h5 file -> (uncompiled ``keras.Model``, Keras version that wrote it, translations applied).

    Raises UnsafeModelError for Lambda layers / foreign functions and
    ModelFormatError naming the layer and config key Keras 3 cannot rebuild.
    """
    check_keras_floor()
    raw, keras_version = read_h5_config(path)
    translated, changes = translate_config(raw)
    config = check_architecture(json.dumps(translated), custom_modules=custom_modules)
    source = path
    if changes:
        source = path.with_name(path.stem + ".keras3.h5")
        _write_translated(path, source, config)
    objects = import_custom_objects(custom_modules) if custom_modules else None
    import keras

    try:
        model = keras.models.load_model(str(source), custom_objects=objects, compile=False, safe_mode=True)
    except (TypeError, ValueError, KeyError, AttributeError, IndexError) as e:  # Keras' deserialization errors
        raise rebuild_error(e, config, path.name, keras_version) from None
    return model, keras_version, changes


def read_h5_config(path: Path) -> tuple[dict[str, Any], str]:
    """The h5 file's ``model_config`` (parsed JSON) and ``keras_version`` attributes."""
    import h5py

    if not path.is_file():
        raise ModelFormatError(f"{path.name} is not a file (a Spark ML model directory?); only Keras h5 models "
                               "can be imported")
    with path.open("rb") as f:
        head = f.read(8)
    if head != HDF5_MAGIC:
        kind = "a Python pickle" if head[:1] == b"\x80" else "a zip (.keras format?)" if head[:2] == b"PK" else "not HDF5"
        raise ModelFormatError(f"{path.name} is {kind}, not a Keras HDF5 file; re-save the model with "
                               "model.save('classifier_model.h5')")
    with h5py.File(path, "r") as h5:
        raw = h5.attrs.get("model_config")
        version = h5.attrs.get("keras_version", b"")
        has_weights = "model_weights" in h5
    if raw is None or not has_weights:
        raise ModelFormatError(f"{path.name} holds no model_config/model_weights (a weights-only file?); save the "
                               "whole model with model.save('classifier_model.h5')")
    try:
        config = json.loads(raw.decode() if isinstance(raw, bytes) else str(raw))
    except json.JSONDecodeError as e:
        raise ModelFormatError(f"{path.name}: model_config is not valid JSON ({e.msg})") from None
    return config, version.decode() if isinstance(version, bytes) else str(version)


def translate_config(config: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """Rewrite a Keras 2 model config for Keras 3 -> (new config, one line per change). Input unchanged."""
    config = copy.deepcopy(config)
    changes: list[str] = []
    for key, node in list(_walk(config, "")):
        for change in _translate_node(key, node):
            if change not in changes:
                changes.append(change)
    return config, changes


def _walk(node: Any, key: str):
    """Yield (key it sits under, node) for every dict with a class_name; list items inherit the list's key."""
    if isinstance(node, dict):
        if "class_name" in node:
            yield key, node
        for child_key, value in node.items():
            yield from _walk(value, str(child_key))
    elif isinstance(node, list):
        for value in node:
            yield from _walk(value, key)


def _translate_node(key: str, node: dict[str, Any]) -> list[str]:
    cls = str(node["class_name"])
    cfg = node.get("config")
    name = cfg.get("name", cls) if isinstance(cfg, dict) else cls
    changes = []
    module = node.get("module")
    if isinstance(module, str) and module.startswith(KERAS2_MODULE_PREFIXES):
        node["module"] = _keras3_module(module, cls)
        changes.append(f"{name}: module {module} -> {node['module']}")
    elif module is None and key in NESTED_LAYER_KEYS and _is_keras_layer(cls):
        node["module"] = "keras.layers"
        changes.append(f"{name}: added module keras.layers")
    if not isinstance(cfg, dict):
        return changes
    if "time_major" in cfg:
        if cfg.pop("time_major"):
            raise ModelFormatError(f"layer {name!r} ({cls}) has time_major=True; Keras 3 RNNs are batch-major only. "
                                   "Re-save the model with time_major=False (inputs [batch, lines, features])")
        changes.append(f"{name}: dropped time_major")
    if "batch_input_shape" in cfg:
        shape = cfg.pop("batch_input_shape")
        if cls == "InputLayer":
            cfg.setdefault("batch_shape", shape)
        elif isinstance(shape, list) and shape:
            cfg.setdefault("input_shape", shape[1:])
        changes.append(f"{name}: batch_input_shape -> {'batch_shape' if cls == 'InputLayer' else 'input_shape'}")
    dtype = cfg.get("dtype")
    if isinstance(dtype, dict) and dtype.get("class_name") == "Policy":
        cfg["dtype"] = (dtype.get("config") or {}).get("name", "float32")
        changes.append(f"{name}: dtype Policy -> {cfg['dtype']!r}")
    if key.endswith("_initializer") and "dtype" in cfg:
        del cfg["dtype"]
        changes.append(f"{key}: dropped initializer dtype")
    axis = cfg.get("axis")
    if cls == "BatchNormalization" and isinstance(axis, list) and len(axis) == 1:
        cfg["axis"] = int(axis[0])
        changes.append(f"{name}: axis [{axis[0]}] -> {axis[0]}")
    return changes


def _is_keras_layer(cls: str) -> bool:
    import keras

    return isinstance(getattr(keras.layers, cls, None), type)


def _keras3_module(module: str, cls: str) -> str:
    for prefix in KERAS2_MODULE_PREFIXES:
        if module.startswith(prefix):
            parts = [p for p in module[len(prefix):].split(".") if p != "src"]
            if parts and parts[0] in PUBLIC_CATEGORIES:
                return f"keras.{parts[0]}"
    if cls == "Functional":
        return "keras.src.models.functional"
    if cls in ("Model", "Sequential"):
        return "keras"
    return "keras.layers" if _is_keras_layer(cls) else module


def _write_translated(src: Path, dst: Path, config: dict[str, Any]) -> None:
    """Copy ``src``'s attributes and ``model_weights`` into ``dst`` with the translated config."""
    import h5py

    with h5py.File(src, "r") as s, h5py.File(dst, "w", libver="latest") as d:
        for attr, value in s.attrs.items():
            if attr != "training_config":
                d.attrs[attr] = value
        d.attrs["model_config"] = json.dumps(config)
        s.copy(s["model_weights"], d, "model_weights")


def rebuild_error(error: BaseException, config: dict[str, Any], filename: str, keras_version: str) -> ModelFormatError:
    """Turn Keras' deserialization error into one naming the layer and config key, and the fix."""
    import keras

    text = str(error).strip().splitlines()[0].split(" Full object config")[0][:300] or type(error).__name__
    cls, keys = "", []
    if m := re.search(r"passed to (\w+): \{(.*?)\}", text):
        cls, keys = m.group(1), re.findall(r"'([^']+)'", m.group(2))
    elif m := re.search(r"(?:Could not locate class|Unknown layer:?) '?([\w.>]+)", text):
        cls = m.group(1)
    layers = [(node.get("config") or {}).get("name", "?") for _, node in _walk(config, "")
              if node.get("class_name") == cls and (not keys or any(k in (node.get("config") or {}) for k in keys))]
    where = f"layer {layers[0]!r} ({cls})" if layers else f"class {cls!r}" if cls else "the model"
    what = f", config key {', '.join(map(repr, keys))}" if keys else ""
    hint = ("This Keras 2 difference is not translated by skol_spark.store.legacy_h5: add the translation there, or load "
            "the model where it was trained and re-save it with Keras 3 (model.save('classifier_model.h5'))"
            if not keras_version.startswith("3") else "Re-save the model with this Keras version, or name the module "
            "of its custom layers (--custom-layers-module)")
    return ModelFormatError(
        f"{filename} (written by Keras {keras_version or 'unknown'}) cannot be rebuilt with Keras {keras.__version__}: "
        f"{where}{what}: {text}. {hint}")
