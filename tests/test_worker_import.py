"""The Python environment a scoring worker imports."""

from __future__ import annotations

from importlib import metadata
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_installed_ml_dtypes_is_below_the_slow_import_release():
    """requirements.txt caps ml_dtypes below 0.7.0, whose import is much slower in every TensorFlow process
    (benchmarks/results/ab-ml-dtypes.md); the installed one must honour it."""
    version = tuple(int(p) for p in metadata.version("ml_dtypes").split(".")[:2])
    assert version < (0, 7)
    assert any(line.startswith("ml_dtypes<0.7") for line in (ROOT / "requirements.txt").read_text().splitlines())
