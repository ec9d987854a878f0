"""The end-to-end demo: the real job on embedded defaults.

Trains a small BiLSTM with a closure loss on synthetic "pages" whose line
features carry their class, publishes it as model ``demo`` (alias
``production``), writes a corpus of a few thousand documents (with true
labels, so the report has metrics) and runs the real job through
``spark-submit.sh`` on ``local[*]``. The model is published into the store
that ``conf/local.yaml`` reads (``demo_store``), so the README's next
commands find it; ``--stop-redis`` stops a redis-server the demo started.
"""

from __future__ import annotations

import argparse
import logging
import os
import subprocess
import sys
from pathlib import Path

import numpy as np

from skol_spark.job.config import redact_url

log = logging.getLogger(__name__)

LABELS = ["Nomenclature", "Description", "Misc"]
WINDOW, FEATURES, STRIDE = 16, 32, 8
CLASS_MIX = [0.08, 0.27, 0.65]  # imbalanced, like real taxonomic literature


def synthetic_lines(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
    """``(features: float32[n, F], labels: int[n])``: each class lights its own feature band, with noise."""
    labels = rng.choice(len(LABELS), size=n, p=CLASS_MIX)
    x = rng.random((n, FEATURES), dtype=np.float32) * 0.3
    band = FEATURES // len(LABELS)
    for c in range(len(LABELS)):
        rows = labels == c
        x[rows, c * band:(c + 1) * band] += rng.random((int(rows.sum()), band), dtype=np.float32) * 0.22
    return x, labels


def train_demo_model(seed: int = 7):
    import keras

    from skol_spark.model.losses import balanced_class_weights

    keras.utils.set_random_seed(seed)
    rng = np.random.default_rng(seed)
    x, y = synthetic_lines(rng, 400 * WINDOW)
    x, y = x.reshape(-1, WINDOW, FEATURES), y.reshape(-1, WINDOW)
    weights = np.asarray(balanced_class_weights(list(np.bincount(y.ravel(), minlength=len(LABELS)))), "float32")

    def weighted_categorical_crossentropy(y_true, y_pred):  # the closure loss users train with
        y_pred = keras.ops.clip(y_pred, 1e-7, 1.0)
        return -keras.ops.sum(y_true * keras.ops.log(y_pred) * weights, axis=-1)

    inp = keras.Input((WINDOW, FEATURES))
    h = keras.layers.Bidirectional(keras.layers.LSTM(16, return_sequences=True))(inp)
    out = keras.layers.TimeDistributed(keras.layers.Dense(len(LABELS), activation="softmax"))(h)
    model = keras.Model(inp, out)
    model.compile(optimizer=keras.optimizers.Adam(0.01), loss=weighted_categorical_crossentropy,
                  metrics=["accuracy"])
    model.fit(x, keras.utils.to_categorical(y, len(LABELS)), epochs=4, batch_size=32, verbose=0)
    return model


def write_corpus(path: Path, *, documents: int, seed: int = 11) -> int:
    """Parquet corpus: doc_id, line_number, features array<float>, gold_label. Returns lines written."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    rng = np.random.default_rng(seed)
    lengths = np.clip(rng.lognormal(mean=np.log(15), sigma=0.8, size=documents).astype(int), 1, 400)
    total = int(lengths.sum())
    x, y = synthetic_lines(rng, total)
    doc_ids = np.repeat([f"doc-{i:05d}" for i in range(documents)], lengths)
    line_numbers = np.concatenate([np.arange(n) for n in lengths])
    features = pa.FixedSizeListArray.from_arrays(pa.array(x.ravel()), FEATURES).cast(pa.list_(pa.float32()))
    table = pa.table({"doc_id": doc_ids, "line_number": line_numbers.astype(np.int32), "features": features,
                      "gold_label": np.asarray(LABELS)[y]})
    path.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, path / "part-00000.parquet")
    return total


def add_demo_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """The arguments of ``skol-spark demo``: one definition for the CLI's subcommand and ``demo_main``."""
    parser.add_argument("--workdir", default="demo-data",
                        help="where the corpus, the job config and a started redis-server's files go "
                             "(default demo-data, which conf/local.yaml reads)")
    parser.add_argument("--output", default="demo-output/predictions", help="output path")
    parser.add_argument("--documents", type=int, default=3000, help="documents in the demo corpus (default 3000)")
    parser.add_argument("--master", default="local[*]")
    parser.add_argument("--stop-redis", action="store_true",
                        help="stop the redis-server an earlier demo started and left running, then exit")
    parser.add_argument("--text", action="store_true", help="score plain-text documents through a feature pipeline "
                                                             "stored with the model (docs/text.md)")
    return parser


def demo_main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="skol-spark demo", description=DEMO_DESCRIPTION)
    try:
        args = add_demo_arguments(parser).parse_args(argv)
    except SystemExit as e:  # --help, or a usage error argparse already printed
        return int(e.code or 0)
    return run_demo(args)


