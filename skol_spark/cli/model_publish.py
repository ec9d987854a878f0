"""``skol-spark model publish``: a ``.keras`` or ``.h5`` file from disk into the store.

The file is untrusted until vetted: its architecture JSON is read straight
from the zip or the HDF5 attributes and checked (``model.vetting``) before
Keras deserializes anything, so a Lambda or a class from a foreign module is
refused with nothing imported or run. The model is loaded uncompiled (its
training loss may be a closure Keras cannot find again), so the names of the
losses and metrics it was compiled with are read here, for the manifest.
"""

from __future__ import annotations

import json
from pathlib import Path

from skol_spark.errors import ConfigError, ModelFormatError

MAX_CONFIG_BYTES = 64 * 1024 * 1024  # a model's architecture JSON is kilobytes; more is a zip bomb


def publish_file(store, args) -> int:
    from skol_spark.model.builder import import_custom_objects
    from skol_spark.model.vetting import check_architecture, check_keras_floor

    path = Path(args.path)
    if not path.is_file():
        raise ConfigError(f"model file not found: {path}")
    # Vet the file's architecture before Keras deserializes it: a Lambda or a foreign module is refused
    # (exit 14) with nothing imported or run, the same rule the store applies on load.
    architecture, compile_objects = read_file_architecture(path)
    check_architecture(architecture, custom_modules=tuple(args.custom_layers_module))
    check_keras_floor()
    import keras

    try:
        model = keras.models.load_model(path, compile=False,
                                        custom_objects=import_custom_objects(args.custom_layers_module))
    except (ValueError, TypeError, OSError) as e:
        raise ModelFormatError(f"cannot load {path}: {str(e).splitlines()[0][:300]}. A Keras 2 .h5 file "
                               "goes through: skol-spark model import-legacy") from None
    labels = [x.strip() for x in args.labels.split(",") if x.strip()]
    version = store.publish(model, args.name, labels=labels, window_size=args.window_size, stride=args.stride,
                            feature_kind=args.feature_kind, notes=args.notes, aliases=args.alias,
                            source={"kind": "publish", "file": path.name},
                            custom_modules=tuple(args.custom_layers_module), compile_objects=compile_objects,
                            feature_pipeline=args.feature_pipeline, pipeline_modules=tuple(args.pipeline_module))
    print(f"published {args.name} v{version}")
    return 0


def read_file_architecture(path: Path) -> tuple[str, list[str]]:
    """The model config JSON of a ``.keras`` zip (``config.json``) or an ``.h5`` file (``model_config``),
    and the names of the losses/metrics it was compiled with (the model is loaded uncompiled, so they
    are read here for the manifest)."""
    import zipfile

    from skol_spark.store.publish_checks import compile_object_names

    try:
        if zipfile.is_zipfile(path):
            with zipfile.ZipFile(path) as archive:
                size = archive.getinfo("config.json").file_size
                if size > MAX_CONFIG_BYTES:  # declared size, checked before it is inflated into memory
                    raise ModelFormatError(f"{path}: config.json declares {size} bytes (more than {MAX_CONFIG_BYTES}); "
                                           "not a Keras model file")
                config = archive.read("config.json").decode()
            return config, compile_object_names(config)
        import h5py

        with h5py.File(path, "r") as h5:
            config, training = h5.attrs.get("model_config"), h5.attrs.get("training_config")
        if config is None:
            raise ModelFormatError(f"{path} holds no model config (weights only?); save the whole model with "
                                   "model.save('model.keras')")
        text = lambda v: v.decode() if isinstance(v, bytes) else str(v)  # noqa: E731
        wrapped = json.dumps({"compile_config": json.loads(text(training))}) if training is not None else "{}"
        return text(config), compile_object_names(wrapped)
    except (KeyError, OSError, zipfile.BadZipFile, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ModelFormatError(f"cannot read {path}: {e}; expected a Keras .keras or .h5 model file") from None
