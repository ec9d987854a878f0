"""What a fresh Python worker imports before it can score: the critical path of a one-shot job.

Each check runs in a new interpreter, because TensorFlow and Keras can only be
imported once per process and this test process has imported them already.
"""

from __future__ import annotations

import os
import subprocess
import sys
from importlib import metadata
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

PROBE = """
import sys
from skol_spark.model.builder import configure_tensorflow
configure_tensorflow(1, skip_plotting={skip})
import keras
from keras.src.visualization import plot_image_gallery
print("matplotlib imported:", "matplotlib" in sys.modules)
print("keras plotting:", plot_image_gallery.plt is not None)
import matplotlib.pyplot
print("importable after:", matplotlib.pyplot.__name__)
"""


def probe(skip: bool) -> list[str]:
    path = [str(ROOT)] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(path),
           "TF_CPP_MIN_LOG_LEVEL": "3"}
    done = subprocess.run([sys.executable, "-c", PROBE.format(skip=skip)], capture_output=True, text=True,
                          env=env, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout.splitlines()


def test_a_worker_imports_tensorflow_without_matplotlib_which_stays_importable():
    assert probe(skip=True) == ["matplotlib imported: False", "keras plotting: False",
                                "importable after: matplotlib.pyplot"]


def test_the_driver_import_keeps_keras_plotting():
    """The control: without the switch Keras imports matplotlib (what the workers avoid), and the
    driver, where a notebook may plot, keeps it."""
    assert probe(skip=False) == ["matplotlib imported: True", "keras plotting: True",
                                 "importable after: matplotlib.pyplot"]


def test_installed_ml_dtypes_is_below_the_slow_import_release():
    """requirements.txt caps ml_dtypes below 0.7.0, whose import takes 0.6-1.6 s longer in every
    TensorFlow process (benchmarks/results/ab-ml-dtypes.md); the installed one must honour it."""
    version = tuple(int(p) for p in metadata.version("ml_dtypes").split(".")[:2])
    assert version < (0, 7)
    assert any(line.startswith("ml_dtypes<0.7") for line in (ROOT / "requirements.txt").read_text().splitlines())
