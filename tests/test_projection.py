"""The line-projection predictor equals Keras' own call on the same windows, for every LSTM
configuration it accepts; it refuses the models it cannot reproduce; a build falls back to
Keras' call when it does not pass the golden check."""

from __future__ import annotations

import logging
import uuid

import numpy as np
import pytest

from skol_spark.scoring.features import DenseFeatures, SparseFeatures, to_sparse
from skol_spark.scoring.windowing import score_document, score_lines
from tests.helpers import FEATURES, WINDOW

W, F = 7, 12


def functional(*layers, window=W):
    import keras

    inp = keras.Input((window, F))
    y = inp
    for layer in layers:
        y = layer(y)
    return keras.Model(inp, y)


def lines_and_rows(seed=0, windows=6, density=0.3):
    """Random sparse-ish lines and windows over them, with padding rows (-1) in one window."""
    rng = np.random.default_rng(seed)
    lines = (rng.random((windows * W, F)) * (rng.random((windows * W, F)) < density)).astype(np.float32)
    rows = np.arange(windows * W, dtype=np.int64).reshape(windows, W)
    rows[2, 4:] = -1
    return lines, rows


def keras_on_windows(model, lines, rows):
    windows = DenseFeatures(lines).take(rows.reshape(-1)).reshape(rows.shape[0], rows.shape[1], -1)
    return model(windows, training=False).numpy()


def lstm_variants():
    import keras

    L = keras.layers
    return {
        "bilstm-concat-2-layers": functional(L.Bidirectional(L.LSTM(5, return_sequences=True)),
                                             L.Bidirectional(L.LSTM(4, return_sequences=True)),
                                             L.TimeDistributed(L.Dense(3, activation="softmax"))),
        "lstm-sequential": keras.Sequential([keras.Input((W, F)), L.LSTM(6, return_sequences=True), L.Dense(3)]),
        "lstm-go-backwards": functional(L.LSTM(6, return_sequences=True, go_backwards=True), L.Dense(3)),
        "lstm-last-step": functional(L.LSTM(6), L.Dense(3)),
        "bilstm-sum-last-step": functional(L.Bidirectional(L.LSTM(5), merge_mode="sum"), L.Dense(3)),
        "bilstm-ave-no-bias-relu": functional(L.Bidirectional(L.LSTM(
            5, return_sequences=True, use_bias=False, activation="relu", recurrent_activation="hard_sigmoid"),
            merge_mode="ave"), L.Dense(3)),
        # the original project's shape, as the job gets it: a Sequential rebuilt from JSON
        "sequential-from-json-dropout": keras.models.model_from_json(keras.Sequential([
            keras.Input((W, F)), L.Bidirectional(L.LSTM(5, return_sequences=True, dropout=0.3)),
            L.Bidirectional(L.LSTM(4, return_sequences=True, dropout=0.3)),
            L.TimeDistributed(L.Dense(3, activation="softmax"))]).to_json()),
        "bilstm-mul-implementation-1": functional(L.Bidirectional(L.LSTM(5, return_sequences=True, implementation=1),
                                                                  merge_mode="mul"), L.Dense(3)),
    }


@pytest.mark.parametrize("name", list(lstm_variants()))
def test_line_projection_equals_keras_for_each_lstm_configuration(name):
    from skol_spark.model.projection import LinePredictor, line_predictor

    model = lstm_variants()[name]
    predictor = line_predictor(model)
    assert isinstance(predictor, LinePredictor)
    lines, rows = lines_and_rows(seed=len(name))
    expected = keras_on_windows(model, lines, rows)
    assert np.abs(expected).max() > 1e-3  # real outputs, not zeros
    np.testing.assert_allclose(predictor.predict_rows(DenseFeatures(lines), rows), expected, atol=1e-6, rtol=0)
    np.testing.assert_allclose(predictor.predict_rows(to_sparse(DenseFeatures(lines)), rows), expected,
                               atol=1e-6, rtol=0)
    windows = DenseFeatures(lines).take(rows.reshape(-1)).reshape(rows.shape[0], W, F)
    np.testing.assert_allclose(predictor(windows), expected, atol=1e-6, rtol=0)


