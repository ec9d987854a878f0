"""The GPU check (``benchmarks/gpu_check.sh``): golden check, GPU job against CPU job, in-process ceiling.

    PYTHONPATH=. python -m benchmarks.gpu_check [--lines 1000000] [--compare-lines 200000] [--name gpu-check]

(a) the golden check of the benchmark's BiLSTM where TensorFlow scores (the
    GPU if it sees one), with the margins that make its tolerance meaningful:
    float64 numpy against the golden outputs, TF32 on against off;
(b) the job on ``local[*]`` with the GPU visible and with it hidden
    (``CUDA_VISIBLE_DEVICES=``) on the same corpus: every line's
    probabilities compared (max |diff|), lines/s, what the manifests say
    scored; then the GPU job alone at ``--lines`` for throughput;
(c) the in-process ceiling (Keras' traced call on dense windows) at a few
    batch sizes.

Each phase that imports TensorFlow runs in its own process, so that no phase
holds the GPU while the next runs. Writes ``results/<name>.json`` after every
phase (a run cut short keeps what it measured) and ``results/<name>.md``.
Needs only requirements.txt and a redis-server (skol_spark.store.embedded).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks import workload  # noqa: E402
from benchmarks.gpu_report import markdown  # noqa: E402

NO_GPU = {"CUDA_VISIBLE_DEVICES": ""}


# ---- phases run in their own process ----------------------------------------------------------

def phase_golden(redis_url: str) -> dict:
    """(a) Build as a scoring worker does; the golden diff with TF32 off (as scoring) and on, and float64's."""
    import numpy as np

    from benchmarks import numerics
    from benchmarks.variants import load_artifact
    from skol_spark.model import device as devices
    from skol_spark.errors import EnvironmentMismatchError
    from skol_spark.model.artifact import GOLDEN_TOLERANCE, golden_inputs
    from skol_spark.model.builder import build_predictor, configure_tensorflow, make_predict_fn, rebuild_model
    from skol_spark.model.builder import scoring_facts

    device = configure_tensorflow(os.cpu_count() or 1)
    artifact = load_artifact(redis_url)
    golden = artifact.manifest["golden"]
    inputs = golden_inputs(int(golden["seed"]), artifact.window_size, artifact.feature_size)
    expected = np.asarray(golden["outputs"], dtype=np.float64)
    model = rebuild_model(artifact)
    keras_call = make_predict_fn(model)
    try:  # as a scoring worker builds: golden-checked
        predict, error = build_predictor(artifact, line_projection=True, where="gpu check"), ""
    except EnvironmentMismatchError as e:  # measure the margins all the same
        predict, error = keras_call, str(e)

    def diff(fn) -> float:
        return float(np.max(np.abs(np.asarray(fn(inputs), dtype=np.float64) - expected)))

    result = {"passed": not error, "failure": error, "tolerance": GOLDEN_TOLERANCE,
              "facts": scoring_facts(artifact, predict, device),
              "diff_scoring_predictor": diff(predict), "diff_keras_tf32_off": diff(keras_call),
              "diff_float64_numpy": diff(numerics.reference_predict(model)),
              "diff_tf32_emulated_numpy": diff(numerics.reference_predict(model, dtype=np.float32, mantissa_bits=10)),
              "diff_hard_sigmoid_numpy": diff(numerics.reference_predict(model, recurrent_activation="hard_sigmoid"))}
    import tensorflow as tf

    tf.config.experimental.enable_tensor_float_32_execution(True)
    result["diff_keras_tf32_on"] = diff(keras_call)  # equals tf32_off where the device has no TF32 (CPU)
    devices.exact_float32()
    model.set_weights(numerics.swapped_directions(model))  # last: keras_call reads these weights too
    result["diff_swapped_directions"] = diff(keras_call)
    return result


def phase_ceiling(corpus: str, batch_sizes: list[int]) -> dict:
    """(c) Keras' traced call on dense windows, in one process, at each batch size (windows built untimed)."""
    import numpy as np

    from benchmarks.variants import stitch
    from skol_spark.model.builder import configure_tensorflow, make_predict_fn, rebuild_model
    from skol_spark.scoring.windowing import iter_window_batches

    device = configure_tensorflow(os.cpu_count() or 1)
    from benchmarks.variants import load_artifact

    model = rebuild_model(load_artifact(os.environ["SKOL_GPU_CHECK_REDIS"]))
    predict = make_predict_fn(model)
    _, _, feats, lengths = workload.read_corpus(corpus)
    lines = int(np.sum(lengths))
    runs, reference = {}, None
    for batch in batch_sizes:
        batches = list(iter_window_batches(feats, lengths, window=workload.WINDOW, stride=workload.STRIDE,
                                           batch_size=batch))
        predict(batches[0][1][:batch])  # trace and warm up, untimed
        started = time.perf_counter()
        outputs = [predict(w) for _, w in batches]
        seconds = time.perf_counter() - started
        probs = stitch(batches, outputs, lines)
        reference = probs if reference is None else reference
        runs[str(batch)] = {"seconds": round(seconds, 3), "lines_per_second": round(lines / seconds, 1),
                            "max_abs_diff_vs_first_batch_size": float(np.max(np.abs(probs - reference)))}
        del batches, outputs
    return {"device": device.name, "lines": lines, "batch_sizes": runs}


