"""spark-submit.sh end to end on local[2], and the demo module: real subprocesses, real Redis and Spark."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pyarrow.dataset as ds
import pytest

from tests.helpers import (WINDOW, assert_matches_reference, make_documents, read_output, reference_scores,
                           train_closure_model, write_config, write_input)

ROOT = Path(__file__).resolve().parent.parent


def clean_env(**extra: str) -> dict[str, str]:
    """The environment a user has: no PYTHONPATH, so the package must come from what the script ships."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "SKOL_REDIS_URL", "SKOL_FAULT")}
    env.update(PYTHON=sys.executable, **extra)
    return env


@pytest.fixture(scope="module")
def published(publish_model):
    return publish_model(train_closure_model(seed=3), "lines", prefix="submit", stride=WINDOW // 2,
                         aliases=["production"]).model


def test_spark_submit_sh_scores_every_line_like_keras(tmp_path, redis_server, published):
    docs = make_documents("d", 12, seed=5)
    write_input(tmp_path / "in" / "part-0.parquet", docs)
    conf = write_config(tmp_path / "job.yaml", redis_url="", prefix="submit", model="lines",
                        input_path=str(tmp_path / "in"), output_path=str(tmp_path / "out"), mode="error",
                        timeouts=(2, 5))
    cmd = [str(ROOT / "spark-submit.sh"), conf, "--master", "local[2]", "--quiet"]
    env = clean_env(SKOL_REDIS_URL=redis_server.url)
    done = subprocess.run(cmd, env={**env, "SPARK_PRINT_LAUNCH_COMMAND": "1"}, capture_output=True, text=True,
                          timeout=600, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    # the driver JVM got the repo's log4j settings, and HotSpot's own compiler settings
    launch = next(line for line in (done.stdout + done.stderr).splitlines() if line.startswith("Spark Command:"))
    assert "log4j.configurationFile" in launch and "TieredStopAtLevel" not in launch
    manifest_path = next(line.split(": ", 1)[1] for line in done.stdout.splitlines() if line.startswith("manifest: "))
    manifest = json.loads(Path(manifest_path).read_text())
    assert manifest["status"] == "succeeded" and manifest["spark"]["master"] == "local[2]"
    table = read_output(tmp_path / "out")
    assert manifest["output"]["rows_written"] == table.num_rows == sum(len(x) for x in docs.values())
    assert_matches_reference(table, reference_scores(published, docs, stride=WINDOW // 2))

    # mode "error" refuses an existing output before doing any work, and changes nothing
    before = sorted(p.name for p in (tmp_path / "out").rglob("*"))
    again = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert again.returncode == 2, again.stderr[-2000:]
    said = again.stdout + again.stderr  # spark-submit merges the driver's stderr into stdout
    assert "already exists" in said and "output.mode" in said
    assert sorted(p.name for p in (tmp_path / "out").rglob("*")) == before


def test_spark_submit_sh_usage_errors():
    script = str(ROOT / "spark-submit.sh")
    helped = subprocess.run([script, "--help"], capture_output=True, text=True, timeout=30)
    assert helped.returncode == 0 and "--master" in helped.stdout and "--ship" in helped.stdout
    missing = subprocess.run([script, "no-such.yaml"], capture_output=True, text=True, timeout=30)
    assert missing.returncode == 2 and "config file not found" in missing.stderr
    bad = subprocess.run([script, str(ROOT / "conf" / "local.yaml"), "--bogus"], capture_output=True, text=True,
                         timeout=30)
    assert bad.returncode == 2 and "unknown option --bogus" in bad.stderr


def test_cli_help_and_dry_run():
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    run = [sys.executable, "-m", "skol_spark.cli.main"]
    helped = subprocess.run(run + ["predict", "--help"], capture_output=True, text=True, timeout=60, env=env)
    assert helped.returncode == 0 and "--conf" in helped.stdout and "exit codes" in helped.stdout
    dry = subprocess.run(run + ["predict", "--conf", str(ROOT / "conf" / "local.yaml"), "--dry-run",
                                "--set", "redis.url=redis://u:canary-pw@h:1/0"],
                         capture_output=True, text=True, timeout=60, env=env)
    assert dry.returncode == 0, dry.stderr
    assert json.loads(dry.stdout)["model"]["name"] == "demo" and "canary-pw" not in dry.stdout + dry.stderr
    bad = subprocess.run(run + ["predict", "--conf", str(ROOT / "conf" / "local.yaml"), "--set", "output.mode=x"],
                         capture_output=True, text=True, timeout=60, env=env)
    assert bad.returncode == 2 and "output.mode: expected one of" in bad.stderr


def manifest_path_in(said: str, cwd: Path) -> Path:
    """The manifest a run printed; a relative path (a relative output.path) is relative to the run's cwd."""
    line = [x for x in said.splitlines() if x.startswith("manifest: ")][-1]
    return cwd / line.split(": ", 1)[1].replace("file:", "")


def readme_commands_after_the_demo() -> list[str]:
    """Every command of the README's "after the demo" block and of its model store block, as written."""
    text = (ROOT / "README.md").read_text()
    blocks = []
    for anchor in ("From the repository root, after the demo:", "## The model store"):
        after = text[text.index(anchor):]
        blocks.append(after[after.index("```bash\n") + 8:after.index("\n```", after.index("```bash\n"))])
    commands = [line.split("  #")[0].strip() for block in blocks for line in block.splitlines()]
    return [c for c in commands if c]


def as_run_here(command: str) -> list[str]:
    """A README command as this test runs it: the package from this tree, the repository's files by path."""
    words = command.split()
    program = {".venv/bin/skol-spark": [sys.executable, "-m", "skol_spark.cli.main"],
               "./spark-submit.sh": [str(ROOT / "spark-submit.sh")]}[words[0]]
    return program + [str(ROOT / w) if w.startswith("conf/") else w for w in words[1:]]


@pytest.mark.slow
def test_demo_then_the_readme_next_commands_work_as_written(tmp_path, redis_server):
    """The README's first command (minus its pip install), then every next command it gives, unchanged, from the
    same directory: the demo publishes model ``demo`` with its feature pipeline into the store conf/local.yaml
    reads (here SKOL_REDIS_URL, as a user who set it has) and writes its plain-text documents where
    conf/local.yaml looks for them."""
    env = clean_env(PYTHONPATH=str(ROOT), SKOL_REDIS_URL=redis_server.url)
    done = subprocess.run([sys.executable, "-m", "skol_spark.cli.demo", "--documents", "60"],
                          env=env, capture_output=True, text=True, timeout=900, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    said = done.stdout + done.stderr  # under spark-submit the driver's stderr is merged into stdout
    manifest = json.loads(manifest_path_in(said, tmp_path).read_text())
    table = read_output(tmp_path / "demo-output" / "predictions")
    assert manifest["model"]["name"] == "demo" and manifest["annotated"]["documents"] == 60
    assert manifest["output"]["rows_written"] == table.num_rows == manifest["input"]["lines"] > 0
    assert "text" in table.column_names and set(table.column("label").to_pylist()) <= {"Nomenclature",
                                                                                         "Description", "Misc"}
    assert Path(manifest["report"]["html"]).is_file() and "lines written" in said
    assert "annotated documents" in said and "[@ " in said and "#Nomenclature*]" in said  # the first blocks
    annotated = ds.dataset(str(tmp_path / "demo-output" / "annotated"), format="parquet",
                           partitioning="hive").to_table()
    first_block = annotated.column("annotated")[0].as_py().split("\n[@ ")[0]
    assert annotated.num_rows == 60 and first_block.startswith("[@ ") and first_block in said  # as printed
    assert "Next: .venv/bin/skol-spark predict --conf conf/local.yaml" in done.stderr

    commands = readme_commands_after_the_demo()
    assert commands[0] == ".venv/bin/skol-spark model list" and len(commands) >= 8, commands
    outputs = {}
    for command in commands:
        ran = subprocess.run(as_run_here(command), env=env, capture_output=True, text=True, timeout=900,
                             cwd=tmp_path)
        assert ran.returncode == 0, f"{command}: exit {ran.returncode}\n{ran.stderr[-3000:]}"
        outputs[command] = ran.stdout + ran.stderr
    assert re.search(r"^demo\t\d+ version\(s\)\tlatest v\d+$", outputs[commands[0]], re.M)
    assert "feature_pipeline" in outputs[".venv/bin/skol-spark model show demo production"]
    assert "demo: staging -> v1" in outputs[".venv/bin/skol-spark model alias demo staging 1"]
    again = outputs[".venv/bin/skol-spark predict --conf conf/local.yaml"]
    second = json.loads(manifest_path_in(again, tmp_path).read_text())
    assert second["model"]["name"] == "demo" and second["output"]["rows_written"] == table.num_rows
    assert second["annotated"]["documents"] == 60 and second["config"]["input"]["document_text_col"] == "body"
    # the console of a run: no config dump at INFO (it is in the manifest), no temporary directory named
    assert "run config" not in again and "skol-report-" not in again
    page = (tmp_path / second["report"]["html"]).read_text()  # relative to the run's cwd, as output.path is
    assert re.search(r"Throughput \(lines/s\)</td><td class=\"num\">[\d,]+</td>", page)

    # the demo's own run was overwritten by later ones: its report cannot be rebuilt from someone else's rows
    old = subprocess.run([sys.executable, "-m", "skol_spark.cli.main", "report",
                          str(manifest_path_in(said, tmp_path))],
                         env=env, capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert old.returncode == 2 and "no longer in" in old.stderr, old.stderr[-2000:]
