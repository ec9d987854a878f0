"""The model store against a real redis-server: round trips, versions and aliases, and every way a
stored model can be wrong (tampered, incomplete, newer, unsafe, foreign) failing with the right error.

Tampering is done the way it happens in life: by writing the Redis keys directly (SETRANGE, SET, DEL).
"""

from __future__ import annotations

import copy
import io
import json
import math
import pickle
import threading

import numpy as np
import pytest

from skol_spark.model.artifact import ModelArtifact, encode_weights, sha256
from skol_spark.errors import (ConfigError, EnvironmentMismatchError, ModelFormatError, ModelIntegrityError,
                               ModelNotFoundError, UnsafeModelError)
from skol_spark.model.builder import build_predictor, rebuild_model
from skol_spark.store.model_store import ModelStore
from tests.helpers import FEATURES, LABELS, WINDOW, build_bilstm

NAME = "m"


# ---- helpers: the documented key layout, written to directly ------------------------------------
def key(store: ModelStore, version: int, *parts: object, name: str = NAME) -> str:
    return ":".join([store.prefix, "model", name, f"v{version}", *map(str, parts)])


def read_manifest(store: ModelStore, version: int) -> dict:
    return json.loads(store.client.get(key(store, version, "manifest")))


def write_manifest(store: ModelStore, version: int, manifest: dict) -> None:
    store.client.set(key(store, version, "manifest"), json.dumps(manifest))


def replace_weights(store: ModelStore, version: int, payload: bytes) -> None:
    """Swap the weights for ``payload`` and make the manifest's checksum agree with it."""
    manifest = read_manifest(store, version)
    for i in range(manifest["weights"]["chunks"]):
        store.client.delete(key(store, version, "weights", i))
    store.client.set(key(store, version, "weights", 0), payload)
    manifest["weights"].update(sha256=sha256(payload), bytes=len(payload), chunks=1)
    write_manifest(store, version, manifest)


def replace_architecture(store: ModelStore, version: int, architecture: str) -> None:
    manifest = read_manifest(store, version)
    store.client.set(key(store, version, "architecture"), architecture)
    manifest["architecture"].update(sha256=sha256(architecture), bytes=len(architecture.encode()))
    write_manifest(store, version, manifest)


def windows(n: int = 16, seed: int = 7) -> np.ndarray:
    return np.random.default_rng(seed).random((n, WINDOW, FEATURES), dtype=np.float32)


def keras_predict(model, x: np.ndarray) -> np.ndarray:
    return np.asarray(model(x, training=False))


def find_nodes(config, class_name: str) -> list[dict]:
    found = []
    if isinstance(config, dict):
        if config.get("class_name") == class_name:
            found.append(config)
        for value in config.values():
            found += find_nodes(value, class_name)
    elif isinstance(config, list):
        for value in config:
            found += find_nodes(value, class_name)
    return found


class _OpenOnUnpickle:
    """Unpickling this creates the file at ``path``: a canary for "was it ever unpickled?"."""

    def __init__(self, path: str) -> None:
        self.path = path

    def __reduce__(self):
        return (open, (self.path, "w"))


# ---- round trips ----------------------------------------------------------------------------------
def test_closure_loss_model_fails_in_plain_keras_but_round_trips_through_the_store(store, closure_model):
    import keras

    with pytest.raises(TypeError, match="Could not locate function 'weighted_categorical_crossentropy'"):
        keras.models.model_from_json(closure_model.to_json())

    version = store.publish(closure_model, NAME, labels=LABELS)
    artifact = store.load(NAME, version)
    x = windows()
    expected = keras_predict(closure_model, x)

    rebuilt = rebuild_model(artifact)
    np.testing.assert_allclose(keras_predict(rebuilt, x), expected, atol=1e-6, rtol=0)
    predict = build_predictor(artifact)  # also checks the golden outputs recorded at publish
    np.testing.assert_allclose(predict(x), expected, atol=1e-6, rtol=0)
    assert predict(x[:3]).shape == (3, WINDOW, len(LABELS))  # any batch size through one traced graph


