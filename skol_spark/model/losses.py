"""Registered losses for imbalanced per-timestep sequence classification.

Why this module exists: the original models were trained with closure losses
(``weighted_categorical_crossentropy(weights)`` returning an inner function).
A closure serializes as a bare function name that Keras cannot find again, so
those models could only be reloaded with hand-written stand-ins. The classes
here carry their parameters in ``get_config()`` and are registered under the
``skol_spark`` package, so once this module is imported a model compiled with
them round-trips through ``model.to_json()`` / ``model_from_json`` and ``.keras``
files with no ``custom_objects`` at all. ``custom_objects()`` is still offered
for the one place (``model_builder``) that passes them explicitly.

Shapes, for every loss: ``y_true`` is one-hot ``float32[batch, timesteps,
classes]``, ``y_pred`` is softmax probabilities of the same shape, and
``call`` returns ``float32[batch, timesteps]`` which Keras reduces (mean by
default). Probabilities are clipped to ``[EPSILON, 1 - EPSILON]`` before any
``log`` so a confident wrong prediction gives a large finite loss, not ``inf``.
"""

from __future__ import annotations

import math
from typing import Any, Mapping, Sequence

import keras
from keras import ops

EPSILON = 1e-7
_PACKAGE = "skol_spark"


def balanced_class_weights(counts: Mapping[str, float] | Sequence[float]) -> dict[str, float] | list[float]:
    """Weights ``n_samples / (n_classes * count)`` in the form given (dict by label, or list by index).

    This is scikit-learn's ``"balanced"`` heuristic: every class contributes
    the same total weight, so a class ten times rarer weighs ten times more.
    Raises ValueError for an empty input or a zero/negative count (naming it).
    """
    if isinstance(counts, Mapping):
        named = [(f"class {key!r}", float(count)) for key, count in counts.items()]
    else:
        named = [(f"class index {i}", float(count)) for i, count in enumerate(counts)]
    if not named:
        raise ValueError("balanced_class_weights: no class counts given; pass one count per class")
    for what, count in named:
        if not math.isfinite(count) or count < 0:
            raise ValueError(f"balanced_class_weights: {what} has count {count!r}; counts must be finite and >= 0")
        if count == 0:
            raise ValueError(
                f"balanced_class_weights: {what} has count 0, so its balanced weight is infinite; drop the class "
                "from the label set or give the weights by hand")
    total = sum(count for _, count in named)
    weights = [total / (len(named) * count) for _, count in named]
    if isinstance(counts, Mapping):
        return dict(zip(counts, weights))
    return weights


def custom_objects() -> dict[str, type]:
    """Class name -> class for every loss here; ``model_builder`` merges it into its custom objects."""
    return {cls.__name__: cls for cls in (
        WeightedCategoricalCrossentropy, CostMatrixCrossentropy, CategoricalFocalLoss, SoftF1Loss)}


def _float_list(values: Any, what: str) -> list[float]:
    """A JSON-friendly list of finite, non-negative floats (numpy arrays and tuples accepted)."""
    try:
        out = [float(v) for v in values]
    except (TypeError, ValueError) as e:
        raise ValueError(f"{what} must be a sequence of numbers, got {values!r}") from e
    bad = [v for v in out if not math.isfinite(v) or v < 0]
    if bad:
        raise ValueError(f"{what} must be finite and >= 0, got {bad[0]!r} in {out}")
    if not out:
        raise ValueError(f"{what} is empty; give one value per class")
    return out


def _check_classes(y_pred: Any, expected: int, what: str) -> None:
    """Fail at trace time when the model's class axis does not match the loss's parameters."""
    found = y_pred.shape[-1]
    if found is not None and int(found) != expected:
        raise ValueError(f"{what} has {expected} classes but the model predicts {int(found)}; "
                         "give one value per output class, in the model's label order")


def _clipped(y_pred: Any) -> Any:
    return ops.clip(y_pred, EPSILON, 1.0 - EPSILON)


def _resolve_class_weights(class_weights: Any, labels: Sequence[str] | None) -> list[float]:
    """Turn a dict keyed by label name into index order; a list passes through (checked against labels)."""
    if isinstance(class_weights, Mapping):
        if labels is None:
            raise ValueError("class_weights is a dict keyed by label name, so labels (the label names in the "
                             "model's output order) is required: WeightedCategoricalCrossentropy(weights, "
                             "labels=[...])")
        unknown = [k for k in class_weights if k not in labels]
        if unknown:
            raise ValueError(f"class_weights names label {unknown[0]!r}, which is not in labels {list(labels)}; "
                             "fix the spelling or the label list")
        missing = [name for name in labels if name not in class_weights]
        if missing:
            raise ValueError(f"class_weights has no weight for label {missing[0]!r}; give every label a weight "
                             "(1.0 for no change)")
        return _float_list([class_weights[name] for name in labels], "class_weights")
    weights = _float_list(class_weights, "class_weights")
    if labels is not None and len(labels) != len(weights):
        raise ValueError(f"class_weights has {len(weights)} values but labels has {len(labels)} names; "
                         "give one weight per label")
    return weights


