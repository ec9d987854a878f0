"""The run manifest: the record of one run, written beside the output on success AND failure.

Fields: run id, start/end, status and exit code, model name/version/checksum,
input location and counts, output location and rows written, per-label
counts, throughput, Spark application id and master, the config with secrets
redacted, evaluation metrics when the input has true labels, and the warnings
the run logged. Counts come from the written files, never from re-running the
scoring step.

Statuses: ``succeeded``, ``failed``, ``nothing-to-do``, ``interrupted``
(SIGINT 130, SIGTERM 143). Once the rows are published (``published: true``)
a later error or signal is a warning and the status stays ``succeeded``: a
run reported failed after publishing invites a retry that writes every row
twice.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import sys
import time
from typing import Any

from skol_spark import errors
from skol_spark._version import __version__
from skol_spark.job.config import JobConfig

log = logging.getLogger(__name__)


def manifest_root(config: JobConfig) -> str:
    """The directory that holds one ``<run id>/`` directory per run: ``output.manifest_path``, else beside the
    output (never inside it), else ``skol_runs/<table>``."""
    from skol_spark.job.sink import OutputPaths

    out = config.output
    if out.manifest_path:
        return out.manifest_path.rstrip("/")
    if out.path:
        return OutputPaths(out.path, "").runs
    return f"skol_runs/{out.table}"


class _Warnings(logging.Handler):
    """Collects what the package logs at WARNING or above while a run is recorded."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.messages.append(record.getMessage())
        except Exception:  # a bad format string in someone's log call must not break the run
            pass


def _now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")


