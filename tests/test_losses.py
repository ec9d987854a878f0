"""skol_spark.model.losses against independent numpy formulas, and real Keras save/load round trips.

The round-trip tests pass no custom_objects anywhere: importing skol_spark.model.losses
(registration) must be enough for model_from_json and load_model to re-compile.
"""

from __future__ import annotations

import json
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras
import numpy as np
import pytest

from skol_spark.model.losses import (
    EPSILON,
    CategoricalFocalLoss,
    CostMatrixCrossentropy,
    SoftF1Loss,
    WeightedCategoricalCrossentropy,
    balanced_class_weights,
    custom_objects,
)
from tests.helpers import LABELS

TOL = 1e-5


def make_batch(seed: int, batch: int = 3, timesteps: int = 5, classes: int = 4):
    """One-hot y_true and softmax y_pred, float32[batch, timesteps, classes]."""
    rng = np.random.default_rng(seed)
    y_true = np.eye(classes, dtype=np.float32)[rng.integers(0, classes, size=(batch, timesteps))]
    logits = rng.normal(scale=2.0, size=(batch, timesteps, classes))
    y_pred = np.exp(logits) / np.exp(logits).sum(axis=-1, keepdims=True)
    return y_true, y_pred.astype(np.float32)


def np_clip(p):
    return np.clip(p.astype(np.float64), EPSILON, 1.0 - EPSILON)


def np_crossentropy(y, p):
    return -(y * np.log(np_clip(p))).sum(axis=-1)


def per_timestep(loss, y, p):
    return keras.ops.convert_to_numpy(loss.call(keras.ops.convert_to_tensor(y), keras.ops.convert_to_tensor(p)))


def reduced(loss, y, p):
    return float(keras.ops.convert_to_numpy(loss(y, p)))


# --- numeric values -------------------------------------------------------------------------------


def test_weighted_crossentropy_matches_numpy():
    y, p = make_batch(0)
    weights = [0.5, 2.0, 1.0, 3.0]
    # loop form, deliberately unlike the vectorised implementation
    expected = np.zeros(y.shape[:2])
    for b, t in np.ndindex(*y.shape[:2]):
        c = int(np.argmax(y[b, t]))
        expected[b, t] = -weights[c] * np.log(max(float(p[b, t, c]), EPSILON))
    loss = WeightedCategoricalCrossentropy(weights)
    np.testing.assert_allclose(per_timestep(loss, y, p), expected, rtol=TOL, atol=TOL)
    assert reduced(loss, y, p) == pytest.approx(expected.mean(), rel=TOL, abs=TOL)


def test_weighted_crossentropy_by_label_name_uses_label_order():
    y, p = make_batch(1, classes=3)
    by_name = WeightedCategoricalCrossentropy({"Misc": 0.25, "Nomenclature": 4.0, "Description": 1.5},
                                              labels=LABELS)
    assert by_name.class_weights == [4.0, 1.5, 0.25]
    by_index = WeightedCategoricalCrossentropy([4.0, 1.5, 0.25])
    np.testing.assert_allclose(per_timestep(by_name, y, p), per_timestep(by_index, y, p), rtol=TOL, atol=TOL)


@pytest.mark.parametrize("weights, labels, fragment", [
    ({"Nomenclature": 1.0, "Description": 2.0}, LABELS, "'Misc'"),
    ({"Nomenclature": 1.0, "Description": 2.0, "Misc": 1.0, "Misk": 3.0}, LABELS, "'Misk'"),
    ({"Nomenclature": 1.0}, None, "labels"),
    ([1.0, 2.0], LABELS, "one weight per label"),
    ([1.0, -2.0, 1.0], None, ">= 0"),
])
def test_weighted_crossentropy_rejects_bad_weights(weights, labels, fragment):
    with pytest.raises(ValueError, match=fragment):
        WeightedCategoricalCrossentropy(weights, labels=labels)


def test_weighted_crossentropy_rejects_class_count_mismatch():
    y, p = make_batch(2, classes=4)
    with pytest.raises(ValueError, match="3 classes but the model predicts 4"):
        WeightedCategoricalCrossentropy([1.0, 1.0, 1.0])(y, p)


def test_clipping_keeps_zero_probability_finite():
    y = np.array([[[1.0, 0.0, 0.0]]], dtype=np.float32)
    p = np.array([[[0.0, 0.5, 0.5]]], dtype=np.float32)
    value = reduced(WeightedCategoricalCrossentropy([2.0, 1.0, 1.0]), y, p)
    assert value == pytest.approx(-2.0 * np.log(EPSILON), rel=TOL)


