"""The batch scoring job: config + SparkSession in, scored output + run manifest out.

Order matters for the promise "bad input loses nothing": everything that can
be checked before writing is checked first (config, model checksums, a smoke
prediction, schema, one validation scan), the result is staged,
and only a complete result is published (see ``sink``). The scoring step runs
exactly once: nothing re-evaluates the scored DataFrame; counts and metrics
are read back from the written files.
"""

from __future__ import annotations

import concurrent.futures
import datetime as dt
import logging
import re
import time
import uuid
from dataclasses import dataclass, field, replace
from typing import Any

from skol_spark import errors

from skol_spark.local import warmup

from skol_spark.local import worker_prestart
from skol_spark.job import annotated, text_input
from skol_spark.job.config import JobConfig, require_job_fields
from skol_spark.errors import ConfigError, InputContractError, JobFailedError, JobTimeoutError, NothingToDo
from skol_spark.model.builder import check_keras_floor, predictor_kind
from skol_spark.scoring.partition import RESULT_COLUMNS, ScoringPlan, make_partition_scorer
from skol_spark.job.sink import (HadoopFS, OutputLock, OutputPaths, check_mode, publish, recover, write_dynamic_overwrite,
                             write_staged, write_table)
from skol_spark.job.session import is_local_master
from skol_spark.job.validate import (bad_documents, check_schema, refuse_bad_input, refuse_split_documents,
                                 scan_input)
from skol_spark.local.warmup import WarmUp

log = logging.getLogger(__name__)

TRUE_LABEL = "true_label"


@dataclass
class RunResult:
    run_id: str
    status: str
    rows_written: int = 0
    manifest: dict[str, Any] = field(default_factory=dict)
    manifest_path: str = ""


def new_run_id() -> str:
    return dt.datetime.now(dt.timezone.utc).strftime("%Y%m%dT%H%M%SZ") + "-" + uuid.uuid4().hex[:6]


def run_job(spark, config: JobConfig, *, artifact=None, run_id: str | None = None) -> RunResult:
    """Score ``config.input`` with the configured model; raise a SkolError on failure.

    ``artifact`` may be given to skip Redis (tests, notebooks); otherwise it
    is loaded on the driver from the store named in ``config.redis``.
    """
    from skol_spark.job.manifest import RunRecorder

    require_job_fields(config)
    run_id = run_id or new_run_id()
    recorder = RunRecorder(spark, config, run_id)
    try:
        result = _run(spark, config, run_id, recorder, artifact)
        recorder.finish("succeeded", exit_code=0)
    except NothingToDo as e:
        recorder.finish("nothing-to-do", exit_code=config.job.nothing_to_do_exit_code, error=e)
        raise
    except errors.SkolError as e:
        recorder.finish("failed", exit_code=e.exit_code, error=e)
        raise
    except Exception as e:
        recorder.finish("failed", exit_code=errors.EXIT_UNEXPECTED, error=e)
        raise
    finally:
        recorder.close()
    result.manifest_path = recorder.manifest_path
    return result


