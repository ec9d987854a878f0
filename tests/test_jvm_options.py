"""JVM options of local sessions we start: the JIT mode reaches the JVM, ``auto`` follows the input's size,
and the user's own options win."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from skol_spark.local import jvm_jit

ROOT = Path(__file__).resolve().parent.parent

# HotSpot's defaults for the flags the modes change (JDK 11-21)
DEFAULTS = {"TieredStopAtLevel": "4", "Tier4InvocationThreshold": "5000", "Tier4MinInvocationThreshold": "600",
            "Tier4CompileThreshold": "15000", "Tier4BackEdgeThreshold": "40000"}

PROBE = """
import json, sys
from skol_spark.job.session import build_session
jit, user, input_path, names = sys.argv[1:5]
conf = {"spark.ui.enabled": "false"}
if user:
    conf["spark.driver.extraJavaOptions"] = user
spark = build_session(master="local[1]", preload_tensorflow=False, class_archive="never", jit=jit,
                      input_path=input_path, conf=conf)
from tests.test_jvm_options import vm_options
print(json.dumps(vm_options(spark, json.loads(names))))
spark.stop()
"""


def vm_options(spark, names: list[str]) -> dict[str, str]:
    """The values the running JVM uses (HotSpot's diagnostic bean), not what we asked for."""
    jvm = spark.sparkContext._jvm
    bean = jvm.java.lang.management.ManagementFactory.getPlatformMXBean(
        jvm.java.lang.Class.forName("com.sun.management.HotSpotDiagnosticMXBean"))
    return {name: str(bean.getVMOption(name).getValue()) for name in names}


def expected(mode: str) -> dict[str, str]:
    flags = dict(f.removeprefix("-XX:").split("=") for f in jvm_jit.OPTIONS[mode].split())
    return {**DEFAULTS, **flags}


def probe(jit: str, *, user_options: str = "", input_path: str = "") -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PYSPARK_GATEWAY_PORT", "PYSPARK_GATEWAY_SECRET")}
    env.update(PYTHONPATH=str(ROOT), PYSPARK_PYTHON=sys.executable)
    done = subprocess.run([sys.executable, "-c", PROBE, jit, user_options, input_path, json.dumps(list(DEFAULTS))],
                          env=env, cwd=str(ROOT), capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def write_rows(directory: Path, files: int, rows: int) -> Path:
    directory.mkdir(parents=True)
    for i in range(files):
        pq.write_table(pa.table({"doc_id": [f"d{i}"] * rows, "line_number": list(range(rows))}),
                       directory / f"part-{i:05d}.parquet")
    (directory / "_SUCCESS").write_text("")  # what Spark leaves beside its files: not Parquet, must be skipped
    (directory / ".part-00000.parquet.crc").write_bytes(b"\x00crc")
    return directory


def test_the_modes_change_the_flags_we_claim():
    assert expected("quick")["TieredStopAtLevel"] == "1"
    balanced = expected("balanced")
    assert all(int(balanced[k]) >= 10 * int(DEFAULTS[k]) for k in DEFAULTS if k.startswith("Tier4"))
    assert jvm_jit.OPTIONS["default"] == ""
    assert jvm_jit.java_options("auto") == jvm_jit.OPTIONS["balanced"]  # nothing to count: the safe middle


def test_auto_is_quick_up_to_the_line_limit_and_balanced_above(tmp_path, monkeypatch):
    corpus = write_rows(tmp_path / "in", files=3, rows=10)
    monkeypatch.setattr(jvm_jit, "QUICK_MAX_LINES", 30)
    assert jvm_jit.parquet_rows(str(corpus), limit=30) == 30
    assert jvm_jit.resolve("auto", str(corpus)) == "quick"
    assert jvm_jit.resolve("auto", "file://" + str(corpus)) == "quick"
    assert jvm_jit.resolve("auto", str(corpus / "part-00001.parquet")) == "quick"
    monkeypatch.setattr(jvm_jit, "QUICK_MAX_LINES", 29)
    assert jvm_jit.resolve("auto", str(corpus)) == "balanced"
    for mode in ("quick", "balanced", "default"):  # explicit modes are never second-guessed
        assert jvm_jit.resolve(mode, str(corpus)) == mode


@pytest.mark.parametrize("path, fmt", [
    ("s3a://bucket/corpus", "parquet"),   # remote: not counted from the driver
    ("{here}/in/*.parquet", "parquet"),   # a glob
    ("{here}/missing", "parquet"),
    ("{here}/in", "delta"),
    ("", "parquet"),                      # input.table
    ("{here}/bad", "parquet"),            # not Parquet at all: Spark will say so, the guess must not fail
])
def test_auto_is_balanced_when_the_input_cannot_be_counted(tmp_path, path, fmt):
    write_rows(tmp_path / "in", files=1, rows=5)
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "part-0.parquet").write_text("not parquet")
    assert jvm_jit.resolve("auto", path.format(here=tmp_path), fmt) == "balanced"


def test_the_test_session_runs_with_the_balanced_jit(spark):
    """The shared session was built with ``jit="auto"`` and no input on a local master."""
    assert vm_options(spark, list(DEFAULTS)) == expected("balanced")


def test_a_small_input_starts_a_quick_jvm_and_default_leaves_hotspot_alone(tmp_path):
    corpus = write_rows(tmp_path / "in", files=2, rows=50)
    assert probe("auto", input_path=str(corpus)) == expected("quick")
    assert probe("default", input_path=str(corpus)) == DEFAULTS


def test_the_users_java_options_override_ours():
    mine = probe("balanced", user_options="-XX:Tier4InvocationThreshold=7000")
    assert mine["Tier4InvocationThreshold"] == "7000"  # the user's flag comes after ours
    assert mine["Tier4CompileThreshold"] == expected("balanced")["Tier4CompileThreshold"]  # the rest still ours


def test_the_helper_spark_submit_sh_asks_prints_the_configs_options(tmp_path):
    """``python -m skol_spark.local.jvm_jit`` (spark-submit.sh on local masters): the config's mode, with the
    job's overrides; the job's other options ignored; nothing for a config it cannot read."""
    import subprocess
    import sys

    from skol_spark.local.jvm_jit import OPTIONS

    conf = tmp_path / "job.yaml"
    conf.write_text("input:\n  path: /nowhere/in\noutput:\n  path: /nowhere/out\nmodel:\n  name: m\n")

    def helper(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "skol_spark.local.jvm_jit", *args], capture_output=True, text=True,
                              timeout=120)

    for mode in ("quick", "balanced", "default"):
        done = helper("--conf", str(conf), "--set", f"job.jvm_jit={mode}", "--quiet", "--watermark", "2026-01-01")
        assert done.returncode == 0 and done.stdout.strip() == OPTIONS[mode], done.stderr
    counted = helper("--conf", str(conf))  # auto, and the input cannot be counted: balanced
    assert counted.stdout.strip() == OPTIONS["balanced"]
    for bad in (["--conf", str(tmp_path / "missing.yaml")], ["--conf", str(conf), "--set", "job.jvm_jit=fast"]):
        done = helper(*bad)
        assert done.returncode == 0 and done.stdout == "", done.stdout
