"""The GPU check's Markdown table (``benchmarks/gpu_check.py`` writes the JSON it is made from)."""

from __future__ import annotations


def _f(value, spec: str = ",.1f") -> str:
    return "–" if value is None else format(value, spec)


def _e(value) -> str:
    return "–" if value is None else f"{value:.1e}"


def _workers(job: dict) -> str:
    rows = [w for w in job.get("workers") or [] if w.get("job") == "scoring"]
    return "; ".join(f"{w['device']}, {w['predictor']}, TF32 {'on' if w['tf32'] else 'off'}, batch "
                     f"{w.get('batch_size', '–')}, tolerance {w['golden_tolerance']:g} ({w['tasks']} tasks)"
                     for w in rows) or "–"


def markdown(report: dict) -> str:
    machine = report.get("machine", {})
    lines = [f"# GPU check ({report.get('finished_at') or report.get('started_at')})", "",
             f"Device: **{report.get('gpu', '?')}**. Machine: {machine.get('cores')} cores"
             + (f"; nvidia-smi: {machine['nvidia_smi']}" if machine.get("nvidia_smi") else "; no nvidia-smi")
             + f". Command: `{report.get('command', '')}`; {report.get('check_seconds', '?')} s.", ""]
    golden = report.get("golden") or {}
    lines += ["## (a) Golden check where TensorFlow scores", ""]
    if "error" in golden:
        lines += [f"FAILED: {golden['error']}", ""]
    elif golden:
        facts = golden.get("facts", {})
        lines += ["| measured against the golden outputs | max abs diff |", "|---|---:|",
                  f"| scoring predictor ({facts.get('predictor')}, TF32 {'on' if facts.get('tf32') else 'off'}) | "
                  f"{_e(golden.get('diff_scoring_predictor'))} |",
                  f"| Keras' call, TF32 off | {_e(golden.get('diff_keras_tf32_off'))} |",
                  f"| Keras' call, TF32 on | {_e(golden.get('diff_keras_tf32_on'))} |",
                  f"| numpy float64 (another summation order and precision) | "
                  f"{_e(golden.get('diff_float64_numpy'))} |",
                  f"| numpy, products' inputs rounded as TF32 does | {_e(golden.get('diff_tf32_emulated_numpy'))} |",
                  f"| should fail: an old Keras' hard_sigmoid gates (numpy) | "
                  f"{_e(golden.get('diff_hard_sigmoid_numpy'))} |",
                  f"| should fail: the BiLSTM directions' weights exchanged | "
                  f"{_e(golden.get('diff_swapped_directions'))} |",
                  f"| **tolerance** (passed: {golden.get('passed')}) | {golden.get('tolerance')} |", "",
                  *([f"FAILED: {golden['failure']}", ""] if golden.get("failure") else [])]
    jobs = report.get("jobs") or {}
    lines += ["## (b) The job on local[*], GPU visible and hidden (`CUDA_VISIBLE_DEVICES=`)", "",
              "| job | lines | job s | scoring s | lines/s | tasks x TF threads | what scored (manifest) |",
              "|---|---:|---:|---:|---:|---|---|"]
    for name, job in jobs.items():
        if "error" in job:
            lines.append(f"| {name} | | | | | | FAILED: {job['error'][:300]!r} |")
            continue
        lines.append(f"| {name} | {job['lines']:,} | {_f(job['job_seconds'])} | {_f(job['scoring_seconds'])} | "
                     f"{_f(job['lines_per_second'], ',.0f')} | {job['partitions']} x {job['tf_threads']} | "
                     f"{_workers(job)} |")
    agreement = report.get("agreement")
    if agreement:
        lines += ["", f"Every line, visible against hidden: {agreement['lines']:,} lines, max abs diff "
                      f"{_e(agreement.get('max_abs_diff'))}, same labels: {agreement.get('same_argmax')}"
                  + (f"; {agreement['problem']}" if agreement.get("problem") else "") + "."]
    ceiling = report.get("ceiling") or {}
    lines += ["", "## (c) In-process ceiling (Keras' traced call on dense windows)", ""]
    if "error" in ceiling:
        lines += [f"FAILED: {ceiling['error']}"]
    elif ceiling:
        lines += [f"{ceiling['lines']:,} lines on {ceiling['device']}.", "",
                  "| batch (windows) | seconds | lines/s | max abs diff vs the first batch size |", "|---:|---:|---:|---:|"]
        for batch, r in ceiling["batch_sizes"].items():
            lines.append(f"| {int(batch):,} | {r['seconds']:.2f} | {r['lines_per_second']:,.0f} | "
                         f"{_e(r['max_abs_diff_vs_first_batch_size'])} |")
    return "\n".join(lines) + "\n"
