"""What ``ModelStore.publish`` checks and records about a model before anything is written.

A refusal here beats a version nobody can load: the model's shapes must fit the metadata given
(``check_publishable``), and the loss/metric names it was compiled with are recorded for the
manifest (``compile_object_names``; informational, prediction never calls them). The manifest
itself (``version_manifest``) is the record: checksums, shapes and the golden outputs every
later load is compared against.
"""

from __future__ import annotations

import datetime as dt
import json
from typing import Any, Mapping, Sequence

from skol_spark.errors import ModelFormatError
from skol_spark.model.artifact import FORMAT_VERSION, framework_versions, golden_inputs, sha256
from skol_spark.store.manifest_schema import FEATURE_KINDS


def check_publishable(model, labels: Sequence[str], window_size: int | None, stride: int | None,
                      feature_kind: str) -> tuple[int, int, int]:
    """A ``[batch, lines, features] -> [batch, lines, classes]`` model and metadata that fit it.

    Returns ``(window, stride, features)``; raises ModelFormatError naming both numbers on a mismatch.
    """
    in_shape, out_shape = tuple(model.inputs[0].shape), tuple(model.outputs[0].shape)
    if len(in_shape) != 3 or len(out_shape) != 3:
        raise ModelFormatError(f"expected a sequence model [batch, lines, features] -> [batch, lines, classes]; "
                               f"got {in_shape} -> {out_shape}")
    window = int(window_size or in_shape[1] or 0)
    if window < 1:
        raise ModelFormatError("the model accepts any sequence length: pass --window-size")
    if in_shape[1] is not None and window != int(in_shape[1]):
        raise ModelFormatError(f"--window-size {window} disagrees with the model's input length {in_shape[1]}")
    if len(labels) != int(out_shape[2]) or len(set(labels)) != len(labels):
        raise ModelFormatError(f"the model has {out_shape[2]} output classes but {len(labels)} distinct labels "
                               f"were given ({list(labels)}); pass one label per class, in class-index order")
    step = int(stride or window)
    if not 1 <= step <= window:
        raise ModelFormatError(f"stride {step} must be between 1 and the window size {window}")
    if feature_kind not in FEATURE_KINDS:
        raise ModelFormatError(f"feature kind {feature_kind!r}: expected one of {', '.join(FEATURE_KINDS)}")
    return window, step, int(in_shape[2])


def compile_object_names(architecture: str) -> list[str]:
    """Names of losses/metrics in the compile config: informational, they get no stand-ins."""
    config = json.loads(architecture).get("compile_config") or {}
    names: list[str] = []

    def collect(value: Any) -> None:
        if isinstance(value, dict):
            if value.get("class_name") == "function" or "registered_name" in value:
                cfg, registered = value.get("config"), value.get("registered_name")
                if isinstance(cfg, str):
                    names.append(cfg)  # a function: its bare name, e.g. a closure loss
                else:  # a class: its registered name says which package provides it
                    names.append(str(registered if registered not in (None, "function") else value.get("class_name")))
                return
            for v in value.values():
                collect(v)
        elif isinstance(value, list):
            for v in value:
                collect(v)
        elif isinstance(value, str):
            names.append(value)

    for key in ("loss", "metrics", "weighted_metrics"):
        collect(config.get(key))
    return sorted(set(names))


def version_manifest(model, name: str, labels: list[str], shape: tuple[int, int, int], architecture: str,
                     weights: bytes, *, feature_kind: str, notes: str, golden_seed: int,
                     compile_objects: Sequence[str] | None, source: Mapping[str, Any] | None) -> dict[str, Any]:
    """The manifest of a checked model, less what the write adds (version, chunk counts, extras).

    ``shape`` is ``check_publishable``'s ``(window, stride, features)``. The golden outputs are the
    model's own predictions on seeded inputs, computed in float32 even on a GPU that would use TF32
    (docs/gpu.md), so that any later load on any device can be compared with them.
    """
    from skol_spark.model.builder import as_declared_input
    from skol_spark.model.device import exact_float32

    window, step, features = shape
    exact_float32()
    probe = golden_inputs(golden_seed, window, features)
    outputs = model(as_declared_input(model, probe), training=False)
    outputs = outputs.numpy() if hasattr(outputs, "numpy") else outputs
    return {
        "format_version": FORMAT_VERSION,
        "name": name,
        "labels": labels,
        "window_size": window,
        "stride": step,
        "feature_size": features,
        "feature_kind": feature_kind,
        "variable_length": model.inputs[0].shape[1] is None,
        "notes": notes,
        "compile_objects": sorted(compile_objects) if compile_objects is not None
        else compile_object_names(architecture),
        "architecture": {"sha256": sha256(architecture), "bytes": len(architecture.encode())},
        "weights": {"sha256": sha256(weights), "bytes": len(weights), "arrays": len(model.get_weights()),
                    "parameters": int(model.count_params())},
        "golden": {"seed": golden_seed, "outputs": [[[round(float(v), 8) for v in row] for row in w]
                                                    for w in outputs]},
        "framework": framework_versions(),
        "created_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "source": dict(source or {"kind": "publish"}),
    }
