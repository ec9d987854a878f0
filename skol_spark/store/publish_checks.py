"""What ``ModelStore.publish`` checks and records about a model before anything is written.

A refusal here beats a version nobody can load: the model's shapes must fit the metadata given
(``check_publishable``), and the loss/metric names it was compiled with are recorded for the
manifest (``compile_object_names``; informational, prediction never calls them).
"""

from __future__ import annotations

import json
from typing import Any, Sequence

from skol_spark.errors import ModelFormatError
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
