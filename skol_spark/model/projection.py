"""The first LSTM's input product, once per line: a faster, equal predict for windowed LSTM models.

Why: an LSTM computes ``z = x·K + h·R + b`` at every step. In a windowed
model over TF-IDF lines, ``x`` is a 1,000-wide row that is ~99% zeros, and
with stride W/2 every line sits in two windows. On this project's BiLSTM,
that first product is ~60% of Keras' predict time. It is computed twice per
line, over mostly zeros, and it does not depend on the window: ``x·K`` for a
line is the same whichever window holds it.

So this module does it once per line: a sparse-dense product for sparse
features (a dense one for dense features), then a gather into windows. The
recurrences then run on that; they are Keras' LSTM cell arithmetic, in
Keras' order and with the layer's own activations. After them, the rest of
the model is Keras' own layers, called as a sub-model.

Only the summation order of ``x·K`` differs from Keras. Outputs agree with
``model(windows)`` to ~1e-7, and every build is checked against the model's
golden outputs before it is used (``model_builder.build_predictor``).

Qualifies: a model whose layer applied to its input is an ``LSTM`` or a
``Bidirectional`` of two LSTMs, with a fixed window, float32, not stateful,
no returned states. Anything else predicts through Keras' own call, and the
reason is logged.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np

from skol_spark.scoring.features import DenseFeatures, FeatureSource, SparseFeatures

log = logging.getLogger(__name__)

MERGE_MODES = ("concat", "sum", "ave", "mul")


def first_lstm(model) -> tuple[Any, Any] | str:
    """``(first layer, the rest of the model as a sub-model)``, or why the model does not qualify."""
    import keras

    inputs = getattr(model, "inputs", None)
    outputs = getattr(model, "outputs", None)
    if not inputs or not outputs or len(inputs) != 1 or len(outputs) != 1:
        return "the model is not a single-input, single-output functional or Sequential model"
    shape = tuple(inputs[0].shape)
    if len(shape) != 3 or shape[1] is None or shape[2] is None:
        return f"its input shape {shape} is not (batch, fixed window, features)"
    layers = [layer for layer in model.layers if not isinstance(layer, keras.layers.InputLayer)]
    if not layers:
        return "it has no layers"
    first = layers[0]
    # A Sequential rebuilt from JSON holds two call records of its first layer, both on the input.
    nodes = getattr(first, "_inbound_nodes", [])
    if not nodes or not all(len(n.input_tensors) == 1 and n.input_tensors[0] is inputs[0] for n in nodes):
        return f"its first layer {first.name!r} is not applied to the model's input alone"
    reason = _lstm_reason(first)
    if reason:
        return reason
    error = ""
    for node in nodes:  # the record whose output leads to the model's output
        try:
            return first, keras.Model(node.output_tensors[0], outputs[0])
        except ValueError as e:  # not connected: the input also feeds another layer, or a stale record
            error = str(e).splitlines()[0]
    return f"the layers after {first.name!r} do not depend on it alone ({error})"


def _lstm_reason(layer) -> str:
    import keras

    if isinstance(layer, keras.layers.Bidirectional):
        if layer.merge_mode not in MERGE_MODES:
            return f"Bidirectional {layer.name!r} has merge_mode={layer.merge_mode!r}"
        if layer.return_state:
            return f"Bidirectional {layer.name!r} returns its states"
        return _lstm_reason(layer.forward_layer) or _lstm_reason(layer.backward_layer)
    if type(layer) is not keras.layers.LSTM:  # a subclass may change the cell's arithmetic
        return f"its first layer {layer.name!r} is a {type(layer).__name__}, not an LSTM or Bidirectional LSTM"
    if layer.stateful or layer.return_state:
        return f"LSTM {layer.name!r} is stateful or returns its states"
    if type(layer.cell) is not keras.layers.LSTMCell:
        return f"LSTM {layer.name!r} has a custom cell"
    if layer.compute_dtype != "float32" or layer.cell.kernel.dtype != "float32":
        return f"LSTM {layer.name!r} computes in {layer.compute_dtype}"
    return ""


class LinePredictor:
    """Predict windows from line features, each line's first-layer product computed once.

    ``predict_rows(features, rows)`` is the fast path (``windowing.score_lines``
    uses it): ``rows: int64[n, window]`` index ``features`` (``-1``: padding).
    Called with dense windows (``float32[n, window, features]``), like any
    predictor, it treats each window row as a line: the golden check and the
    driver smoke test go through the same arithmetic.
    """

    def __init__(self, first, rest) -> None:
        import keras
        import tensorflow as tf

        self.first, self.rest = first, rest
        if isinstance(first, keras.layers.Bidirectional):
            self.cells = [first.forward_layer, first.backward_layer]
        else:
            self.cells = [first]
        self.kernel = tf.concat([layer.cell.kernel.value for layer in self.cells], axis=1)
        self.features = int(self.kernel.shape[0])
        self.window = int(first.input.shape[1])
        width = int(self.kernel.shape[1])

        # Three traced functions, not two whole ones: the model part (the slowest trace) is traced
        # once, by the golden check during the build, whichever product the scoring batches then take.
        # autograph=False: this code branches on Python values only (its loop is an explicit while_loop),
        # and rewriting its source was half of that trace (cProfile); the Keras layers it calls run
        # unconverted either way, as Keras is on AutoGraph's do-not-convert list.
        @tf.function(input_signature=[tf.TensorSpec([None, 2], tf.int64), tf.TensorSpec([None], tf.float32),
                                      tf.TensorSpec([], tf.int64)], autograph=False)
        def sparse_product(index, values, lines):
            shape = tf.stack([lines, tf.constant(self.features, tf.int64)])
            return tf.sparse.sparse_dense_matmul(tf.SparseTensor(index, values, shape), self.kernel)

        @tf.function(input_signature=[tf.TensorSpec([None, self.features], tf.float32)], autograph=False)
        def dense_product(lines):
            return tf.matmul(lines, self.kernel)

        @tf.function(input_signature=[tf.TensorSpec([None, width], tf.float32),
                                      tf.TensorSpec([None, self.window], tf.int64)], autograph=False)
        def windows_through_model(product, rows):
            lines = tf.shape(product, out_type=tf.int64)[0]
            padded = tf.concat([product, tf.zeros([1, width], product.dtype)], axis=0)  # row `lines`: padding
            x = tf.gather(padded, tf.where(rows < 0, lines, rows))  # [n, window, width]
            outputs = [self._recurrence(part, layer)
                       for part, layer in zip(tf.split(x, len(self.cells), axis=-1), self.cells)]
            return self.rest(self._merge(outputs), training=False)

        self._sparse_product, self._dense_product, self._model = sparse_product, dense_product, windows_through_model

    @staticmethod
    def _recurrence(xk, layer):
        """Keras' LSTMCell (implementation 2) over the steps, ``x·K`` given; outputs in Keras' order.

        A ``while_loop``, as Keras' own: an unrolled loop predicted no faster and took longer to
        trace, and every worker traces it on its critical path (benchmarks/README.md)."""
        import tensorflow as tf

        cell = layer.cell
        recurrent = cell.recurrent_kernel.value
        bias = cell.bias.value if cell.use_bias else None
        steps = tf.transpose(xk, [1, 0, 2])  # [window, n, 4 units]
        if layer.go_backwards:
            steps = tf.reverse(steps, axis=[0])
        count = xk.shape[1]

        def step(t, h, c, outputs):
            z = steps[t] + tf.matmul(h, recurrent)
            if bias is not None:
                z = z + bias
            z0, z1, z2, z3 = tf.split(z, 4, axis=1)
            i = cell.recurrent_activation(z0)
            f = cell.recurrent_activation(z1)
            c = f * c + i * cell.activation(z2)
            o = cell.recurrent_activation(z3)
            h = o * cell.activation(c)
            return t + 1, h, c, outputs.write(t, h)

        zeros = tf.zeros([tf.shape(xk)[0], cell.units], xk.dtype)
        _, h, _, outputs = tf.while_loop(lambda t, *_: t < count, step,
                                         (tf.constant(0), zeros, zeros, tf.TensorArray(xk.dtype, size=count)))
        return tf.transpose(outputs.stack(), [1, 0, 2]) if layer.return_sequences else h

    def _merge(self, outputs):
        import tensorflow as tf

        if len(outputs) == 1:  # a plain LSTM
            return outputs[0]
        y, y_rev = outputs
        if self.first.return_sequences:
            y_rev = tf.reverse(y_rev, axis=[1])
        mode = self.first.merge_mode
        if mode == "concat":
            return tf.concat([y, y_rev], axis=-1)
        if mode == "sum":
            return y + y_rev
        if mode == "ave":
            return (y + y_rev) / 2
        return y * y_rev

    def __call__(self, windows: np.ndarray) -> np.ndarray:
        windows = np.asarray(windows, dtype=np.float32)
        n = windows.shape[0]
        rows = np.arange(n * self.window, dtype=np.int64).reshape(n, self.window)
        return self._model(self._dense_product(windows.reshape(-1, self.features)), rows).numpy()

    def trace_sparse_product(self) -> None:
        """Trace the sparse product in the build (the warm-up, off the scoring path) instead of on the first
        scoring batch: the golden check's dense windows traced the other two functions."""
        self._sparse_product(np.zeros((0, 2), np.int64), np.zeros(0, np.float32), np.int64(1))

    def predict_rows(self, features: FeatureSource, rows: np.ndarray) -> np.ndarray:
        """``float32[n, window, classes]`` for the windows whose lines ``rows`` names."""
        valid = rows >= 0  # every window starts on a line, so each batch names at least one
        lo, hi = int(rows[valid].min()), int(rows[valid].max()) + 1
        span = features.slice(lo, hi)
        if isinstance(span, DenseFeatures):
            product = self._dense_product(span.values)
        else:
            product = self._sparse_product(*coo_last_wins(span), np.int64(hi - lo))
        return self._model(product, np.where(valid, rows - lo, -1)).numpy()


