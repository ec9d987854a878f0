"""``skol-spark``: one ``main(argv) -> int`` behind every launcher.

``jobs/batch_predict.py`` (spark-submit), the console entry point and the
Databricks ``python_wheel_task`` all call ``main``. Errors become one line on
stderr and a documented exit code (README, "Exit codes"); tracebacks only with
``--debug``.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from typing import Sequence

from skol_spark import errors
from skol_spark._version import __version__

log = logging.getLogger("skol_spark")

EXIT_CODES_HELP = """exit codes:
  0   success              2   usage / config error      3   unsupported environment (keras < 3.15)
  4   a local resource is missing (temp disk full)
  10  Redis unreachable / auth / permission               11  model, version or alias not found
  12  model artifact corrupt or incomplete                13  model cannot be rebuilt (format, layer)
  14  unsafe model refused (Lambda, foreign module, archive path)
  15  golden outputs differ (TensorFlow/Keras mismatch)   20  input refused (schema, NaN, duplicates)
  30  Spark job failed      31  job timeout     32  output locked by another run
  99  incremental run found nothing to do (job.nothing_to_do_exit_code)
  130 interrupted (SIGINT)  143 terminated (SIGTERM): lock released, manifest says interrupted"""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="skol-spark", description="Batch scoring of Keras sequence models on Spark; models kept in Redis.",
        epilog=EXIT_CODES_HELP, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"skol-spark {__version__}")
    parser.add_argument("--debug", action="store_true", help="show tracebacks and debug logs")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("predict", help="score an input table with a model from the store",
                       description="Score every line of every document; see conf/ for config files.",
                       epilog=EXIT_CODES_HELP, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--conf", required=True, metavar="FILE.yaml",
                   help="the YAML job config (required; examples: conf/local.yaml, conf/cluster.yaml, "
                        "conf/databricks/job.yaml); --set overrides single keys")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="SECTION.KEY=VALUE",
                   help="override one config value, e.g. --set output.mode=overwrite (repeatable)")
    p.add_argument("--watermark", metavar="VALUE", help="score only rows with input.watermark_col >= VALUE")
    p.add_argument("--quiet", action="store_true", help="no progress or summary on stderr (for schedulers)")
    p.add_argument("--dry-run", action="store_true", help="parse and print the resolved config, then exit")
    p.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help="show tracebacks and debug logs")

    from skol_spark.cli.model_parser import add_model_parser

    add_model_parser(sub)

    from skol_spark.cli.demo import DEMO_DESCRIPTION, add_demo_arguments
    from skol_spark.report.cli import REPORT_DESCRIPTION, add_report_arguments

    add_report_arguments(sub.add_parser("report", help="rebuild the HTML/PNG report of a finished run (no rescoring)",
                                        description=REPORT_DESCRIPTION))
    add_demo_arguments(sub.add_parser("demo", help="run the end-to-end demo (demo model and corpus, local Spark)",
                                      description=DEMO_DESCRIPTION))
    j = sub.add_parser("jvm-archive", help="record a JVM class archive: faster local Spark starts (once, ~30 s)",
                       description="Record a class-data-sharing archive of the classes a scoring run loads, "
                                   "used from then on by local-master sessions this package starts "
                                   "(job.jvm_class_archive: auto). Stored in $SKOL_SPARK_CACHE_DIR, else "
                                   "$XDG_CACHE_HOME/skol_spark or ~/.cache/skol_spark (~200 MB).")
    j.add_argument("--remove", action="store_true", help="delete this machine's archive instead")
    j.add_argument("--path", action="store_true", help="print where the archive is (or would be) and exit")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as e:  # argparse exits 2 on usage errors, 0 for --help
        return int(e.code or 0)
    setup_logging(debug=args.debug, quiet=getattr(args, "quiet", False))
    from skol_spark.cli.signals import exit_code, interrupts

    try:
        with interrupts():
            return dispatch(args)
    except errors.NothingToDo as e:
        log.warning("%s", e)
        return getattr(e, "exit_code_override", errors.NothingToDo.exit_code)
    except errors.SkolError as e:
        if args.debug:
            log.exception("failed")
        print(f"skol-spark: error: {e}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt as e:  # SIGINT, or SIGTERM (signals.Terminated): cleaned up on the way out
        print(f"skol-spark: interrupted{f' ({e})' if str(e) else ''}", file=sys.stderr)
        return exit_code(e)
    except Exception as e:  # not a SkolError: a bug or an unforeseen failure; one line, the traceback with --debug
        if args.debug:
            log.exception("failed")
        print(f"skol-spark: error: unexpected {type(e).__name__}: {str(e).strip()[:600]} (a bug: please report "
              "it with the output of --debug)", file=sys.stderr)
        return errors.EXIT_UNEXPECTED


def dispatch(args) -> int:
    if args.command == "predict":
        return predict_command(args)
    if args.command == "model":
        from skol_spark.cli.model import model_command

        return model_command(args)
    if args.command == "report":
        from skol_spark.report.build import run_report

        return run_report(args)
    if args.command == "jvm-archive":
        return jvm_archive_command(args)
    if args.command == "demo":
        from skol_spark.cli.demo import run_demo

        return run_demo(args)
    raise errors.ConfigError(f"unknown command {args.command}")  # pragma: no cover


def jvm_archive_command(args) -> int:
    from skol_spark.local import jvm_archive
    from skol_spark.cli import jvm_archive as recorder

    if args.path:
        path = jvm_archive.archive_path()
        print(path if path else "no java found")
        return 0 if path else 2
    if args.remove:
        removed = jvm_archive.remove()
        print(f"removed {removed}" if removed else "no archive to remove")
        return 0
    print(recorder.create(log=lambda m: print(m, file=sys.stderr)))
    return 0


def setup_logging(*, debug: bool = False, quiet: bool = False) -> None:
    level = logging.DEBUG if debug else logging.WARNING if quiet else logging.INFO
    existing = list(logging.getLogger().handlers)
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    for noisy in ("py4j", "tensorflow", "absl", "h5py", "matplotlib", "PIL"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    if not debug:  # one line per error; py4j logs a traceback on the root logger when a signal interrupts a call
        for handler in logging.getLogger().handlers:
            if handler not in existing:  # ours: a host's (a notebook's, pytest's) handlers are left as they are
                handler.addFilter(_NoTraceback())
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


class _NoTraceback(logging.Filter):
    """Drops a record's traceback (the message stays): tracebacks are for ``--debug``."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.exc_info, record.exc_text, record.stack_info = None, None, None
        return True


