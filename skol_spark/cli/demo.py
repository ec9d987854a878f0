"""The end-to-end demo: the real job on embedded defaults.

By default the demo speaks text (``demo_text.py``): it fits a feature pipeline
on synthetic taxonomic text, trains a small BiLSTM on its output, publishes
both as model ``demo`` (alias ``production``), writes documents as plain text,
runs the real job through ``spark-submit.sh`` on ``local[*]`` and prints a few
annotated blocks after the summary. ``--vectors`` runs the vector demo instead
(``demo_vectors.py``: model ``demo-vectors`` on ready-made feature vectors, with
true labels so the report has metrics). The model is published into the store
that ``conf/local.yaml`` reads (``demo_store``), and the text demo writes its
documents where ``conf/local.yaml`` looks, so the README's next commands find
both; ``--stop-redis`` stops a redis-server the demo started.
"""

from __future__ import annotations

import argparse
import logging
import os
import subprocess
import sys
from pathlib import Path

from skol_spark.job.config import redact_url

log = logging.getLogger(__name__)

DEFAULT_WORKDIR, DEFAULT_OUTPUT = "demo-data", "demo-output/predictions"  # the paths conf/local.yaml reads


def add_demo_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """The arguments of ``skol-spark demo``: one definition for the CLI's subcommand and ``demo_main``."""
    parser.add_argument("--workdir", default=DEFAULT_WORKDIR,
                        help=f"where the documents, the job config and a started redis-server's files go "
                             f"(default {DEFAULT_WORKDIR}, which conf/local.yaml reads)")
    parser.add_argument("--output", default=DEFAULT_OUTPUT,
                        help=f"output path (default {DEFAULT_OUTPUT}; the text demo's annotated documents go "
                             "beside it, in annotated/)")
    parser.add_argument("--documents", type=int, default=3000, help="documents in the demo corpus (default 3000)")
    parser.add_argument("--master", default="local[*]")
    parser.add_argument("--stop-redis", action="store_true",
                        help="stop the redis-server an earlier demo started and left running, then exit")
    kind = parser.add_mutually_exclusive_group()
    kind.add_argument("--vectors", dest="kind", action="store_const", const="vectors",
                      help="the vector demo instead: model demo-vectors scores ready-made feature vectors with "
                           "true labels (per-class metrics in the report); its config is written to "
                           "WORKDIR/demo-vectors.yaml")
    kind.add_argument("--text", dest="kind", action="store_const", const="text",
                      help="the text demo, the default (kept so older commands work): model demo and its feature "
                           "pipeline score plain-text documents (docs/text.md)")
    parser.set_defaults(kind="text")
    return parser


def demo_main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="skol-spark demo", description=DEMO_DESCRIPTION)
    try:
        args = add_demo_arguments(parser).parse_args(argv)
    except SystemExit as e:  # --help, or a usage error argparse already printed
        return int(e.code or 0)
    return run_demo(args)


DEMO_DESCRIPTION = (
    "Run the real job end to end on a local master. By default, in text: fit a feature pipeline on synthetic "
    "taxonomic text, train a demo model on its output, publish both as model 'demo' (alias production), score "
    "documents given as plain text with spark-submit.sh and print a few annotated blocks after the summary; "
    "`skol-spark predict --conf conf/local.yaml` runs the same job afterwards. --vectors runs the vector demo "
    "instead (model 'demo-vectors', feature vectors in, per-class metrics out). The model goes to "
    "$SKOL_REDIS_URL, else the Redis on 127.0.0.1:6379 (a redis-server the demo starts and leaves running when "
    "none answers there; --stop-redis stops it).")


def run_demo(args: argparse.Namespace) -> int:
    from skol_spark.cli import demo_store
    from skol_spark.store.connection import RedisSettings, connect
    from skol_spark.store.model_store import ModelStore

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    workdir = Path(args.workdir)
    if args.stop_redis:
        print(demo_store.stop_kept_server(workdir))
        return 0
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    store = demo_store.choose_store(workdir)
    log.info("publishing the demo model into %s (%s)", redact_url(store.url), STORE_ORIGINS[store.origin])
    models = ModelStore(connect(RedisSettings(url=store.url)))
    if args.kind == "vectors":
        from skol_spark.cli.demo_vectors import MODEL, run_vector_demo as run_kind
    else:
        from skol_spark.cli.demo_text import MODEL, run_text_demo as run_kind
    code, conf = run_kind(models, workdir, args, lambda path: launch(path, args.master, store.url))
    print(next_steps(store, workdir, MODEL, next_conf(args, conf)), file=sys.stderr)
    return code


def launch(conf: Path, master: str, url: str) -> int:
    """Run the job on ``conf`` through spark-submit.sh (or the CLI, installed from a wheel)."""
    env = {**os.environ, "SKOL_REDIS_URL": url}
    launcher = Path(__file__).resolve().parent.parent.parent / "spark-submit.sh"
    if launcher.exists():
        cmd = [str(launcher), str(conf), "--master", master]
    else:  # installed from a wheel: run the same main() in-process
        cmd = [sys.executable, "-m", "skol_spark.cli", "predict", "--conf", str(conf)]
    log.info("running: %s", " ".join(cmd))
    return subprocess.call(cmd, env=env)


STORE_ORIGINS = {"SKOL_REDIS_URL": "from SKOL_REDIS_URL", "running": "the Redis already running there",
                 "started": "a redis-server started for the demo, left running"}


def next_conf(args: argparse.Namespace, written: Path) -> str:
    """The config to run next: conf/local.yaml for the text demo on its default paths, else the one written."""
    same = [Path(mine).resolve() == Path(default).resolve()
            for mine, default in ((args.workdir, DEFAULT_WORKDIR), (args.output, DEFAULT_OUTPUT))]
    if args.kind == "text" and all(same):
        return "conf/local.yaml"
    return str(written)


def next_steps(store, workdir: Path, model: str, conf: str) -> str:
    """What the user can run now, and how to undo what the demo left behind."""
    from skol_spark.cli.demo_store import pid_file

    lines = [f"\nThe demo model stays in the store at {redact_url(store.url)} (model '{model}', alias production)."]
    if store.origin == "started":
        lines.append(f"It lives in a redis-server the demo started (pid file {pid_file(workdir)}); "
                     "stop it with: ./jobs/demo.sh --stop-redis")
    lines.append(f"Next: .venv/bin/skol-spark predict --conf {conf}    (README, \"A first real run\")")
    return "\n".join(lines)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(demo_main())