@keras.saving.register_keras_serializable(package=_PACKAGE)
class WeightedCategoricalCrossentropy(keras.losses.Loss):
    """Per-timestep cross-entropy with a weight per true class: ``-sum_c w_c * y_c * log(p_c)``.

    ``class_weights``: a list by class index, or a dict keyed by label name
    together with ``labels`` (the names in output order), e.g. from
    ``balanced_class_weights``. Raises ValueError naming a missing/unknown label.
    """

    def __init__(self, class_weights: Sequence[float] | Mapping[str, float],
                 labels: Sequence[str] | None = None, *, name: str = "weighted_categorical_crossentropy",
                 reduction: str = "sum_over_batch_size", dtype: Any = None) -> None:
        super().__init__(name=name, reduction=reduction, dtype=dtype)
        self.labels = None if labels is None else [str(x) for x in labels]
        self.class_weights = _resolve_class_weights(class_weights, self.labels)

    def call(self, y_true: Any, y_pred: Any) -> Any:
        _check_classes(y_pred, len(self.class_weights), "WeightedCategoricalCrossentropy.class_weights")
        y_true = ops.cast(y_true, y_pred.dtype)
        weights = ops.convert_to_tensor(self.class_weights, dtype=y_pred.dtype)
        return -ops.sum(weights * y_true * ops.log(_clipped(y_pred)), axis=-1)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "class_weights": list(self.class_weights), "labels": self.labels}


@keras.saving.register_keras_serializable(package=_PACKAGE)
class CostMatrixCrossentropy(keras.losses.Loss):
    """Cross-entropy scaled by the expected mis-classification cost of the prediction.

    ``cost_matrix[t][j]`` (square ``classes x classes``, non-negative) is the
    cost of predicting class ``j`` when the truth is ``t``. Per timestep::

        loss = CE(y, p) * (y^T W p) = (-sum_c y_c log p_c) * (sum_t sum_j y_t W[t, j] p_j)

    i.e. for a one-hot ``y`` with true class ``t``: ``-log p_t * sum_j W[t, j] p_j``.
    This is the differentiable form of the popular closure that scales the
    cross-entropy by ``W[t, argmax p]``: the one-hot of ``argmax p`` is
    replaced by ``p`` itself (the two agree for a confident prediction), so the
    weight has no ties and no zero gradient. Probabilities sum to one, so a
    matrix of all ones gives plain categorical cross-entropy; a row with large
    off-diagonal costs punishes confusing that true class with those classes.
    """

    def __init__(self, cost_matrix: Sequence[Sequence[float]], *, name: str = "cost_matrix_crossentropy",
                 reduction: str = "sum_over_batch_size", dtype: Any = None) -> None:
        super().__init__(name=name, reduction=reduction, dtype=dtype)
        try:
            rows = list(cost_matrix)
        except TypeError as e:
            raise ValueError(f"cost_matrix must be a square list of lists, got {cost_matrix!r}") from e
        self.cost_matrix = [_float_list(row, f"cost_matrix row {i}") for i, row in enumerate(rows)]
        n = len(self.cost_matrix)
        if n == 0 or any(len(row) != n for row in self.cost_matrix):
            shape = [len(row) for row in self.cost_matrix]
            raise ValueError(f"cost_matrix must be square (classes x classes), got {n} rows of lengths {shape}")

    def call(self, y_true: Any, y_pred: Any) -> Any:
        _check_classes(y_pred, len(self.cost_matrix), "CostMatrixCrossentropy.cost_matrix")
        y_true = ops.cast(y_true, y_pred.dtype)
        probs = _clipped(y_pred)
        cost = ops.convert_to_tensor(self.cost_matrix, dtype=y_pred.dtype)
        crossentropy = -ops.sum(y_true * ops.log(probs), axis=-1)
        cost_rows = ops.matmul(y_true, cost)  # [batch, timesteps, classes]: W[t, :] for the true class t
        expected_cost = ops.sum(cost_rows * y_pred, axis=-1)
        return crossentropy * expected_cost

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "cost_matrix": [list(row) for row in self.cost_matrix]}


