"""skol_spark benchmark: one run builds the workload, runs every variant at two scales, reports.

    PYTHONPATH=/work/main .venv/bin/python benchmarks/bench.py [--scale 0.2] \
        [--variants ceiling,skol_spark,original,predict_batch_udf,text_vectors,text]

See benchmarks/README.md for what each variant is and what the columns mean.
Results: benchmarks/results/latest.json and latest.md (scratch data under results/tmp/).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks import text_workload, workload  # noqa: E402

VARIANTS = ("ceiling", "skol_spark", "skol_spark_warm", "original", "predict_batch_udf", *text_workload.VARIANTS)
BASE_LINES = (50_000, 200_000)
JVM_CACHE = HERE / "results" / "tmp" / "jvm-cache"


# ---- process running and memory polling ------------------------------------------------------

class RssMonitor:
    """Poll a process tree: peak RSS of the JVM, of each / all Python workers, and of the root."""

    def __init__(self, pid: int, interval: float = 0.2) -> None:
        import psutil

        self.root = psutil.Process(pid)
        self.interval = interval
        self.peaks = {"driver_mb": 0.0, "jvm_mb": 0.0, "worker_max_mb": 0.0, "workers_total_mb": 0.0,
                      "tree_total_mb": 0.0, "python_workers_seen": 0}
        self._seen: set[int] = set()
        self._cpu: dict[int, float] = {}
        self.load = [os.getloadavg()[0]]
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join(timeout=5)

    def _run(self) -> None:
        import psutil

        while not self._stop.is_set():
            try:
                procs = [self.root] + self.root.children(recursive=True)
            except psutil.Error:
                return
            workers = total = 0.0
            for p in procs:
                try:
                    rss = p.memory_info().rss / 2**20
                    name, cmd = p.name(), " ".join(p.cmdline())
                    cpu = p.cpu_times()
                    self._cpu[p.pid] = cpu.user + cpu.system
                except psutil.Error:
                    continue
                total += rss
                if p.pid == self.root.pid:
                    self.peaks["driver_mb"] = max(self.peaks["driver_mb"], rss)
                elif name == "java" or "java" in cmd.split(" ")[0]:
                    self.peaks["jvm_mb"] = max(self.peaks["jvm_mb"], rss)
                elif "pyspark.daemon" in cmd or "pyspark.worker" in cmd or "python" in name:
                    workers += rss
                    if rss > 200:  # a forked worker that did real work (the daemon itself is ~50 MB)
                        self._seen.add(p.pid)
                    self.peaks["worker_max_mb"] = max(self.peaks["worker_max_mb"], rss)
            self.peaks["workers_total_mb"] = max(self.peaks["workers_total_mb"], workers)
            self.peaks["tree_total_mb"] = max(self.peaks["tree_total_mb"], total)
            self.peaks["python_workers_seen"] = len(self._seen)
            self.load.append(os.getloadavg()[0])
            self._stop.wait(self.interval)

    def cpu_seconds(self) -> float:
        """CPU seconds of the tree (user + system), summed over every process seen (less load-sensitive)."""
        return round(sum(self._cpu.values()), 1)


def run_process(cmd: list[str], *, env: dict[str, str], log_path: Path, timeout: float = 1800,
                cwd: Path = ROOT) -> dict:
    started = time.time()
    with open(log_path, "w") as log:
        proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=log, text=True, cwd=cwd)
        with RssMonitor(proc.pid) as monitor:
            try:
                stdout, _ = proc.communicate(timeout=timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                stdout, _ = proc.communicate()
    wall = time.time() - started
    if proc.returncode != 0:
        tail = log_path.read_text()[-3000:]
        raise RuntimeError(f"{' '.join(cmd[:6])} ... exited {proc.returncode}; log {log_path}:\n{tail}")
    return {"started_at": started, "wall_seconds": round(wall, 3), "stdout": stdout,
            "memory": {k: round(v, 1) for k, v in monitor.peaks.items()}, "cpu_seconds": monitor.cpu_seconds(),
            "load_average": round(sum(monitor.load) / len(monitor.load), 2)}


def child_env(marks: Path, src: Path | None = None, path_prefix: str = "") -> dict[str, str]:
    env = dict(os.environ)
    extra = ([path_prefix] if path_prefix else []) + [str(src or ROOT), str(HERE / "hooks")]
    env["PYTHONPATH"] = os.pathsep.join(extra + [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p])
    env["PYSPARK_PYTHON"] = sys.executable
    env["PYSPARK_DRIVER_PYTHON"] = sys.executable
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    env["SKOL_BENCH_MARKS"] = str(marks)
    env["SKOL_SPARK_CACHE_DIR"] = str(JVM_CACHE)  # the JVM class archive this run recorded (or none)
    marks.mkdir(parents=True, exist_ok=True)
    return env


def first_mark(marks: Path, name: str) -> float | None:
    times = [float(p.read_text()) for p in marks.glob(f"{name}-*")]
    return min(times) if times else None


# ---- variants ---------------------------------------------------------------------------------

def run_dir(work: Path, variant: str, corpus: dict, attempt: int = 0) -> Path:
    """Each run's own directory: a repeated run must not overwrite the output the median may point at."""
    return work / (f"{variant}-{corpus['lines']}" + (f"-r{attempt}" if attempt else ""))


