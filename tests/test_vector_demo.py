"""``skol-spark demo --vectors``: the vector demo, kept beside the text default. Its own model name, so it never
replaces the model conf/local.yaml scores with; true labels, so the summary has per-class metrics; its own
config, named as the next step and runnable as is. A real subprocess, Redis, Spark and Keras."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.helpers import read_output
from tests.test_submit import ROOT, clean_env, manifest_path_in


@pytest.mark.slow
def test_vector_demo_scores_labelled_vectors_under_its_own_model_name(tmp_path, redis_server):
    env = clean_env(PYTHONPATH=str(ROOT), SKOL_REDIS_URL=redis_server.url)
    done = subprocess.run([sys.executable, "-m", "skol_spark.cli.demo", "--vectors", "--documents", "60",
                           "--master", "local[2]"], env=env, capture_output=True, text=True, timeout=900, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    said = done.stdout + done.stderr
    manifest = json.loads(manifest_path_in(said, tmp_path).read_text())
    table = read_output(tmp_path / "demo-output" / "predictions")
    assert manifest["model"]["name"] == "demo-vectors" and "annotated" not in manifest
    assert manifest["output"]["rows_written"] == table.num_rows == manifest["input"]["lines"] > 0
    assert set(manifest["output"]["label_counts"]) == {"Nomenclature", "Description", "Misc"}
    assert manifest["evaluation"]["metrics"]["labelled_lines"] == table.num_rows and "precision" in said
    assert "Next: .venv/bin/skol-spark predict --conf demo-data/demo-vectors.yaml" in done.stderr
    again = subprocess.run([sys.executable, "-m", "skol_spark.cli.main", "predict", "--conf",
                            "demo-data/demo-vectors.yaml"], env=env, capture_output=True, text=True, timeout=900,
                           cwd=tmp_path)
    assert again.returncode == 0, again.stderr[-3000:]
    second = json.loads(manifest_path_in(again.stdout, tmp_path).read_text())
    assert second["model"]["name"] == "demo-vectors" and second["output"]["rows_written"] == table.num_rows
    listed = subprocess.run([sys.executable, "-m", "skol_spark.cli.main", "model", "list"], env=env,
                            capture_output=True, text=True, timeout=120)
    assert "demo-vectors\t" in listed.stdout, listed.stdout
