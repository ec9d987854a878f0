"""The non-skol_spark variants, each run in its own process by bench.py:

``python -m benchmarks.variants {ceiling,original,predict_batch_udf,skol_spark_warm} --corpus DIR --redis-url URL --out DIR``

Each writes ``<out>/result.json``; the Spark variants write their per-line output
(doc_id, line_number, probabilities) as Parquet under ``<out>/predictions``, the
ceiling writes ``<out>/probabilities.npy`` in corpus order.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd  # module level: the pandas UDF's type hints must resolve

T0 = time.time()

from benchmarks.workload import FEATURES, LABELS, MODEL_NAME, STRIDE, WINDOW  # noqa: E402

LOSS_NAME = "weighted_categorical_crossentropy"


def load_artifact(redis_url: str):
    from skol_spark.store.connection import RedisSettings, connect
    from skol_spark.store.model_store import ModelStore

    client = connect(RedisSettings(url=redis_url))
    try:
        return ModelStore(client).load(MODEL_NAME, "production")
    finally:
        client.close()


def mark(out: Path, name: str) -> None:
    path = out / f"{name}-{os.getpid()}"
    if not path.exists():
        path.write_text(repr(time.time()))


# ---- ceiling: one process, no Spark ---------------------------------------------------------

def run_ceiling(args) -> dict:
    import tensorflow as tf

    from benchmarks.workload import read_corpus
    from skol_spark.model.builder import configure_tensorflow, rebuild_model
    from skol_spark.scoring.windowing import iter_window_batches

    cores = os.cpu_count() or 1
    configure_tensorflow(cores)
    tf.config.threading.set_inter_op_parallelism_threads(cores)
    artifact = load_artifact(args.redis_url)
    model = rebuild_model(artifact)
    _, _, feats, lengths = read_corpus(args.corpus)
    t = time.perf_counter()
    batches = list(iter_window_batches(feats, lengths, window=WINDOW, stride=STRIDE, batch_size=512))
    build_seconds = time.perf_counter() - t
    spec = tf.TensorSpec([None, WINDOW, FEATURES], tf.float32)
    call = tf.function(lambda x: model(x, training=False), input_signature=[spec])
    methods = {
        "tf_function": lambda x: call(tf.convert_to_tensor(x)).numpy(),
        "predict_on_batch": lambda x: np.asarray(model.predict_on_batch(x)),
        "predict": lambda x: model.predict(x, batch_size=512, verbose=0),
    }
    chosen = args.methods.split(",") if args.methods else list(methods)
    lines = int(np.sum(lengths))
    timings, outputs = {}, None
    for name in chosen:
        fn = methods[name]
        fn(batches[0][1][:64])  # trace / warm up, not timed
        t = time.perf_counter()
        outs = [fn(w) for _, w in batches]
        seconds = time.perf_counter() - t
        timings[name] = {"seconds": round(seconds, 3), "lines_per_second": round(lines / seconds, 1)}
        outputs = outputs if outputs is not None else outs
    best = min(timings, key=lambda k: timings[k]["seconds"])
    probs = stitch(batches, outputs, lines)
    np.save(Path(args.out) / "probabilities.npy", probs)
    return {"variant": "ceiling", "lines": lines, "windows": sum(len(r) for r, _ in batches), "tf_threads": cores,
            "window_build_seconds": round(build_seconds, 3), "methods": timings, "best_method": best,
            "job_seconds": timings[best]["seconds"], "line_projection": time_line_projection(model, feats, batches)}


def time_line_projection(model, feats, batches) -> dict:
    """skol_spark's own predictor (``projection.LinePredictor``) on the same windows, for reference:
    not one of the ceiling's methods, which are Keras' own calls."""
    from skol_spark.model.projection import line_predictor

    fast = line_predictor(model)
    if fast is None:
        return {}
    fast.predict_rows(feats, batches[0][0][:64])  # trace, not timed
    lines = len(feats)
    t = time.perf_counter()
    for rows, _ in batches:
        fast.predict_rows(feats, rows)
    seconds = time.perf_counter() - t
    return {"seconds": round(seconds, 3), "lines_per_second": round(lines / seconds, 1)}


def stitch(batches, outputs, lines: int) -> np.ndarray:
    sums = np.zeros((lines, len(LABELS)))
    counts = np.zeros(lines)
    for (rows, _), out in zip(batches, outputs):
        valid = rows >= 0
        np.add.at(sums, rows[valid], out[valid])
        np.add.at(counts, rows[valid], 1)
    return (sums / counts[:, None]).astype(np.float32)


# ---- Spark variants -------------------------------------------------------------------------

def spark_session():
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    from pyspark.sql import SparkSession

    spark = (SparkSession.builder.master("local[2]").appName("bench")
             .config("spark.driver.memory", "4g")
             .config("spark.sql.execution.arrow.pyspark.enabled", "true")
             .config("spark.python.worker.reuse", "true")
             .config("spark.ui.showConsoleProgress", "false").getOrCreate())
    spark.sparkContext.setLogLevel("ERROR")
    return spark


def standin_objects():
    import keras

    def weighted_categorical_crossentropy(y_true, y_pred):  # prediction never calls it
        return keras.losses.categorical_crossentropy(y_true, y_pred)

    return {LOSS_NAME: weighted_categorical_crossentropy}


def run_original(args, spark) -> dict:
    """The original design: documents collected as rows, a scalar pandas UDF that rebuilds the model
    from JSON on every Arrow batch, densifies and pads with Python lists and calls ``model.predict``."""
    from pyspark.sql import functions as F
    from pyspark.sql import types as T

    t0 = time.time()
    artifact = load_artifact(args.redis_url)
    from skol_spark.model.artifact import decode_weights

    bundle = spark.sparkContext.broadcast((artifact.architecture, decode_weights(artifact.weights)))
    builds = spark.sparkContext.accumulator(0)
    marks = args.marks

    @F.pandas_udf(T.ArrayType(T.ArrayType(T.FloatType())))
    def predict_documents(docs: pd.Series) -> pd.Series:
        import keras

        arch, weights = bundle.value
        model = keras.models.model_from_json(arch, custom_objects=standin_objects())
        model.set_weights(weights)
        builds.add(1)
        results = []
        for doc in docs:
            dense = []
            for row in doc:
                vec = [0.0] * FEATURES
                for i, v in zip(row["indices"], row["values"]):
                    vec[int(i)] = float(v)
                dense.append(vec)
            windows = []
            for start in range(0, len(dense), STRIDE):
                chunk = dense[start:start + WINDOW]
                windows.append(chunk + [[0.0] * FEATURES] * (WINDOW - len(chunk)))
            preds = model.predict(np.array(windows, dtype=np.float32), verbose=0)
            if marks:
                mark(Path(marks), "first_prediction")
            sums = [[0.0] * len(LABELS) for _ in dense]
            counts = [0] * len(dense)
            for w, start in enumerate(range(0, len(dense), STRIDE)):
                for p in range(min(WINDOW, len(dense) - start)):
                    sums[start + p] = [a + float(b) for a, b in zip(sums[start + p], preds[w][p])]
                    counts[start + p] += 1
            results.append([[a / c for a in s] for s, c in zip(sums, counts)])
        return pd.Series(results)

    df = spark.read.parquet(args.corpus)
    docs = (df.groupBy("doc_id")
            .agg(F.sort_array(F.collect_list(F.struct("line_number", "features"))).alias("lines")))
    scored = docs.select("doc_id", F.col("lines.line_number").alias("line_numbers"),
                         predict_documents(F.col("lines.features")).alias("probs"))
    rows = scored.select("doc_id", F.explode(F.arrays_zip("line_numbers", "probs")).alias("z")).select(
        "doc_id", F.col("z.line_numbers").alias("line_number"), F.col("z.probs").alias("probabilities"))
    rows.write.mode("overwrite").parquet(str(Path(args.out) / "predictions"))
    seconds = time.time() - t0
    return {"variant": "original", "job_seconds": round(seconds, 3), "job_started_at": t0, "model_builds": builds.value}


def run_predict_batch_udf(args, spark) -> dict:
    """Spark's built-in ``predict_batch_udf`` over flattened windows; windowing and stitching in Spark SQL."""
    from pyspark.ml.functions import predict_batch_udf
    from pyspark.sql import functions as F
    from pyspark.sql import types as T

    t0 = time.time()
    artifact = load_artifact(args.redis_url)
    from skol_spark.model.artifact import decode_weights

    bundle = spark.sparkContext.broadcast((artifact.architecture, decode_weights(artifact.weights)))
    builds = spark.sparkContext.accumulator(0)
    marks = args.marks

    def make_predict_fn():
        import keras

        arch, weights = bundle.value
        model = keras.models.model_from_json(arch, custom_objects=standin_objects())
        model.set_weights(weights)
        builds.add(1)

        def predict(windows: np.ndarray) -> np.ndarray:
            out = np.asarray(model(windows, training=False))
            if marks:
                mark(Path(marks), "first_prediction")
            return out.reshape(out.shape[0], -1)

        return predict

    predict = predict_batch_udf(make_predict_fn, return_type=T.ArrayType(T.FloatType()), batch_size=512,
                                input_tensor_shapes=[[WINDOW, FEATURES]])
    df = spark.read.parquet(args.corpus)
    lut = F.map_from_arrays(F.col("features.indices"), F.col("features.values"))
    dense = F.transform(F.sequence(F.lit(0), F.lit(FEATURES - 1)),
                        lambda i: F.coalesce(F.element_at(lut, i), F.lit(0.0).cast("float")))
    first = F.greatest(F.lit(0), F.ceil((F.col("line_number") - (WINDOW - 1)) / STRIDE).cast("int")) * STRIDE
    last = F.floor(F.col("line_number") / STRIDE).cast("int") * STRIDE
    lines = df.select("doc_id", "line_number", dense.alias("dense"),
                      F.explode(F.sequence(first, last, F.lit(STRIDE))).alias("start"))
    windows = lines.groupBy("doc_id", "start").agg(
        F.map_from_entries(F.collect_list(F.struct((F.col("line_number") - F.col("start")).alias("pos"),
                                                   "dense"))).alias("rows"))
    zero = F.array_repeat(F.lit(0.0).cast("float"), FEATURES)
    flat = F.flatten(F.transform(F.sequence(F.lit(0), F.lit(WINDOW - 1)),
                                 lambda p: F.coalesce(F.element_at(F.col("rows"), p), zero)))
    scored = windows.select("doc_id", "start", F.size("rows").alias("n"), predict(flat).alias("probs"))
    per_line = scored.select("doc_id", F.explode(F.transform(
        F.sequence(F.lit(0), F.col("n") - 1),
        lambda p: F.struct((F.col("start") + p).alias("line_number"),
                           F.slice(F.col("probs"), p * len(LABELS) + 1, len(LABELS)).alias("p")))).alias("x"))
    per_line = per_line.select("doc_id", "x.line_number", "x.p")
    result = per_line.groupBy("doc_id", "line_number").agg(
        F.array(*[F.avg(F.col("p")[k]).cast("float") for k in range(len(LABELS))]).alias("probabilities"))
    result.write.mode("overwrite").parquet(str(Path(args.out) / "predictions"))
    seconds = time.time() - t0
    return {"variant": "predict_batch_udf", "job_seconds": round(seconds, 3), "job_started_at": t0,
            "model_builds": builds.value}


