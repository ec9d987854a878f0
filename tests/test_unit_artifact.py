"""The model artifact (``model/artifact.py``): weights encoding, checksums, golden probes and their check.

Plain numpy: artifacts are built by hand here, and the predictors are numpy
functions (the Keras side is in test_unit_builder.py).
"""

from __future__ import annotations

import io
import pickle
import zipfile

import numpy as np
import pytest

from skol_spark.errors import EnvironmentMismatchError, ModelFormatError, ModelIntegrityError
from skol_spark.model.artifact import (GOLDEN_TOLERANCE, GOLDEN_WINDOWS, ModelArtifact, check_golden,
                                       decode_weights, encode_weights, golden_inputs, sha256)

WINDOW, FEATURES = 4, 5


def artifact(architecture: str = '{"class_name": "Functional"}', weights: bytes = b"w", golden=None,
             **manifest) -> ModelArtifact:
    base = {"window_size": WINDOW, "feature_size": FEATURES, "labels": ["A", "B"],
            "architecture": {"sha256": sha256(architecture)}, "weights": {"sha256": sha256(weights)},
            "framework": {"tensorflow": "2.0.0", "keras": "3.0.0"}}
    if golden is not None:
        base["golden"] = golden
    return ModelArtifact(name="m", version=3, architecture=architecture, weights=weights, manifest={**base, **manifest})


# ---- weights -------------------------------------------------------------------------------------------

def test_weights_round_trip_in_order_with_dtypes_and_shapes():
    rng = np.random.default_rng(0)
    arrays = [rng.normal(size=(3, 4)).astype(np.float32) for _ in range(11)]  # > 10: order is not lexical luck
    arrays += [np.arange(5, dtype=np.int64), np.float32(2.5) * np.ones(()), np.zeros((0, 3), np.float16)]
    back = decode_weights(encode_weights(arrays))
    assert len(back) == len(arrays)
    for a, b in zip(arrays, back):
        assert b.dtype == a.dtype and b.shape == a.shape
        np.testing.assert_array_equal(a, b)


def test_a_pickle_is_refused_before_anything_reads_it():
    with pytest.raises(ModelFormatError, match=r"^layer 1: payload is a Python pickle; skol_spark only loads "
                                               r"numpy .npz weights"):
        decode_weights(pickle.dumps([np.zeros(3)]), where="layer 1")


def test_other_payloads_are_refused():
    with pytest.raises(ModelFormatError, match="not an .npz archive"):
        decode_weights(b"HDF\x89 not a zip")
    with pytest.raises(ModelFormatError, match="cannot read weights archive"):
        decode_weights(encode_weights([np.zeros(3)])[:40])  # truncated zip


def test_an_npz_with_foreign_names_is_refused():
    buffer = io.BytesIO()
    np.savez(buffer, w00000=np.zeros(2), payload=np.ones(2))
    with pytest.raises(ModelFormatError, match=r"unexpected array names in weights archive: \['payload', 'w00000'\]"):
        decode_weights(buffer.getvalue())


def test_an_object_array_is_never_unpickled():
    buffer = io.BytesIO()
    np.savez(buffer, w00000=np.array([{"a": 1}], dtype=object))
    assert zipfile.is_zipfile(io.BytesIO(buffer.getvalue()))
    with pytest.raises(ModelFormatError, match="cannot read weights archive"):
        decode_weights(buffer.getvalue())


# ---- checksums and manifest ----------------------------------------------------------------------------

def test_verify_accepts_matching_payloads():
    artifact(weights=encode_weights([np.ones(2)])).verify()  # raises nothing


@pytest.mark.parametrize("part", ["architecture", "weights"])
def test_verify_names_the_part_whose_checksum_differs(part):
    good = artifact()
    changed = {"architecture": good.architecture + " ", "weights": good.weights + b"!"}
    tampered = ModelArtifact(name=good.name, version=good.version, manifest=good.manifest,
                             architecture=changed["architecture"] if part == "architecture" else good.architecture,
                             weights=changed["weights"] if part == "weights" else good.weights)
    expected, actual = good.manifest[part]["sha256"][:12], sha256(changed[part])[:12]
    with pytest.raises(ModelIntegrityError, match=rf"model 'm' version 3: {part} checksum mismatch \(manifest "
                                                  rf"{expected}…, stored data {actual}…\)"):
        tampered.verify()