def test_manifest_records_what_loading_needs(store, closure_model):
    import keras
    import tensorflow as tf

    version = store.publish(closure_model, NAME, labels=LABELS, stride=3, feature_kind="dense", notes="n1")
    manifest = store.manifest(NAME, version)
    raw_arch = store.client.get(key(store, version, "architecture"))
    raw_weights = store.client.get(key(store, version, "weights", 0))

    assert manifest["name"] == NAME and manifest["version"] == version == 1
    assert manifest["labels"] == LABELS
    assert (manifest["window_size"], manifest["stride"], manifest["feature_size"]) == (WINDOW, 3, FEATURES)
    assert manifest["feature_kind"] == "dense" and manifest["notes"] == "n1"
    assert manifest["architecture"]["sha256"] == sha256(raw_arch)
    assert manifest["weights"]["sha256"] == sha256(raw_weights)
    assert manifest["weights"]["bytes"] == len(raw_weights) and manifest["weights"]["chunks"] == 1
    assert manifest["weights"]["arrays"] == len(closure_model.get_weights())
    assert manifest["weights"]["parameters"] == closure_model.count_params()
    assert manifest["framework"]["keras"] == keras.__version__
    assert manifest["framework"]["tensorflow"] == tf.__version__
    assert "numpy" in manifest["framework"] and "python" in manifest["framework"]
    assert "weighted_categorical_crossentropy" in manifest["compile_objects"]
    golden = np.asarray(manifest["golden"]["outputs"])
    assert golden.shape == (3, WINDOW, len(LABELS))
    np.testing.assert_allclose(golden.sum(axis=-1), 1.0, atol=1e-5)  # softmax rows: real outputs, not zeros
    assert manifest["created_at"].endswith("+00:00")
    # the compile config is stored as trained (informational), not stripped at publish
    assert json.loads(raw_arch)["compile_config"]["loss"]["config"] == "weighted_categorical_crossentropy"


def test_versions_increment_latest_moves_and_aliases_resolve(store, closure_model):
    other = build_bilstm(seed=1)
    v1 = store.publish(closure_model, NAME, labels=LABELS, aliases=["production"])
    assert store.aliases(NAME) == {"latest": 1, "production": 1}
    v2 = store.publish(other, NAME, labels=LABELS)
    assert (v1, v2) == (1, 2)
    assert store.versions(NAME) == [1, 2]
    assert store.models() == [NAME]
    assert store.aliases(NAME) == {"latest": 2, "production": 1}  # latest moved by itself, production did not

    assert store.set_alias(NAME, "staging", "latest") == 2
    assert store.aliases(NAME) == {"latest": 2, "production": 1, "staging": 2}
    for numeric in ("7", "v7"):
        with pytest.raises(ConfigError, match="must not be a number"):
            store.set_alias(NAME, numeric, 1)
    with pytest.raises(ConfigError, match="must not be a number"):
        store.publish(other, NAME, labels=LABELS, aliases=["v9"])
    assert store.versions(NAME) == [1, 2]  # the bad alias was refused before anything was written

    by_number, by_alias, latest = store.load(NAME, 1), store.load(NAME, "production"), store.load(NAME, "latest")
    assert (by_number.version, by_alias.version, latest.version) == (1, 1, 2)
    assert by_number.weights == by_alias.weights != latest.weights
    x = windows(4)
    np.testing.assert_allclose(build_predictor(latest)(x), keras_predict(other, x), atol=1e-6, rtol=0)
    assert store.load(NAME, "2").version == store.load(NAME, "v2").version == 2  # as the CLI passes it


def test_registered_loss_round_trips_with_no_stand_ins(store):
    import keras

    from skol_spark.model.losses import WeightedCategoricalCrossentropy

    model = build_bilstm(seed=2)
    model.compile(optimizer="adam", loss=WeightedCategoricalCrossentropy([1.0, 2.0, 0.5], labels=LABELS))
    restored = keras.models.model_from_json(model.to_json())  # plain Keras, no custom_objects
    assert isinstance(restored.loss, WeightedCategoricalCrossentropy)
    assert restored.loss.class_weights == [1.0, 2.0, 0.5] and restored.loss.labels == LABELS

    version = store.publish(model, NAME, labels=LABELS)
    artifact = store.load(NAME, version)
    assert artifact.architecture == model.to_json()  # compile config kept as trained
    assert artifact.manifest["compile_objects"] == ["skol_spark>WeightedCategoricalCrossentropy"]
    from_store = keras.models.model_from_json(artifact.architecture)
    assert isinstance(from_store.loss, WeightedCategoricalCrossentropy)
    x = windows(5)
    np.testing.assert_allclose(build_predictor(artifact)(x), keras_predict(model, x), atol=1e-6, rtol=0)


