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
document's lines itself and refuses a document that comes back
(``scoring.documents``). What a task is told is in ``scoring.specs``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import logging
import os
from typing import Callable, Iterator

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from skol_spark.errors import ExecutorError, InputContractError, JobFailedError, SkolError
from skol_spark.model.device import predict_streams
from skol_spark.scoring.documents import document_lengths, in_line_order, iter_complete_documents
from skol_spark.scoring.features import concat_sources, decode_features, nonfinite_rows
from skol_spark.scoring.pipeline import ordered_map
from skol_spark.scoring.rules import describe, null_like
from skol_spark.scoring.specs import BuildSpec, ScoringPlan
from skol_spark.scoring.windowing import score_lines
from skol_spark.scoring.worker_log import WorkerModel, record_task

log = logging.getLogger(__name__)

BUILT_COLUMN = "_skol_model_built"  # ScoringPlan.flag_builds: dropped by the driver before writing
RESULT_COLUMNS = ("label", "prediction", "confidence", "probabilities", "model_name", "model_version", "run_id")


def make_partition_scorer(plan: ScoringPlan, artifact_handle, builds=None) -> Callable:
    """The function given to ``mapInArrow``. Closes over the artifact's handle (``handle.value`` is the
    artifact: a broadcast, or on Spark Connect the artifact itself or a session file), never the model."""

    def score_partition(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        with errors_for_the_driver():
            inject_test_fault()
            tables = iter_complete_documents(batches, plan.doc_col, check_runs=plan.presorted)
            first = next(tables, None)
            if first is None:  # an empty partition builds nothing
                return
            tables, first = handed_over([first], tables), None  # not held while the rest streams by
            model, built = worker_model(plan.build, artifact_handle.value)
            task_plan = dataclasses.replace(plan, batch_size=model.batch_size(plan.batch_size))
            streams = predict_streams(plan.build.tf_threads or task_cpus(), plan.build.streams, gpu=model.gpu)
            record_task(builds, model, built, batch_size=task_plan.batch_size, streams=streams)
            score = functools.partial(score_table, plan=task_plan, predict=model.predict)
            for scored in ordered_map(score, tables, workers=streams):
                if plan.flag_builds:  # Spark Connect: no accumulators, builds counted from this column
                    flags = np.zeros(scored.num_rows, dtype=np.int32)
                    flags[:1] = int(built)
                    scored, built = scored.append_column(BUILT_COLUMN, pa.array(flags)), False
                yield from scored.to_batches()

    return score_partition


def handed_over(box: list, rest: Iterator) -> Iterator:
    """``box``'s one item, then ``rest``: the box is emptied, so nothing else keeps the item alive."""
    yield box.pop()
    yield from rest


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

        from skol_spark.model.device import tensorflow_sees_gpu

        threads = spec.tf_threads or task_cpus()
        # TensorFlow's pools are set once per process, by its first build: later tasks keep them
        device = configure_tensorflow(threads, streams=predict_streams(threads, spec.streams,
                                                                       gpu=tensorflow_sees_gpu()))
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
