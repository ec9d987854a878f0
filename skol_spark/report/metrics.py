"""Evaluation of scored lines against true labels, in plain numpy.

The scoring job writes one predicted label per input line; when the input also
carried a ``true_label`` this module turns the two columns into the numbers a
run report shows. It is Spark-free and sklearn-free so the report can be
rebuilt anywhere from the output Parquet alone, and so the tests can check it
against a loop written out by hand.

Conventions (the same as scikit-learn's ``zero_division=0``):

* A true label that is null (``None`` or NaN) marks an *unlabelled* line: it is
  counted and otherwise ignored.
* A true label that is not one of the model's labels (a typo, a class the model
  was not trained on) is *unknown*: counted per name, and left out of the
  confusion matrix, the accuracy and the per-class numbers, because the model
  could never have predicted it. An empty string is such an unknown name.
* Precision, recall and F1 whose denominator is zero are 0.0, so a class that
  is never predicted, or never occurs, shows as 0.0 instead of NaN (which JSON
  cannot carry). The macro average is over *all* model labels, zero-support
  ones included; the weighted average weights by support.
* A predicted label outside ``labels`` means the wrong label list was given
  and raises ``ConfigError``: the matrix would silently lose lines otherwise.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from skol_spark.errors import ConfigError

QUANTILES = (("min", 0.0), ("p10", 0.10), ("p25", 0.25), ("median", 0.5), ("p75", 0.75), ("p90", 0.90),
             ("max", 1.0))


def null_mask(values: np.ndarray) -> np.ndarray:
    """bool[n]: True where a label is missing (``None``, NaN or pandas' NA)."""
    return np.fromiter((v is None or (isinstance(v, float) and v != v) or type(v).__name__ == "NAType"
                        for v in values), dtype=bool, count=len(values))


def label_indices(predicted: np.ndarray, labels: Sequence[str]) -> np.ndarray:
    """int64[n]: the position of each predicted label in ``labels``.

    Raises ConfigError naming the first label that is not in ``labels``.
    """
    index = {name: i for i, name in enumerate(labels)}
    out = np.empty(len(predicted), dtype=np.int64)
    for i, name in enumerate(predicted):
        position = index.get(name)
        if position is None:
            raise ConfigError(
                f"predicted label {name!r} (line {i}) is not among the model labels {list(labels)}; pass the "
                "model's full label list (--labels, or model.labels in the run manifest)")
        out[i] = position
    return out


def label_counts(predicted: np.ndarray, labels: Sequence[str]) -> dict[str, int]:
    """How many lines got each label, in label order (zeros included)."""
    counts = np.bincount(label_indices(predicted, labels), minlength=len(labels))
    return {name: int(c) for name, c in zip(labels, counts)}


def quantile_summary(values: np.ndarray) -> dict[str, float | None]:
    """min/p10/p25/median/p75/p90/max (linear interpolation); all None when empty."""
    values = np.asarray(values, dtype=np.float64)
    if values.size == 0:
        return {key: None for key, _ in QUANTILES}
    return {key: float(np.quantile(values, q)) for key, q in QUANTILES}


def confidence_summary(confidence: np.ndarray, predicted: np.ndarray, labels: Sequence[str]) -> dict[str, Any]:
    """Confidence quantiles and mean, overall and per predicted label.

    Returns ``{"all": {...}, "per_class": {label: {...}}}``; each entry holds
    ``count``, ``mean`` and the ``QUANTILES`` (None when the count is 0).
    """
    confidence = np.asarray(confidence, dtype=np.float64)
    classes = label_indices(predicted, labels)

    def summarise(values: np.ndarray) -> dict[str, Any]:
        mean = float(values.mean()) if values.size else None
        return {"count": int(values.size), "mean": mean, **quantile_summary(values)}

    return {"all": summarise(confidence),
            "per_class": {name: summarise(confidence[classes == i]) for i, name in enumerate(labels)}}


def _ratio(numerator: float, denominator: float) -> float:
    return float(numerator / denominator) if denominator else 0.0


def _per_class(matrix: np.ndarray, labels: Sequence[str]) -> dict[str, dict[str, Any]]:
    """Precision/recall/F1/support per label from a confusion matrix (rows true, cols predicted)."""
    result = {}
    for i, name in enumerate(labels):
        tp, predicted, support = matrix[i, i], matrix[:, i].sum(), matrix[i, :].sum()
        precision, recall = _ratio(tp, predicted), _ratio(tp, support)
        result[name] = {"precision": precision, "recall": recall,
                        "f1": _ratio(2 * precision * recall, precision + recall), "support": int(support)}
    return result


def _averages(per_class: dict[str, dict[str, Any]]) -> tuple[dict[str, Any], dict[str, Any]]:
    """(macro, weighted) averages of precision, recall and F1 over all labels."""
    rows = list(per_class.values())
    support = np.array([r["support"] for r in rows], dtype=np.float64)
    total = float(support.sum())
    macro: dict[str, Any] = {"support": int(total)}
    weighted: dict[str, Any] = {"support": int(total)}
    for key in ("precision", "recall", "f1"):
        values = np.array([r[key] for r in rows], dtype=np.float64)
        macro[key] = float(values.mean()) if values.size else 0.0
        weighted[key] = _ratio(float((values * support).sum()), total)
    return macro, weighted


def _per_document(doc_ids: np.ndarray, correct: np.ndarray) -> dict[str, Any]:
    """Quantiles of per-document accuracy over the evaluated lines of each document."""
    keys, inverse = np.unique(np.asarray(doc_ids).astype(str), return_inverse=True)
    hits = np.bincount(inverse, weights=correct.astype(np.float64), minlength=len(keys))
    lines = np.bincount(inverse, minlength=len(keys))
    return {"documents": int(len(keys)), **quantile_summary(hits / np.maximum(lines, 1))}


def compute_metrics(true: np.ndarray, predicted: np.ndarray, labels: Sequence[str],
                    doc_ids: np.ndarray | None = None) -> dict[str, Any]:
    """Classification metrics of predicted against true labels, as JSON-ready data.

    Inputs (one entry per scored line): ``true: object[n]`` (str or null),
    ``predicted: str[n]``, ``labels`` the model's label names in index order,
    ``doc_ids[n]`` optional. Returns a dict with ``labels``, ``lines``,
    ``labelled_lines`` (true not null), ``unlabelled_lines``,
    ``evaluated_lines`` (true is a model label), ``unknown_true_labels``
    (``{"count", "by_label": {name: n}}``), ``predicted_counts``,
    ``per_class`` ({label: precision, recall, f1, support}), ``macro``,
    ``weighted``, ``accuracy`` (None without evaluated lines),
    ``confusion_matrix`` (rows true, columns predicted, label order) and, when
    ``doc_ids`` is given, ``per_document_accuracy`` (documents with at least
    one evaluated line; quantiles None if there are none).

    Raises ValueError for arrays of different lengths and ConfigError for a
    predicted label outside ``labels`` (see the module docstring).
    """
    true, predicted = np.asarray(true, dtype=object), np.asarray(predicted, dtype=object)
    if len(true) != len(predicted) or (doc_ids is not None and len(doc_ids) != len(predicted)):
        raise ValueError(f"true ({len(true)}), predicted ({len(predicted)}) and doc_ids "
                         f"({'-' if doc_ids is None else len(doc_ids)}) must have one entry per line")
    labels = list(labels)
    predicted_idx = label_indices(predicted, labels)
    unlabelled = null_mask(true)
    index = {name: i for i, name in enumerate(labels)}
    true_idx = np.array([index.get(v, -1) if not missing else -1 for v, missing in zip(true, unlabelled)],
                        dtype=np.int64)
    evaluated = true_idx >= 0
    unknown_names, unknown_counts = np.unique(true[~unlabelled & ~evaluated].astype(str), return_counts=True)

    matrix = np.zeros((len(labels), len(labels)), dtype=np.int64)
    np.add.at(matrix, (true_idx[evaluated], predicted_idx[evaluated]), 1)
    per_class = _per_class(matrix, labels)
    macro, weighted = _averages(per_class)
    n_evaluated = int(evaluated.sum())
    result = {
        "labels": labels,
        "lines": int(len(predicted)),
        "labelled_lines": int((~unlabelled).sum()),
        "unlabelled_lines": int(unlabelled.sum()),
        "evaluated_lines": n_evaluated,
        "unknown_true_labels": {"count": int(unknown_counts.sum()),
                                "by_label": {str(k): int(c) for k, c in zip(unknown_names, unknown_counts)}},
        "predicted_counts": {name: int(c) for name, c in
                             zip(labels, np.bincount(predicted_idx, minlength=len(labels)))},
        "per_class": per_class,
        "macro": macro,
        "weighted": weighted,
        "accuracy": _ratio(int(np.trace(matrix)), n_evaluated) if n_evaluated else None,
        "confusion_matrix": matrix.tolist(),
    }
    if doc_ids is not None:
        correct = true_idx[evaluated] == predicted_idx[evaluated]
        result["per_document_accuracy"] = _per_document(np.asarray(doc_ids)[evaluated], correct)
    return result


def format_class_table(metrics: dict[str, Any]) -> str:
    """An aligned plain-text table of ``compute_metrics`` output for the console.

    One row per label (precision, recall, f1, support), then macro avg,
    weighted avg and accuracy. Without evaluated lines it lists the predicted
    counts instead, since there is nothing to score against.
    """
    labels = metrics["labels"]
    width = max([len("weighted avg")] + [len(str(name)) for name in labels])
    if not metrics["evaluated_lines"]:
        lines = [f"no true labels among the model labels: predicted-label counts "
                 f"({metrics['lines']} lines)", f"{'label':<{width}}  {'predicted':>9}"]
        lines += [f"{name:<{width}}  {metrics['predicted_counts'][name]:>9d}" for name in labels]
        return "\n".join(lines)
    header = f"{'label':<{width}}  {'precision':>9}  {'recall':>9}  {'f1':>9}  {'support':>9}"

    def row(name: str, values: dict[str, Any]) -> str:
        return (f"{name:<{width}}  {values['precision']:>9.3f}  {values['recall']:>9.3f}  "
                f"{values['f1']:>9.3f}  {values['support']:>9d}")

    lines = [header] + [row(name, metrics["per_class"][name]) for name in labels] + [""]
    lines += [row("macro avg", metrics["macro"]), row("weighted avg", metrics["weighted"])]
    lines.append(f"{'accuracy':<{width}}  {'':>9}  {'':>9}  {metrics['accuracy']:>9.3f}  "
                 f"{metrics['evaluated_lines']:>9d}")
    unknown = metrics["unknown_true_labels"]
    if unknown["count"]:
        names = ", ".join(f"{k} ({v})" for k, v in unknown["by_label"].items())
        lines.append(f"{unknown['count']} lines have true labels the model does not know, not scored: {names}")
    return "\n".join(lines)