def test_fingerprint_changes_with_either_payload_and_properties_read_the_manifest():
    a, b, c = artifact(), artifact(weights=b"other"), artifact(architecture='{"class_name": "Sequential"}')
    assert len({a.fingerprint, b.fingerprint, c.fingerprint}) == 3
    assert a.fingerprint == artifact().fingerprint
    assert (a.window_size, a.feature_size, a.labels, a.stride) == (WINDOW, FEATURES, ["A", "B"], WINDOW)
    assert artifact(stride=2).stride == 2


# ---- golden probes -------------------------------------------------------------------------------------

def splitmix_reference(seed: int, window: int, features: int) -> np.ndarray:
    """The documented probe values, element by element with Python integers (no numpy wrap-around)."""
    mask = (1 << 64) - 1
    out = np.zeros(GOLDEN_WINDOWS * window * features, np.float32)
    for i in range(out.size):
        x = ((i + seed) * 0x9E3779B97F4A7C15) & mask
        x ^= x >> 31
        x = (x * 0xBF58476D1CE4E5B9) & mask
        x ^= x >> 29
        if (x & 0xFF) < 26:
            out[i] = np.float32(x >> 40) / np.float32(1 << 24)
    out = out.reshape(GOLDEN_WINDOWS, window, features)
    out[0] = 0
    return out


def test_golden_inputs_are_the_documented_deterministic_values():
    probe = golden_inputs(7, WINDOW, FEATURES)
    assert probe.dtype == np.float32 and probe.shape == (GOLDEN_WINDOWS, WINDOW, FEATURES)
    np.testing.assert_array_equal(probe, splitmix_reference(7, WINDOW, FEATURES))
    np.testing.assert_array_equal(probe, golden_inputs(7, WINDOW, FEATURES))
    assert not np.array_equal(probe, golden_inputs(8, WINDOW, FEATURES))


def test_golden_inputs_shape_of_the_values():
    probe = golden_inputs(0, 16, 64)
    assert not probe[0].any()  # window 0: the smoke test's zeros
    rest = probe[1:]
    assert 0.0 <= rest.min() and rest.max() < 1.0
    assert 0.06 < np.count_nonzero(rest) / rest.size < 0.14  # ~10% non-zero


def predict_with_offset(offset: float):
    def predict(windows: np.ndarray) -> np.ndarray:
        return np.stack([windows.sum(axis=-1), -windows.sum(axis=-1)], axis=-1) + offset
    return predict


def recorded(seed: int = 1) -> dict:
    return {"seed": seed, "outputs": predict_with_offset(0.0)(golden_inputs(seed, WINDOW, FEATURES)).tolist()}


def test_check_golden_passes_within_the_tolerance():
    check_golden(artifact(golden=recorded()), predict_with_offset(GOLDEN_TOLERANCE / 2), where="driver")


def test_check_golden_without_recorded_outputs_checks_nothing():
    check_golden(artifact(), predict_with_offset(1.0), where="driver")


def test_check_golden_names_the_difference_and_both_environments():
    with pytest.raises(EnvironmentMismatchError) as raised:
        check_golden(artifact(golden=recorded()), predict_with_offset(3 * GOLDEN_TOLERANCE), where="executor h1")
    text = str(raised.value)
    assert "model 'm' v3 on executor h1: golden outputs differ by 3e-05 (tolerance 1e-05)" in text
    assert "Published with keras 3.0.0, tensorflow 2.0.0; found " in text
    import keras

    assert f"keras {keras.__version__}" in text.split("found ")[1]


def test_check_golden_refuses_nan_outputs():
    with pytest.raises(EnvironmentMismatchError, match="differ by nan"):
        check_golden(artifact(golden=recorded()), predict_with_offset(np.nan), where="driver")


def test_check_golden_refuses_another_output_shape():
    def three_classes(windows):
        return np.zeros((*windows.shape[:2], 3))

    with pytest.raises(ModelFormatError, match=r"outputs shape \(3, 4, 3\), the manifest recorded \(3, 4, 2\)"):
        check_golden(artifact(golden=recorded()), three_classes, where="driver")