def run_helper(variant: str, corpus: dict, redis_url: str, work: Path, *, methods: str = "",
               attempt: int = 0) -> dict:
    out = run_dir(work, variant, corpus, attempt)
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    marks = out / "marks"
    cmd = [sys.executable, "-m", "benchmarks.variants", variant, "--corpus", corpus["path"], "--redis-url",
           redis_url, "--out", str(out), "--marks", str(marks)]
    if methods:
        cmd += ["--methods", methods]
    proc = run_process(cmd, env=child_env(marks), log_path=out / "log.txt")
    result = json.loads((out / "result.json").read_text())
    result.update(wall_seconds=proc["wall_seconds"], memory=proc["memory"], lines=corpus["lines"],
                  cpu_seconds=proc["cpu_seconds"], load_average=proc["load_average"],
                  output=str(out / ("probabilities.npy" if variant == "ceiling" else "predictions")))
    if variant != "ceiling":
        result["session_seconds"] = round(result["session_ready_at"] - proc["started_at"], 3)
        first = first_mark(marks, "first_prediction")
        if first and "job_started_at" in result:
            result["first_prediction_seconds"] = round(first - result["job_started_at"], 3)
    return result


def run_skol_spark(corpus: dict, redis_url: str, work: Path, overrides: list[str],
                   variant: str = "skol_spark", src: Path | None = None, attempt: int = 0,
                   path_prefix: str = "") -> dict:
    out = run_dir(work, variant, corpus, attempt)
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    marks = out / "marks"
    conf = {
        "redis": {"url": redis_url},
        "model": {"name": workload.MODEL_NAME, "version": "production"},
        "input": {"path": corpus["path"], "passthrough": []},
        "output": {"path": str(out / "predictions"), "mode": "overwrite", "report": False},
        "job": {"master": "local[2]", "progress": False,
                "spark_conf": {"spark.driver.memory": "4g", "spark.eventLog.enabled": "true",
                               "spark.eventLog.dir": str(out), "spark.eventLog.compress": "false"}},
    }
    (out / "job.yaml").write_text(json.dumps(conf, indent=2))  # JSON is YAML
    cmd = [sys.executable, "-m", "skol_spark.cli", "predict", "--conf", str(out / "job.yaml")]
    for item in overrides:
        cmd += ["--set", item]
    # `python -m` puts the working directory first on sys.path, before PYTHONPATH, and the JVM and its
    # Python workers inherit it: a baseline run from another revision must start in that source tree
    tree = src or ROOT
    proc = run_process(cmd, env=child_env(marks, src, path_prefix), log_path=out / "log.txt", cwd=tree)
    check_package_source(marks, tree)
    manifest_path = next(line.split(":", 1)[1].strip() for line in proc["stdout"].splitlines()
                         if line.startswith("manifest:"))
    manifest = json.loads(Path(manifest_path.replace("file:", "")).read_text())
    ready = session_ready_at(out / "log.txt")
    result = {"variant": variant, "lines": corpus["lines"], "job_seconds": manifest["duration_seconds"],
              "scoring_seconds": manifest.get("scoring", {}).get("seconds"),
              "model_builds": manifest.get("scoring", {}).get("model_builds"),
              "rows_written": manifest.get("output", {}).get("rows_written"),
              "wall_seconds": proc["wall_seconds"], "memory": proc["memory"], "overrides": overrides,
              "cpu_seconds": proc["cpu_seconds"], "load_average": proc["load_average"],
              "output": str(out / "predictions"), "manifest": manifest_path}
    if ready:
        result["session_seconds"] = round(ready - proc["started_at"], 3)
        first = first_mark(marks, "first_prediction")
        if first:
            result["first_prediction_seconds"] = round(first - ready, 3)
    result["stages"] = stage_times(out, ready or 0.0)
    return result