def run_phase(name: str, args: list[str], *, env: dict, timeout: float) -> dict:
    out = Path(env["SKOL_GPU_CHECK_WORK"]) / f"phase-{name}.json"
    cmd = [sys.executable, "-m", "benchmarks.gpu_check", "--phase", name, "--phase-out", str(out), *args]
    try:
        proc = subprocess.run(cmd, env=env, cwd=ROOT, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {timeout:g} s"}
    if proc.returncode != 0:
        return {"error": f"exit {proc.returncode}: {proc.stderr.strip()[-1500:]}"}
    return json.loads(out.read_text())


# ---- (b) the job, GPU visible and hidden -------------------------------------------------------

def run_job(corpus: dict, redis_url: str, work: Path, name: str, *, env: dict, timeout: float) -> dict:
    out = work / name
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    conf = {"redis": {"url": redis_url}, "model": {"name": workload.MODEL_NAME, "version": "production"},
            "input": {"path": corpus["path"], "passthrough": []},
            "output": {"path": str(out / "predictions"), "mode": "overwrite", "report": False},
            "job": {"master": "local[*]", "progress": False, "spark_conf": {"spark.driver.memory": "8g"}}}
    (out / "job.yaml").write_text(json.dumps(conf, indent=2))  # JSON is YAML
    cmd = [sys.executable, "-m", "skol_spark.cli.main", "predict", "--conf", str(out / "job.yaml")]
    started = time.time()
    with open(out / "log.txt", "w") as log:
        try:
            proc = subprocess.run(cmd, env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=log, text=True,
                                  timeout=timeout)
        except subprocess.TimeoutExpired:
            return {"error": f"timed out after {timeout:g} s (log: {out / 'log.txt'})"}
    wall = round(time.time() - started, 3)
    if proc.returncode != 0:
        return {"error": f"exit {proc.returncode}: {(out / 'log.txt').read_text()[-1500:]}", "wall_seconds": wall}
    path = next(x.split(":", 1)[1].strip() for x in proc.stdout.splitlines() if x.startswith("manifest:"))
    manifest = json.loads(Path(path.replace("file:", "")).read_text())
    scoring = manifest["scoring"]
    return {"lines": corpus["lines"], "wall_seconds": wall, "job_seconds": manifest["duration_seconds"],
            "scoring_seconds": scoring["seconds"],
            "lines_per_second": round(corpus["lines"] / manifest["duration_seconds"], 1),
            "partitions": scoring["partitions"], "tf_threads": scoring["tf_threads"],
            "devices": scoring.get("devices"), "workers": scoring.get("workers"),
            "output": str(out / "predictions")}


def compare_outputs(a: str, b: str) -> dict:
    """Every line of two outputs, matched by (doc_id, line_number): max |diff| of the probabilities."""
    import numpy as np
    import pyarrow.dataset as ds

    def load(path):
        table = ds.dataset(path, format="parquet", partitioning="hive", exclude_invalid_files=True).to_table(
            columns=["doc_id", "line_number", "probabilities"])
        table = table.sort_by([("doc_id", "ascending"), ("line_number", "ascending")])
        probs = np.asarray(table.column("probabilities").combine_chunks().flatten(), dtype=np.float64)
        keys = list(zip(table.column("doc_id").to_pylist(), table.column("line_number").to_pylist()))
        return keys, probs.reshape(len(keys), -1)

    (keys_a, pa_), (keys_b, pb) = load(a), load(b)
    if keys_a != keys_b:
        return {"lines": len(keys_a), "problem": f"different lines: {len(set(keys_a) ^ set(keys_b))} not in both"}
    return {"lines": len(keys_a), "max_abs_diff": float(np.max(np.abs(pa_ - pb))) if keys_a else 0.0,
            "same_argmax": bool(np.all(pa_.argmax(1) == pb.argmax(1)))}


# ---- orchestration ----------------------------------------------------------------------------

def machine_facts() -> dict:
    facts = {"cores": os.cpu_count(), "python": sys.version.split()[0]}
    smi = shutil.which("nvidia-smi")
    if smi:
        out = subprocess.run([smi, "--query-gpu=name,memory.total,driver_version", "--format=csv,noheader"],
                             capture_output=True, text=True)
        facts["nvidia_smi"] = out.stdout.strip() or out.stderr.strip()
    return facts


def gpu_verdict(golden: dict, facts: dict) -> str:
    device = (golden.get("facts") or {}).get("device", "")
    if device.startswith("GPU"):
        return device
    if facts.get("nvidia_smi") and "failed" not in facts["nvidia_smi"].lower():
        return ("no GPU found by TensorFlow, although nvidia-smi lists one: a CPU-only TensorFlow or missing CUDA "
                "libraries (pip install 'tensorflow[and-cuda]' matching requirements.txt)")
    return "no GPU found"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--lines", type=int, default=1_000_000, help="corpus of the throughput job (GPU visible)")
    p.add_argument("--compare-lines", type=int, default=200_000,
                   help="corpus scored with the GPU visible and hidden, every line compared")
    p.add_argument("--batch-sizes", default="512,2048,8192", help="ceiling batch sizes (windows per call)")
    p.add_argument("--name", default="gpu-check", help="results file stem under benchmarks/results")
    p.add_argument("--timeout-factor", type=float, default=1.0,
                   help="multiply every step's time limit (together 470 s: the check fits 8 minutes)")
    p.add_argument("--phase", choices=("golden", "ceiling"), help=argparse.SUPPRESS)
    p.add_argument("--phase-out", help=argparse.SUPPRESS)
    p.add_argument("--corpus", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.phase:
        result = phase_golden(os.environ["SKOL_GPU_CHECK_REDIS"]) if args.phase == "golden" else \
            phase_ceiling(args.corpus, [int(b) for b in args.batch_sizes.split(",")])
        Path(args.phase_out).write_text(json.dumps(result, indent=2, default=str))
        return 0
    return check(args)


def check(args) -> int:
    from skol_spark.store.embedded import start_redis

    results = HERE / "results"
    work = results / "tmp" / "gpu-check"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    t0 = time.time()
    report: dict = {"started_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
                    "command": " ".join(["gpu_check", *sys.argv[1:]]), "machine": machine_facts()}

    def save() -> None:
        report["check_seconds"] = round(time.time() - t0, 1)
        (results / f"{args.name}.json").write_text(json.dumps(report, indent=2, default=str))
        (results / f"{args.name}.md").write_text(markdown(report))

    f = args.timeout_factor
    compare_n = min(args.compare_lines, args.lines)
    corpora = {"compare": workload.write_corpus(work / "corpus-compare", compare_n, seed=21)}
    corpora["throughput"] = corpora["compare"] if args.lines == compare_n else \
        workload.write_corpus(work / "corpus-throughput", args.lines, seed=22)
    report["corpora"] = {k: {x: v[x] for x in ("lines", "documents")} for k, v in corpora.items()}
    with start_redis() as redis:
        version, params = workload.publish_model(redis.url)
        report["model"] = {"name": workload.MODEL_NAME, "version": version, "parameters": params}
        env = dict(os.environ, SKOL_GPU_CHECK_REDIS=redis.url, SKOL_GPU_CHECK_WORK=str(work),
                   PYSPARK_PYTHON=sys.executable, PYSPARK_DRIVER_PYTHON=sys.executable, TF_CPP_MIN_LOG_LEVEL="2",
                   PYTHONPATH=os.pathsep.join([str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])]))
        report["golden"] = run_phase("golden", [], env=env, timeout=60 * f)
        report["gpu"] = gpu_verdict(report["golden"], report["machine"])
        save()
        jobs = report.setdefault("jobs", {})
        jobs["visible"] = run_job(corpora["compare"], redis.url, work, "job-visible", env=env,
                                  timeout=100 * f)
        jobs["hidden"] = run_job(corpora["compare"], redis.url, work, "job-hidden", env={**env, **NO_GPU},
                                 timeout=120 * f)
        if "error" not in jobs["visible"] and "error" not in jobs["hidden"]:
            report["agreement"] = compare_outputs(jobs["visible"]["output"], jobs["hidden"]["output"])
        save()
        if corpora["throughput"] is not corpora["compare"]:
            jobs["throughput"] = run_job(corpora["throughput"], redis.url, work, "job-throughput", env=env,
                                         timeout=100 * f)
            save()
        report["ceiling"] = run_phase("ceiling", ["--corpus", corpora["compare"]["path"],
                                                  "--batch-sizes", args.batch_sizes], env=env, timeout=90 * f)
    report["finished_at"] = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
    save()
    print(markdown(report))
    failed = [k for k, v in [("golden", report["golden"]), *report["jobs"].items(), ("ceiling", report["ceiling"])]
              if "error" in v or v.get("passed") is False]
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