@keras.saving.register_keras_serializable(package=_PACKAGE)
class CategoricalFocalLoss(keras.losses.Loss):
    """Focal loss (Lin et al. 2017): ``-sum_c alpha_c * y_c * (1 - p_c)**gamma * log(p_c)``.

    The ``(1 - p)**gamma`` factor shrinks the loss of timesteps the model
    already gets right, so the many easy majority-class lines stop dominating.
    ``alpha`` is an optional per-class weight list (``None``: all ones);
    ``gamma=0`` with ``alpha=None`` is plain categorical cross-entropy.
    """

    def __init__(self, gamma: float = 2.0, alpha: Sequence[float] | None = None, *,
                 name: str = "categorical_focal_loss", reduction: str = "sum_over_batch_size",
                 dtype: Any = None) -> None:
        super().__init__(name=name, reduction=reduction, dtype=dtype)
        self.gamma = float(gamma)
        if not math.isfinite(self.gamma) or self.gamma < 0:
            raise ValueError(f"gamma must be finite and >= 0 (0 is plain cross-entropy), got {gamma!r}")
        self.alpha = None if alpha is None else _float_list(alpha, "alpha")

    def call(self, y_true: Any, y_pred: Any) -> Any:
        y_true = ops.cast(y_true, y_pred.dtype)
        probs = _clipped(y_pred)
        terms = y_true * ops.power(1.0 - probs, self.gamma) * ops.log(probs)
        if self.alpha is not None:
            _check_classes(y_pred, len(self.alpha), "CategoricalFocalLoss.alpha")
            terms = terms * ops.convert_to_tensor(self.alpha, dtype=y_pred.dtype)
        return -ops.sum(terms, axis=-1)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "gamma": self.gamma, "alpha": self.alpha}


@keras.saving.register_keras_serializable(package=_PACKAGE)
class SoftF1Loss(keras.losses.Loss):
    """``1 - mean_c softF1_c`` over the chosen classes, pooled over every timestep of the batch.

    With probabilities as soft counts, summed over all batch x timestep rows:
    ``tp_c = sum y_c p_c``, ``fp_c = sum v (1 - y_c) p_c``, ``fn_c = sum y_c (1 - p_c)``
    and ``softF1_c = 2 tp_c / (2 tp_c + fp_c + fn_c + EPSILON)``, where ``v`` is 0
    for padding rows (all-zero ``y_true``) and 1 otherwise. ``labels_to_score``
    are class indices (``None``: all classes); ``num_classes``, when given, is
    checked against them and against the model's output.

    F1 is a batch-level quantity, so ``call`` returns that one value broadcast
    to ``[batch, timesteps]``: the default mean reduction gives it back exactly,
    and per-sample weights only scale it (they cannot select samples).
    """

    def __init__(self, labels_to_score: Sequence[int] | None = None, num_classes: int | None = None, *,
                 name: str = "soft_f1_loss", reduction: str = "sum_over_batch_size", dtype: Any = None) -> None:
        super().__init__(name=name, reduction=reduction, dtype=dtype)
        self.num_classes = None if num_classes is None else int(num_classes)
        if self.num_classes is not None and self.num_classes < 1:
            raise ValueError(f"num_classes must be >= 1, got {num_classes!r}")
        self.labels_to_score = None if labels_to_score is None else [int(i) for i in labels_to_score]
        if self.labels_to_score is not None:
            if not self.labels_to_score:
                raise ValueError("labels_to_score is empty; give class indices to score, or None for all classes")
            self._check_indices(self.num_classes)

    def _check_indices(self, num_classes: int | None) -> None:
        """Every scored index must name an output class (negative indices are refused too)."""
        for i in self.labels_to_score or ():
            if i < 0 or (num_classes is not None and i >= num_classes):
                upper = "" if num_classes is None else f" or >= {num_classes} classes"
                raise ValueError(f"SoftF1Loss.labels_to_score has index {i}, which is negative{upper}; give "
                                 "class indices in the model's output order")

    def call(self, y_true: Any, y_pred: Any) -> Any:
        if self.num_classes is not None:
            _check_classes(y_pred, self.num_classes, "SoftF1Loss.num_classes")
        if y_pred.shape[-1] is not None:
            self._check_indices(int(y_pred.shape[-1]))
        y_true = ops.cast(y_true, y_pred.dtype)
        probs = _clipped(y_pred)
        valid = ops.sum(y_true, axis=-1, keepdims=True)  # 0 on all-zero (padding) rows
        axes = tuple(range(len(y_pred.shape) - 1))
        tp = ops.sum(y_true * probs, axis=axes)
        fp = ops.sum(valid * (1.0 - y_true) * probs, axis=axes)
        fn = ops.sum(y_true * (1.0 - probs), axis=axes)
        f1 = 2.0 * tp / (2.0 * tp + fp + fn + EPSILON)
        if self.labels_to_score is not None:
            f1 = ops.take(f1, ops.convert_to_tensor(self.labels_to_score, dtype="int32"), axis=0)
        loss = 1.0 - ops.mean(f1)
        return ops.zeros_like(y_pred[..., 0]) + loss

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "labels_to_score": self.labels_to_score, "num_classes": self.num_classes}