@pytest.mark.parametrize("kwargs, message", [
    ({"labels": LABELS[:2]}, r"3 output classes but 2 distinct labels"),
    ({"labels": ["a", "a", "b"]}, r"3 output classes but 3 distinct labels"),
    ({"labels": LABELS, "window_size": WINDOW + 2}, rf"--window-size {WINDOW + 2} disagrees .* input length {WINDOW}"),
    ({"labels": LABELS, "stride": WINDOW + 1}, rf"stride {WINDOW + 1} must be between 1 and the window size {WINDOW}"),
    ({"labels": LABELS, "feature_kind": "csv"}, r"feature kind 'csv'"),
])
def test_publish_refuses_metadata_that_does_not_fit_the_model(store, closure_model, kwargs, message):
    with pytest.raises(ModelFormatError, match=message):
        store.publish(closure_model, NAME, **kwargs)
    assert store.models() == [] and list(store.client.scan_iter(f"{store.prefix}:*")) == []


def test_weights_larger_than_a_chunk_round_trip(store, closure_model):
    small = ModelStore(store.client, prefix=store.prefix, chunk_size=1000)
    version = small.publish(closure_model, NAME, labels=LABELS)
    meta = small.manifest(NAME, version)["weights"]
    assert meta["chunks"] == math.ceil(meta["bytes"] / 1000) > 1
    sizes = [store.client.strlen(key(store, version, "weights", i)) for i in range(meta["chunks"])]
    assert max(sizes) == 1000 and sum(sizes) == meta["bytes"]
    assert store.client.exists(key(store, version, "weights", meta["chunks"])) == 0
    artifact = small.load(NAME, version)
    assert artifact.weights == encode_weights(closure_model.get_weights())
    x = windows(6)
    np.testing.assert_allclose(build_predictor(artifact)(x), keras_predict(closure_model, x), atol=1e-6, rtol=0)


# ---- integrity: tampered, truncated, incomplete -----------------------------------------------------
def test_flipped_weight_byte_is_a_checksum_error_before_keras(store, closure_model):
    version = store.publish(closure_model, NAME, labels=LABELS)
    chunk = key(store, version, "weights", 0)
    offset = store.client.strlen(chunk) // 2
    byte = store.client.getrange(chunk, offset, offset)
    store.client.setrange(chunk, offset, bytes([byte[0] ^ 0x01]))
    assert store.client.getrange(chunk, offset, offset) != byte

    with pytest.raises(ModelIntegrityError, match=r"weights checksum mismatch") as info:
        store.load(NAME, version)  # no Keras call happens in load: the checksum stops it first
    assert f"{NAME!r} version {version}" in str(info.value)


def test_tampered_manifest_checksum_is_refused(store, closure_model):
    version = store.publish(closure_model, NAME, labels=LABELS)
    manifest = read_manifest(store, version)
    manifest["architecture"]["sha256"] = "0" * 64
    write_manifest(store, version, manifest)
    with pytest.raises(ModelIntegrityError, match="architecture checksum mismatch"):
        store.load(NAME, version)


def test_deleted_chunk_names_the_missing_key(store, closure_model):
    small = ModelStore(store.client, prefix=store.prefix, chunk_size=1000)
    version = small.publish(closure_model, NAME, labels=LABELS)
    missing = key(store, version, "weights", 1)
    assert store.client.delete(missing) == 1
    with pytest.raises(ModelIntegrityError, match="incomplete") as info:
        small.load(NAME, version)
    assert missing in str(info.value)


def test_truncated_chunk_is_refused(store, closure_model):
    version = store.publish(closure_model, NAME, labels=LABELS)
    chunk = key(store, version, "weights", 0)
    store.client.set(chunk, store.client.get(chunk)[:-10])
    with pytest.raises(ModelIntegrityError, match="truncated"):
        store.load(NAME, version)


def test_missing_architecture_key_is_named(store, closure_model):
    version = store.publish(closure_model, NAME, labels=LABELS)
    store.client.delete(key(store, version, "architecture"))
    with pytest.raises(ModelIntegrityError, match=key(store, version, "architecture")):
        store.load(NAME, version)