def check_package_source(marks: Path, root: Path) -> None:
    """Every process that scored must have imported skol_spark from ``root`` (a wrong tree makes an A/B void)."""
    origins = {p.read_text() for p in marks.glob("package-*")}
    if not origins:
        raise RuntimeError(f"no process recorded where it imported skol_spark from ({marks}); is hooks/ on PYTHONPATH?")
    stray = sorted(o for o in origins if not Path(o).is_relative_to(root / "skol_spark"))
    if stray:
        raise RuntimeError(f"a run meant to use {root} imported skol_spark from elsewhere: {stray}")


def session_ready_at(log_path: Path) -> float | None:
    """Time of the CLI's 'session ready' log line ('run config' before 2026-12-07): the SparkSession exists
    and the job starts."""
    for line in log_path.read_text().splitlines():
        if "session ready;" in line or "run config:" in line:
            stamp = line[:23]
            return dt.datetime.strptime(stamp, "%Y-%m-%d %H:%M:%S,%f").timestamp()
    return None


def stage_times(directory: Path, origin: float = 0.0) -> list[dict]:
    """Stages from the Spark event log: name, tasks, seconds (where skol_spark's job time goes)."""
    logs = sorted(p for p in directory.rglob("*local-*") if p.is_file() and not p.name.startswith("appstatus"))
    stages = []
    if not logs:
        return stages
    text = "\n".join(p.read_text() for p in logs)
    for line in text.splitlines():
        if '"SparkListenerStageCompleted"' not in line:
            continue
        info = json.loads(line)["Stage Info"]
        if "Submission Time" in info and "Completion Time" in info:
            stages.append({"stage": info["Stage ID"], "name": info["Stage Name"].split(" at ")[0],
                           "tasks": info["Number of Tasks"],
                           "start": round(info["Submission Time"] / 1000 - origin, 3) if origin else None,
                           "seconds": round((info["Completion Time"] - info["Submission Time"]) / 1000, 3)})
    return stages


# ---- checks and report ------------------------------------------------------------------------

def corpus_keys(corpus: dict):
    import pandas as pd
    import pyarrow.parquet as pq

    table = pq.read_table(corpus["path"], columns=["doc_id", "line_number"])
    keys = table.to_pandas()
    keys["row"] = range(len(keys))
    return keys.set_index(["doc_id", "line_number"])["row"], pd