def test_cost_matrix_crossentropy_matches_numpy():
    y, p = make_batch(3)
    rng = np.random.default_rng(30)
    cost = rng.uniform(0.0, 3.0, size=(4, 4))
    expected = np.zeros(y.shape[:2])
    for b, t in np.ndindex(*y.shape[:2]):
        c = int(np.argmax(y[b, t]))
        expected_cost = sum(cost[c, j] * float(p[b, t, j]) for j in range(4))
        expected[b, t] = -np.log(max(float(p[b, t, c]), EPSILON)) * expected_cost
    loss = CostMatrixCrossentropy(cost)
    np.testing.assert_allclose(per_timestep(loss, y, p), expected, rtol=TOL, atol=TOL)
    assert reduced(loss, y, p) == pytest.approx(expected.mean(), rel=TOL, abs=TOL)


def test_cost_matrix_of_ones_is_plain_crossentropy():
    y, p = make_batch(4)
    value = reduced(CostMatrixCrossentropy(np.ones((4, 4))), y, p)
    assert value == pytest.approx(np_crossentropy(y, p).mean(), rel=TOL, abs=TOL)
    assert value == pytest.approx(reduced(keras.losses.CategoricalCrossentropy(), y, p), rel=TOL, abs=TOL)


def test_cost_matrix_punishes_the_costly_confusion_more():
    # truth 0 predicted as 1 costs 5, truth 0 predicted as 2 costs 1: same CE, different loss
    y = np.array([[[1.0, 0.0, 0.0], [1.0, 0.0, 0.0]]], dtype=np.float32)
    p = np.array([[[0.2, 0.7, 0.1], [0.2, 0.1, 0.7]]], dtype=np.float32)
    values = per_timestep(CostMatrixCrossentropy([[1, 5, 1], [1, 1, 1], [1, 1, 1]]), y, p)[0]
    assert values[0] > 2.0 * values[1]


@pytest.mark.parametrize("matrix, fragment", [
    ([[1.0, 1.0], [1.0, 1.0], [1.0, 1.0]], "square"),
    ([[1.0, 1.0], [1.0]], "square"),
    ([[1.0, -1.0], [1.0, 1.0]], "row 0"),
])
def test_cost_matrix_rejects_bad_matrices(matrix, fragment):
    with pytest.raises(ValueError, match=fragment):
        CostMatrixCrossentropy(matrix)


def test_focal_loss_matches_numpy():
    y, p = make_batch(5)
    gamma, alpha = 2.0, [0.25, 1.0, 2.0, 0.5]
    expected = np.zeros(y.shape[:2])
    for b, t in np.ndindex(*y.shape[:2]):
        c = int(np.argmax(y[b, t]))
        pc = min(max(float(p[b, t, c]), EPSILON), 1.0 - EPSILON)
        expected[b, t] = -alpha[c] * (1.0 - pc) ** gamma * np.log(pc)
    loss = CategoricalFocalLoss(gamma=gamma, alpha=alpha)
    np.testing.assert_allclose(per_timestep(loss, y, p), expected, rtol=TOL, atol=TOL)
    assert reduced(loss, y, p) == pytest.approx(expected.mean(), rel=TOL, abs=TOL)


def test_focal_loss_with_gamma_zero_is_plain_crossentropy():
    y, p = make_batch(6)
    value = reduced(CategoricalFocalLoss(gamma=0.0), y, p)
    assert value == pytest.approx(np_crossentropy(y, p).mean(), rel=TOL, abs=TOL)
    assert value == pytest.approx(reduced(keras.losses.CategoricalCrossentropy(), y, p), rel=TOL, abs=TOL)


def test_focal_loss_rejects_negative_gamma():
    with pytest.raises(ValueError, match="gamma"):
        CategoricalFocalLoss(gamma=-1.0)


def np_soft_f1_loss(y, p, scored):
    y2, p2 = y.reshape(-1, y.shape[-1]).astype(np.float64), np_clip(p.reshape(-1, p.shape[-1]))
    f1 = []
    for c in scored:
        tp = float((y2[:, c] * p2[:, c]).sum())
        fp = float(((1.0 - y2[:, c]) * p2[:, c]).sum())
        fn = float((y2[:, c] * (1.0 - p2[:, c])).sum())
        f1.append(2 * tp / (2 * tp + fp + fn + EPSILON))
    return 1.0 - float(np.mean(f1))


@pytest.mark.parametrize("scored", [None, [1, 3]])
def test_soft_f1_loss_matches_numpy(scored):
    y, p = make_batch(7)
    loss = SoftF1Loss(labels_to_score=scored, num_classes=4)
    expected = np_soft_f1_loss(y, p, scored if scored is not None else range(4))
    values = per_timestep(loss, y, p)
    assert values.shape == y.shape[:2]
    np.testing.assert_allclose(values, expected, rtol=TOL, atol=TOL)
    assert reduced(loss, y, p) == pytest.approx(expected, rel=TOL, abs=TOL)