def coo_last_wins(csr: SparseFeatures) -> tuple[np.ndarray, np.ndarray]:
    """``(index: int64[nnz, 2], values)`` with one entry per (row, column).

    A row that names a column twice means its last value, as in
    ``SparseFeatures.take``; a sparse product would add them.
    """
    row = np.repeat(np.arange(len(csr), dtype=np.int64), np.diff(csr.indptr))
    key = row * csr.size + csr.indices
    values = csr.data
    if key.size > 1 and not np.all(key[1:] > key[:-1]):  # not strictly increasing: sort, keep the last
        order = np.argsort(key, kind="stable")
        key, values = key[order], values[order]
        last = np.append(key[1:] != key[:-1], True)
        key, values = key[last], values[last]
    return np.stack([key // csr.size, key % csr.size], axis=1), np.ascontiguousarray(values, dtype=np.float32)


def line_predictor(model, *, gpu: bool | None = None) -> LinePredictor | None:
    """A ``LinePredictor`` for the model, or None (logged) when it does not qualify.

    Not where TensorFlow sees a GPU (``gpu``: detected when None): there Keras runs an
    LSTM as one fused cuDNN kernel, which a step loop would only slow down.
    """
    if gpu is None:
        import tensorflow as tf

        gpu = bool(tf.config.list_physical_devices("GPU"))
    found = "TensorFlow sees a GPU, where Keras' fused cuDNN LSTM is faster" if gpu else first_lstm(model)
    if isinstance(found, str):
        log.info("line projection off for this model: %s; predicting through Keras' own call", found)
        return None
    return LinePredictor(*found)