def load_probabilities(result: dict, corpus: dict, keys):
    import numpy as np
    import pyarrow.parquet as pq

    if result["variant"] == "ceiling":
        return np.load(result["output"]), None
    table = pq.read_table(result["output"], columns=["doc_id", "line_number", "probabilities"])
    frame = table.select(["doc_id", "line_number"]).to_pandas()
    rows = keys.reindex(list(zip(frame["doc_id"], frame["line_number"]))).to_numpy()
    probs = np.asarray(table.column("probabilities").combine_chunks().flatten().to_numpy(zero_copy_only=False),
                       dtype=np.float32).reshape(len(frame), -1)
    problems = []
    if np.isnan(rows.astype(float)).any():
        problems.append("rows not in the input")
    rows = rows.astype(np.int64)
    if len(rows) != corpus["lines"] or len(np.unique(rows)) != corpus["lines"]:
        problems.append(f"{len(rows)} rows for {corpus['lines']} lines ({len(np.unique(rows))} distinct)")
    out = np.full((corpus["lines"], probs.shape[1]), np.nan, dtype=np.float32)
    out[rows] = probs
    return out, "; ".join(problems) or None


def agreement(results: dict, corpora: dict, text_corpora: dict | None = None) -> dict:
    """Per variant and scale, the largest probability difference to its reference: the ceiling for the
    vector corpus' variants, the vector path (``text_vectors``) for the text path on the same lines."""
    report = {}
    for size, corpus in corpora.items():
        runs = {v: r[size] for v, r in results.items() if size in r}
        text = {v: r for v, r in runs.items() if v in text_workload.VARIANTS}
        compare(report, size, {v: r for v, r in runs.items() if v not in text}, corpus, "ceiling")
        if text:
            compare(report, size, text, text_corpora[size]["text"], "text_vectors")
    return report


def compare(report: dict, size: str, runs: dict, corpus: dict, preferred: str) -> None:
    import numpy as np

    if not runs:
        return
    keys, _ = corpus_keys(corpus)
    loaded = {v: load_probabilities(r, corpus, keys) for v, r in runs.items()}
    reference = preferred if preferred in loaded else next(iter(loaded))
    for variant, (probs, problem) in loaded.items():
        ref = loaded[reference][0]
        diff = float(np.nanmax(np.abs(probs - ref))) if len(probs) else 0.0
        report.setdefault(variant, {})[size] = {"reference": reference, "max_abs_diff": diff,
                                               "missing_lines": int(np.isnan(probs).any(axis=1).sum()),
                                               "problem": problem}


def summarize(results: dict, sizes: list[str]) -> dict:
    small, large = sizes
    summary = {}
    ceiling = results.get("ceiling", {})
    for variant, runs in results.items():
        row = {}
        for size in sizes:
            r = runs.get(size)
            if not r:
                continue
            rate = r["lines"] / r["job_seconds"]
            row[size] = {"lines_per_second": round(rate, 1)}
            if size in ceiling:
                row[size]["ratio_to_ceiling"] = round(rate / (ceiling[size]["lines"] / ceiling[size]["job_seconds"]), 3)
                projection = (ceiling[size].get("line_projection") or {}).get("lines_per_second")
                if projection:  # the headline: the one-shot job against its own predictor in one process
                    row[size]["ratio_to_line_projection"] = round(rate / projection, 3)
        if small in runs and large in runs:
            a, b = runs[small], runs[large]
            if b["job_seconds"] <= a["job_seconds"]:  # noise swamped the extra work: no meaningful rate
                row["marginal_note"] = "large-scale job not slower than small-scale job (noise)"
                summary[variant] = row
                continue
            marginal = (b["lines"] - a["lines"]) / (b["job_seconds"] - a["job_seconds"])
            row["marginal_lines_per_second"] = round(marginal, 1)
            row["fixed_seconds"] = round(b["job_seconds"] - b["lines"] / marginal, 2)
            if "ceiling" in results and variant != "ceiling" and small in ceiling and large in ceiling:
                cm = (ceiling[large]["lines"] - ceiling[small]["lines"]) / max(
                    1e-9, ceiling[large]["job_seconds"] - ceiling[small]["job_seconds"])
                best = ceiling[large]["lines"] / ceiling[large]["job_seconds"]
                row["marginal_ratio_to_ceiling"] = round(marginal / best, 3)
                row["ceiling_marginal_lines_per_second"] = round(cm, 1)
        summary[variant] = row
    if "skol_spark" in summary:
        for other in ("original", "predict_batch_udf", "skol_spark_baseline"):
            if other in results and large in results[other] and large in results["skol_spark"]:
                summary["skol_spark"][f"speedup_vs_{other}_{large}"] = round(
                    results[other][large]["job_seconds"] / results["skol_spark"][large]["job_seconds"], 2)
    for size, ratio in text_workload.path_ratios(results, sizes).items():
        summary["text"][size]["ratio_to_vector_path"] = ratio
    return summary