def test_rows_from_the_middle_of_the_lines_use_those_lines():
    """A batch names a span of lines, not necessarily from line 0; each line is projected once
    however many windows hold it (stride 2 over window 7)."""
    from skol_spark.model.projection import line_predictor

    model = lstm_variants()["bilstm-concat-2-layers"]
    lines, _ = lines_and_rows(seed=3, windows=10)
    starts = np.arange(20, 50, 2)
    rows = starts[:, None] + np.arange(W)[None, :]
    rows[rows >= 60] = -1
    got = line_predictor(model).predict_rows(to_sparse(DenseFeatures(lines)), rows)
    np.testing.assert_allclose(got, keras_on_windows(model, lines, rows), atol=1e-6, rtol=0)


def test_a_repeated_sparse_index_means_its_last_value_as_in_dense_windows():
    from skol_spark.model.projection import coo_last_wins, line_predictor

    csr = SparseFeatures(indptr=np.array([0, 3, 3, 5]), indices=np.array([4, 1, 4, 2, 0], dtype=np.int32),
                         data=np.array([9.0, 0.5, 0.25, 1.0, 2.0], dtype=np.float32), size=F)
    index, values = coo_last_wins(csr)
    dense = np.zeros((3, F), np.float32)
    dense[index[:, 0], index[:, 1]] = values
    np.testing.assert_array_equal(dense, csr.take(np.arange(3)))
    assert len(values) == 4  # (0, 4) once, with its last value 0.25

    model = lstm_variants()["lstm-last-step"]
    rows = np.array([[0, 1, 2, -1, -1, -1, -1]])
    np.testing.assert_allclose(line_predictor(model).predict_rows(csr, rows),
                               model(csr.take(rows.reshape(-1)).reshape(1, W, F)).numpy(), atol=1e-6)


def test_score_lines_with_line_projection_equals_the_reference_on_keras(closure_model):
    """Documents longer than a batch, shorter than a window, and windows packed across documents:
    the production path with the fast predictor equals the readable per-document loop on Keras."""
    from skol_spark.model.builder import make_predict_fn
    from skol_spark.model.projection import line_predictor

    rng = np.random.default_rng(5)
    lengths = np.array([1, WINDOW, 3 * WINDOW + 1, 2, 40, 5])
    docs = [(rng.random((n, FEATURES)) * (rng.random((n, FEATURES)) < 0.4)).astype(np.float32) for n in lengths]
    fast = line_predictor(closure_model)
    assert fast is not None
    keras_predict = make_predict_fn(closure_model)
    for stride in (3, WINDOW):
        got = score_lines(to_sparse(DenseFeatures(np.concatenate(docs))), lengths, fast, window=WINDOW,
                          stride=stride, batch_size=4)
        expected = np.concatenate([score_document(d, keras_predict, window=WINDOW, stride=stride) for d in docs])
        np.testing.assert_allclose(got, expected, atol=1e-6, rtol=0)


def not_qualifying():
    import keras

    L = keras.layers
    inp = keras.Input((W, F))
    branch = keras.Model(inp, L.Add()([L.LSTM(4, return_sequences=True)(inp), L.Dense(4)(inp)]))
    return {
        "GRU": (functional(L.GRU(4, return_sequences=True), L.Dense(3)), "not an LSTM"),
        "masking": (functional(L.Masking(), L.LSTM(4, return_sequences=True)), "not an LSTM"),
        "input feeds two layers": (branch, "do not depend on it alone"),
        "variable length": (keras.Sequential([keras.Input((None, F)), L.LSTM(4, return_sequences=True)]),
                            "not (batch, fixed window, features)"),
        "two directions kept apart": (keras.Model(inp, L.Concatenate()(
            L.Bidirectional(L.LSTM(4, return_sequences=True), merge_mode=None)(inp))), "merge_mode=None"),
        "two outputs": (keras.Model(inp, [L.LSTM(4)(inp), L.LSTM(4)(inp)]), "single-output"),
    }


