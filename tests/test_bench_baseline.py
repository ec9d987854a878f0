"""The benchmark's --baseline-ref really runs the other revision (it once ran the working tree on both sides)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks import bench

ROOT = Path(__file__).resolve().parent.parent


def test_a_process_started_in_the_exported_tree_imports_its_package(tmp_path):
    src = bench.checkout("HEAD", tmp_path / "baseline-src")
    assert (src / "skol_spark" / "scoring" / "windowing.py").is_file()
    env = bench.child_env(tmp_path / "marks", src)
    probe = [sys.executable, "-c", "import skol_spark; print(skol_spark.__file__)"]
    there = subprocess.run(probe, env=env, cwd=src, capture_output=True, text=True, check=True).stdout.split()
    assert Path(there[0]).is_relative_to(src / "skol_spark")
    # the trap the fix avoids: started in the repo, the working tree wins over PYTHONPATH
    here = subprocess.run(probe, env=env, cwd=ROOT, capture_output=True, text=True, check=True).stdout.split()
    assert Path(here[0]).is_relative_to(ROOT / "skol_spark")


def test_a_run_that_imported_the_wrong_tree_is_refused(tmp_path):
    marks = tmp_path / "marks"
    marks.mkdir()
    with pytest.raises(RuntimeError, match="no process recorded"):
        bench.check_package_source(marks, tmp_path / "src")
    (marks / "package-1").write_text(str(tmp_path / "src" / "skol_spark" / "windowing.py"))
    bench.check_package_source(marks, tmp_path / "src")
    (marks / "package-2").write_text(str(ROOT / "skol_spark" / "windowing.py"))
    with pytest.raises(RuntimeError, match="imported skol_spark from elsewhere"):
        bench.check_package_source(marks, tmp_path / "src")