def predict_command(args, *, spark=None) -> int:
    from skol_spark.job.config import load_config, require_job_fields

    overrides = list(args.overrides)
    if args.watermark is not None:
        overrides.append(f"input.watermark_min={json.dumps(args.watermark)}")
    if args.quiet:
        overrides.append("job.quiet=true")
    config = load_config(args.conf, overrides)
    require_job_fields(config)
    if args.dry_run:
        print(json.dumps(config.redacted(), indent=2))
        return 0
    from skol_spark.cli.signals import reclaim_sigint
    from skol_spark.job.run import run_job
    from skol_spark.job.model_loading import check_model_reachable
    from skol_spark.job.session import build_session, start_tensorflow_import, submitted_with_master
    from skol_spark.report.summary import print_summary

    check_model_reachable(config)  # Redis down / frozen / bad password: fail in seconds, before starting Spark
    owns_session = False
    if spark is None:
        from pyspark.sql import SparkSession

        # Stop only a session this call created: a notebook's or a Databricks job's session outlives the run.
        owns_session = SparkSession.getActiveSession() is None
        submitted = submitted_with_master()
        spark = build_session(master=config.job.master, app_name=config.job.app_name,
                              conf=dict(config.job.spark_conf), class_archive=config.job.jvm_class_archive,
                              preload_tensorflow=not submitted and driver_needs_tensorflow(config),
                              remote=config.job.remote)
        reclaim_sigint()  # pyspark's SIGINT handler cannot cancel a running job (see cli.signals)
        if submitted and driver_needs_tensorflow(config, spark.sparkContext):
            start_tensorflow_import()  # spark-submit chose the master; its JVM is up, the scan not yet started
    log.info("session ready; scoring %s with model %s@%s (the resolved config is in the run manifest)",
             config.input.path or config.input.table, config.model.name, config.model.version)
    log.debug("run config: %s", json.dumps(config.redacted(), sort_keys=True))
    try:
        try:
            result = run_job(spark, config)
        except errors.NothingToDo as e:
            e.exit_code_override = config.job.nothing_to_do_exit_code  # type: ignore[attr-defined]
            raise
        if not config.job.quiet:
            print_summary(result.manifest, stream=sys.stderr)
        print(f"manifest: {result.manifest_path}")
        return 0
    finally:
        if owns_session and not _on_databricks():
            spark.stop()


def driver_needs_tensorflow(config, sc=None) -> bool:
    """False when the run's warm-up will be its smoke test (local masters), so the driver never imports
    TensorFlow and a JVM starting beside it has both cores. Without ``sc``: the session the CLI will build."""
    from skol_spark.local import warm_up_wanted

    if sc is not None:
        return not warm_up_wanted(sc.master, sc.getConf().get("spark.python.worker.reuse", "true"),
                                  config.scoring.warm_up)
    from skol_spark.job.session import connect_remote

    master = connect_remote(config.job.remote) or config.job.master or "local[*]"  # sc://...: not local
    reuse = dict(config.job.spark_conf).get("spark.python.worker.reuse")
    return not warm_up_wanted(master, reuse, config.scoring.warm_up)


def _on_databricks() -> bool:
    return "DATABRICKS_RUNTIME_VERSION" in os.environ


def job_entry() -> None:
    """The ``skol-spark-job`` entry point for Databricks ``python_wheel_task``.

    A wheel task calls the entry point function and ignores what it returns, so
    ``main``'s exit code would be lost and a failed run reported as a success:
    raise ``SystemExit`` with the code instead (0 returns normally).
    """
    code = main()
    if code:
        raise SystemExit(code)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