def test_soft_f1_loss_ignores_all_zero_padding_rows():
    y, p = make_batch(8)
    padded_y = np.concatenate([y, np.zeros_like(y[:, :2])], axis=1)
    padded_p = np.concatenate([p, np.full_like(p[:, :2], 0.25)], axis=1)
    assert reduced(SoftF1Loss(), padded_y, padded_p) == pytest.approx(reduced(SoftF1Loss(), y, p), rel=TOL)


def test_soft_f1_loss_rejects_out_of_range_index():
    with pytest.raises(ValueError, match="index 3"):
        SoftF1Loss(labels_to_score=[0, 3], num_classes=3)
    y, p = make_batch(9, classes=3)
    with pytest.raises(ValueError, match="index 5"):
        SoftF1Loss(labels_to_score=[5])(y, p)


# --- balanced weights and the registry ------------------------------------------------------------


def test_balanced_class_weights_by_index_and_by_label():
    assert balanced_class_weights([10, 30, 60]) == pytest.approx([100 / 30, 100 / 90, 100 / 180])
    by_label = balanced_class_weights({"Nomenclature": 10, "Description": 30, "Misc": 60})
    assert list(by_label) == ["Nomenclature", "Description", "Misc"]
    assert by_label == pytest.approx({"Nomenclature": 100 / 30, "Description": 100 / 90, "Misc": 100 / 180})
    # the dict plugs straight into the loss
    loss = WeightedCategoricalCrossentropy(by_label, labels=LABELS)
    assert loss.class_weights == pytest.approx([100 / 30, 100 / 90, 100 / 180])


def test_balanced_class_weights_zero_count_names_the_class():
    with pytest.raises(ValueError, match="'Misc' has count 0.*drop the class"):
        balanced_class_weights({"Nomenclature": 3, "Misc": 0})
    with pytest.raises(ValueError, match="class index 1 has count 0"):
        balanced_class_weights([3, 0])


def test_custom_objects_lists_every_loss():
    assert custom_objects() == {
        "WeightedCategoricalCrossentropy": WeightedCategoricalCrossentropy,
        "CostMatrixCrossentropy": CostMatrixCrossentropy,
        "CategoricalFocalLoss": CategoricalFocalLoss,
        "SoftF1Loss": SoftF1Loss,
    }


# --- real models: fit, JSON and .keras round trips, no custom_objects -----------------------------

LOSS_FACTORIES = {
    "weighted": lambda: WeightedCategoricalCrossentropy({"Nomenclature": 3.0, "Description": 1.0, "Misc": 0.5},
                                                        labels=LABELS),
    "cost_matrix": lambda: CostMatrixCrossentropy([[1.0, 4.0, 2.0], [1.5, 1.0, 1.0], [1.0, 1.0, 1.0]]),
    "focal": lambda: CategoricalFocalLoss(gamma=1.5, alpha=[0.5, 1.0, 2.0]),
    "soft_f1": lambda: SoftF1Loss(labels_to_score=[0, 1], num_classes=3),
}


def tiny_model():
    inputs = keras.Input(shape=(4, 3))
    hidden = keras.layers.Bidirectional(keras.layers.LSTM(2, return_sequences=True))(inputs)
    outputs = keras.layers.TimeDistributed(keras.layers.Dense(3, activation="softmax"))(hidden)
    return keras.Model(inputs, outputs)


@pytest.mark.parametrize("kind", sorted(LOSS_FACTORIES))
def test_model_trains_and_round_trips_without_custom_objects(kind, tmp_path):
    rng = np.random.default_rng(11)
    x = rng.normal(size=(8, 4, 3)).astype(np.float32)
    y = np.eye(3, dtype=np.float32)[rng.integers(0, 3, size=(8, 4))]
    loss = LOSS_FACTORIES[kind]()
    model = tiny_model()
    model.compile(optimizer="adam", loss=loss, jit_compile=False)
    history = model.fit(x, y, epochs=1, batch_size=8, verbose=0)
    assert np.isfinite(history.history["loss"][0])
    # direct calls, not predict/evaluate: each of those traces a new tf.function (seconds apiece)
    expected = keras.ops.convert_to_numpy(model(x, training=False))
    expected_loss = reduced(loss, y, expected)

    from_json = keras.models.model_from_json(model.to_json())
    from_json.set_weights(model.get_weights())
    path = tmp_path / f"{kind}.keras"
    model.save(path)
    from_file = keras.models.load_model(path)

    for reloaded in (from_json, from_file):
        assert type(reloaded.loss) is type(loss)
        assert reloaded.loss.get_config() == loss.get_config()
        json.dumps(reloaded.loss.get_config())  # the config itself stays JSON-serialisable
        predicted = keras.ops.convert_to_numpy(reloaded(x, training=False))
        np.testing.assert_allclose(predicted, expected, rtol=1e-6, atol=1e-6)
        assert reduced(reloaded.loss, y, predicted) == pytest.approx(expected_loss, rel=1e-6)