def run_skol_spark_warm(args, spark) -> dict:
    """skol_spark in a session that already ran it once (a notebook, an all-purpose cluster, a service that
    keeps its driver): the same job twice in one process, the second one timed. It isolates what a cold
    JVM and a fresh Python worker cost the one-shot CLI run (the ``skol_spark`` variant)."""
    from skol_spark.job.config import config_from_dict
    from skol_spark.job.run import run_job

    def config(out: Path):
        return config_from_dict({
            "redis": {"url": args.redis_url}, "model": {"name": MODEL_NAME, "version": "production"},
            "input": {"path": args.corpus, "passthrough": []},
            "output": {"path": str(out), "mode": "overwrite", "report": False},
            "job": {"master": "local[2]", "progress": False, "quiet": True}})

    first = run_job(spark, config(Path(args.out) / "first"))
    second = run_job(spark, config(Path(args.out) / "predictions"))
    return {"variant": "skol_spark_warm", "job_seconds": second.manifest["duration_seconds"],
            "first_job_seconds": first.manifest["duration_seconds"],
            "model_builds": second.manifest["scoring"]["model_builds"], "rows": second.rows_written}


def main(argv=None) -> int:
    p = argparse.ArgumentParser()
    p.add_argument("variant", choices=["ceiling", "original", "predict_batch_udf", "skol_spark_warm"])
    p.add_argument("--corpus", required=True)
    p.add_argument("--redis-url", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--methods", default="")
    p.add_argument("--marks", default="")
    args = p.parse_args(argv)
    Path(args.out).mkdir(parents=True, exist_ok=True)
    if args.variant == "ceiling":
        result = run_ceiling(args)
    else:
        t = time.time()
        if args.variant == "skol_spark_warm":  # the session the CLI would build
            from skol_spark.job.session import build_session

            spark = build_session(master="local[2]", conf={"spark.driver.memory": "4g"})
        else:
            spark = spark_session()
        session_ready = time.time()
        runner = {"original": run_original, "predict_batch_udf": run_predict_batch_udf,
                  "skol_spark_warm": run_skol_spark_warm}[args.variant]
        try:
            result = runner(args, spark)
        finally:
            spark.stop()
        result.update(session_seconds=round(session_ready - T0, 3), session_build_seconds=round(session_ready - t, 3),
                      session_ready_at=session_ready)
    result["process_started_at"] = T0
    (Path(args.out) / "result.json").write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