def _job_cell(r: dict) -> str:
    """Job seconds; with repeats, the median and the range of all runs."""
    times = r.get("job_seconds_runs") or []
    spread = f" ({min(times):.1f}–{max(times):.1f})" if len(times) > 1 else ""
    return f"{r['job_seconds']:.1f}{spread}"


def markdown(report: dict) -> str:
    sizes = report["sizes"]
    res, summ, agree = report["results"], report["summary"], report["agreement"]
    lines = [f"# skol_spark benchmark ({report['finished_at']})", "",
             f"Machine: {report['machine']['cores']} cores, {report['machine']['memory_gb']} GB; model "
             f"{report['model']['parameters']:,} params, window {workload.WINDOW}, stride {workload.STRIDE}, "
             f"{workload.FEATURES} features (sparse struct, ~{workload.NNZ_PER_LINE} nnz/line); Spark local[2].", "",
             *([f"Ceiling and skol_spark rows: the run with the median job time of {report['repeat']} (the range "
                "in brackets); the original design and predict_batch_udf ran once.", ""]
               if report.get("repeat", 1) > 1 else []),
             *headline(report),
             *text_workload.headline(text_workload.path_ratios(res, sizes)),
             "| variant | lines | job s | lines/s | x ceiling | session s | 1st pred s | builds | "
             "JVM MB | worker MB (max/total) | CPU s | load | max abs diff |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for variant, runs in res.items():
        for size in sizes:
            r = runs.get(size)
            if not r:
                continue
            s = summ[variant].get(size, {})
            m = r.get("memory", {})
            a = agree.get(variant, {}).get(size, {})
            lines.append(
                f"| {variant} | {r['lines']:,} | {_job_cell(r)} | {s.get('lines_per_second', 0):,.0f} | "
                f"{s.get('ratio_to_ceiling', float('nan')):.2f} | {_f(r.get('session_seconds'))} | "
                f"{_f(r.get('first_prediction_seconds'))} | {r.get('model_builds', '')} | "
                f"{m.get('jvm_mb', 0):,.0f} | {m.get('worker_max_mb', 0):,.0f}/{m.get('workers_total_mb', 0):,.0f} | "
                f"{_f(r.get('cpu_seconds'), 0)} | {_f(r.get('load_average'), 1)} | "
                f"{a.get('max_abs_diff', float('nan')):.1e}{' ' + a['problem'] if a.get('problem') else ''} |")
    lines += ["", "| variant | marginal lines/s | marginal x ceiling | fixed s (job - lines/marginal) | speedups |",
              "|---|---:|---:|---:|---|"]
    for variant, s in summ.items():
        speed = ", ".join(f"{k.replace('speedup_vs_', 'vs ')}: {v}x" for k, v in s.items() if k.startswith("speedup"))
        lines.append(f"| {variant} | {_f(s.get('marginal_lines_per_second'), 0)} | "
                     f"{_f(s.get('marginal_ratio_to_ceiling'), 2)} | {_f(s.get('fixed_seconds'), 1)} | {speed} |")
    if "ceiling" in res:
        lines += ["", "Ceiling methods (batch 512, TF threads = cores):", ""]
        for size, r in res["ceiling"].items():
            meth = ", ".join(f"{k} {v['lines_per_second']:,.0f} lines/s" for k, v in r["methods"].items())
            lines.append(f"- {size}: {meth} (best: {r['best_method']})")
            lp = r.get("line_projection") or {}
            if lp:
                ratio = lp["lines_per_second"] * r["job_seconds"] / r["lines"]
                lines.append(f"  - skol_spark's line-projection predictor on the same windows (not a ceiling method): "
                             f"{lp['lines_per_second']:,.0f} lines/s, {ratio:.2f}x the ceiling")
    if report.get("jvm_archive_seconds") is not None:
        lines += ["", f"skol_spark variants used the JVM class archive recorded once at setup "
                      f"(`skol-spark jvm-archive`, {report['jvm_archive_seconds']} s)."]
    lines += text_workload.note(report.get("text"))
    for name in ("skol_spark_baseline", "skol_spark"):
        if name in res and res[name]:
            overrides = next(iter(res[name].values())).get("overrides") or []
            if overrides:
                lines += ["", f"{name} overrides: {' '.join(overrides)}"]
    if report.get("baseline_ref"):
        lines += ["", f"skol_spark_baseline ran the package source of git revision {report['baseline_ref']}."]
    if report.get("baseline_pythonpath"):
        lines += ["", f"skol_spark_baseline ran with `{report['baseline_pythonpath']}` first on its PYTHONPATH."]
    if "skol_spark" in res:
        lines += ["", "skol_spark Spark stages (event log; name[tasks] @start s after job start, duration):", ""]
        for size, r in res["skol_spark"].items():
            st = ", ".join(f"{s['name']}[{s['tasks']}] @{_f(s.get('start'))} {s['seconds']:.1f}s"
                           for s in r.get("stages", []))
            lines.append(f"- {size}: {st}")
    return "\n".join(lines) + "\n"


def headline(report: dict) -> list[str]:
    """The benchmark's headline: the one-shot job's lines/s against skol_spark's line-projection predictor
    called in one process on prebuilt windows (the same model, the same windows), per scale."""
    job = report["summary"].get("skol_spark", {})
    cells = [f"{size}: {job[size]['ratio_to_line_projection']:.2f}x" for size in report["sizes"]
             if "ratio_to_line_projection" in job.get(size, {})]
    if not cells:
        return []
    return [f"**Headline: the one-shot job's lines/s over the in-process line-projection predictor's, "
            f"{', '.join(cells)}** (goal at the large scale: >= 0.90x).", ""]


def _f(value, digits: int = 1) -> str:
    return "–" if value is None else f"{value:,.{digits}f}"


# ---- main -------------------------------------------------------------------------------------

def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--scale", type=float, default=1.0, help="multiply both corpus sizes (50k, 200k lines)")
    p.add_argument("--variants", default=",".join(VARIANTS))
    p.add_argument("--results", default=str(HERE / "results"))
    p.add_argument("--set", dest="overrides", action="append", default=[],
                   help="extra skol_spark --set override (experiments), repeatable")
    p.add_argument("--baseline-set", dest="baseline", action="append", default=[],
                   help="also run skol_spark with these overrides (repeatable) as variant skol_spark_baseline, "
                        "right before skol_spark at each scale: an A/B comparison within one run")
    p.add_argument("--baseline-ref", default="",
                   help="run skol_spark_baseline from this git revision of the repo (e.g. HEAD~1) instead of the "
                        "working tree: an A/B of a code change within one run")
    p.add_argument("--baseline-pythonpath", default="",
                   help="put this directory first on skol_spark_baseline's PYTHONPATH (driver and Python workers), "
                        "e.g. a `pip install --target DIR pkg==X` of another version of a dependency: an A/B of a "
                        "dependency version within one run")
    p.add_argument("--no-jvm-archive", dest="jvm_archive", action="store_false",
                   help="do not record the JVM class archive (skol-spark jvm-archive) before the skol_spark runs")
    p.add_argument("--ceiling-methods", default="tf_function,predict_on_batch,predict",
                   help="methods timed at the small scale; the large scale times the best one")
    p.add_argument("--repeat", type=int, default=1,
                   help="run the ceiling and the skol_spark variants this many times per scale (A/B pairs "
                        "interleaved) and report the run with the median job time; the others run once")
    p.add_argument("--name", default="latest", help="results file stem")
    args = p.parse_args(argv)
    variants = [v.strip() for v in args.variants.split(",") if v.strip()]
    if (args.baseline or args.baseline_ref or args.baseline_pythonpath) and "skol_spark" in variants:
        variants.insert(variants.index("skol_spark"), "skol_spark_baseline")
    unknown = set(variants) - set(VARIANTS) - {"skol_spark_baseline"}
    if unknown:
        p.error(f"unknown variant(s) {sorted(unknown)}")
    results_dir = Path(args.results)
    work = results_dir / "tmp"
    work.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    baseline_src = checkout(args.baseline_ref, work / "baseline-src") if args.baseline_ref else None
    t_start = time.time()

    from skol_spark.store.embedded import start_redis

    sizes_n = [max(2_000, int(n * args.scale)) for n in BASE_LINES]
    sizes = [f"{n // 1000}k" if n % 1000 == 0 else str(n) for n in sizes_n]
    corpora = {}
    for n, size, seed in zip(sizes_n, sizes, (11, 12)):
        corpora[size] = workload.write_corpus(work / f"corpus-{size}", n, seed=seed)
        print(f"corpus {size}: {corpora[size]}", file=sys.stderr)

    shutil.rmtree(JVM_CACHE, ignore_errors=True)
    archive_seconds = None
    if args.jvm_archive and any(v.startswith("skol_spark") or v in text_workload.VARIANTS for v in variants):
        t = time.time()  # once per machine for users: `skol-spark jvm-archive`
        subprocess.run([sys.executable, "-m", "skol_spark.cli", "jvm-archive"], env=child_env(work / "jvm-marks"),
                       check=True, capture_output=True)
        archive_seconds = round(time.time() - t, 1)
        print(f"recorded the JVM class archive in {archive_seconds} s", file=sys.stderr)
    results: dict[str, dict] = {}
    runs: dict[tuple[str, str], list[dict]] = {}
    with start_redis() as redis:
        version, params = workload.publish_model(redis.url)
        print(f"published {workload.MODEL_NAME} v{version} ({params:,} params) to {redis.url}", file=sys.stderr)
        text = None
        if set(variants) & set(text_workload.VARIANTS):
            t = time.time()
            text = text_workload.prepare(redis.url, work, list(zip(sizes, sizes_n, (11, 12))),
                                         child_env(work / "text-marks"))
            print(f"text corpora, pipeline and {text['model']['name']} v{text['model']['version']} ready in "
                  f"{time.time() - t:.1f} s", file=sys.stderr)
        best = ""
        for variant, size in run_order(variants, sizes, max(1, args.repeat)):
            corpus = corpora[size]
            attempt = len(runs.get((variant, size), []))
            t = time.time()
            if variant == "skol_spark_baseline":
                r = run_skol_spark(corpus, redis.url, work, args.baseline, variant, baseline_src, attempt,
                                   args.baseline_pythonpath)
            elif variant == "ceiling":
                methods = args.ceiling_methods if size == sizes[0] or not best else best
                r = run_helper("ceiling", corpus, redis.url, work, methods=methods, attempt=attempt)
                best = r["best_method"]
            elif variant == "skol_spark":
                r = run_skol_spark(corpus, redis.url, work, args.overrides, attempt=attempt)
            elif variant in text_workload.VARIANTS:
                r = run_skol_spark(text["corpora"][size][variant], redis.url, work,
                                   args.overrides + text_workload.overrides(variant), variant, attempt=attempt)
            else:
                r = run_helper(variant, corpus, redis.url, work, attempt=attempt)
            runs.setdefault((variant, size), []).append(r)
            results.setdefault(variant, {})[size] = median_run(runs[(variant, size)])
            print(f"{variant} {size}: job {r['job_seconds']:.1f}s, {r['lines'] / r['job_seconds']:,.0f} lines/s "
                  f"(process {time.time() - t:.1f}s)", file=sys.stderr)
    report = {
        "finished_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "machine": machine(), "model": {"name": workload.MODEL_NAME, "parameters": params},
        "sizes": sizes, "corpora": corpora, "results": results,
        "summary": summarize(results, sizes) if len(sizes) == 2 else {},
        "agreement": agreement(results, corpora, text and text["corpora"]),
        "text": text,
        "benchmark_seconds": round(time.time() - t_start, 1),
        "jvm_archive_seconds": archive_seconds,
        "baseline_ref": revision(args.baseline_ref) if args.baseline_ref else "",
        "baseline_pythonpath": args.baseline_pythonpath,
        "repeat": max(1, args.repeat),
    }
    (results_dir / f"{args.name}.json").write_text(json.dumps(report, indent=2, default=str))
    text = markdown(report)
    (results_dir / f"{args.name}.md").write_text(text)
    print(text)
    return 0


def checkout(ref: str, dest: Path) -> Path:
    """The package source at git revision ``ref``, exported (not checked out) into ``dest``."""
    shutil.rmtree(dest, ignore_errors=True)
    dest.mkdir(parents=True)
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", ref, "skol_spark"], capture_output=True)
    if archive.returncode:
        sys.exit(f"--baseline-ref {ref!r}: git archive failed: {archive.stderr.decode().strip()}")
    subprocess.run(["tar", "-x", "-C", str(dest)], input=archive.stdout, check=True)
    return dest


def revision(ref: str) -> str:
    out = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", ref], capture_output=True, text=True)
    return f"{ref} ({out.stdout.strip()})" if out.returncode == 0 else ref


REPEATED = ("ceiling", "skol_spark", "skol_spark_baseline", "skol_spark_warm", *text_workload.VARIANTS)
PAIRS = (("skol_spark_baseline", "skol_spark"), ("text_vectors", "text"))


def run_order(variants: list[str], sizes: list[str], repeat: int = 1) -> list[tuple[str, str]]:
    """Each variant at each scale (``repeat`` times for the cheap ones); a compared pair (skol_spark_baseline
    and skol_spark; text_vectors and text) alternates run by run, where the first of the two is listed, so
    that a drift in the machine's speed does not favour one side."""
    order, placed = [], set()
    for variant in variants:
        if variant in placed:
            continue
        pair = next((list(p) for p in PAIRS if variant in p and set(p) <= set(variants)), [variant])
        placed.update(pair)
        times = repeat if variant in REPEATED else 1
        order += [(v, size) for size in sizes for _ in range(times) for v in pair]
    return order


def median_run(runs: list[dict]) -> dict:
    """The run with the median job time (the lower middle of an even count), with every run's job time:
    one slow run on a shared machine (a cold page cache, a neighbour's burst) does not set the figure."""
    ordered = sorted(runs, key=lambda r: r["job_seconds"])
    chosen = dict(ordered[(len(ordered) - 1) // 2])
    chosen["job_seconds_runs"] = [round(r["job_seconds"], 2) for r in runs]
    return chosen


def machine() -> dict:
    import platform

    import psutil

    return {"cores": os.cpu_count(), "memory_gb": round(psutil.virtual_memory().total / 2**30, 1),
            "python": platform.python_version(), "platform": platform.platform()}


if __name__ == "__main__":
    sys.exit(main())
