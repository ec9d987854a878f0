"""Windowing semantics: how a document's lines become model windows and back.

A document of ``L`` lines is cut into windows of ``W`` lines starting at
``0, S, 2S, ...`` for every start ``< L`` (stride ``S <= W``); each window is
zero-padded at its end to ``W`` lines. A line's probabilities are the mean of
the model's outputs for that line over every window that covers it. Padding
rows are predicted but never emitted.

``score_document`` is the reference: a plain loop anyone can read, used by the
tests as the independent answer the Spark path must equal. ``score_lines`` is
the production path: the same arithmetic vectorized across many documents,
built window batch by window batch so memory stays bounded by the batch size
and not by the longest document.
"""

from __future__ import annotations

from typing import Callable, Iterator

import numpy as np

from skol_spark.scoring.features import DenseFeatures, FeatureSource

Predict = Callable[[np.ndarray], np.ndarray]


def window_starts(length: int, window: int, stride: int) -> np.ndarray:
    """Start lines of the windows of one document: ``int64[ceil(L / S)]``."""
    if window < 1 or not 1 <= stride <= window:
        raise ValueError(f"need window >= 1 and 1 <= stride <= window, got window={window} stride={stride}")
    return np.arange(0, max(int(length), 0), stride, dtype=np.int64)


def score_document(features: np.ndarray, predict: Predict, *, window: int, stride: int,
                   batch_size: int = 64) -> np.ndarray:
    """Reference scoring of ONE document.

    ``features: float32[L, F]`` -> ``float32[L, C]`` probabilities. Loops
    window by window on purpose: it is the readable definition, not the fast path.
    """
    length = features.shape[0]
    windows = []
    for start in window_starts(length, window, stride):
        chunk = features[start:start + window]
        padded = np.zeros((window, features.shape[1]), dtype=np.float32)
        padded[: chunk.shape[0]] = chunk
        windows.append(padded)
    if not windows:
        return np.zeros((0, 0), dtype=np.float32)
    outputs = np.concatenate([predict(np.stack(windows[i:i + batch_size]))
                              for i in range(0, len(windows), batch_size)])
    sums = np.zeros((length, outputs.shape[-1]), dtype=np.float64)
    counts = np.zeros(length, dtype=np.int64)
    for out, start in zip(outputs, window_starts(length, window, stride)):
        stop = min(start + window, length)
        sums[start:stop] += out[: stop - start]
        counts[start:stop] += 1
    return (sums / counts[:, None]).astype(np.float32)


def plan_windows(lengths: np.ndarray, window: int, stride: int) -> tuple[np.ndarray, np.ndarray]:
    """All windows of many documents: ``(doc: int64[n], start: int64[n])``, document order kept."""
    lengths = np.asarray(lengths, dtype=np.int64)
    if window < 1 or not 1 <= stride <= window:
        raise ValueError(f"need window >= 1 and 1 <= stride <= window, got window={window} stride={stride}")
    per_doc = (lengths + stride - 1) // stride
    doc = np.repeat(np.arange(lengths.size, dtype=np.int64), per_doc)
    first = np.cumsum(per_doc) - per_doc
    starts = (np.arange(doc.size, dtype=np.int64) - np.repeat(first, per_doc)) * stride
    return doc, starts


def window_rows(doc: np.ndarray, starts: np.ndarray, offsets: np.ndarray, lengths: np.ndarray,
                window: int) -> np.ndarray:
    """Row index of every window position, ``-1`` for padding: ``int64[n, window]``."""
    pos = starts[:, None] + np.arange(window, dtype=np.int64)[None, :]
    rows = offsets[doc][:, None] + pos
    return np.where(pos < lengths[doc][:, None], rows, -1)


def iter_window_rows(lengths: np.ndarray, *, window: int, stride: int, batch_size: int) -> Iterator[np.ndarray]:
    """Yield the line rows of each batch of windows, ``int64[b, W]`` (``-1``: padding)."""
    lengths = np.asarray(lengths, dtype=np.int64)
    offsets = np.cumsum(lengths) - lengths
    doc, starts = plan_windows(lengths, window, stride)
    for i in range(0, doc.size, batch_size):
        yield window_rows(doc[i:i + batch_size], starts[i:i + batch_size], offsets, lengths, window)


def iter_window_batches(features: FeatureSource, lengths: np.ndarray, *, window: int, stride: int,
                        batch_size: int) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Yield ``(rows: int64[b, W], windows: float32[b, W, F])`` batches, built lazily."""
    for rows in iter_window_rows(lengths, window=window, stride=stride, batch_size=batch_size):
        yield rows, features.take(rows.reshape(-1)).reshape(rows.shape[0], window, -1)


def predict_batch(predict: Predict, features: FeatureSource, rows: np.ndarray) -> np.ndarray:
    """Outputs for the windows ``rows`` names. A predictor with ``predict_rows`` (a
    ``projection.LinePredictor``) takes the lines themselves; any other gets dense windows."""
    by_rows = getattr(predict, "predict_rows", None)
    if by_rows is not None:
        return by_rows(features, rows)
    return predict(features.take(rows.reshape(-1)).reshape(rows.shape[0], rows.shape[1], -1))


def score_lines(features: FeatureSource, lengths: np.ndarray, predict: Predict, *, window: int,
                stride: int, batch_size: int = 512, num_classes: int | None = None) -> np.ndarray:
    """Score consecutive documents: ``features`` rows are the documents' lines in order,
    ``lengths: int64[d]`` their line counts. -> ``float32[sum(lengths), C]``.

    Windows from all documents are packed into prediction batches of
    ``batch_size``; overlapping outputs are summed per line with ``bincount``
    and divided by each line's window count.
    """
    total = int(np.sum(lengths))
    sums: np.ndarray | None = None
    counts = np.zeros(total, dtype=np.float64)
    for rows in iter_window_rows(lengths, window=window, stride=stride, batch_size=batch_size):
        out = np.asarray(predict_batch(predict, features, rows), dtype=np.float64)
        classes = out.shape[-1]
        if sums is None:
            sums = np.zeros((total, classes), dtype=np.float64)
        valid = rows >= 0
        # windows come in document order, so one batch touches one contiguous range of
        # lines: bincount over that range only (not over every line, batch after batch)
        lo = int(rows[valid].min())
        line = rows[valid] - lo
        span = int(line.max()) + 1
        sums[lo:lo + span] += np.bincount(
            (line[:, None] * classes + np.arange(classes)).ravel(),
            weights=out[valid].ravel(), minlength=span * classes).reshape(span, classes)
        counts[lo:lo + span] += np.bincount(line, minlength=span)
    if sums is None:
        return np.zeros((0, num_classes or 0), dtype=np.float32)
    return (sums / counts[:, None]).astype(np.float32)


def score_dense_documents(docs: list[np.ndarray], predict: Predict, *, window: int, stride: int,
                          batch_size: int = 512) -> list[np.ndarray]:
    """Convenience: score a list of ``float32[L_i, F]`` documents with the vectorized path."""
    lengths = np.array([d.shape[0] for d in docs], dtype=np.int64)
    probs = score_lines(DenseFeatures(np.concatenate(docs).astype(np.float32)), lengths, predict,
                        window=window, stride=stride, batch_size=batch_size)
    return np.split(probs, np.cumsum(lengths)[:-1])