def test_corrupt_or_copied_manifest_is_refused(store, closure_model):
    v1 = store.publish(closure_model, NAME, labels=LABELS)
    v2 = store.publish(closure_model, NAME, labels=LABELS)
    store.client.set(key(store, v2, "manifest"), store.client.get(key(store, v1, "manifest")))
    with pytest.raises(ModelIntegrityError, match=rf"describes model '{NAME}' v{v1}"):
        store.load(NAME, v2)
    store.client.set(key(store, v2, "manifest"), b'{"format_version": 1, "name": ')
    with pytest.raises(ModelIntegrityError, match="not valid JSON"):
        store.load(NAME, v2)
    assert store.load(NAME, v1).version == v1  # the other version is untouched
    store.delete(NAME, v2)  # a corrupt version can still be removed
    assert store.versions(NAME) == [v1] and store.aliases(NAME) == {"latest": v1}
    assert list(store.client.scan_iter(f"{store.prefix}:model:{NAME}:v{v2}:*")) == []


# ---- not found, newer format ------------------------------------------------------------------------
def test_missing_model_version_and_alias_list_what_exists(store, closure_model):
    store.publish(closure_model, NAME, labels=LABELS)
    store.publish(closure_model, NAME, labels=LABELS, aliases=["production"])
    with pytest.raises(ModelNotFoundError, match=rf"model 'nope' not found.*models there: {NAME}"):
        store.load("nope", "latest")
    with pytest.raises(ModelNotFoundError, match=r"has no version 9 \(versions: 1, 2\)"):
        store.load(NAME, 9)
    with pytest.raises(ModelNotFoundError, match=r"has no alias 'staging' \(aliases: latest, production\)"):
        store.load(NAME, "staging")


def test_newer_manifest_format_says_upgrade(store, closure_model):
    version = store.publish(closure_model, NAME, labels=LABELS)
    manifest = read_manifest(store, version)
    manifest["format_version"] = 99
    write_manifest(store, version, manifest)
    with pytest.raises(ModelFormatError, match=r"format 99.*upgrade skol_spark"):
        store.load(NAME, version)


# ---- golden outputs ---------------------------------------------------------------------------------
def test_other_weights_with_a_valid_checksum_fail_the_golden_check(store, closure_model):
    import keras
    import tensorflow as tf

    version = store.publish(closure_model, NAME, labels=LABELS)
    other = encode_weights(build_bilstm(seed=11).get_weights())  # same shapes, different values
    replace_weights(store, version, other)
    artifact = store.load(NAME, version)  # checksums agree: only the golden outputs can tell
    rebuild_model(artifact)  # and the weights fit the architecture

    with pytest.raises(EnvironmentMismatchError) as info:
        build_predictor(artifact, where="driver")
    message = str(info.value)
    assert f"model {NAME!r} v{version}" in message
    assert f"keras {keras.__version__}" in message and f"tensorflow {tf.__version__}" in message

    # the same check by hand: an artifact whose manifest golden outputs belong to another model
    genuine = store.publish(closure_model, NAME, labels=LABELS)
    good = store.load(NAME, genuine)
    manifest = copy.deepcopy(good.manifest)
    manifest["golden"]["outputs"][1][0] = [1.0, 0.0, 0.0]
    with pytest.raises(EnvironmentMismatchError, match="golden outputs differ"):
        build_predictor(ModelArtifact(NAME, genuine, good.architecture, good.weights, manifest))
    build_predictor(good)  # unaltered: passes


def test_manifest_disagreeing_with_the_model_names_both_numbers(store, closure_model):
    version = store.publish(closure_model, NAME, labels=LABELS)
    manifest = read_manifest(store, version)
    manifest["feature_size"] = FEATURES + 1
    write_manifest(store, version, manifest)
    with pytest.raises(ModelFormatError, match=rf"feature size is {FEATURES + 1} but the model's is {FEATURES}"):
        rebuild_model(store.load(NAME, version))


# ---- nothing executable ---------------------------------------------------------------------------
@pytest.mark.parametrize("kind", ["pickle", "npz-object-array"])
def test_pickle_in_place_of_weights_is_refused_and_never_unpickled(store, closure_model, tmp_path, kind):
    live = tmp_path / "live-canary"
    pickle.loads(pickle.dumps(_OpenOnUnpickle(str(live))))
    assert live.exists()  # the payload really would run if unpickled

    canary = tmp_path / "canary"
    if kind == "pickle":
        payload = pickle.dumps([_OpenOnUnpickle(str(canary))] + closure_model.get_weights())
    else:
        buffer = io.BytesIO()
        np.savez(buffer, w00000=np.array([_OpenOnUnpickle(str(canary))], dtype=object))
        payload = buffer.getvalue()
    version = store.publish(closure_model, NAME, labels=LABELS)
    replace_weights(store, version, payload)
    artifact = store.load(NAME, version)  # checksum matches the pickle
    with pytest.raises(ModelFormatError, match="pickle" if kind == "pickle" else "cannot read weights") as info:
        rebuild_model(artifact)
    assert not isinstance(info.value, ModelIntegrityError)
    assert not canary.exists()