def test_not_where_tensorflow_sees_a_gpu(caplog):
    """Keras runs an LSTM as one cuDNN kernel on a GPU; the step loop would be slower there.
    (No GPU on the test machine: the detection is passed in; without it the model qualifies.)"""
    from skol_spark.model.projection import LinePredictor, line_predictor

    model = lstm_variants()["lstm-last-step"]
    with caplog.at_level(logging.INFO, logger="skol_spark.model.projection"):
        assert line_predictor(model, gpu=True) is None
    assert "GPU" in caplog.text
    assert isinstance(line_predictor(model, gpu=False), LinePredictor)


@pytest.mark.parametrize("name", list(not_qualifying()))
def test_models_it_cannot_reproduce_are_refused_with_the_reason(name, caplog):
    from skol_spark.model.projection import first_lstm, line_predictor

    model, reason = not_qualifying()[name]
    found = first_lstm(model)
    assert isinstance(found, str) and reason in found
    with caplog.at_level(logging.INFO, logger="skol_spark.model.projection"):
        assert line_predictor(model) is None
    assert reason in caplog.text


# ---- the build: golden-checked, with a fallback to Keras' own call ----------------------------------

def publish(publish_model, model):
    return publish_model(model, f"lp-{uuid.uuid4().hex[:6]}", stride=3).artifact()


def test_build_returns_the_line_predictor_when_it_passes_the_golden_check(publish_model, closure_model):
    from skol_spark.model.builder import build_predictor
    from skol_spark.model.projection import LinePredictor

    artifact = publish(publish_model, closure_model)
    assert artifact.manifest.get("golden")
    fast = build_predictor(artifact, line_projection=True)
    assert isinstance(fast, LinePredictor)
    assert not hasattr(build_predictor(artifact, line_projection=False), "predict_rows")
    # the build traced every function a scoring batch calls, so the first batch does not trace
    traced = [fast._sparse_product, fast._dense_product, fast._model]
    assert [f.experimental_get_tracing_count() for f in traced] == [1, 1, 1]
    lines = to_sparse(DenseFeatures(np.random.default_rng(2).random((WINDOW + 3, FEATURES), dtype=np.float32)))
    fast.predict_rows(lines, np.arange(2 * WINDOW).reshape(2, WINDOW) % (WINDOW + 3))
    assert [f.experimental_get_tracing_count() for f in traced] == [1, 1, 1]


def test_a_line_predictor_that_disagrees_falls_back_to_keras(publish_model, closure_model, monkeypatch, caplog):
    """Fault injection: a wrong merge of the two directions must not reach the output."""
    from skol_spark.model import projection
    from skol_spark.model.artifact import golden_inputs
    from skol_spark.model.builder import build_predictor

    artifact = publish(publish_model, closure_model)
    import tensorflow as tf

    # the backward direction first and unflipped: the kind of mistake the golden check must catch
    monkeypatch.setattr(projection.LinePredictor, "_merge", lambda self, outputs: tf.concat(outputs[::-1], axis=-1))
    with caplog.at_level(logging.WARNING, logger="skol_spark.model.builder"):
        predict = build_predictor(artifact, line_projection=True)
    assert not hasattr(predict, "predict_rows")
    assert "line projection does not reproduce" in caplog.text
    x = golden_inputs(1, WINDOW, FEATURES)
    np.testing.assert_allclose(predict(x), closure_model(x, training=False).numpy(), atol=1e-6)


def test_an_environment_that_fails_both_still_fails_the_golden_check(publish_model, closure_model):
    from skol_spark.errors import EnvironmentMismatchError
    from skol_spark.model.builder import build_predictor

    artifact = publish(publish_model, closure_model)
    golden = dict(artifact.manifest["golden"])
    golden["outputs"] = (np.asarray(golden["outputs"]) + 1e-3).tolist()  # as if published elsewhere
    artifact.manifest["golden"] = golden
    with pytest.raises(EnvironmentMismatchError, match="golden outputs differ"):
        build_predictor(artifact, line_projection=True)
