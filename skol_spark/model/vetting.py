"""Vet a model before Keras loads it: the architecture JSON is walked first, and legacy Keras is refused.

Loading a Keras model can run code: a ``Lambda`` layer carries Python
bytecode, and a serialized object may name any importable class. So the
architecture JSON is walked before Keras sees it. Only classes from
``keras.*``, ``skol_spark.model.losses`` and the user's named modules may be
referenced, and a ``Lambda`` layer is refused unless
``allow_unsafe_deserialization`` is set. Keras' own safe mode stays on too.
Publishing applies the same rule as loading, so a version that would be
refused on load is refused before it is written.
"""

from __future__ import annotations

import json
import os
import sys
from typing import Any, Iterable, Sequence

from skol_spark.model.device import layer_configs
from skol_spark.errors import DependencyError, ModelFormatError, UnsafeModelError

MIN_KERAS = (3, 15)
SAFE_MODULE_PREFIXES = ("keras", "skol_spark.model.losses")
FUNCTION_MODULES = ("keras.activations", "keras.losses", "keras.metrics",
                    "keras.src.activations", "keras.src.losses", "keras.src.metrics")


def check_keras_floor() -> None:
    """Refuse legacy Keras: Keras < 3.15 had safe-mode bypasses; tf_keras does not check Lambdas."""
    if os.environ.get("TF_USE_LEGACY_KERAS", "").strip().lower() in ("1", "true", "yes"):
        raise DependencyError(
            "TF_USE_LEGACY_KERAS is set: legacy Keras 2 (tf_keras) loads Lambda bytecode without checks. "
            "Unset TF_USE_LEGACY_KERAS to run skol_spark with Keras 3")
    # The installed version is read from package metadata, not by importing keras: the import
    # (TensorFlow with it) takes seconds, and the driver calls this on its main thread.
    version = getattr(sys.modules.get("keras"), "__version__", None) or _installed_version("keras")
    found = tuple(int(p) for p in version.split(".")[:2] if p.isdigit())
    if found < MIN_KERAS:
        raise DependencyError(
            f"keras {version} is too old: skol_spark needs keras >= 3.15 (earlier versions had "
            "safe-mode bypasses). pip install 'keras>=3.15'")


def _installed_version(package: str) -> str:
    from importlib import metadata

    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        raise DependencyError(f"{package} is not installed: pip install '{package}>=3.15'") from None


def check_architecture(architecture: str, *, custom_modules: Sequence[str] = (),
                       allow_unsafe: bool = False) -> dict[str, Any]:
    """Parse and vet the architecture JSON; returns it without its compile config.

    Raises UnsafeModelError for Lambda layers / functions and ModelFormatError
    for classes from modules that are neither Keras nor named by the user.
    """
    try:
        config = json.loads(architecture)
    except json.JSONDecodeError as e:
        raise ModelFormatError(f"architecture is not valid JSON ({e.msg} at {e.pos})") from None
    if not isinstance(config, dict) or "class_name" not in config:
        raise ModelFormatError("architecture JSON is not a serialized Keras model (no class_name)")
    config.pop("compile_config", None)
    allowed = tuple(SAFE_MODULE_PREFIXES) + tuple(custom_modules)
    for node in layer_configs(config):
        _vet_node(node, allowed, allow_unsafe)
    return config


def _vet_node(node: dict[str, Any], allowed: tuple[str, ...], allow_unsafe: bool) -> None:
    """Refuse one serialized object unless Keras would resolve it to safe, known code."""
    module, cls = node.get("module"), node.get("class_name")
    if cls in ("Lambda", "__lambda__") and not allow_unsafe:
        layer = node.get("config") if isinstance(node.get("config"), dict) else {}
        what = f"a Lambda layer ({layer.get('name', '?')})" if cls == "Lambda" else \
            "a serialized Python lambda (class_name '__lambda__', e.g. as an activation)"
        raise UnsafeModelError(
            f"architecture contains {what}: it carries Python bytecode that would run on load. Replace it with "
            "a registered custom layer or function, or, only if you trust the source, set "
            "model.allow_unsafe_deserialization: true")
    if not isinstance(module, str):
        return  # resolved by name among Keras' own and registered objects
    if cls == "function":
        # "builtins" is how Keras writes its own functions; it resolves them only among keras.activations,
        # keras.losses and keras.metrics. Any other keras.* symbol (keras.config...) is not a layer function.
        # allow_unsafe opens Lambdas only: a function from a foreign module is refused regardless.
        if module == "builtins" or _allowed(module, FUNCTION_MODULES + tuple(a for a in allowed if a != "keras")):
            return
        raise UnsafeModelError(f"architecture references function {node.get('config')!r} from module "
                               f"{module!r}; only Keras activations/losses/metrics and functions from "
                               "model.custom_layer_modules are allowed")
    if _allowed(module, allowed):
        return
    if module.split(".", 1)[0] in sys.stdlib_module_names:
        raise UnsafeModelError(
            f"architecture names {cls!r} from module {module!r}, which is Python's own library, not a Keras "
            "layer module: refused, nothing was imported or run. The stored architecture is not a plain "
            "Keras model; republish it from a trusted source")
    raise ModelFormatError(
        f"layer class {cls!r} comes from module {module!r}, which is not allowed: if it is your custom "
        f"layer, add `{module}` to model.custom_layer_modules (--custom-layers-module) and make it "
        "importable on the driver and the executors")


def _allowed(module: str, allowed: Iterable[str]) -> bool:
    return any(module == p or module.startswith(p + ".") for p in allowed)
