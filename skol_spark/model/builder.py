"""Rebuild a Keras model from an artifact: the one place custom objects live.

Why stand-ins are not needed: prediction never calls the loss. Models trained
with closure losses (``weighted_categorical_crossentropy`` capturing a class
weight tensor) serialize a loss *name* Keras cannot find again, so the compile
config is removed before deserialization and the model is used uncompiled.
Custom *layers* cannot be stood in for: they come from modules the user names
(``model.custom_layer_modules``), imported on the driver and on every executor.

Safety: the architecture JSON is vetted before Keras sees it
(``model.vetting``: no Lambda bytecode unless allowed, no classes from
modules that are neither Keras nor named by the user).
"""

from __future__ import annotations

import importlib
import inspect
import json
import logging
import os
from typing import Any, Callable, Sequence

import numpy as np

from skol_spark.model.artifact import GOLDEN_TOLERANCE, ModelArtifact, check_golden, decode_weights, golden_inputs
from skol_spark.errors import EnvironmentMismatchError, ModelFormatError
from skol_spark.model.vetting import check_architecture, check_keras_floor

log = logging.getLogger(__name__)


def configure_tensorflow(threads: int, *, streams: int = 1):
    """Pin TensorFlow's thread pools to the cores this task owns, before the first op; set up the device
    (``device.worker_device``: TF32 off, GPU memory growth). -> the ``device.WorkerDevice`` that scores.

    Two Python workers on two cores each running TF's default pools (one
    thread per core, twice over) oversubscribe the machine; pinning is the
    single largest win for CPU scoring. ``streams``: predicts the task runs at
    once (``scoring.predict_streams``); the cores are shared among them, and the
    inter-op pool has a thread per core so that they do not queue. Safe to
    call more than once.
    """
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import tensorflow as tf

    from skol_spark.model.device import worker_device

    threads = max(1, int(threads))
    streams = max(1, min(int(streams), threads))
    try:
        tf.config.threading.set_intra_op_parallelism_threads(threads // streams)
        tf.config.threading.set_inter_op_parallelism_threads(threads if streams > 1 else min(2, threads))
    except RuntimeError:
        pass  # the runtime is already initialised in this process; keep its settings
    return worker_device()


def import_custom_objects(modules: Sequence[str]) -> dict[str, Any]:
    """Import the user's modules and collect their Keras layers/losses by class name."""
    import keras

    from skol_spark.model import losses

    objects: dict[str, Any] = dict(losses.custom_objects())
    for name in modules:
        try:
            module = importlib.import_module(name)
        except ImportError as e:
            raise ModelFormatError(
                f"custom layer module {name!r} cannot be imported ({e}); ship it to the executors "
                "(--py-files) and check model.custom_layer_modules") from None
        for attr, value in vars(module).items():
            if inspect.isclass(value) and issubclass(value, (keras.layers.Layer, keras.losses.Loss)):
                objects[attr] = value
    return objects


def rebuild_model(artifact: ModelArtifact, *, custom_modules: Sequence[str] = (),
                  allow_unsafe: bool = False):
    """Artifact -> uncompiled ``keras.Model`` with its weights set.

    This is the only place skol_spark deserializes an architecture: the
    driver's smoke test, ``model verify`` and every executor's first build go
    through it.
    """
    check_keras_floor()
    config = check_architecture(artifact.architecture, custom_modules=custom_modules, allow_unsafe=allow_unsafe)
    objects = import_custom_objects(custom_modules)
    weights = decode_weights(artifact.weights, where=f"model {artifact.name!r} v{artifact.version} weights")
    import keras

    try:
        # What keras.models.model_from_json does, with safe mode as an argument: the public switch
        # (keras.config.enable_unsafe_deserialization) is process-wide and sticky, so one opted-in model would
        # turn Keras' safe mode off for every later load in this worker.
        model = keras.saving.deserialize_keras_object(config, custom_objects=objects, safe_mode=not allow_unsafe)
    except (TypeError, ValueError, KeyError, AttributeError) as e:
        raise ModelFormatError(
            f"model {artifact.name!r} v{artifact.version} cannot be rebuilt: {_first_line(e)}. If a custom layer "
            "is missing, name its module in model.custom_layer_modules") from None
    try:
        model.set_weights(weights)
    except ValueError as e:
        raise ModelFormatError(f"model {artifact.name!r} v{artifact.version}: weights do not fit the architecture "
                               f"({_first_line(e)}); the artifact is inconsistent, republish it") from None
    check_shapes(artifact, model)
    return model


def _first_line(error: BaseException) -> str:
    return str(error).strip().splitlines()[0][:400] if str(error).strip() else type(error).__name__


def check_shapes(artifact: ModelArtifact, model) -> None:
    """The manifest's window, feature and label counts must match the model (names both)."""
    in_shape = tuple(model.inputs[0].shape)
    out_shape = tuple(model.outputs[0].shape)
    name = f"model {artifact.name!r} v{artifact.version}"
    if len(in_shape) != 3 or len(out_shape) != 3:
        raise ModelFormatError(f"{name}: expected a sequence model [batch, lines, features] -> [batch, lines, "
                               f"classes], got input {in_shape} and output {out_shape}")
    for what, model_value, manifest_value in (
        ("window size", in_shape[1], artifact.window_size),
        ("feature size", in_shape[2], artifact.feature_size),
        ("label count", out_shape[2], len(artifact.labels)),
    ):
        if model_value is not None and int(model_value) != int(manifest_value):
            raise ModelFormatError(f"{name}: manifest {what} is {manifest_value} but the model's is {model_value}; "
                                   "republish with matching metadata")


def make_predict_fn(model) -> Callable[[np.ndarray], np.ndarray]:
    """A traced predict: ``float32[n, window, features] -> float32[n, window, classes]``.

    One ``tf.function`` with an unknown batch dimension traces once, so
    batches of any size reuse the same graph (Keras ``predict`` adds ~ms of
    per-call overhead and its own batching on top). Without AutoGraph, like
    Keras 3's own predict step (``do_not_convert``): a Keras model's code
    does not rely on it, and rewriting source costs trace time in every worker.
    """
    import tensorflow as tf

    spec = tf.TensorSpec([None, *model.inputs[0].shape[1:]], tf.float32)

    @tf.function(input_signature=[spec], reduce_retracing=True, autograph=False)
    def call(x):
        return model(as_declared_input(model, x), training=False)

    def predict(windows: np.ndarray) -> np.ndarray:
        return call(tf.convert_to_tensor(windows, dtype=tf.float32)).numpy()

    return predict


def as_declared_input(model, x):
    """``x`` in the structure the model declares: a one-element list for Keras 2 functional files.

    Keras 3 accepts a bare tensor for such a model but warns on every first
    call (once per Python worker, in every executor log); handing it the
    structure it was built with keeps the logs clean.
    """
    try:
        structure = model.input
    except (AttributeError, ValueError):  # a model without a defined input: a bare tensor is right
        return x
    return [x] if isinstance(structure, (list, tuple)) and len(structure) == 1 else x


def build_predictor(artifact: ModelArtifact, *, custom_modules: Sequence[str] = (),
                    allow_unsafe: bool = False, where: str = "driver",
                    line_projection: bool = False) -> Callable[[np.ndarray], np.ndarray]:
    """Rebuild, check the golden outputs, and return a traced predict function.

    ``line_projection``: when the model qualifies, a ``projection.LinePredictor``
    (each line's first-layer product computed once), if it reproduces the
    model's golden outputs; otherwise Keras' own call.
    """
    from skol_spark.model.device import exact_float32

    exact_float32()  # the golden outputs were computed in float32: compare like with like on any device
    model = rebuild_model(artifact, custom_modules=custom_modules, allow_unsafe=allow_unsafe)
    predict = make_predict_fn(model)
    fast = checked_line_predictor(artifact, model, predict, where) if line_projection else None
    if fast is not None:
        return fast
    check_golden(artifact, predict, where=where)
    return predict


def predictor_kind(predict) -> str:
    """``line_projection`` or ``keras``: which predictor ``build_predictor`` returned (run manifest)."""
    return "line_projection" if hasattr(predict, "predict_rows") else "keras"


def scoring_facts(artifact: ModelArtifact, predict, device) -> dict[str, Any]:
    """What a worker scores with, for the run manifest: host, device, TF32, golden tolerance, predictor path."""
    from skol_spark.model import device as devices

    paths = devices.recurrent_paths(json.loads(artifact.architecture), gpu=device.gpu)
    return {"host": os.uname().nodename, "device": device.name, "tf32": devices.tf32_enabled(),
            "memory_growth": device.memory_growth, "golden_tolerance": GOLDEN_TOLERANCE,
            "predictor": devices.predictor_path(predictor_kind(predict), paths)}


def checked_line_predictor(artifact: ModelArtifact, model, predict, where: str):
    """The model's ``LinePredictor`` once it passes the golden check, else None (logged).

    A failure here falls back rather than failing the job: Keras' own call,
    checked next, is the judge of whether the environment is at fault.
    Artifacts without golden outputs compare with Keras' call on the probe windows.
    """
    from skol_spark.model.projection import line_predictor

    fast = line_predictor(model)
    if fast is None:
        return None
    try:
        if artifact.manifest.get("golden"):
            check_golden(artifact, fast, where=where)
        else:
            probe = golden_inputs(0, artifact.window_size, artifact.feature_size)
            diff = float(np.max(np.abs(fast(probe) - predict(probe))))
            if not diff <= GOLDEN_TOLERANCE:
                raise EnvironmentMismatchError(f"it differs from Keras' own call by {diff:.3g}")
    except EnvironmentMismatchError as e:
        log.warning("line projection does not reproduce model %r v%s on %s (%s); predicting through Keras' "
                    "own call", artifact.name, artifact.version, where, str(e).split(". ")[0])
        return None
    fast.trace_sparse_product()
    return fast