def _lambda_model(canary):
    import keras

    # the lambda's bytecode writes the canary whenever it runs (also when Keras traces it)
    fn = eval(f"lambda x: (__import__('pathlib').Path({str(canary)!r}).write_text('ran'), x)[1]")
    inp = keras.Input((WINDOW, FEATURES))
    x = keras.layers.Lambda(fn)(inp)
    out = keras.layers.TimeDistributed(keras.layers.Dense(len(LABELS), activation="softmax"))(x)
    return keras.Model(inp, out)


def test_lambda_layer_is_refused_and_its_code_never_runs(store, tmp_path):
    import keras

    canary = tmp_path / "lambda-ran"
    model = _lambda_model(canary)
    with pytest.raises(UnsafeModelError, match="Lambda"):
        store.publish(model, NAME, labels=LABELS)
    assert store.versions(NAME) == []  # nothing half-published

    version = store.publish(model, NAME, labels=LABELS, allow_unsafe=True)  # an explicit opt-in stores it
    assert canary.exists()  # building and probing the model ran the lambda, as expected
    canary.unlink()
    artifact = store.load(NAME, version)
    with pytest.raises(UnsafeModelError, match="Lambda layer"):
        rebuild_model(artifact)
    with pytest.raises(UnsafeModelError):
        build_predictor(artifact)
    assert not canary.exists()

    rebuild_model(artifact, allow_unsafe=True)  # the opt-in does run it: the canary is live
    assert canary.exists()
    canary.unlink()
    # ... and did not switch Keras' safe mode off for the rest of the process
    with pytest.raises(ValueError, match="(?i)lambda"):
        keras.models.model_from_json(artifact.architecture)
    assert not canary.exists()


def test_lambda_hidden_as_an_activation_is_refused(store, closure_model, tmp_path):
    from keras.src.utils import python_utils

    canary = tmp_path / "activation-ran"
    fn = eval(f"lambda x: (__import__('pathlib').Path({str(canary)!r}).write_text('ran'), x)[1]")
    version = store.publish(closure_model, NAME, labels=LABELS)
    config = json.loads(store.load(NAME, version).architecture)
    (dense,) = find_nodes(config, "Dense")
    dense["config"]["activation"] = {"class_name": "__lambda__", "config": {"value": list(python_utils.func_dump(fn))}}
    replace_architecture(store, version, json.dumps(config))
    with pytest.raises(UnsafeModelError, match="__lambda__"):
        rebuild_model(store.load(NAME, version))
    assert not canary.exists()


@pytest.mark.parametrize("node", [
    {"module": "os", "class_name": "system", "config": {"command": "touch CANARY"}, "registered_name": None},
    {"module": "subprocess", "class_name": "function", "config": "getoutput", "registered_name": "function"},
    {"module": "keras.config", "class_name": "function", "config": "enable_unsafe_deserialization",
     "registered_name": "function"},
])
def test_class_from_an_arbitrary_module_is_refused_and_nothing_runs(store, closure_model, tmp_path, node):
    canary = tmp_path / "canary"
    node = json.loads(json.dumps(node).replace("CANARY", str(canary)))
    version = store.publish(closure_model, NAME, labels=LABELS)
    config = json.loads(store.load(NAME, version).architecture)
    (dense,) = find_nodes(config, "Dense")
    if node["class_name"] == "function":
        dense["config"]["activation"] = node
    else:
        dense.clear()
        dense.update(node)
    replace_architecture(store, version, json.dumps(config))
    with pytest.raises(UnsafeModelError, match=rf"module '{node['module']}'"):
        rebuild_model(store.load(NAME, version))
    with pytest.raises(UnsafeModelError):
        rebuild_model(store.load(NAME, version), allow_unsafe=True)  # the Lambda opt-in does not open this
    assert not canary.exists()


