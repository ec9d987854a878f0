"""Windowing semantics and the vectorized scorer against the loop reference (pure numpy, fast)."""

from __future__ import annotations

import numpy as np
import pytest

from skol_spark.scoring.features import DenseFeatures, to_sparse
from skol_spark.scoring.windowing import (plan_windows, score_dense_documents, score_document, score_lines,
                                  window_starts)

F, C = 5, 3


def fake_model(seed: int = 7):
    """A deterministic stand-in: a fixed random linear map over (features + position) + softmax.

    Position enters the logits so a window's output depends on where a line sits in
    it: an off-by-one in window placement or padding changes the result.
    """
    rng = np.random.default_rng(seed)
    weight = rng.normal(size=(F, C))
    mix = rng.normal(size=(C, C)) * 0.5
    calls: list[int] = []

    def predict(windows: np.ndarray) -> np.ndarray:
        assert windows.ndim == 3 and windows.shape[2] == F and windows.dtype == np.float32
        calls.append(windows.shape[0])
        logits = windows.astype(np.float64) @ weight
        pos = np.arange(windows.shape[1])[None, :, None] * 0.1
        # a little context: each line also sees the window's mean, as an LSTM would
        logits = logits + pos + logits.mean(axis=1, keepdims=True) @ mix
        e = np.exp(logits - logits.max(axis=-1, keepdims=True))
        return (e / e.sum(axis=-1, keepdims=True)).astype(np.float32)

    predict.calls = calls
    return predict


def random_doc(rng, length):
    return rng.normal(size=(length, F)).astype(np.float32)


# ---- window_starts / plan_windows -------------------------------------------------------------

@pytest.mark.parametrize(("length", "window", "stride", "expected"), [
    (1, 8, 8, [0]),
    (1, 8, 3, [0]),
    (8, 8, 8, [0]),            # exactly one window
    (8, 8, 4, [0, 4]),         # the second window is padded, the lines 4..7 are covered twice
    (9, 8, 8, [0, 8]),         # L = W + 1: a second window holding one line
    (9, 8, 4, [0, 4, 8]),
    (5, 3, 1, [0, 1, 2, 3, 4]),  # stride 1: one window per line
    (17, 4, 4, [0, 4, 8, 12, 16]),
    (0, 4, 2, []),
])
def test_window_starts(length, window, stride, expected):
    assert window_starts(length, window, stride).tolist() == expected


@pytest.mark.parametrize(("window", "stride"), [(0, 1), (4, 0), (4, 5), (4, -1)])
def test_window_starts_refuses_bad_geometry(window, stride):
    with pytest.raises(ValueError, match="stride"):
        window_starts(10, window, stride)
    with pytest.raises(ValueError, match="stride"):
        plan_windows(np.array([10]), window, stride)


def test_every_line_is_covered_and_starts_stay_inside_the_document():
    rng = np.random.default_rng(1)
    for _ in range(200):
        window = int(rng.integers(1, 10))
        stride = int(rng.integers(1, window + 1))
        length = int(rng.integers(1, 40))
        starts = window_starts(length, window, stride)
        assert starts[0] == 0 and starts[-1] < length
        assert np.all(np.diff(starts) == stride)
        covered = np.zeros(length, dtype=int)
        for s in starts:
            covered[s:s + window] += 1
        assert covered.min() >= 1


def test_plan_windows_matches_window_starts_per_document():
    rng = np.random.default_rng(2)
    lengths = rng.integers(1, 30, size=25)
    for window, stride in [(8, 8), (8, 3), (5, 1), (1, 1)]:
        doc, starts = plan_windows(lengths, window, stride)
        assert np.all(np.diff(doc) >= 0)  # document order kept
        for d, length in enumerate(lengths):
            assert starts[doc == d].tolist() == window_starts(length, window, stride).tolist()


# ---- score_document (the reference) on hand-checkable cases ------------------------------------