def _run(spark, config: JobConfig, run_id: str, recorder, artifact) -> RunResult:
    from skol_spark.job.model_loading import load_artifact

    out = config.output
    paths = OutputPaths(out.path or out.table, run_id)
    fs = HadoopFS(spark, out.path) if out.path else None
    if fs:
        check_mode(fs, out.path, out.mode)  # cheapest refusal first: before Redis, TensorFlow or Spark jobs
    if artifact is None:
        artifact = load_artifact(config)
    recorder.model(artifact)
    window, stride = resolve_window(config, artifact)
    check_keras_floor()
    sc = spark.sparkContext
    warm_wanted = warmup.wanted(sc, config.scoring.warm_up)
    smoke = SmokeTest(artifact, config, deferred=warm_wanted)

    tf_threads, warm_workers = early_layout(sc, config)
    plan = ScoringPlan(
        doc_col=config.input.doc_id_col, line_col=config.input.line_col, features_col=config.input.features_col,
        carry_cols=(), labels=tuple(artifact.labels), window=window, stride=stride,
        batch_size=config.scoring.batch_size, feature_size=artifact.feature_size,
        tf_threads=tf_threads, model_name=artifact.name, model_version=artifact.version,
        run_id=run_id, custom_modules=config.model.custom_layer_modules,
        allow_unsafe=config.model.allow_unsafe_deserialization,
        line_projection=smoke.line_projection)
    spark.conf.set("spark.sql.execution.arrow.maxRecordsPerBatch", str(config.scoring.arrow_batch_size))
    handle = sc.broadcast(artifact)
    builds = sc.accumulator(0)
    # started first: the worker's TensorFlow import overlaps the driver's input checks (cold JVM, seconds)
    if warm_wanted:
        worker_prestart.send_model(plan, artifact)  # a worker the CLI pre-started builds it while the JVM plans
    warm = WarmUp(spark, plan, handle, builds, warm_workers).start() if warm_wanted else None
    lock = OutputLock(fs, paths) if fs else None
    reader = None
    try:
        df = text_input.as_feature_lines(read_input(spark, config), config, artifact)  # docs/text.md
        kind = check_schema(df, doc_col=config.input.doc_id_col, line_col=config.input.line_col,
                            features_col=config.input.features_col, label_col=config.input.label_col)
        plan = replace(plan, carry_cols=tuple(carried_columns(df, config)))
        if fs:
            lock.acquire()
            recover(fs, paths)
        if out.mode == "incremental":
            df = unscored_documents(spark, df, config, artifact)
        keys = dict(doc_col=config.input.doc_id_col, line_col=config.input.line_col,
                    features_col=config.input.features_col)
        early_partitions = scoring_layout(sc, config, 0)[0]
        # the input's read order reaches the scoring task only as read: not through the incremental anti-join
        check_order = config.scoring.sort == "auto" and out.mode != "incremental" and \
            reads_input_partitions(config, early_partitions)
        report = validation_scan(sc, df, config, kind=kind, feature_size=artifact.feature_size, keys=keys,
                                 before_run=smoke.start, check_order=check_order,
                                 check_clustered=trusts_clustering(config, early_partitions))
        recorder.input(report)
        refuse_split_documents(report, doc_col=config.input.doc_id_col)
        if not report.ok:
            df = handle_bad_input(spark, df, report, config, kind, artifact, recorder)
        if out.mode == "incremental" and report.lines == 0:
            raise NothingToDo(f"incremental: every document in the input is already scored by model "
                              f"{artifact.name!r} v{artifact.version} in {out.path or out.table}; nothing to do")
        if warm and report.scan == "arrow":
            reader = warm_input_reader(df, [config.input.doc_id_col, config.input.line_col,
                                            config.input.features_col])
        predictor = checked_predictor(smoke, warm, config.job.timeout_seconds)
        if reader:
            reader.join()  # done by now; its job must not compete with scoring
        partitions = scoring_layout(sc, config, report.lines)[0]
        # quarantine filters the input: its order is no longer the one the scan saw
        plan = replace(plan, partitions=partitions, presorted=report.ok and report.in_document_order
                       and reads_input_partitions(config, partitions))
        rows = score_and_write(spark, df, plan, handle, builds, config, paths, fs, recorder, report.lines,
                               warm_up=warm.summary() if warm else None, predictor=predictor,
                               smoke_test=smoke.where)
    finally:
        if reader:
            reader.join()
        if warm:
            warm.cancel()
        if lock:
            lock.release()
        handle.destroy()
    return RunResult(run_id=run_id, status="succeeded", rows_written=rows, manifest=recorder.data,
                     manifest_path=recorder.manifest_path)


def validation_scan(sc, df, config: JobConfig, *, kind: str, feature_size: int, keys: dict, before_run,
                    check_order: bool, check_clustered: bool):
    """The input's ``InputReport``: from Arrow in the driver for a small local Parquet input on a local master
    (``input.validation: auto``; no cold-JVM query beside the warm-up), else from one Spark job."""
    from skol_spark.local import local_scan

    inp = config.input
    files = None
    if inp.validation == "auto" and is_local_master(sc.master) and not check_clustered and inp.path \
            and not inp.table and inp.format == "parquet" and not inp.watermark_min \
            and config.output.mode != "incremental":
        files = local_scan.eligible_files(inp.path)
    if files is not None:
        before_run()
        columns = local_scan.Columns(doc=keys["doc_col"], line=keys["line_col"], features=keys["features_col"],
                                     kind=kind, feature_size=feature_size)
        try:
            return local_scan.scan_files(files, columns, check_order=check_order)
        except local_scan.Declined as e:
            log.info("validating the input with Spark: the Arrow scan declined it (%s)", e)
        except Exception as e:  # an optimisation only: the Spark scan is the reference and reports bad files
            log.warning("the Arrow validation scan failed (%s: %s); validating the input with Spark instead",
                        type(e).__name__, e)
    return scan_input(df, kind=kind, feature_size=feature_size, **keys, before_run=before_run,
                      check_clustered=check_clustered, check_order=check_order)


