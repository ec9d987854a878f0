"""Rebuilding a model from an artifact (``model/builder.py``): the architecture check on hand-written JSON,
and the rebuild, shape check and traced predict on a tiny real Keras model with a custom layer."""

from __future__ import annotations

import json

import numpy as np
import pytest

from skol_spark.errors import DependencyError, EnvironmentMismatchError, ModelFormatError, UnsafeModelError
from skol_spark.model.artifact import ModelArtifact, encode_weights, golden_inputs, sha256
from skol_spark.model.builder import (build_predictor, check_architecture, check_keras_floor, check_shapes,
                                      make_predict_fn, rebuild_model)

WINDOW, FEATURES, LABELS = 4, 3, ["A", "B"]
CUSTOM = "tests.custom_layers"


def model_json(*layers: dict, **top) -> str:
    """A serialized functional model holding ``layers`` (only what the check walks)."""
    return json.dumps({"module": "keras", "class_name": "Functional", "config": {"name": "m", "layers": list(layers)},
                       "compile_config": {"loss": {"module": "builtins", "class_name": "function",
                                                   "config": "weighted_categorical_crossentropy"}}, **top})


def layer(class_name: str, module: str | None = "keras.layers", **config) -> dict:
    node = {"class_name": class_name, "config": {"name": class_name.lower(), **config}}
    if module is not None:
        node["module"] = module
    return node


def dense(activation) -> dict:
    return layer("Dense", units=2, activation=activation)


# ---- check_architecture --------------------------------------------------------------------------------

def test_a_plain_keras_model_passes_without_its_compile_config():
    config = check_architecture(model_json(layer("InputLayer"), dense("softmax")))
    assert "compile_config" not in config  # a closure loss's name could never be found again
    assert [n["class_name"] for n in config["config"]["layers"]] == ["InputLayer", "Dense"]


@pytest.mark.parametrize("text", ["{not json", "[1, 2]", '{"config": {}}'])
def test_text_that_is_no_serialized_model_is_a_format_error(text):
    with pytest.raises(ModelFormatError, match="architecture (is not valid JSON|JSON is not a serialized Keras)"):
        check_architecture(text)


def test_a_lambda_layer_is_refused_naming_it_and_the_opt_in():
    arch = model_json(layer("Lambda", function={"class_name": "__lambda__", "config": {"code": "4wEAAA=="}},
                            name="sneaky"))
    with pytest.raises(UnsafeModelError, match=r"a Lambda layer \(sneaky\): it carries Python bytecode .*"
                                               r"model.allow_unsafe_deserialization: true"):
        check_architecture(arch)
    assert check_architecture(arch, allow_unsafe=True)["config"]["layers"][0]["class_name"] == "Lambda"


def test_a_serialized_lambda_activation_is_refused():
    arch = model_json(dense({"class_name": "__lambda__", "config": {"code": "4wEAAA=="}}))
    with pytest.raises(UnsafeModelError, match=r"a serialized Python lambda \(class_name '__lambda__'"):
        check_architecture(arch)


def test_a_layer_from_a_foreign_module_is_refused_until_named():
    arch = model_json(layer("ScaleShift", module=CUSTOM))
    with pytest.raises(ModelFormatError, match=rf"layer class 'ScaleShift' comes from module '{CUSTOM}', which is "
                                               rf"not allowed: .* add `{CUSTOM}` to model.custom_layer_modules"):
        check_architecture(arch)
    check_architecture(arch, custom_modules=[CUSTOM])
    check_architecture(model_json(layer("ScaleShift", module=CUSTOM + ".sub")), custom_modules=[CUSTOM])
    with pytest.raises(ModelFormatError):  # a prefix of the name is not its package
        check_architecture(model_json(layer("ScaleShift", module=CUSTOM + "_evil")), custom_modules=[CUSTOM])


def test_a_class_from_pythons_own_library_is_unsafe():
    with pytest.raises(UnsafeModelError, match=r"names 'Popen' from module 'subprocess', which is Python's own "
                                               r"library"):
        check_architecture(model_json(layer("Popen", module="subprocess")))


@pytest.mark.parametrize("module", ["os", "keras.config", "numpy"])
def test_a_function_from_a_foreign_module_is_refused_even_with_the_opt_in(module):
    arch = model_json(dense({"module": module, "class_name": "function", "config": "system"}))
    with pytest.raises(UnsafeModelError, match=rf"function 'system' from module '{module}'"):
        check_architecture(arch, allow_unsafe=True)


@pytest.mark.parametrize("module", ["builtins", "keras.activations", "keras.src.losses", CUSTOM])
def test_keras_and_named_functions_pass(module):
    check_architecture(model_json(dense({"module": module, "class_name": "function", "config": "relu"})),
                       custom_modules=[CUSTOM])


