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

import contextlib
import dataclasses
import logging
import os
from dataclasses import dataclass
from typing import Callable, Iterator

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from skol_spark.errors import ExecutorError, InputContractError, JobFailedError, SkolError
from skol_spark.scoring.features import concat_sources, decode_features, nonfinite_rows
from skol_spark.scoring.rules import describe, follows, null_like
from skol_spark.scoring.windowing import score_lines
from skol_spark.scoring.worker_log import WorkerModel, record_task

log = logging.getLogger(__name__)

BUILT_COLUMN = "_skol_model_built"  # ScoringPlan.flag_builds: dropped by the driver before writing
RESULT_COLUMNS = ("label", "prediction", "confidence", "probabilities", "model_name", "model_version", "run_id")


@dataclass(frozen=True)
class BuildSpec:
    """How a Python worker rebuilds the model, besides the artifact itself (small, picklable).

    Known before the input is read, so the warm-up job can build with the
    same spec, and the same cache key, as the scoring tasks.
    """

    custom_modules: tuple[str, ...] = ()
    allow_unsafe: bool = False
    line_projection: bool = True  # scoring.predictor: auto
    tf_threads: int = 0  # TensorFlow's intra-op pool; 0: the cores the task owns (spark.task.cpus)


@dataclass(frozen=True)
class ScoringPlan:
    """Everything a scoring task needs besides the broadcast artifact (small, picklable)."""

    doc_col: str
    line_col: str
    features_col: str
    carry_cols: tuple[str, ...]
    labels: tuple[str, ...]
    window: int
    stride: int
    batch_size: int
    feature_size: int
    model_name: str
    model_version: int
    run_id: str
    build: BuildSpec = BuildSpec()
    partitions: int = 0  # scoring partitions (0: keep the input's, it is clustered by document)
    presorted: bool = False  # stream the input as read: the scan found each document one run of rows
    flag_builds: bool = False  # Spark Connect (no accumulators): a last column, 1 on a task's first row if it built


def make_partition_scorer(plan: ScoringPlan, artifact_handle, builds=None) -> Callable:
    """The function given to ``mapInArrow``. Closes over the artifact's handle (``handle.value`` is the
    artifact: a broadcast, or on Spark Connect the artifact itself or a session file), never the model."""

    def score_partition(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        with errors_for_the_driver():
            inject_test_fault()
            predict, task_plan, built = None, plan, False
            for table in iter_complete_documents(batches, plan.doc_col, check_runs=plan.presorted):
                if predict is None:
                    model, built = worker_model(plan.build, artifact_handle.value)
                    task_plan = dataclasses.replace(plan, batch_size=model.batch_size(plan.batch_size))
                    record_task(builds, model, built, batch_size=task_plan.batch_size)
                    predict = model.predict
                scored = score_table(table, task_plan, predict)
                if plan.flag_builds:  # Spark Connect: no accumulators, builds counted from this column
                    flags = np.zeros(scored.num_rows, dtype=np.int32)
                    flags[:1] = int(built)
                    scored, built = scored.append_column(BUILT_COLUMN, pa.array(flags)), False
                yield from scored.to_batches()

    return score_partition


@contextlib.contextmanager
def errors_for_the_driver():
    """Re-raise a SkolError (or a MemoryError) in a form the driver turns back into the typed error."""
    try:
        yield
    except SkolError as e:
        raise ExecutorError(e) from None
    except MemoryError:
        raise ExecutorError(JobFailedError(
            "MemoryError: a Python worker ran out of memory, nothing was published; lower scoring.batch_size or "
            "scoring.arrow_batch_size, or raise spark.executor.memoryOverhead (not spark.executor.pyspark.memory, "
            "which TensorFlow cannot load under)")) from None


def inject_test_fault(partition: int | str | None = None) -> None:
    """The fault matrix's hook (``scoring.faults``): a no-op unless the test sets ``SKOL_FAULT``."""
    from pyspark import TaskContext

    from skol_spark.scoring import faults

    ctx = TaskContext.get()
    if ctx is not None:
        faults.maybe_inject(ctx.partitionId() if partition is None else partition, ctx.attemptNumber())


def worker_model(spec: BuildSpec, artifact) -> tuple[WorkerModel, bool]:
    """``(model, built_now)``: the worker's cached predictor, built (and golden-checked) on first use only."""
    from skol_spark.model import cache as worker_cache

    return worker_cache.get_or_build(predictor_key(spec, artifact), predictor_builder(spec, artifact))


def worker_predictor(spec: BuildSpec, artifact, builds=None, *, job: str = "scoring"):
    """``(predict, built_now)``, the task recorded in ``builds`` (a ``worker_log`` accumulator) if given."""
    model, built = worker_model(spec, artifact)
    record_task(builds, model, built, job=job)
    return model.predict, built


def predictor_key(spec: BuildSpec, artifact) -> str:
    return f"{artifact.fingerprint}:{'lines' if spec.line_projection else 'keras'}"


def predictor_builder(spec: BuildSpec, artifact) -> Callable:
    def build() -> WorkerModel:
        from skol_spark.model.builder import build_predictor, configure_tensorflow, scoring_facts

        device = configure_tensorflow(spec.tf_threads or task_cpus())
        predict = build_predictor(artifact, custom_modules=spec.custom_modules, allow_unsafe=spec.allow_unsafe,
                                  line_projection=spec.line_projection,
                                  where=f"executor {os.uname().nodename} pid {os.getpid()}")
        return WorkerModel(predict, scoring_facts(artifact, predict, device), gpu=device.gpu)
    return build


def task_cpus(default: int = 1) -> int:
    """Cores this task owns (``spark.task.cpus``): the size of TensorFlow's thread pools."""
    from pyspark import TaskContext

    ctx = TaskContext.get()
    return max(1, int(ctx.cpus())) if ctx is not None else default


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
        raise InputContractError(f"{null_keys.size} line(s) with {what}, e.g. {plan.doc_col}={docs[int(null_keys[0])]} "
                                 f"{plan.line_col}={lines[int(null_keys[0])]}")
    n = len(lines)
    if n > 1:
        same_doc = pc.equal(docs.slice(1), docs.slice(0, n - 1))
        same_line = pc.equal(lines.slice(1), lines.slice(0, n - 1))
        dup = np.flatnonzero(pc.and_(same_doc, same_line).to_numpy(zero_copy_only=False))
        if dup.size:
            raise InputContractError(f"duplicate ({plan.doc_col}, {plan.line_col}) = ({docs[int(dup[0])]}, "
                                     f"{lines[int(dup[0])]}) and {dup.size - 1} more")
    bad = nonfinite_rows(features)
    if bad.size:
        raise InputContractError(f"{bad.size} line(s) with NaN/inf features, e.g. "
                                 f"{plan.doc_col}={docs[int(bad[0])]} {plan.line_col}={lines[int(bad[0])]}")


def score_table(table: pa.Table, plan: ScoringPlan, predict) -> pa.Table:
    """Whole documents, each one run of rows -> output rows (in line order): carried columns + results."""
    if plan.presorted:
        table = in_line_order(table, plan)
    try:
        features = concat_sources([decode_features(chunk, plan.feature_size)
                                   for chunk in table.column(plan.features_col).chunks])
    except ValueError as e:  # the decoder's contract errors: refused input, not a failed job
        raise InputContractError(f"input refused by a scoring task, nothing was published: {e}") from None
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