def test_reference_averages_overlapping_windows_by_hand():
    """Window 4, stride 2, 6 lines: windows at 0, 2, 4 (the last padded); a line's output is the
    mean over the windows covering it, at its position in each window."""
    window, stride = 4, 2
    doc = np.arange(6 * F, dtype=np.float32).reshape(6, F) / 10
    predict = fake_model()
    got = score_document(doc, predict, window=window, stride=stride)

    def padded(start):
        w = np.zeros((window, F), np.float32)
        chunk = doc[start:start + window]
        w[:len(chunk)] = chunk
        return predict(w[None])[0]

    w0, w2, w4 = padded(0), padded(2), padded(4)
    expected = np.stack([w0[0], w0[1], (w0[2] + w2[0]) / 2, (w0[3] + w2[1]) / 2,
                         (w2[2] + w4[0]) / 2, (w2[3] + w4[1]) / 2])
    np.testing.assert_allclose(got, expected, rtol=1e-6)


def test_reference_one_line_document_is_one_padded_window():
    doc = random_doc(np.random.default_rng(3), 1)
    predict = fake_model()
    padded = np.zeros((8, F), np.float32)
    padded[0] = doc[0]
    got = score_document(doc, predict, window=8, stride=8)
    assert got.shape == (1, C)
    np.testing.assert_allclose(got[0], predict(padded[None])[0, 0], rtol=1e-6)


# ---- score_lines (vectorized) equals score_document (loop) -------------------------------------

@pytest.mark.parametrize(("window", "stride"), [(8, 8), (8, 4), (8, 3), (8, 1), (3, 2), (1, 1)])
def test_vectorized_equals_reference_for_random_documents(window, stride):
    rng = np.random.default_rng(window * 10 + stride)
    predict = fake_model()
    for trial in range(12):
        n_docs = int(rng.integers(1, 12))
        lengths = [int(x) for x in rng.integers(1, 4 * window + 3, size=n_docs)]
        lengths[0] = [1, window, window + 1, 2 * window][trial % 4]  # always include the edge lengths
        docs = [random_doc(rng, n) for n in lengths]
        expected = np.concatenate([score_document(d, predict, window=window, stride=stride) for d in docs])
        total_windows = sum(len(window_starts(n, window, stride)) for n in lengths)
        for batch_size in (1, 2, 7, 64, total_windows, total_windows + 100):
            calls_before = len(predict.calls)
            got = score_lines(DenseFeatures(np.concatenate(docs)), np.array(lengths), predict,
                              window=window, stride=stride, batch_size=batch_size)
            assert got.shape == (sum(lengths), C)  # padding rows never come back
            assert got.dtype == np.float32
            np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)
            # every window predicted exactly once, in batches of at most batch_size
            new_calls = predict.calls[calls_before:]
            assert sum(new_calls) == total_windows
            assert max(new_calls) <= batch_size


def test_vectorized_sparse_source_equals_dense():
    rng = np.random.default_rng(11)
    predict = fake_model()
    lengths = np.array([1, 8, 9, 3, 20])
    values = random_doc(rng, int(lengths.sum()))
    values[rng.random(values.shape) < 0.6] = 0.0  # mostly zeros, as TF-IDF rows are
    dense = score_lines(DenseFeatures(values), lengths, predict, window=8, stride=3, batch_size=5)
    sparse = score_lines(to_sparse(DenseFeatures(values)), lengths, predict, window=8, stride=3, batch_size=5)
    np.testing.assert_array_equal(dense, sparse)


def test_probabilities_rows_sum_to_one_and_documents_do_not_leak():
    """A document's scores do not depend on its neighbours in the batch."""
    rng = np.random.default_rng(12)
    predict = fake_model()
    docs = [random_doc(rng, n) for n in (5, 13, 1, 8)]
    together = score_dense_documents(docs, predict, window=8, stride=4, batch_size=3)
    for d, got in zip(docs, together):
        alone = score_dense_documents([d], predict, window=8, stride=4, batch_size=3)[0]
        np.testing.assert_allclose(got, alone, rtol=1e-6)
        np.testing.assert_allclose(got.sum(axis=1), 1.0, rtol=1e-5)


def test_empty_input_gives_zero_rows_with_the_class_width():
    predict = fake_model()
    got = score_lines(DenseFeatures(np.zeros((0, F), np.float32)), np.zeros(0, np.int64), predict,
                      window=8, stride=8, num_classes=C)
    assert got.shape == (0, C)
    assert predict.calls == []