class RunRecorder:
    def __init__(self, spark, config: JobConfig, run_id: str) -> None:
        self.spark, self.config, self.run_id = spark, config, run_id
        self.t0 = time.monotonic()
        from skol_spark.job.services import services_for

        out = config.output
        self.data: dict[str, Any] = {
            "run_id": run_id, "skol_spark_version": __version__, "started_at": _now(),
            "spark": services_for(spark).facts(),  # application id, master, version, session: classic/connect
            "input": {"path": config.input.path, "table": config.input.table, "format": config.input.format},
            "output": {"path": out.path, "table": out.table, "format": out.format, "mode": out.mode},
            "config": config.redacted(),
        }
        self.manifest_path = ""
        self.labels: list[str] = []
        self.data["report_dir"] = self.run_dir()
        self.data["published"] = False
        self._warnings = _Warnings()
        logging.getLogger("skol_spark").addHandler(self._warnings)

    def mark_published(self) -> None:
        """The run's rows are visible at the output: from here on nothing may report the run as failed."""
        self.data["published"] = True
        self.data["published_at"] = _now()

    def _published(self) -> bool:
        """Whether this run's rows are at the output: marked, or (an interrupt between the publishing rename
        and the mark) this run's ``run_id=`` directory is there."""
        from skol_spark.job.sink import FILE_FORMATS, OutputPaths

        out = self.config.output
        if self.data["published"] or not out.path or out.dynamic_partition_overwrite \
                or out.format not in FILE_FORMATS:
            return bool(self.data["published"])
        try:
            paths = OutputPaths(out.path, self.run_id)
            from skol_spark.job.services import services_for

            visible = services_for(self.spark).fs(out.path).exists(f"{paths.output}/{paths.partition_dir}")
        except Exception:  # the JVM may be gone (SIGTERM to the process group): nothing to tell
            return False
        if visible:
            self.mark_published()
        return visible

    def fail(self, error: BaseException, *, nothing_to_do_exit_code: int = errors.NothingToDo.exit_code) -> bool:
        """Record how the run ended with ``error``. -> True when the rows were already published: the run
        succeeded and ``error`` is only a warning (the caller returns normally instead of raising)."""
        if not isinstance(error, errors.NothingToDo) and self._published():
            log.warning("run %s: the output is published and complete, but a later step ended with %s: %s",
                        self.run_id, type(error).__name__, error)
            self.finish("succeeded", exit_code=0)
            return True
        if isinstance(error, errors.NothingToDo):
            self.finish("nothing-to-do", exit_code=nothing_to_do_exit_code, error=error)
        elif isinstance(error, KeyboardInterrupt):  # SIGINT; SIGTERM raises a subclass (cli.signals.Terminated)
            self.finish("interrupted", exit_code=getattr(error, "exit_code", 130), error=error)
        elif isinstance(error, errors.SkolError):
            self.finish("failed", exit_code=error.exit_code, error=error)
        else:
            self.finish("failed", exit_code=errors.EXIT_UNEXPECTED, error=error)
        return False

    def model(self, artifact) -> None:
        self.labels = artifact.labels
        self.data["model"] = {"name": artifact.name, "version": artifact.version, "labels": artifact.labels,
                              "weights_sha256": artifact.manifest["weights"]["sha256"],
                              "architecture_sha256": artifact.manifest["architecture"]["sha256"],
                              "window_size": artifact.window_size, "feature_size": artifact.feature_size}

    def input(self, report) -> None:
        self.data["input"].update({"lines": report.lines, "documents": report.documents, "validated_by": report.scan,
                                   "problems": {k: {"lines": c, "example": e} for k, (c, e) in report.bad.items() if c}})

    def quarantine(self, info: dict[str, Any]) -> None:
        self.data["quarantine"] = info

    def scoring(self, *, seconds: float, builds: int, window: int, stride: int, partitions: int = 0,
                tf_threads: int = 0, warm_up: dict | None = None, predictor: str = "",
                presorted: bool = False, smoke_test: str = "driver", environment: str = "",
                workers: list | None = None, devices: dict | None = None) -> None:
        """``workers``: what each group of tasks scored with (``scoring.worker_log``: host, device, TF32, golden
        tolerance, predictor path, batch size); ``devices``: the GPUs the task layout counted on."""
        self.data["scoring"] = {"seconds": round(seconds, 3), "model_builds": builds, "window_size": window,
                                "stride": stride, "partitions": partitions, "tf_threads": tf_threads or "task cpus",
                                "warm_up": warm_up or {"workers": 0}, "predictor": predictor or "keras",
                                "sort": "input order" if presorted else "spark", "smoke_test": smoke_test,
                                "environment": environment, "workers": workers or [],
                                "devices": devices or {"gpus": 0}}

    def output(self, spark, config: JobConfig, paths, env, schema=None) -> int:
        """Read back what this run wrote: rows, per-label counts, metrics. ``schema``: of the written rows;
        ``env`` (``skol_spark.local.environment``) may count the labels itself."""
        from pyspark.sql import functions as F

        from skol_spark.job.sink import FILE_FORMATS, read_published_run

        out = config.output
        if out.table:
            written = spark.table(out.table).where(F.col("run_id") == self.run_id)
        elif out.format in FILE_FORMATS and not out.dynamic_partition_overwrite:
            written = read_published_run(spark, paths, fmt=out.format, schema=schema)
        else:  # run_id is a column of the files (dynamic overwrite) or of a table format's partitions (delta)
            written = spark.read.format(out.format).load(out.path).where(F.col("run_id") == self.run_id)
        counts, counted_by = None, "arrow"
        if out.path and not out.dynamic_partition_overwrite:
            counts = env.label_counts(paths.output, paths.partition_dir, out.format)
        if counts is None:
            counts = {r["label"]: int(r["count"]) for r in written.groupBy("label").count().collect()}
            counted_by = "spark"
        rows = sum(counts.values())
        seconds = time.monotonic() - self.t0
        self.data["output"].update({"rows_written": rows, "counted_by": counted_by,
                                    "label_counts": {lab: counts.get(lab, 0) for lab in self.labels}})
        self.data["throughput"] = {"lines_per_second": round(rows / seconds, 1) if seconds > 0 else None,
                                   "job_seconds": round(seconds, 3)}
        if config.input.label_col or (config.output.report and rows):
            self._evaluate(written, config)
        return rows

    def _evaluate(self, written, config: JobConfig) -> None:
        try:
            from skol_spark.report.evaluation import evaluate_output

            evaluation = evaluate_output(written, self.labels, doc_col=config.input.doc_id_col,
                                         line_col=config.input.line_col,
                                         labelled=bool(config.input.label_col), report_dir=self.run_dir(),
                                         write_report=config.output.report, manifest=self.data,
                                         rows=int(self.data["output"]["rows_written"]))
        except Exception as e:
            # The output is already published and correct: a report problem must not make a
            # scheduler re-run the batch. It is logged and recorded in the manifest instead.
            log.warning("run %s: the report could not be written: %s (rebuild it later with: "
                        "skol-spark report <manifest>)", self.run_id, e)
            self.data["report"] = {"error": f"{type(e).__name__}: {e}"}
            return
        self.data.update(evaluation)

    def run_dir(self) -> str:
        return f"{manifest_root(self.config)}/{self.run_id}"

    def finish(self, status: str, *, exit_code: int, error: BaseException | None = None) -> None:
        elapsed = time.monotonic() - self.t0
        self.data.update({"status": status, "exit_code": exit_code, "finished_at": _now(),
                          "duration_seconds": round(elapsed, 3)})
        if error is not None:
            self.data["error"] = {"type": type(error).__name__, "message": str(error) or type(error).__name__}

    def close(self) -> None:
        """Write manifest.json into the run directory (any Hadoop filesystem)."""
        from skol_spark.job.services import services_for

        logging.getLogger("skol_spark").removeHandler(self._warnings)
        if self._warnings.messages:
            self.data["warnings"] = self._warnings.messages
        path = f"{self.run_dir()}/manifest.json"
        try:
            fs = services_for(self.spark).fs(path)
            fs.mkdirs(self.run_dir())
            fs.write_whole(path, json.dumps(self.data, indent=2, sort_keys=True, default=str).encode())
            self.manifest_path = path
            self.data["manifest_path"] = path
        except Exception as e:  # never hide the run's own error behind a manifest problem
            log.error("could not write the run manifest to %s: %s", path, e)
            print(json.dumps(self.data, default=str), file=sys.stderr)
