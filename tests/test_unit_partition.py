"""The executor's scoring of one Arrow table (``scoring/partition.py``), with no Spark and no model.

A numpy stand-in predictor whose output depends on each line's features and
on its position in the window proves the window/overlap arithmetic, the
column layout and the ordering; ``windowing.score_document`` (a plain loop)
is the independent answer.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pyarrow as pa
import pytest

from skol_spark import errors
from skol_spark.errors import ExecutorError, InputContractError, JobFailedError, SkolError
from skol_spark.scoring.partition import (RESULT_COLUMNS, ScoringPlan, check_batch, errors_for_the_driver,
                                          result_table, score_table)
from skol_spark.scoring.features import decode_features
from skol_spark.scoring.windowing import score_document

FEATURES, CLASSES = 5, 3
PLAN = ScoringPlan(doc_col="doc", line_col="line", features_col="f", carry_cols=("doc", "line", "page"),
                   labels=("A", "B", "C"), window=4, stride=2, batch_size=3, feature_size=FEATURES,
                   model_name="m", model_version=7, run_id="run-1")
WEIGHTS = np.random.default_rng(3).normal(size=(FEATURES, CLASSES)).astype(np.float32)
POSITION_WEIGHTS = np.array([0.3, -0.2, 0.1], np.float32)  # per class: softmax ignores a shift of all classes


def softmax_predict(windows: np.ndarray) -> np.ndarray:
    """``float32[n, W, F] -> float32[n, W, C]``: a line's output depends on its features and on its
    position in the window, so a line scored in the wrong window or at the wrong offset is caught."""
    position = np.arange(windows.shape[1], dtype=np.float32)[None, :, None] * POSITION_WEIGHTS
    logits = windows @ WEIGHTS + position
    e = np.exp(logits - logits.max(axis=-1, keepdims=True))
    return (e / e.sum(axis=-1, keepdims=True)).astype(np.float32)


def documents(lengths=(1, 4, 5, 9, 2), seed=0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {f"d{i}": rng.random((n, FEATURES), dtype=np.float32) for i, n in enumerate(lengths)}


def lines_table(docs: dict[str, np.ndarray], order=None) -> pa.Table:
    """One row per line (doc, line, f: list<float32>, page), documents as runs; ``order`` permutes rows."""
    rows = [(d, i, x[i]) for d, x in docs.items() for i in range(len(x))]
    if order is not None:
        rows = [rows[j] for j in order]
    return pa.table({"doc": pa.array([r[0] for r in rows], pa.string()),
                     "line": pa.array([r[1] for r in rows], pa.int32()),
                     "f": pa.array([r[2].tolist() for r in rows], pa.list_(pa.float32())),
                     "page": pa.array([100 + r[1] for r in rows], pa.int64())})


def reference(docs, plan=PLAN):
    return {(d, i): p for d, x in docs.items()
            for i, p in enumerate(score_document(x, softmax_predict, window=plan.window, stride=plan.stride))}


def assert_scored_like_the_reference(out: pa.Table, ref: dict) -> None:
    rows = out.to_pylist()
    assert [(r["doc"], r["line"]) for r in rows] == list(ref)  # every line once, in document and line order
    for r in rows:
        want = ref[(r["doc"], r["line"])]
        np.testing.assert_allclose(r["probabilities"], want, atol=1e-6, rtol=0)
        assert r["prediction"] == int(np.argmax(want))
        assert r["label"] == PLAN.labels[r["prediction"]]
        assert r["confidence"] == pytest.approx(float(np.max(r["probabilities"])), abs=0)
        assert r["page"] == 100 + r["line"]
        assert (r["model_name"], r["model_version"], r["run_id"]) == ("m", 7, "run-1")


@pytest.mark.parametrize(("window", "stride", "batch_size"), [(4, 2, 3), (4, 4, 1), (3, 1, 64)])
def test_score_table_equals_the_reference_loop(window, stride, batch_size):
    docs = documents()
    plan = dataclasses.replace(PLAN, window=window, stride=stride, batch_size=batch_size)
    out = score_table(lines_table(docs), plan, softmax_predict)
    assert_scored_like_the_reference(out, reference(docs, plan))


def test_presorted_table_is_put_in_line_order_per_document():
    docs = documents(lengths=(3, 6))
    # each document one run of rows, its lines shuffled inside the run (the input streamed as read)
    out = score_table(lines_table(docs, order=[2, 0, 1, 7, 3, 8, 5, 4, 6]),
                      dataclasses.replace(PLAN, presorted=True), softmax_predict)
    assert_scored_like_the_reference(out, reference(docs))


def test_without_presorted_the_rows_are_scored_in_the_order_given():
    # the sort is Spark's job then: a shuffled document is scored as given, which differs from the reference
    docs = documents(lengths=(6,))
    out = score_table(lines_table(docs, order=[5, 4, 3, 2, 1, 0]), PLAN, softmax_predict)
    assert out.column("line").to_pylist() == [5, 4, 3, 2, 1, 0]
    ref = reference(docs)
    assert max(float(np.max(np.abs(np.asarray(r["probabilities"]) - ref[(r["doc"], r["line"])])))
               for r in out.to_pylist()) > 1e-3


def test_result_table_columns_and_types():
    out = score_table(lines_table(documents(lengths=(2, 3))), PLAN, softmax_predict)
    assert out.column_names == [*PLAN.carry_cols, *RESULT_COLUMNS]
    types = {f.name: f.type for f in out.schema}
    assert types["label"] == pa.string() and types["prediction"] == pa.int32()
    assert types["confidence"] == pa.float32() and types["probabilities"] == pa.list_(pa.float32())
    assert types["model_name"] == pa.string() and types["model_version"] == pa.int32()
    assert types["run_id"] == pa.string() and types["page"] == pa.int64()
    assert all(len(p) == CLASSES for p in out.column("probabilities").to_pylist())


def test_result_table_of_no_rows_keeps_the_columns():
    carried = lines_table({}).select(list(PLAN.carry_cols))
    out = result_table(carried, np.zeros((0, CLASSES), np.float32), PLAN)
    assert out.num_rows == 0
    assert out.column_names == [*PLAN.carry_cols, *RESULT_COLUMNS]
    assert out.schema.field("prediction").type == pa.int32()


def test_result_table_ties_go_to_the_first_label():
    carried = pa.table({"doc": ["d"], "line": pa.array([0], pa.int32()), "page": pa.array([1], pa.int64())})
    out = result_table(carried, np.array([[0.4, 0.4, 0.2]], np.float32), PLAN).to_pylist()[0]
    assert (out["label"], out["prediction"]) == ("A", 0)
    assert out["confidence"] == pytest.approx(0.4, abs=1e-7)


# ---- the executor's data-contract guard ----------------------------------------------------------------

def checked(table: pa.Table, plan=PLAN) -> None:
    check_batch(table, plan, decode_features(table.column(plan.features_col), plan.feature_size))


def test_check_batch_accepts_good_lines():
    checked(lines_table(documents()))  # raises nothing


def test_check_batch_names_a_duplicate_key():
    table = lines_table(documents(lengths=(3,)), order=[0, 1, 1, 2])
    with pytest.raises(InputContractError, match=r"duplicate \(doc, line\) = \(d0, 1\) and 0 more"):
        checked(table)


def test_check_batch_counts_null_keys():
    table = lines_table(documents(lengths=(3,)))
    table = table.set_column(1, "line", pa.array([0, None, None], pa.int32()))
    with pytest.raises(InputContractError, match=r"^2 line\(s\) with null doc/line \(or NaN\)"):
        checked(table)


def test_check_batch_names_the_first_nonfinite_line():
    docs = documents(lengths=(2, 3))
    docs["d1"][2, 4] = np.inf
    docs["d1"][1, 0] = np.nan
    with pytest.raises(InputContractError, match=r"2 line\(s\) with NaN/inf features, e.g. doc=d1 line=1"):
        checked(lines_table(docs))


def test_score_table_refuses_a_wrong_feature_size_as_input():
    table = lines_table(documents(lengths=(2,)))
    with pytest.raises(InputContractError, match=r"input refused by a scoring task, nothing was published: .*"
                                                 r"5 features instead of 4"):
        score_table(table, dataclasses.replace(PLAN, feature_size=4), softmax_predict)


# ---- errors sent to the driver -------------------------------------------------------------------------

@pytest.mark.parametrize("error", [InputContractError("document 'd' came back"), errors.ModelFormatError("bad"),
                                   errors.EnvironmentMismatchError("golden outputs differ by 0.1")])
def test_errors_for_the_driver_sends_a_skol_error_typed(error):
    with pytest.raises(ExecutorError) as raised:
        with errors_for_the_driver():
            raise error
    back = errors.from_executor(RuntimeError(f"Traceback...\nskol_spark.errors.ExecutorError: {raised.value}"))
    assert type(back) is type(error) and str(back) == str(error)
    assert raised.value.__cause__ is None and raised.value.__suppress_context__


def test_errors_for_the_driver_turns_memory_error_into_a_failed_job_with_the_fix():
    with pytest.raises(ExecutorError) as raised:
        with errors_for_the_driver():
            raise MemoryError()
    back = errors.from_executor(raised.value)
    assert type(back) is JobFailedError and back.exit_code == 30
    assert "ran out of memory" in str(back) and "scoring.batch_size" in str(back)
    assert "spark.executor.memoryOverhead" in str(back)


def test_errors_for_the_driver_lets_other_errors_through_unchanged():
    with pytest.raises(KeyError, match="not a SkolError"):
        with errors_for_the_driver():
            raise KeyError("not a SkolError")
    with errors_for_the_driver():
        pass  # no error: nothing raised
    assert not issubclass(ExecutorError, SkolError)  # Spark must see a task failure, never a SkolError
