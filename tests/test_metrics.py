"""metrics.py against a computation written out with plain loops over a random labelled corpus."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest

from skol_spark.errors import ConfigError
from skol_spark.report.metrics import (compute_metrics, confidence_summary, format_class_table, label_counts,
                                null_mask)

LABELS = ["Nomenclature", "Description", "Misc", "Habitat"]  # Habitat: never predicted


def make_corpus(seed: int = 7, n: int = 600):
    """true (with None, NaN and an unknown label 'Typo'), predicted (never 'Habitat'), doc ids."""
    rng = np.random.default_rng(seed)
    true = rng.choice(LABELS, n).astype(object)
    predicted = rng.choice(LABELS[:3], n).astype(object)
    agree = rng.random(n) < 0.6
    predicted[agree & (true != "Habitat")] = true[agree & (true != "Habitat")]
    true[rng.random(n) < 0.08] = None
    true[rng.random(n) < 0.03] = float("nan")
    true[rng.random(n) < 0.05] = "Typo"
    doc_ids = rng.integers(0, 25, n)
    return true, predicted, doc_ids


def is_null(v) -> bool:
    return v is None or (isinstance(v, float) and math.isnan(v))


def linear_quantile(values: list[float], q: float) -> float:
    """The 'linear' quantile, written out: interpolate between the two nearest order statistics."""
    ordered = sorted(values)
    position = q * (len(ordered) - 1)
    low = int(math.floor(position))
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def reference(true, predicted, doc_ids, labels):
    """Everything compute_metrics reports, by hand."""
    n = len(labels)
    matrix = [[0] * n for _ in range(n)]
    unknown, unlabelled, per_doc = {}, 0, {}
    for t, p, d in zip(true, predicted, doc_ids):
        if is_null(t):
            unlabelled += 1
        elif t not in labels:
            unknown[t] = unknown.get(t, 0) + 1
        else:
            matrix[labels.index(t)][labels.index(p)] += 1
            hits, lines = per_doc.get(str(d), (0, 0))
            per_doc[str(d)] = (hits + (t == p), lines + 1)
    per_class = {}
    for i, name in enumerate(labels):
        tp = matrix[i][i]
        col = sum(matrix[r][i] for r in range(n))
        row = sum(matrix[i])
        precision = tp / col if col else 0.0
        recall = tp / row if row else 0.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        per_class[name] = {"precision": precision, "recall": recall, "f1": f1, "support": row}
    total = sum(c["support"] for c in per_class.values())
    accuracy = sum(matrix[i][i] for i in range(n)) / total
    doc_acc = [h / lines for h, lines in per_doc.values()]
    return matrix, per_class, total, accuracy, unknown, unlabelled, doc_acc


def test_metrics_match_a_hand_computation():
    true, predicted, doc_ids = make_corpus()
    m = compute_metrics(true, predicted, LABELS, doc_ids=doc_ids)
    matrix, per_class, total, accuracy, unknown, unlabelled, doc_acc = reference(true, predicted, doc_ids, LABELS)

    assert m["confusion_matrix"] == matrix
    assert sum(map(sum, m["confusion_matrix"])) == m["evaluated_lines"] == total
    assert m["labelled_lines"] == len(true) - unlabelled == total + sum(unknown.values())
    assert m["unlabelled_lines"] == unlabelled > 0
    assert m["unknown_true_labels"] == {"count": sum(unknown.values()), "by_label": unknown}
    assert unknown["Typo"] > 0
    assert list(m["per_class"]) == LABELS
    for name in LABELS:
        for key in ("precision", "recall", "f1"):
            assert m["per_class"][name][key] == pytest.approx(per_class[name][key], abs=1e-12), (name, key)
        assert m["per_class"][name]["support"] == per_class[name]["support"]
    for key in ("precision", "recall", "f1"):
        assert m["macro"][key] == pytest.approx(sum(per_class[c][key] for c in LABELS) / len(LABELS))
        weighted = sum(per_class[c][key] * per_class[c]["support"] for c in LABELS) / total
        assert m["weighted"][key] == pytest.approx(weighted)
    assert m["accuracy"] == pytest.approx(accuracy)
    assert m["predicted_counts"] == {c: int(sum(p == c for p in predicted)) for c in LABELS}

    per_doc = m["per_document_accuracy"]
    assert per_doc["documents"] == len(doc_acc)
    for key, q in (("min", 0), ("p10", .1), ("p25", .25), ("median", .5), ("p75", .75), ("p90", .9), ("max", 1)):
        assert per_doc[key] == pytest.approx(linear_quantile(doc_acc, q)), key


def test_never_predicted_class_has_zero_precision_and_f1_but_its_recall_counts():
    true, predicted, _ = make_corpus()
    m = compute_metrics(true, predicted, LABELS)
    habitat = m["per_class"]["Habitat"]
    assert habitat["support"] > 0
    assert habitat == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": habitat["support"]}
    assert m["predicted_counts"]["Habitat"] == 0
    assert "per_document_accuracy" not in m


def test_class_absent_from_truth_has_zero_recall_and_support():
    m = compute_metrics(np.array(["a", "a", "b"], dtype=object), np.array(["a", "c", "b"]), ["a", "b", "c"])
    assert m["per_class"]["c"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 0}
    assert m["per_class"]["a"]["recall"] == 0.5
    assert m["macro"]["recall"] == pytest.approx((0.5 + 1.0 + 0.0) / 3)
    assert m["weighted"]["recall"] == pytest.approx((0.5 * 2 + 1.0) / 3)


def test_metrics_are_json_serialisable_and_round_trip():
    true, predicted, doc_ids = make_corpus(seed=3)
    m = compute_metrics(true, predicted, LABELS, doc_ids=doc_ids)
    assert json.loads(json.dumps(m, allow_nan=False)) == m


def test_no_true_labels_gives_no_accuracy_and_empty_matrix():
    predicted = np.array(["a", "b", "b"])
    m = compute_metrics(np.array([None, None, None], dtype=object), predicted, ["a", "b"],
                        doc_ids=np.array([1, 1, 2]))
    assert m["accuracy"] is None
    assert m["evaluated_lines"] == m["labelled_lines"] == 0
    assert m["unlabelled_lines"] == 3
    assert m["confusion_matrix"] == [[0, 0], [0, 0]]
    assert m["per_document_accuracy"] == {"documents": 0, "min": None, "p10": None, "p25": None,
                                          "median": None, "p75": None, "p90": None, "max": None}
    table = format_class_table(m)
    assert "no true labels" in table
    assert table.splitlines()[-1].split() == ["b", "2"]


def test_null_mask_knows_none_nan_and_pandas_na():
    values = np.array([None, float("nan"), pd.NA, "", "x", np.float64("nan")], dtype=object)
    assert null_mask(values).tolist() == [True, True, True, False, False, True]


def test_empty_string_true_label_is_unknown_not_unlabelled():
    m = compute_metrics(np.array(["", "a"], dtype=object), np.array(["a", "a"]), ["a"])
    assert m["unknown_true_labels"] == {"count": 1, "by_label": {"": 1}}
    assert m["unlabelled_lines"] == 0


def test_predicted_label_outside_labels_is_a_config_error():
    with pytest.raises(ConfigError, match=r"'Other'.*--labels"):
        compute_metrics(np.array(["a", "a"], dtype=object), np.array(["a", "Other"]), ["a", "b"])


def test_mismatched_lengths_are_refused():
    with pytest.raises(ValueError, match="one entry per line"):
        compute_metrics(np.array(["a"], dtype=object), np.array(["a", "a"]), ["a"])
    with pytest.raises(ValueError, match="one entry per line"):
        compute_metrics(np.array(["a"], dtype=object), np.array(["a"]), ["a"], doc_ids=np.array([1, 2]))


def test_label_counts_in_label_order_with_zeros():
    counts = label_counts(np.array(["b", "b", "a"]), ["c", "a", "b"])
    assert list(counts.items()) == [("c", 0), ("a", 1), ("b", 2)]


def test_confidence_summary_per_predicted_class():
    confidence = np.array([0.5, 0.7, 0.9, 0.4, 1.0])
    predicted = np.array(["a", "a", "a", "b", "b"])
    s = confidence_summary(confidence, predicted, ["a", "b", "c"])
    assert s["all"]["count"] == 5 and s["all"]["mean"] == pytest.approx(0.7)
    assert s["per_class"]["a"]["median"] == pytest.approx(0.7)
    assert s["per_class"]["a"]["min"] == 0.5 and s["per_class"]["a"]["max"] == 0.9
    assert s["per_class"]["b"]["p10"] == pytest.approx(0.4 + 0.1 * 0.6)
    assert s["per_class"]["c"]["count"] == 0 and s["per_class"]["c"]["mean"] is None


def test_class_table_is_aligned_and_holds_the_numbers():
    true, predicted, _ = make_corpus()
    m = compute_metrics(true, predicted, LABELS)
    text = format_class_table(m)
    lines = text.splitlines()
    assert lines[0].split() == ["label", "precision", "recall", "f1", "support"]
    rows = {line.split()[0]: line for line in lines[1:1 + len(LABELS)]}
    assert list(rows) == LABELS
    for name, line in rows.items():
        values = m["per_class"][name]
        assert line.split()[1:] == [f"{values['precision']:.3f}", f"{values['recall']:.3f}",
                                    f"{values['f1']:.3f}", str(values["support"])]
    width = len(lines[0])
    table_rows = [line for line in lines if line and not line.startswith(("accuracy", str(m["unknown_true_labels"]["count"])))]
    assert all(len(line) == width for line in table_rows), table_rows
    assert any(line.startswith("macro avg") and f"{m['macro']['f1']:.3f}" in line for line in lines)
    assert any(line.startswith("weighted avg") for line in lines)
    accuracy = next(line for line in lines if line.startswith("accuracy"))
    assert accuracy.split()[1:] == [f"{m['accuracy']:.3f}", str(m["evaluated_lines"])]
    assert f"Typo ({m['unknown_true_labels']['by_label']['Typo']})" in text