def test_legacy_keras_is_refused(monkeypatch):
    monkeypatch.setenv("TF_USE_LEGACY_KERAS", "1")
    with pytest.raises(DependencyError, match="Unset TF_USE_LEGACY_KERAS"):
        check_keras_floor()


# ---- a tiny real model ---------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def tiny_model():
    import keras

    from tests.custom_layers import ScaleShift

    keras.utils.set_random_seed(0)
    inp = keras.Input((WINDOW, FEATURES))
    x = ScaleShift(scale=1.5)(inp)
    out = keras.layers.TimeDistributed(keras.layers.Dense(len(LABELS), activation="softmax"))(x)
    return keras.Model(inp, out)


def artifact_of(model, *, golden: bool = False, **manifest) -> ModelArtifact:
    architecture, weights = model.to_json(), encode_weights(model.get_weights())
    base = {"window_size": WINDOW, "feature_size": FEATURES, "labels": LABELS,
            "architecture": {"sha256": sha256(architecture)}, "weights": {"sha256": sha256(weights)}}
    if golden:
        base["golden"] = {"seed": 5, "outputs": model.predict(golden_inputs(5, WINDOW, FEATURES), verbose=0).tolist()}
    return ModelArtifact(name="tiny", version=1, architecture=architecture, weights=weights,
                         manifest={**base, **manifest})


def windows(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).random((n, WINDOW, FEATURES), dtype=np.float32)


def test_rebuild_with_the_custom_layer_module_reproduces_the_model(tiny_model):
    rebuilt = rebuild_model(artifact_of(tiny_model), custom_modules=[CUSTOM])
    assert rebuilt is not tiny_model
    assert [type(x).__name__ for x in rebuilt.layers] == [type(x).__name__ for x in tiny_model.layers]
    assert rebuilt.layers[1].scale == 1.5
    x = windows(5)
    np.testing.assert_allclose(rebuilt.predict(x, verbose=0), tiny_model.predict(x, verbose=0), atol=1e-6, rtol=0)


def test_rebuild_without_the_module_names_it(tiny_model):
    with pytest.raises(ModelFormatError, match=rf"comes from module '{CUSTOM}'"):
        rebuild_model(artifact_of(tiny_model))


def test_weights_that_do_not_fit_are_a_format_error(tiny_model):
    good = artifact_of(tiny_model)
    short = ModelArtifact(name="tiny", version=1, architecture=good.architecture, manifest=good.manifest,
                          weights=encode_weights(tiny_model.get_weights()[:-1]))
    with pytest.raises(ModelFormatError, match=r"model 'tiny' v1: weights do not fit the architecture"):
        rebuild_model(short, custom_modules=[CUSTOM])


@pytest.mark.parametrize(("field", "value", "what", "model_value"), [
    ("window_size", 5, "window size", WINDOW), ("feature_size", 7, "feature size", FEATURES),
    ("labels", ["A", "B", "C"], "label count", len(LABELS)),
])
def test_check_shapes_names_both_numbers(tiny_model, field, value, what, model_value):
    shown = len(value) if isinstance(value, list) else value
    with pytest.raises(ModelFormatError, match=rf"model 'tiny' v1: manifest {what} is {shown} but the model's is "
                                               rf"{model_value}; republish"):
        check_shapes(artifact_of(tiny_model, **{field: value}), tiny_model)
    check_shapes(artifact_of(tiny_model), tiny_model)  # the right numbers pass


def test_check_shapes_refuses_a_model_that_is_not_a_sequence_model():
    import keras

    flat = keras.Sequential([keras.Input((FEATURES,)), keras.layers.Dense(2)])
    with pytest.raises(ModelFormatError, match=r"expected a sequence model .* got input \(None, 3\)"):
        check_shapes(artifact_of(flat), flat)


@pytest.mark.parametrize("n", [1, 7, 64])
def test_make_predict_fn_equals_keras_predict(tiny_model, n):
    predict = make_predict_fn(tiny_model)
    x = windows(n, seed=n)
    out = predict(x)
    assert out.shape == (n, WINDOW, len(LABELS))
    np.testing.assert_allclose(out, tiny_model.predict(x, verbose=0), atol=1e-5, rtol=0)


def test_build_predictor_checks_the_golden_outputs(tiny_model):
    art = artifact_of(tiny_model, golden=True)
    predict = build_predictor(art, custom_modules=[CUSTOM])
    x = windows(3)
    np.testing.assert_allclose(predict(x), tiny_model.predict(x, verbose=0), atol=1e-5, rtol=0)

    off = dict(art.manifest, golden={"seed": 5, "outputs": (np.asarray(art.manifest["golden"]["outputs"])
                                                             + 1e-3).tolist()})
    with pytest.raises(EnvironmentMismatchError, match=r"model 'tiny' v1 on driver: golden outputs differ by 0.001"):
        build_predictor(ModelArtifact(name="tiny", version=1, architecture=art.architecture, weights=art.weights,
                                      manifest=off), custom_modules=[CUSTOM])