DEMO_DESCRIPTION = (
    "Run the real job end to end: train and publish a demo model, write a demo corpus, score it with "
    "spark-submit.sh on a local master. The model goes to $SKOL_REDIS_URL, else the Redis on "
    "127.0.0.1:6379 (a redis-server the demo starts and leaves running when none answers there; "
    "--stop-redis stops it), so that `skol-spark predict --conf conf/local.yaml` works afterwards.")


def run_demo(args: argparse.Namespace) -> int:
    from skol_spark.cli import demo_store

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    workdir = Path(args.workdir)
    if args.stop_redis:
        print(demo_store.stop_kept_server(workdir))
        return 0
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    store = demo_store.choose_store(workdir)
    log.info("publishing the demo model into %s (%s)", redact_url(store.url), STORE_ORIGINS[store.origin])
    if args.text:
        from skol_spark.cli.demo_text import run_text_demo
        from skol_spark.store.connection import RedisSettings, connect
        from skol_spark.store.model_store import ModelStore

        code = run_text_demo(ModelStore(connect(RedisSettings(url=store.url))), workdir, args,
                             lambda conf: launch(conf, args.master, store.url))
    else:
        publish_demo(store.url, workdir, documents=args.documents)
        conf = workdir / "demo.yaml"
        conf.write_text(DEMO_CONF.format(input=(workdir / "corpus.parquet").resolve(),
                                         output=Path(args.output).resolve(), master=args.master))
        code = launch(conf, args.master, store.url)
    print(next_steps(store, workdir), file=sys.stderr)
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


def publish_demo(url: str, workdir: Path, *, documents: int) -> None:
    """Train and publish the demo model (alias ``production``) and write the corpus under ``workdir``."""
    from skol_spark.store.connection import RedisSettings, connect
    from skol_spark.store.model_store import ModelStore

    log.info("training the demo BiLSTM (closure loss weighted_categorical_crossentropy)…")
    store = ModelStore(connect(RedisSettings(url=url)))
    version = store.publish(train_demo_model(), "demo", labels=LABELS, stride=STRIDE, aliases=["production"],
                            feature_kind="dense", notes="skol_spark demo model")
    lines = write_corpus(workdir / "corpus.parquet", documents=documents)
    log.info("published demo v%d; wrote %d documents, %d lines", version, documents, lines)


def next_steps(store, workdir: Path) -> str:
    """What the user can run now, and how to undo what the demo left behind."""
    from skol_spark.cli.demo_store import pid_file

    lines = [f"\nThe demo model stays in the store at {redact_url(store.url)} (model 'demo', alias production)."]
    if store.origin == "started":
        lines.append(f"It lives in a redis-server the demo started (pid file {pid_file(workdir)}); "
                     "stop it with: ./jobs/demo.sh --stop-redis")
    lines.append("Next: .venv/bin/skol-spark predict --conf conf/local.yaml    (README, \"A first real run\")")
    return "\n".join(lines)


DEMO_CONF = """# Written by skol-spark demo. Redis comes from $SKOL_REDIS_URL.
model:
  name: demo
  version: production
input:
  path: {input}
  label_col: gold_label
output:
  path: {output}
  mode: overwrite
job:
  master: {master}
"""


if __name__ == "__main__":  # pragma: no cover
    sys.exit(demo_main())
