"""The worker's handling of input streamed as read (``scoring.sort: auto``), on real Arrow batches.

When the validation scan finds every document to be one run of rows, the
scoring task skips Spark's sort: the worker then orders each document's lines
itself, and refuses a document that comes back after another one started
(the input changed between the scan and scoring), instead of scoring it as
two sequences.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

from skol_spark.errors import InputContractError
from skol_spark.scoring.documents import document_lengths, in_line_order, iter_complete_documents
from skol_spark.scoring.specs import ScoringPlan

PLAN = ScoringPlan(doc_col="doc", line_col="line", features_col="f", carry_cols=("doc", "line"), labels=("a",),
                   window=4, stride=2, batch_size=8, feature_size=3, model_name="m",
                   model_version=1, run_id="r", presorted=True)


def batch(docs, lines):
    return pa.record_batch({"doc": pa.array(docs, pa.string()), "line": pa.array(lines, pa.int32())})


def test_documents_that_span_batches_come_out_whole_and_once():
    batches = [batch(["a", "a", "b"], [0, 1, 0]), batch(["b", "b"], [1, 2]), batch(["b", "c"], [3, 0])]
    tables = list(iter_complete_documents(iter(batches), "doc", check_runs=True))

    docs = [t.column("doc").to_pylist() for t in tables]
    assert docs == [["a", "a"], ["b", "b", "b", "b"], ["c"]]
    assert [list(document_lengths(t.column("doc"))) for t in tables] == [[2], [4], [1]]


@pytest.mark.parametrize("batches", [
    [batch(["a", "b", "a"], [0, 0, 1])],                    # within one batch
    [batch(["a", "a", "b"], [0, 1, 0]), batch(["c", "a"], [0, 2])],  # after its run was scored
], ids=["same batch", "later batch"])
def test_a_document_that_comes_back_is_refused_when_streamed(batches):
    with pytest.raises(InputContractError) as err:
        list(iter_complete_documents(iter(batches), "doc", check_runs=True))
    message = str(err.value)
    assert "document 'a' (doc) came back" in message and "scoring.sort: always" in message
    assert "Nothing was published" in message


def test_without_the_check_a_sorted_stream_is_not_inspected():
    """Spark's sort makes every document one run: the check (a set of every doc id) is not paid then."""
    batches = [batch(["a", "b", "a"], [0, 0, 1])]
    assert sum(t.num_rows for t in iter_complete_documents(iter(batches), "doc")) == 3


def test_each_documents_lines_are_put_in_order_and_rows_move_with_them():
    rng = np.random.default_rng(0)
    docs, lines = [], []
    for doc, n in (("x", 7), ("y", 1), ("z", 12)):
        docs += [doc] * n
        lines += list(rng.permutation(n) + 10)
    table = pa.table({"doc": docs, "line": pa.array(lines, pa.int32()),
                      "tag": [f"{d}/{ln}" for d, ln in zip(docs, lines)]})

    ordered = in_line_order(table, PLAN)

    assert ordered.column("doc").to_pylist() == ["x"] * 7 + ["y"] + ["z"] * 12
    got = ordered.column("line").to_pylist()
    assert got == list(range(10, 17)) + [10] + list(range(10, 22))
    assert ordered.column("tag").to_pylist() == [f"{d}/{ln}" for d, ln in zip(ordered.column("doc").to_pylist(), got)]


def test_lines_already_in_order_are_returned_as_they_are():
    table = pa.table({"doc": ["x", "x", "y", "y"], "line": pa.array([3, 5, 0, 1], pa.int32())})
    assert in_line_order(table, PLAN) is table  # no copy: a gap in the numbers is still order
    dup = pa.table({"doc": ["x", "x", "x"], "line": pa.array([2, 1, 1], pa.int32())})
    assert in_line_order(dup, PLAN).column("line").to_pylist() == [1, 1, 2]  # adjacent: check_batch names it