READER_WARM_UP_ROWS = 20_000


def warm_input_reader(df, columns: list[str]):
    """Read the input's first rows into Spark's no-op sink in the background; returns the thread.

    After a Spark validation scan the JVM has run its Parquet reader over the
    whole input; after the Arrow scan it has not, and the scoring task would
    JIT-compile that code (nested columns: the features' lists) while
    TensorFlow wants both cores: its first batch came 0.4-0.5 s later and
    the stage ran slower (traced at 200k lines). A ``limit`` read costs the
    JVM ~0.1 s of task time, beside the worker's TensorFlow import.
    """
    from pyspark import InheritableThread

    def read() -> None:
        try:
            df.select(*columns).limit(READER_WARM_UP_ROWS).write.format("noop").mode("overwrite").save()
        except Exception as e:  # an optimisation only: scoring reads the input itself and reports its errors
            log.debug("reading the input's first rows ahead of scoring failed: %s", e)

    thread = InheritableThread(target=read, name="skol-reader-warm-up", daemon=True)
    thread.start()
    return thread


def resolve_window(config: JobConfig, artifact) -> tuple[int, int]:
    window = config.scoring.window_size or artifact.window_size
    if not artifact.manifest.get("variable_length") and window != artifact.window_size:
        raise ConfigError(f"scoring.window_size {window} differs from the model's fixed window "
                          f"{artifact.window_size}; remove the setting or use a variable-length model")
    stride = config.scoring.stride or (artifact.stride if window == artifact.window_size else window)
    if not 1 <= stride <= window:
        raise ConfigError(f"scoring.stride {stride} must be between 1 and the window size {window}")
    return window, stride


class SmokeTest:
    """Rebuild + golden check on the driver, overlapped with the validation scan.

    Catches a model that cannot be rebuilt or cannot predict (a different
    TensorFlow, a wrong weight order) before any executor starts scoring.
    Started once the scan's query is planned (``scan_input(before_run=...)``),
    so that the query's py4j calls do not queue for the GIL behind it.

    ``deferred``: the warm-up job makes the same check in the Python workers
    that will score (local masters), so ``start`` does nothing and the
    driver never imports TensorFlow, unless that job fails or times out
    (``checked_predictor``). The driver's copy was ~3 s of CPU on a 2-core
    machine, taken from the worker's start: first prediction ~1 s later.
    """

    def __init__(self, artifact, config: JobConfig, *, deferred: bool = False) -> None:
        self.artifact, self.config, self.deferred = artifact, config, deferred
        self.line_projection = config.scoring.predictor == "auto"  # the executors' plan takes the same
        self.future: concurrent.futures.Future | None = None

    @property
    def where(self) -> str:
        """Where the model was smoke-tested (run manifest): ``driver`` or, deferred, ``warm-up`` (its workers)."""
        return "driver" if self.future is not None else "warm-up"

    def start(self) -> None:
        if self.deferred or self.future is not None:
            return
        pool = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="skol-smoke")
        self.future = pool.submit(self._smoke)
        pool.shutdown(wait=False)

    def result(self) -> str:
        """Wait for the smoke test (starting it if the scan never did, or now if it was deferred); re-raises its
        error. -> the predictor the driver chose: ``line_projection`` or ``keras`` (executors choose alike)."""
        self.deferred = False
        self.start()
        assert self.future is not None
        return self.future.result()

    def _smoke(self) -> str:
        from skol_spark.model.builder import build_predictor, configure_tensorflow

        configure_tensorflow(self.config.scoring.tf_threads or 1)
        predict = build_predictor(self.artifact, custom_modules=self.config.model.custom_layer_modules,
                                  allow_unsafe=self.config.model.allow_unsafe_deserialization, where="driver",
                                  line_projection=self.line_projection)
        return predictor_kind(predict)