def test_keras_own_functions_written_as_builtins_are_allowed(store, closure_model):
    version = store.publish(closure_model, NAME, labels=LABELS)
    config = json.loads(store.load(NAME, version).architecture)
    (dense,) = find_nodes(config, "Dense")
    # how Keras serializes one of its own functions; it resolves such names only among its activations
    dense["config"]["activation"] = {"module": "builtins", "class_name": "function", "config": "softmax",
                                     "registered_name": "function"}
    replace_architecture(store, version, json.dumps(config))
    x = windows(2)
    np.testing.assert_allclose(build_predictor(store.load(NAME, version))(x), keras_predict(closure_model, x),
                               atol=1e-6, rtol=0)


def test_unknown_custom_layer_names_the_class_and_the_fix(store):
    import keras

    from tests.custom_layers import ScaleShift

    keras.utils.set_random_seed(4)
    inp = keras.Input((WINDOW, FEATURES))
    x = ScaleShift(scale=0.5)(inp)
    x = keras.layers.Bidirectional(keras.layers.LSTM(4, return_sequences=True))(x)
    out = keras.layers.TimeDistributed(keras.layers.Dense(len(LABELS), activation="softmax"))(x)
    model = keras.Model(inp, out)

    with pytest.raises(ModelFormatError, match="ScaleShift.*custom_layer_modules"):
        store.publish(model, NAME, labels=LABELS)  # refused at publish unless its module is named
    version = store.publish(model, NAME, labels=LABELS, custom_modules=["tests.custom_layers"])
    artifact = store.load(NAME, version)
    with pytest.raises(ModelFormatError) as info:
        rebuild_model(artifact)
    message = str(info.value)
    assert "'ScaleShift'" in message and "tests.custom_layers" in message
    assert "custom_layer_modules" in message and not isinstance(info.value, UnsafeModelError)

    predict = build_predictor(artifact, custom_modules=["tests.custom_layers"])
    x = windows(3)
    np.testing.assert_allclose(predict(x), keras_predict(model, x), atol=1e-6, rtol=0)


# ---- delete and concurrency -------------------------------------------------------------------------
def test_delete_refuses_an_aliased_version_unless_forced(store, closure_model):
    small = ModelStore(store.client, prefix=store.prefix, chunk_size=1000)
    for _ in range(3):
        small.publish(closure_model, NAME, labels=LABELS)
    store.set_alias(NAME, "production", 1)

    with pytest.raises(ConfigError, match="aliased as production.*--force"):
        store.delete(NAME, 1)
    assert store.versions(NAME) == [1, 2, 3]
    store.delete(NAME, 1, force=True)
    assert store.versions(NAME) == [2, 3] and "production" not in store.aliases(NAME)
    assert list(store.client.scan_iter(f"{store.prefix}:model:{NAME}:v1:*")) == []

    store.delete(NAME, 3)  # latest, not otherwise aliased: allowed, latest steps back
    assert store.aliases(NAME) == {"latest": 2}
    assert store.load(NAME, "latest").version == 2
    with pytest.raises(ModelNotFoundError, match="no version 3"):
        store.load(NAME, 3)

    store.delete(NAME, 2)
    assert store.models() == [] and store.aliases(NAME) == {}
    with pytest.raises(ModelNotFoundError, match="not found"):
        store.load(NAME, "latest")


def test_a_reader_never_sees_a_half_published_version(store, closure_model):
    models = [closure_model, build_bilstm(seed=5)]
    published = {store.publish(models[0], NAME, labels=LABELS): sha256(encode_weights(models[0].get_weights()))}
    errors: list[BaseException] = []

    def publish_more():
        try:
            for i in range(1, 7):
                version = store.publish(models[i % 2], NAME, labels=LABELS)
                published[version] = sha256(encode_weights(models[i % 2].get_weights()))
        except BaseException as e:  # pragma: no cover - reported below
            errors.append(e)

    writer = threading.Thread(target=publish_more)
    seen: list[tuple[int, str]] = []
    writer.start()
    while writer.is_alive() or len(seen) < 5:
        artifact = store.load(NAME, "latest")  # verifies checksums of everything it read
        seen.append((artifact.version, sha256(artifact.weights)))
    writer.join()
    assert not errors, errors
    assert sorted(published) == list(range(1, 8))
    assert all(published[version] == digest for version, digest in seen)  # each load is wholly one version
    assert [v for v, _ in seen] == sorted(v for v, _ in seen)  # latest only moves forward
    assert len({v for v, _ in seen}) >= 2, seen  # the reader really overlapped the publishes
