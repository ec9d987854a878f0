"""``skol-spark demo`` (the text demo, the default; ``--text`` is kept as its old name): a pipeline fitted on
synthetic text, published with its model, documents scored as plain text through spark-submit.sh, annotated
blocks printed. A real subprocess, Redis, Spark and Keras. The default paths, and the README's commands after
the demo, are ``tests/test_submit.py``'s demo test."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pyarrow.dataset as ds
import pytest

from tests.helpers import read_output
from tests.test_submit import ROOT, clean_env


@pytest.mark.slow
def test_text_demo_by_its_old_flag_scores_plain_text_and_prints_annotated_blocks(tmp_path, redis_server):
    out = tmp_path / "demo-out" / "predictions"
    done = subprocess.run([sys.executable, "-m", "skol_spark.cli.demo", "--text", "--documents", "40", "--workdir",
                           str(tmp_path / "demo-data"), "--output", str(out), "--master", "local[2]"],
                          env=clean_env(PYTHONPATH=str(ROOT), SKOL_REDIS_URL=redis_server.url),
                          capture_output=True, text=True, timeout=900, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    said = done.stdout + done.stderr
    manifest_line = [x for x in said.splitlines() if x.startswith("manifest: ")][-1]
    manifest = json.loads(Path(manifest_line.split(": ", 1)[1].replace("file:", "")).read_text())
    table = read_output(out)
    assert manifest["output"]["rows_written"] == table.num_rows == manifest["input"]["lines"] > 0
    assert "text" in table.column_names and manifest["annotated"]["documents"] == 40
    annotated = ds.dataset(str(out.parent / "annotated"), format="parquet", partitioning="hive").to_table()
    assert annotated.num_rows == 40
    first_block = annotated.column("annotated")[0].as_py().split("\n[@ ")[0]
    assert first_block.startswith("[@ ") and first_block in said  # printed after the job's summary
    # off the default paths conf/local.yaml would not find the documents: the next step names the demo's config
    assert f"Next: .venv/bin/skol-spark predict --conf {tmp_path / 'demo-data' / 'demo.yaml'}" in done.stderr
