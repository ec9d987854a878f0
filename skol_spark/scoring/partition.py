"""The executor side: Arrow batches of lines, each document one run of rows, in; one scored row per line out.

``mapInArrow`` over lines grouped by document and sorted by (document,
line) was chosen over an iterator pandas UDF over collected
sequences: it needs no ``collect_list`` (which materialises whole documents
as rows and doubles the shuffle), features stay in Arrow buffers (sparse
vectors stay sparse), and output is built as Arrow arrays with no pandas
conversion. A document may span Arrow batches: its rows are carried to the
next batch, so it is always scored as one sequence. Input whose documents
the validation scan found to be runs of rows already is streamed as read,
without Spark's sort (``ScoringPlan.presorted``): the worker orders each
document's lines itself and refuses a document that comes back.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from typing import Callable, Iterator

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from skol_spark.errors import InputContractError
from skol_spark.scoring.features import concat_sources, decode_features, nonfinite_rows
from skol_spark.scoring.rules import describe, follows, null_like
from skol_spark.scoring.windowing import score_lines

log = logging.getLogger(__name__)

RESULT_COLUMNS = ("label", "prediction", "confidence", "probabilities", "model_name", "model_version", "run_id")


@dataclass(frozen=True)
class ScoringPlan:
    """Everything a worker needs besides the broadcast artifact (small, picklable)."""

    doc_col: str
    line_col: str
    features_col: str
    carry_cols: tuple[str, ...]
    labels: tuple[str, ...]
    window: int
    stride: int
    batch_size: int
    feature_size: int
    tf_threads: int
    model_name: str
    model_version: int
    run_id: str
    custom_modules: tuple[str, ...] = ()
    allow_unsafe: bool = False
    line_projection: bool = True  # scoring.predictor: auto
    partitions: int = 0  # scoring partitions (0: keep the input's, it is clustered by document)
    presorted: bool = False  # stream the input as read: the scan found each document one run of rows


def make_partition_scorer(plan: ScoringPlan, artifact_handle, builds=None) -> Callable:
    """The function given to ``mapInArrow``. Closes over the broadcast handle, never the model."""

    def score_partition(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        from pyspark import TaskContext

        from skol_spark.scoring import faults

        ctx = TaskContext.get()
        if ctx is not None:
            faults.maybe_inject(ctx.partitionId(), ctx.attemptNumber())
        predict = None
        for table in iter_complete_documents(batches, plan.doc_col, check_runs=plan.presorted):
            if predict is None:
                predict, _ = worker_predictor(plan, artifact_handle.value, builds)
            yield from score_table(table, plan, predict).to_batches()

    return score_partition


def worker_predictor(plan: ScoringPlan, artifact, builds=None):
    """``(predict, built_now)``: the worker's cached predictor, built (and golden-checked) on first use only."""
    from skol_spark.model import cache as worker_cache

    predict, built = worker_cache.get_or_build(predictor_key(plan, artifact), predictor_builder(plan, artifact))
    if built and builds is not None:
        builds.add(1)
    return predict, built


def predictor_key(plan: ScoringPlan, artifact) -> str:
    return f"{artifact.fingerprint}:{'lines' if plan.line_projection else 'keras'}"


def predictor_builder(plan: ScoringPlan, artifact) -> Callable:
    def build():
        from skol_spark.model.builder import build_predictor, configure_tensorflow
        from skol_spark.job.session import task_cpus

        configure_tensorflow(plan.tf_threads or task_cpus(), skip_plotting=True)
        return build_predictor(artifact, custom_modules=plan.custom_modules, allow_unsafe=plan.allow_unsafe,
                               line_projection=plan.line_projection,
                               where=f"executor {os.uname().nodename} pid {os.getpid()}")
    return build


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


def check_batch(table: pa.Table, plan: ScoringPlan, features) -> None:
    """The executor's guard for the data contract (the driver validated first, with totals)."""
    lines = table.column(plan.line_col).combine_chunks()
    docs = table.column(plan.doc_col).combine_chunks()
    null_keys = np.flatnonzero(null_like(docs) | null_like(lines))
    if null_keys.size:
        what = describe("null_key", doc=plan.doc_col, line=plan.line_col, col=plan.features_col,
                        size=plan.feature_size)
        raise ValueError(f"{null_keys.size} line(s) with {what}, e.g. {plan.doc_col}={docs[int(null_keys[0])]} "
                         f"{plan.line_col}={lines[int(null_keys[0])]}")
    n = len(lines)
    if n > 1:
        same_doc = pc.equal(docs.slice(1), docs.slice(0, n - 1))
        same_line = pc.equal(lines.slice(1), lines.slice(0, n - 1))
        dup = np.flatnonzero(pc.and_(same_doc, same_line).to_numpy(zero_copy_only=False))
        if dup.size:
            raise ValueError(f"duplicate ({plan.doc_col}, {plan.line_col}) = ({docs[int(dup[0])]}, "
                             f"{lines[int(dup[0])]}) and {dup.size - 1} more")
    bad = nonfinite_rows(features)
    if bad.size:
        raise ValueError(f"{bad.size} line(s) with NaN/inf features, e.g. {plan.doc_col}={docs[int(bad[0])]} "
                         f"{plan.line_col}={lines[int(bad[0])]}")


def score_table(table: pa.Table, plan: ScoringPlan, predict) -> pa.Table:
    """Whole documents, each one run of rows -> output rows (in line order): carried columns + results."""
    if plan.presorted:
        table = in_line_order(table, plan)
    features = concat_sources([decode_features(chunk, plan.feature_size)
                               for chunk in table.column(plan.features_col).chunks])
    check_batch(table, plan, features)
    lengths = document_lengths(table.column(plan.doc_col))
    probs = score_lines(features, lengths, predict, window=plan.window, stride=plan.stride,
                        batch_size=plan.batch_size, num_classes=len(plan.labels))
    return result_table(table.select(list(plan.carry_cols)), probs, plan)


def result_table(carried: pa.Table, probs: np.ndarray, plan: ScoringPlan) -> pa.Table:
    n, classes = probs.shape[0], len(plan.labels)
    prediction = probs.argmax(axis=1).astype(np.int32) if n else np.zeros(0, np.int32)
    confidence = probs.max(axis=1).astype(np.float32) if n else np.zeros(0, np.float32)
    zeros = np.zeros(n, dtype=np.int64)
    offsets = pa.array(np.arange(n + 1, dtype=np.int32) * classes)
    columns = {
        "label": pa.array(list(plan.labels), pa.string()).take(pa.array(prediction)),
        "prediction": pa.array(prediction, pa.int32()),
        "confidence": pa.array(confidence, pa.float32()),
        "probabilities": pa.ListArray.from_arrays(offsets, pa.array(probs.reshape(-1).astype(np.float32))),
        "model_name": pa.array([plan.model_name], pa.string()).take(pa.array(zeros)),
        "model_version": pa.array(np.full(n, plan.model_version, dtype=np.int32)),
        "run_id": pa.array([plan.run_id], pa.string()).take(pa.array(zeros)),
    }
    out = carried
    for name, values in columns.items():
        out = out.append_column(name, values)
    return out
