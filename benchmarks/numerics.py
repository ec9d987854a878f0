"""An independent numpy forward pass of windowed (Bi)LSTM models, for the golden check's argument.

``reference_predict(model)`` computes what Keras computes, from the model's
weights, with numpy: in float64 (another summation order and precision than
any float32 kernel, CPU or cuDNN), or with matrix-product inputs rounded to
``mantissa_bits`` (10: what TensorFloat-32 does on Ampere/Hopper GPUs).
``benchmarks/gpu_check.py`` and ``tests/test_device.py`` measure the golden
check's tolerance against both (docs/gpu.md).

Covers the layers of the benchmark's and the tests' models: ``LSTM`` (tanh,
sigmoid, with bias), ``Bidirectional`` of two LSTMs, ``Dense`` and
``TimeDistributed(Dense)`` with linear, softmax or sigmoid activation.
"""

from __future__ import annotations

from typing import Callable

import numpy as np


def rounded(x: np.ndarray, mantissa_bits: int | None) -> np.ndarray:
    """``x`` with its float32 mantissa rounded (to nearest) to ``mantissa_bits`` bits; None: unchanged."""
    if mantissa_bits is None:
        return x
    bits = np.asarray(x, dtype=np.float32).view(np.uint32)
    drop = np.uint32(23 - mantissa_bits)
    half = np.uint32(1) << (drop - np.uint32(1))
    out = ((bits + half) >> drop) << drop
    return out.view(np.float32).astype(x.dtype)


def _matmul(a: np.ndarray, b: np.ndarray, dtype, bits: int | None) -> np.ndarray:
    return (rounded(a.astype(np.float32), bits).astype(dtype) @ rounded(b.astype(np.float32), bits).astype(dtype))


def _sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def _hard_sigmoid(x):
    """Keras 2's ``hard_sigmoid``, the LSTM's recurrent activation by default before Keras 2.3."""
    return np.clip(0.2 * x + 0.5, 0.0, 1.0)


GATES = {None: _sigmoid, "sigmoid": _sigmoid, "hard_sigmoid": _hard_sigmoid}


def _lstm(x: np.ndarray, layer, dtype, bits, gate=_sigmoid) -> np.ndarray:
    """``x: [n, steps, features]`` -> ``[n, steps, units]`` (or ``[n, units]``), Keras' gate order i, f, c, o."""
    cell = layer.cell
    kernel, recurrent = cell.kernel.numpy(), cell.recurrent_kernel.numpy()
    bias = cell.bias.numpy().astype(dtype)
    n, steps, _ = x.shape
    units = recurrent.shape[0]
    h = np.zeros((n, units), dtype)
    c = np.zeros((n, units), dtype)
    order = range(steps - 1, -1, -1) if layer.go_backwards else range(steps)
    outputs = []
    for t in order:
        z = _matmul(x[:, t], kernel, dtype, bits) + _matmul(h, recurrent, dtype, bits) + bias
        i, f, g, o = np.split(z, 4, axis=1)
        c = gate(f) * c + gate(i) * np.tanh(g)
        h = gate(o) * np.tanh(c)
        outputs.append(h)
    return np.stack(outputs, axis=1) if layer.return_sequences else h


def _dense(x: np.ndarray, layer, dtype, bits) -> np.ndarray:
    y = _matmul(x.reshape(-1, x.shape[-1]), layer.kernel.numpy(), dtype, bits)
    if layer.use_bias:
        y = y + layer.bias.numpy().astype(dtype)
    y = y.reshape(*x.shape[:-1], -1)
    name = layer.activation.__name__
    if name == "softmax":
        e = np.exp(y - y.max(axis=-1, keepdims=True))
        return e / e.sum(axis=-1, keepdims=True)
    if name == "sigmoid":
        return _sigmoid(y)
    if name != "linear":
        raise ValueError(f"activation {name!r} is not covered by the numpy reference")
    return y


def _layer(x: np.ndarray, layer, dtype, bits, gate) -> np.ndarray:
    import keras

    if isinstance(layer, keras.layers.Bidirectional):
        forward = _lstm(x, layer.forward_layer, dtype, bits, gate)
        backward = _lstm(x, layer.backward_layer, dtype, bits, gate)
        if layer.return_sequences:
            backward = backward[:, ::-1]
        if layer.merge_mode != "concat":
            raise ValueError(f"merge_mode {layer.merge_mode!r} is not covered by the numpy reference")
        return np.concatenate([forward, backward], axis=-1)
    if isinstance(layer, keras.layers.LSTM):
        return _lstm(x, layer, dtype, bits, gate)
    if isinstance(layer, keras.layers.TimeDistributed):
        return _dense(x, layer.layer, dtype, bits)
    if isinstance(layer, keras.layers.Dense):
        return _dense(x, layer, dtype, bits)
    raise ValueError(f"layer {type(layer).__name__} is not covered by the numpy reference")


def reference_predict(model, *, dtype=np.float64, mantissa_bits: int | None = None,
                      recurrent_activation: str | None = None) -> Callable[[np.ndarray], np.ndarray]:
    """A predict function ``float32[n, window, features] -> float64[n, window, classes]`` for a sequential
    stack of the covered layers, computed by numpy in ``dtype`` (matrix-product inputs rounded to
    ``mantissa_bits`` when given). ``recurrent_activation="hard_sigmoid"``: the LSTM gates as an old Keras
    computed them by default, a stand-in for a different Keras on the executors."""
    import keras

    gate = GATES[recurrent_activation]

    layers = [layer for layer in model.layers if not isinstance(layer, keras.layers.InputLayer)]

    def predict(windows: np.ndarray) -> np.ndarray:
        x = np.asarray(windows).astype(dtype)
        for layer in layers:
            x = _layer(x, layer, dtype, mantissa_bits, gate)
        return x.astype(np.float64)

    return predict


def swapped_directions(model) -> list[np.ndarray]:
    """The model's weights with each Bidirectional's forward and backward arrays exchanged: same shapes, so
    ``set_weights`` accepts them; the kind of wrong weight order a loader can produce silently."""
    import keras

    weights, out = model.get_weights(), []
    position = 0
    for layer in model.layers:
        count = len(layer.get_weights())
        arrays = weights[position:position + count]
        if isinstance(layer, keras.layers.Bidirectional):
            half = count // 2
            arrays = arrays[half:] + arrays[:half]
        out += arrays
        position += count
    return out
