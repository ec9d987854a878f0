"""Arrow batches regrouped into whole documents, each one run of rows in line order.

A document is scored as one sequence, but Arrow batches are cut by size, not
by document: the rows of a document that spans batches are carried to the
next batch (``iter_complete_documents``). Spark's sort makes each document one
run of rows in line order; input the validation scan found to be runs
already is streamed as read, without that sort (``ScoringPlan.presorted``):
the worker then orders each document's lines itself (``in_line_order``) and
refuses a document that comes back after another one started. Shapes:
``docs`` is one Arrow array of document ids, run indices and lengths are
``int64[d]``.
"""

from __future__ import annotations

from typing import Iterator

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from skol_spark.errors import InputContractError
from skol_spark.scoring.rules import follows, null_like
from skol_spark.scoring.specs import ScoringPlan


def iter_complete_documents(batches: Iterator[pa.RecordBatch], doc_col: str, *,
                            check_runs: bool = False) -> Iterator[pa.Table]:
    """Regroup batches whose documents are runs of rows so that no document is split: yields tables of
    whole documents.

    The rows of the last document of each batch are held back until a row of
    another document (or the end of the partition) shows it is complete.
    Spark's sort makes every document one run; with ``check_runs`` (the
    input is streamed unsorted, on the validation scan's word) a document
    that shows up again after another one started is refused, since it
    would be scored as two sequences.
    """
    carry: list[pa.RecordBatch] = []
    finished: set | None = set() if check_runs else None
    for batch in batches:
        if batch.num_rows == 0:
            continue
        docs = batch.column(doc_col)
        last = docs[batch.num_rows - 1]
        # index of the first row of the batch's last document
        same_as_last = pc.equal(docs, last).to_numpy(zero_copy_only=False)
        differs = np.flatnonzero(~same_as_last)
        cut = int(differs[-1]) + 1 if differs.size else 0
        if cut == 0 and carry and carry[-1].column(doc_col)[carry[-1].num_rows - 1] == last:
            carry.append(batch)  # the whole batch continues the carried document
            continue
        if cut == 0:
            ready, rest = carry, [batch]
        else:
            ready, rest = carry + [batch.slice(0, cut)], [batch.slice(cut)]
        if ready:
            yield _checked(pa.Table.from_batches(ready), doc_col, finished)
        carry = rest
    if carry:
        yield _checked(pa.Table.from_batches(carry), doc_col, finished)


def _checked(table: pa.Table, doc_col: str, finished: set | None) -> pa.Table:
    """``table`` if none of its documents was seen before (``finished`` collects them); None skips the check."""
    if finished is None:
        return table
    docs = table.column(doc_col).combine_chunks()
    ids = docs.take(pa.array(run_starts(docs))).to_pylist()
    if len(set(ids)) != len(ids) or not finished.isdisjoint(ids):
        again = next(d for i, d in enumerate(ids) if d in finished or d in ids[:i])
        raise InputContractError(
            f"document {again!r} ({doc_col}) came back after another document's lines while the scoring task "
            "streamed the input, although the validation scan found each document's lines together: the input "
            "changed during the job, or its read order is not stable. Nothing was published; rerun on input "
            "that does not change, or set scoring.sort: always")
    finished.update(ids)
    return table


def run_starts(docs: pa.Array) -> np.ndarray:
    """Row indices where a run of equal doc ids starts: ``int64[d]``."""
    n = len(docs)
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    change = pc.not_equal(docs.slice(1), docs.slice(0, n - 1)).to_numpy(zero_copy_only=False)
    return np.concatenate([[0], np.flatnonzero(change) + 1]).astype(np.int64)


def document_lengths(docs: pa.ChunkedArray | pa.Array) -> np.ndarray:
    """Run lengths of consecutive equal doc ids: ``int64[d]`` (each document is one run of rows)."""
    if isinstance(docs, pa.ChunkedArray):
        docs = docs.combine_chunks()
    return np.diff(np.append(run_starts(docs), len(docs))).astype(np.int64)


def in_line_order(table: pa.Table, plan: ScoringPlan) -> pa.Table:
    """Each document's lines ordered by line number: what Spark's sort did, for input streamed as read.

    Input written by document is usually in line order already, so this is
    one pass over the line numbers; only out-of-order documents pay a take.
    """
    lines = table.column(plan.line_col).combine_chunks()
    if len(lines) < 2 or lines.null_count or null_like(table.column(plan.doc_col)).any():
        return table  # null or NaN keys: check_batch names them
    numbers = lines.to_numpy(zero_copy_only=False)
    lengths = document_lengths(table.column(plan.doc_col))
    first = np.zeros(len(numbers), dtype=bool)
    first[np.cumsum(lengths)[:-1]] = True  # a document's first line needs no predecessor
    if np.all(follows(numbers) | first[1:]):
        return table
    doc_index = np.repeat(np.arange(lengths.size), lengths)
    return table.take(pa.array(np.lexsort((numbers, doc_index))))
