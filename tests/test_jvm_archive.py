"""The JVM class archive: recorded once by ``skol-spark jvm-archive``, mapped by local sessions we start."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from skol_spark.local import jvm_archive

ROOT = Path(__file__).resolve().parent.parent

PROBE = """
import sys
from skol_spark.job.session import build_session
spark = build_session(master="local[1]", preload_tensorflow=False, class_archive=sys.argv[1])
assert spark.range(1000).selectExpr("sum(id) AS s").collect()[0]["s"] == 499500
pid = spark.sparkContext._jvm.java.lang.ProcessHandle.current().pid()
maps = open(f"/proc/{pid}/maps").read()
print("MAPPED" if sys.argv[2] in maps else "NOT-MAPPED")
spark.stop()
"""


def run(args: list[str], cache: Path, timeout: float = 600) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("PYSPARK_GATEWAY_PORT", "PYSPARK_GATEWAY_SECRET")}
    env.update(SKOL_SPARK_CACHE_DIR=str(cache), PYTHONPATH=str(ROOT), PYSPARK_PYTHON=sys.executable,
               TF_CPP_MIN_LOG_LEVEL="3")
    return subprocess.run([sys.executable, *args], env=env, cwd=str(ROOT), capture_output=True, text=True,
                          timeout=timeout)


def test_no_archive_means_no_jvm_options(tmp_path, monkeypatch):
    monkeypatch.setenv("SKOL_SPARK_CACHE_DIR", str(tmp_path))
    path = jvm_archive.archive_path()
    assert path is not None and path.parent == tmp_path and not path.exists()
    assert jvm_archive.session_java_options("auto") == ""
    path.write_bytes(b"x")
    assert f"-XX:SharedArchiveFile={path}" in jvm_archive.session_java_options("auto")
    assert jvm_archive.session_java_options("never") == ""


@pytest.mark.slow
def test_recorded_archive_is_mapped_by_the_next_local_session_and_removable(tmp_path):
    cache = tmp_path / "cache"
    made = run(["-m", "skol_spark.cli.main", "jvm-archive"], cache)
    assert made.returncode == 0, made.stderr[-3000:]
    path = Path(made.stdout.strip().splitlines()[-1])
    assert path.parent == cache and path.stat().st_size > 10_000_000  # classes of Spark, not an empty file
    assert "class archive written" in made.stderr
    assert not list(cache.glob(".*.tmp"))  # recorded under a temporary name, then renamed

    with_archive = run(["-c", PROBE, "auto", str(path)], cache, timeout=300)
    assert with_archive.returncode == 0, with_archive.stderr[-3000:]
    assert "MAPPED" == with_archive.stdout.strip().splitlines()[-1]
    without = run(["-c", PROBE, "never", str(path)], cache, timeout=300)
    assert "NOT-MAPPED" == without.stdout.strip().splitlines()[-1], without.stderr[-3000:]

    removed = run(["-m", "skol_spark.cli.main", "jvm-archive", "--remove"], cache, timeout=120)
    assert removed.returncode == 0 and not path.exists()


def test_a_corrupt_archive_is_ignored_by_the_jvm(tmp_path):
    """A truncated or foreign file must never stop a run: the JVM refuses to map it and starts anyway."""
    cache = tmp_path / "cache"
    cache.mkdir()
    probe = run(["-c", "from skol_spark.local import jvm_archive; print(jvm_archive.archive_path())"], cache)
    path = Path(probe.stdout.strip())
    path.write_bytes(os.urandom(1 << 16))
    result = run(["-c", PROBE, "auto", str(path)], cache, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "NOT-MAPPED" == result.stdout.strip().splitlines()[-1]
