"""The batch scoring job: config + SparkSession in, scored output + run manifest out.

A run goes through four phases, in an order set by the promise "bad input
loses nothing": **plan** (config and model artifact resolved once, checksums
verified, cheapest refusals first), **validate** (schema, one validation scan
of the input, the model's smoke test beside it), **score and publish** (one
Spark job, staged, published only when complete) and **record** (the run
manifest, read back from what was written). Where the run happens (a local
master or a cluster) is asked of ``skol_spark.local`` once, in the plan.
"""

from __future__ import annotations

import datetime as dt
import logging
import uuid
from dataclasses import dataclass, field
from typing import Any

from skol_spark.errors import InputContractError, NothingToDo
from skol_spark.job import text_input
from skol_spark.job.config import JobConfig, require_job_fields
from skol_spark.job.inputs import carried_columns, read_input, unscored_documents
from skol_spark.job.plan import RunPlan, make_plan, reads_input_partitions, trusts_clustering
from skol_spark.job.score import score_and_publish
from skol_spark.job.locations import check_locations
from skol_spark.job.services import services_for
from skol_spark.job.sink import OutputLock, recover
from skol_spark.job.smoke import SmokeTest, checked_predictor
from skol_spark.job.validate import check_schema, refuse_bad_input, refuse_split_documents, scan_input
from skol_spark.model.vetting import check_keras_floor

log = logging.getLogger(__name__)


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
    # cheapest refusal first, before Redis, TensorFlow or Spark jobs, and before the manifest (whose
    # location is one of those checked): a refused run writes nothing at all
    services_for(spark).check_sinks(config)  # a sink this kind of session cannot keep its guarantees on
    check_locations(spark, config)
    run_id = run_id or new_run_id()
    recorder = RunRecorder(spark, config, run_id)
    try:
        result = _run(spark, config, run_id, recorder, artifact)
        recorder.finish("succeeded", exit_code=0)
    except BaseException as e:  # interrupts too: the manifest records every ending
        if not recorder.fail(e, nothing_to_do_exit_code=config.job.nothing_to_do_exit_code):
            raise
        # the rows were published before the error: a warning, not a failure (no retry, no duplicate rows)
        result = RunResult(run_id=run_id, status="succeeded",
                           rows_written=int(recorder.data["output"].get("rows_written", 0)), manifest=recorder.data)
    finally:
        recorder.close()
    result.manifest_path = recorder.manifest_path
    return result


def _run(spark, config: JobConfig, run_id: str, recorder, artifact) -> RunResult:
    """Plan: the cheapest refusals first (before Redis, TensorFlow or any Spark job)."""
    from skol_spark.job.model_loading import load_artifact

    out = config.output
    fs = services_for(spark).fs(out.path) if out.path else None
    if artifact is None:
        artifact = load_artifact(config)
    recorder.model(artifact)
    check_keras_floor()
    plan = make_plan(spark, config, artifact, run_id)
    rows = _execute(spark, plan, fs, recorder)
    return RunResult(run_id=run_id, status="succeeded", rows_written=rows, manifest=recorder.data,
                     manifest_path=recorder.manifest_path)


