"""In one process, no Spark: the line-projection predictor over a corpus' windows, one predict at a time
against several at once, by TensorFlow pool sizes (``scoring.predict_streams``' lab experiment).

    PYTHONPATH=/work/main .venv/bin/python benchmarks/predict_streams.py benchmarks/results/tmp/corpus-250k

Each configuration runs in its own process (TensorFlow's pools are set once per process) and prints
lines/s and the CPU seconds it used; the outputs of every configuration must be equal.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time

CONFIGS = [(2, 2, 1), (1, 2, 2), (2, 2, 2), (1, 1, 2)]  # (intra-op, inter-op, concurrent callers)


def run_one(intra: int, inter: int, callers: int, corpus: str) -> None:
    import concurrent.futures

    import numpy as np
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(intra)
    tf.config.threading.set_inter_op_parallelism_threads(inter)
    from benchmarks.workload import STRIDE, WINDOW, build_model, read_corpus
    from skol_spark.model.projection import line_predictor
    from skol_spark.scoring.windowing import iter_window_rows

    fast = line_predictor(build_model())
    _, _, feats, lengths = read_corpus(corpus)
    batches = list(iter_window_rows(lengths, window=WINDOW, stride=STRIDE, batch_size=512))
    fast.predict_rows(feats, batches[0][:64])  # trace, not timed
    t, cpu = time.perf_counter(), time.process_time()
    with concurrent.futures.ThreadPoolExecutor(callers) as pool:
        outs = list(pool.map(lambda rows: fast.predict_rows(feats, rows), batches))
    seconds, cpu = time.perf_counter() - t, time.process_time() - cpu
    digest = float(np.sum([np.sum(o * np.arange(1, o.shape[-1] + 1)) for o in outs]))
    print(f"| {intra} | {inter} | {callers} | {int(np.sum(lengths)) / seconds:,.0f} | {cpu:.1f} | {digest:.6f} |")


def main() -> None:
    if len(sys.argv) == 6:
        run_one(*(int(x) for x in sys.argv[2:5]), sys.argv[5])
        return
    corpus = sys.argv[1]
    print("| intra-op | inter-op | callers | lines/s | CPU s | output digest |\n|---:|---:|---:|---:|---:|---:|")
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    for config in CONFIGS:
        subprocess.run([sys.executable, "-m", "benchmarks.predict_streams", "one", *map(str, config), corpus],
                       check=True, env=env)


if __name__ == "__main__":
    main()