def read_input(spark, config: JobConfig):
    from pyspark.sql import functions as F

    inp = config.input
    try:
        df = spark.table(inp.table) if inp.table else spark.read.format(inp.format).load(inp.path)
    except Exception as e:  # AnalysisException: path or table missing
        raise InputContractError(f"cannot read input {inp.table or inp.path} ({inp.format}): "
                                 f"{_first_line(str(e))}. Check input.path / input.table") from None
    if inp.watermark_col:
        if inp.watermark_col not in df.columns:
            raise InputContractError(f"input has no watermark column {inp.watermark_col!r} (input.watermark_col)")
        if inp.watermark_min:
            df = df.where(F.col(inp.watermark_col) >= F.lit(inp.watermark_min))
    return df


def carried_columns(df, config: JobConfig) -> list[str]:
    """Key + passthrough (+ true label) columns, in input order, checked against result names."""
    inp = config.input
    keys = [inp.doc_id_col, inp.line_col]
    skip = set(keys) | {inp.features_col, inp.label_col}
    if "*" in inp.passthrough:
        passthrough = [c for c in df.columns if c not in skip]
    else:
        missing = [c for c in inp.passthrough if c not in df.columns]
        if missing:
            raise InputContractError(f"input.passthrough names column(s) {missing} the input does not have "
                                     f"(columns: {df.columns})")
        passthrough = [c for c in inp.passthrough if c not in skip]
    clash = sorted(set(passthrough) & (set(RESULT_COLUMNS) | {TRUE_LABEL}))
    if clash:
        raise InputContractError(
            f"input column(s) {clash} would collide with output columns of the same name. If it is the true "
            "label, set input.label_col to it; otherwise drop or rename it, or list input.passthrough explicitly")
    return keys + passthrough + ([TRUE_LABEL] if inp.label_col else [])


def with_true_label(df, config: JobConfig, labels: list[str]):
    """Normalise the true label to a label name (indices map through the model's labels)."""
    from pyspark.sql import functions as F
    from pyspark.sql import types as T

    col = config.input.label_col
    if not col:
        return df
    if isinstance(df.schema[col].dataType, (T.IntegerType, T.LongType, T.ShortType)):
        names = F.array(*[F.lit(x) for x in labels])
        value = F.coalesce(F.element_at(names, F.col(col).cast("int") + 1), F.col(col).cast("string"))
        value = F.when(F.col(col).isNull(), F.lit(None)).otherwise(value)
    else:
        value = F.col(col).cast("string")
    return df.withColumn(TRUE_LABEL, value)


def unscored_documents(spark, df, config: JobConfig, artifact):
    """Incremental mode: drop documents the output already holds for this model (version)."""
    from pyspark.sql import functions as F

    out = config.output
    fs = HadoopFS(spark, out.path)
    if not fs.exists(out.path) or not any(n.startswith("run_id=") for n in fs.list(out.path)):
        return df
    done = spark.read.format(out.format).load(out.path).where(F.col("model_name") == artifact.name)
    if out.rescore == "new-version":
        done = done.where(F.col("model_version") == artifact.version)
    doc = config.input.doc_id_col
    done_docs = done.select(F.col(doc).alias("_done_doc")).distinct()
    return df.join(done_docs, df[doc] == done_docs["_done_doc"], "left_anti")


def handle_bad_input(spark, df, report, config: JobConfig, kind: str, artifact, recorder):
    keys = dict(doc_col=config.input.doc_id_col, line_col=config.input.line_col,
                features_col=config.input.features_col)
    if config.scoring.bad_input == "refuse":
        refuse_bad_input(report, feature_size=artifact.feature_size, **keys)
    from skol_spark.job.quarantine import quarantine

    return quarantine(spark, df, report, config, bad_documents(df, kind=kind, feature_size=artifact.feature_size,
                                                                  **keys), recorder)


