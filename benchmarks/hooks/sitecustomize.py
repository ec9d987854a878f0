"""Benchmark-only hook (on PYTHONPATH only while benchmarking): time of the first prediction.

When ``SKOL_BENCH_MARKS`` names a directory, ``skol_spark.scoring.windowing.score_lines`` is
wrapped as the module loads so that the first ``predict`` call that returns in
each process writes ``<dir>/first_prediction-<pid>`` holding ``time.time()``, and
``<dir>/package-<pid>`` records the file the process imported it from, so that the
benchmark can check which source tree a run really used (``--baseline-ref``).
skol_spark itself is not changed; the wrapper costs one flag check per batch.
"""

import os
import sys

_MARKS = os.environ.get("SKOL_BENCH_MARKS")


def _mark(name: str, text: str = "") -> None:
    import time

    path = os.path.join(_MARKS, f"{name}-{os.getpid()}")
    if not os.path.exists(path):
        with open(path, "w") as f:
            f.write(text or repr(time.time()))


def _wrap(module) -> None:
    original = module.score_lines
    state = {"done": False}

    def marked(fn):
        def call(*args):
            out = fn(*args)
            if not state["done"]:
                state["done"] = True
                _mark("first_prediction")
            return out
        return call

    class FirstPrediction:
        """The predictor, marking its first call; keeps ``predict_rows`` when the predictor has it."""

        def __init__(self, predict):
            self._predict = marked(predict)
            if hasattr(predict, "predict_rows"):
                self.predict_rows = marked(predict.predict_rows)

        def __call__(self, windows):
            return self._predict(windows)

    def score_lines(features, lengths, predict, **kwargs):
        return original(features, lengths, FirstPrediction(predict), **kwargs)

    module.score_lines = score_lines


if _MARKS:
    import importlib.abc
    import importlib.util

    class _Finder(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path, target=None):
            if name not in ("skol_spark.scoring.windowing", "skol_spark.windowing"):  # the layout before 2026-12-07
                return None
            if self in sys.meta_path:
                sys.meta_path.remove(self)
            spec = importlib.util.find_spec(name)
            if spec is None or spec.loader is None:
                return spec
            exec_module = spec.loader.exec_module

            def exec_and_wrap(module):
                exec_module(module)
                _mark("package", os.path.abspath(module.__file__))
                _wrap(module)

            spec.loader.exec_module = exec_and_wrap
            return spec

    sys.meta_path.insert(0, _Finder())