def _execute(spark, plan: RunPlan, fs, recorder) -> int:
    """Validate, score and publish, record; the shipped model, the warm-up and the lock never outlive the run."""
    config, services = plan.config, plan.env.services
    smoke = SmokeTest(plan.artifact, plan.build, threads=config.scoring.tf_threads or 1, deferred=plan.env.warm)
    services.set_conf("spark.sql.execution.arrow.maxRecordsPerBatch", str(plan.env.arrow_batch_size()))
    shipment = services.ship(plan.artifact, inline_max_bytes=int(config.job.connect_inline_model_mb * 2**20))
    handle, builds = shipment.handle, services.build_counter()  # builds: model builds, what each task scored on
    # started first: the workers' TensorFlow import and build overlap the driver's input checks
    warm = plan.env.warm_up(spark, plan.build, handle, builds)
    lock = OutputLock(fs, plan.paths) if fs else None
    try:
        df = text_input.as_feature_lines(read_input(spark, config), config, plan.artifact)  # docs/text.md
        kind = check_schema(df, **plan.keys, label_col=config.input.label_col)
        carry = tuple(carried_columns(df, config))
        if lock:
            lock.acquire()
            recover(fs, plan.paths)
        if config.output.mode == "incremental":
            df = unscored_documents(spark, df, config, plan.artifact)
        df, report = _validate(spark, df, kind, plan, smoke, recorder)
        predictor = checked_predictor(smoke, warm, config.job.timeout_seconds)
        partitions = plan.env.partitions(report.lines)
        # quarantine filters the input: its order is no longer the one the scan saw
        presorted = report.ok and report.in_document_order and reads_input_partitions(config, partitions)
        scoring = plan.scoring_plan(carry, lines=report.lines, presorted=presorted, flag_builds=builds.flag_column)
        try:
            schema, seconds = score_and_publish(spark, df, scoring, handle, builds, config, plan.paths, fs,
                                                recorder, lines=report.lines, services=services)
        except InputContractError:
            if not report.features_checked:  # a task refused a feature: list every problem, as the full scan does
                refuse_bad_input(_full_scan(df, kind, plan, recorder), feature_size=plan.artifact.feature_size,
                                 **plan.keys)
            raise
        recorder.mark_published()
        recorder.scoring(seconds=seconds, builds=builds.total(), window=plan.window, stride=plan.stride,
                         workers=builds.workers(), devices=plan.env.devices(),
                         partitions=scoring.partitions, tf_threads=plan.build.tf_threads,
                         warm_up=warm.summary() if warm else None, predictor=predictor, presorted=presorted,
                         smoke_test=smoke.where, environment=plan.env.kind)
        recorder.data["scoring"]["model_shipped_by"] = shipment.how
        return recorder.output(spark, config, plan.paths, plan.env, schema=schema)
    finally:
        if warm:
            warm.cancel()
        if lock:
            lock.release()
        shipment.release()


def _validate(spark, df, kind: str, plan: RunPlan, smoke: SmokeTest, recorder):
    """One validation scan (the smoke test starts beside it); bad input refused or quarantined.
    -> (the input to score, the scan's ``InputReport``)."""
    config = plan.config
    before = plan.env.partitions(0)
    # the input's read order reaches the scoring task only as read: not through the incremental anti-join
    check_order = config.scoring.sort == "auto" and config.output.mode != "incremental" and \
        reads_input_partitions(config, before)
    report = scan_input(df, kind=kind, feature_size=plan.artifact.feature_size, **plan.keys,
                        before_run=smoke.start, check_clustered=trusts_clustering(config, before),
                        check_order=check_order, features=features_checked_before_scoring(config))
    recorder.input(report)
    refuse_split_documents(report, doc_col=config.input.doc_id_col)
    if not report.ok:  # refused: with every rule's count, features included
        full = report if report.features_checked else _full_scan(df, kind, plan, recorder)
        df = handle_bad_input(spark, df, full, config, kind, plan.artifact, recorder)
    if config.output.mode == "incremental" and report.lines == 0:
        out = config.output
        raise NothingToDo(f"incremental: every document in the input is already scored by model "
                          f"{plan.artifact.name!r} v{plan.artifact.version} in {out.path or out.table}; nothing to do")
    return df, report


def features_checked_before_scoring(config: JobConfig) -> bool:
    """Whether the validation scan checks the features too, or only the keys (the scoring tasks then check
    the features, and a refusal fails the job before anything is published). Only a staged path sink
    guarantees that: quarantine must know its documents before scoring, and a table overwrite may drop the
    old table before its write job runs."""
    out = config.output
    staged = bool(out.path) and not out.table and not out.dynamic_partition_overwrite
    return config.scoring.bad_input == "quarantine" or not staged


def _full_scan(df, kind: str, plan: RunPlan, recorder):
    """The scan with every rule, where the keys-only scan found bad keys or a scoring task refused a feature."""
    report = scan_input(df, kind=kind, feature_size=plan.artifact.feature_size, **plan.keys)
    recorder.input(report)
    return report


def handle_bad_input(spark, df, report, config: JobConfig, kind: str, artifact, recorder):
    keys = dict(doc_col=config.input.doc_id_col, line_col=config.input.line_col,
                features_col=config.input.features_col)
    if config.scoring.bad_input == "refuse":
        refuse_bad_input(report, feature_size=artifact.feature_size, **keys)
    from skol_spark.job.quarantine import bad_documents, quarantine

    return quarantine(spark, df, report, config, bad_documents(df, kind=kind, feature_size=artifact.feature_size,
                                                                  **keys), recorder)