def scoring_layout(sc, config: JobConfig, lines: int) -> tuple[int, int]:
    """(scoring partitions, TensorFlow threads per task; 0 = the task's cores).

    On CPU, one TensorFlow process using several cores predicts as fast as
    as many single-threaded ones (benchmarks/: 572 vs 578 windows/s on 2
    cores), but pays one TensorFlow import, model build and golden check
    instead of several, and holds one model: on 2 cores (200k lines) the
    job went from 39.2 to 32.3 s and its Python workers from 2.6 to 1.4 GB.
    A local master's cores are all ours, so its automatic layout gives each
    scoring task up to 4 of them; on a cluster a task owns
    ``spark.task.cpus`` (set it to 2-4 for the same effect). Explicit
    ``scoring.partitions`` / ``tf_threads`` always win, and on a cluster
    input that is already clustered by document keeps its own partitions.
    """
    s = config.scoring
    clustered = config.input.clustered_by_doc
    if is_local_master(sc.master) and not s.partitions:
        cores = max(1, sc.defaultParallelism)
        partitions = -(-cores // 4)
        return partitions, s.tf_threads or max(1, cores // partitions)
    return (0 if clustered else s.partitions or max(sc.defaultParallelism, -(-lines // 200_000))), s.tf_threads


def early_layout(sc, config: JobConfig) -> tuple[int, int]:
    """(TensorFlow threads per task, Python workers to warm up), known before the input is counted."""
    partitions, tf_threads = scoring_layout(sc, config, 0)
    cores = max(1, sc.defaultParallelism)
    return tf_threads, min(cores, partitions or cores)


def checked_predictor(smoke: SmokeTest, warm: WarmUp | None, timeout: float = 0.0) -> str:
    """The model's predictor kind, once a smoke test passed; a model that fails it stops the job here, before
    scoring.

    With a warm-up, its workers' build (rebuild + golden check) is the smoke
    test. If it fails, the driver runs its own so the error reads as it
    would without a warm-up (an executor's is wrapped in Spark's traceback);
    should the driver pass where the workers failed, their error stands. The
    warm-up is an optimisation: still running after ``job.timeout_seconds``,
    it is cancelled, the driver checks the model, and scoring (which the
    timeout does cover) builds it itself.
    """
    if warm is None:
        return smoke.result()
    try:
        ready = warm.wait(timeout or None)
    except Exception as e:
        error = translate_spark_error(e)
        log.warning("the warm-up job failed to build the model (%s); checking it on the driver", error)
        smoke.result()
        raise error from None
    if not ready:
        log.warning("the warm-up job did not finish within job.timeout_seconds=%g; cancelled, scoring "
                    "builds the model itself", timeout)
        return smoke.result()
    return warm.predictor


def trusts_clustering(config: JobConfig, partitions: int) -> bool:
    """Whether scoring keeps or merges the input's partitions on the word of ``input.clustered_by_doc``
    (then the validation scan checks the claim). One partition holds every document: nothing to trust."""
    return config.input.clustered_by_doc and partitions != 1


def reads_input_partitions(config: JobConfig, partitions: int) -> bool:
    """Whether scoring keeps or merges the input's partitions (no shuffle), so each task sees the rows in the
    order the input is read."""
    return partitions in (0, 1) or trusts_clustering(config, partitions)


def scoring_frame(df, plan: ScoringPlan, config: JobConfig, handle, builds):
    """Group documents into partitions, sort by line, and map each partition through the scorer.

    A document must not span partitions. One partition holds every document,
    and partitions of input clustered by document hold whole documents, so
    both are kept or merged with ``coalesce`` (no shuffle: the scoring task
    reads the input itself); only the general case pays a shuffle by document.

    The sort is blocking: the task reads its whole partition before the
    first batch reaches Python. Input whose documents are already runs of
    rows (``plan.presorted``, from the validation scan) skips it, so reading
    overlaps predicting; measured in benchmarks/results/ab-stream-unsorted.md.
    """
    from pyspark.sql import functions as F

    df = with_true_label(df, config, list(plan.labels))
    needed = list(dict.fromkeys([*plan.carry_cols, plan.features_col]))
    df = df.select(*needed)
    if not plan.partitions:
        pass  # keep the input's partitions as they are (clustered by document)
    elif reads_input_partitions(config, plan.partitions):
        df = df.coalesce(plan.partitions)
    else:
        df = df.repartition(plan.partitions, F.col(plan.doc_col))
    if not plan.presorted:
        df = df.sortWithinPartitions(plan.doc_col, plan.line_col)
    schema = output_schema(df.schema, plan)
    return df.mapInArrow(make_partition_scorer(plan, handle, builds), schema)


def output_schema(input_schema, plan: ScoringPlan):
    from pyspark.sql import types as T

    fields = [input_schema[c] for c in plan.carry_cols]
    fields += [
        T.StructField("label", T.StringType(), False),
        T.StructField("prediction", T.IntegerType(), False),
        T.StructField("confidence", T.FloatType(), False),
        T.StructField("probabilities", T.ArrayType(T.FloatType(), False), False),
        T.StructField("model_name", T.StringType(), False),
        T.StructField("model_version", T.IntegerType(), False),
        T.StructField("run_id", T.StringType(), False),
    ]
    return T.StructType(fields)


def score_and_write(spark, df, plan: ScoringPlan, handle, builds, config: JobConfig, paths: OutputPaths, fs,
                    recorder, lines: int, *, warm_up: dict | None = None, predictor: str = "",
                    smoke_test: str = "driver") -> int:
    """Score and write in one Spark job; ``handle`` is the broadcast artifact, ``builds`` an accumulator."""
    from skol_spark.job.progress import Progress, Timeout

    out = config.output
    started = time.monotonic()
    scored = scoring_frame(df, plan, config, handle, builds)
    annotations = None
    with Timeout(spark, config.job.timeout_seconds) as timeout, \
            Progress(spark, total_lines=lines, enabled=config.job.progress and not config.job.quiet):
        try:
            if out.table:
                write_table(scored, out.table, fmt=out.format if out.format != "parquet" else "",
                            mode=out.mode, partition_by=out.partition_by)
            elif out.dynamic_partition_overwrite:
                write_dynamic_overwrite(scored, out.path, fmt=out.format, partition_by=out.partition_by)
            else:
                write_staged(scored, paths, fmt=out.format, partition_by=out.partition_by)
                annotations = annotated.stage(spark, config, paths, scored.schema, plan)  # docs/text.md
        except Exception as e:
            if fs and not out.dynamic_partition_overwrite:
                fs.delete(paths.staging)  # a failed run leaves nothing behind, not even hidden staging
            if timeout.fired.is_set():
                raise JobTimeoutError(f"the job ran longer than job.timeout_seconds="
                                      f"{config.job.timeout_seconds:g} and was cancelled; nothing was "
                                      "published") from None
            raise translate_spark_error(e) from None
    if fs and not out.dynamic_partition_overwrite:
        publish(fs, paths, out.mode)
        annotated.publish_staged(annotations, spark, recorder)
    recorder.scoring(seconds=time.monotonic() - started, builds=builds.value, window=plan.window,
                     stride=plan.stride, partitions=plan.partitions, tf_threads=plan.tf_threads,
                     warm_up=warm_up, predictor=predictor, presorted=plan.presorted, smoke_test=smoke_test)
    return recorder.output(spark, config, paths, plan, schema=scored.schema)


_ERROR_LINE = re.compile(r"(?:skol_spark\.errors\.)?(\w+(?:Error|Exception)): (.+)")


def translate_spark_error(error: Exception) -> errors.SkolError:
    """A failed Spark job -> the SkolError the executor raised (or JobFailedError), message kept short."""
    text = str(error)
    matches = [m for m in _ERROR_LINE.finditer(text)
               if m.group(1) not in ("Py4JJavaError", "PythonException", "SparkException")]
    for m in reversed(matches):
        cls = getattr(errors, m.group(1), None)
        if isinstance(cls, type) and issubclass(cls, errors.SkolError):
            return cls(m.group(2).strip())
    detail = f"{matches[-1].group(1)}: {matches[-1].group(2).strip()}" if matches else _first_line(text)
    if re.search(r"^MemoryError\b", text, re.M):  # raised bare, so the pattern above misses it
        detail = ("MemoryError: a Python worker ran out of memory; lower scoring.batch_size or "
                  "scoring.arrow_batch_size, or raise spark.executor.memoryOverhead (not "
                  "spark.executor.pyspark.memory, which TensorFlow cannot load under)")
    if "ValueError" in detail and ("duplicate" in detail or "NaN" in detail or "features" in detail):
        return InputContractError(f"input refused by an executor, nothing was published: {detail}")
    return JobFailedError(f"the Spark job failed, nothing was published ({detail[:600]}). Earlier output is "
                          "unchanged; see the Spark logs for the executor traceback")


def _first_line(text: str) -> str:
    return text.strip().splitlines()[0][:400] if text.strip() else ""
