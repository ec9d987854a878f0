"""What spark-submit.sh hands to spark-submit, for the modes no test cluster here can run
(YARN cluster deploy mode, a packed venv for executors without TensorFlow).

``SPARK_SUBMIT`` points at a stub that prints its arguments, so these run in milliseconds.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
STUB = ("#!/bin/sh\n"
        "exec \"{python}\" -c 'import json, os, sys; "
        "print(json.dumps(sys.argv[1:] + [\"PYSPARK_PYTHON=\" + os.environ.get(\"PYSPARK_PYTHON\", \"\")]))' \"$@\"\n")


@pytest.fixture
def submit(tmp_path):
    stub = tmp_path / "spark-submit"
    stub.write_text(STUB.format(python=sys.executable))
    stub.chmod(0o755)
    conf = tmp_path / "conf" / "job.yaml"
    conf.parent.mkdir()
    conf.write_text("model: {name: m}\n")

    def run(*options: str) -> list[str]:
        env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYSPARK_PYTHON",
                                                                 "PYSPARK_DRIVER_PYTHON")}
        env.update(SPARK_SUBMIT=str(stub), PYTHON=sys.executable, SKOL_BUILD_DIR=str(tmp_path / "build"))
        done = subprocess.run([str(ROOT / "spark-submit.sh"), str(conf), *options], env=env, capture_output=True,
                              text=True, timeout=120, cwd=tmp_path)
        assert done.returncode == 0, done.stderr
        return json.loads(done.stdout)

    run.conf = conf  # type: ignore[attr-defined]
    return run


def conf_values(argv: list[str]) -> dict[str, str]:
    return dict(argv[i + 1].split("=", 1) for i, a in enumerate(argv) if a == "--conf" and "=" in argv[i + 1])


def option(argv: list[str], name: str) -> str:
    return argv[argv.index(name) + 1]


def test_client_mode_ships_the_package_and_the_local_config_path(submit):
    argv = submit("--master", "yarn", "--set", "model.version=3", "--quiet")
    assert option(argv, "--master") == "yarn" and option(argv, "--deploy-mode") == "client"
    with zipfile.ZipFile(option(argv, "--py-files")) as z:
        assert "skol_spark/cli/main.py" in z.namelist()
    script = argv.index(str(ROOT / "jobs" / "batch_predict.py"))
    assert argv[script + 1:-1] == ["--conf", str(submit.conf), "--set", "model.version=3", "--quiet"]


def test_cluster_deploy_mode_ships_the_config_file_with_the_job(submit):
    argv = submit("--master", "yarn", "--deploy-mode", "cluster")
    assert option(argv, "--files") == str(submit.conf)
    assert argv[argv.index(str(ROOT / "jobs" / "batch_predict.py")) + 1:-1] == ["--conf", "job.yaml"]


def test_executors_get_this_python_only_on_local_masters(submit):
    """A path to this machine's venv means nothing on YARN nodes: leave the cluster's interpreter alone."""
    assert submit("--master", "local[2]")[-1] == f"PYSPARK_PYTHON={sys.executable}"
    assert submit("--master", "yarn")[-1] == "PYSPARK_PYTHON="
    assert submit("--master", "spark://h:7077")[-1] == "PYSPARK_PYTHON="


def test_venv_archive_drives_executors_but_not_a_client_mode_driver(submit, tmp_path):
    archive = tmp_path / "skolenv.tar.gz"
    archive.write_bytes(b"")
    client = submit("--master", "yarn", "--venv-archive", str(archive))
    assert option(client, "--archives") == f"{archive}#skolenv"
    assert conf_values(client)["spark.pyspark.python"] == "./skolenv/bin/python"
    assert conf_values(client)["spark.pyspark.driver.python"] == sys.executable  # outranks the archive's
    cluster = submit("--master", "yarn", "--deploy-mode", "cluster", "--venv-archive", str(archive))
    assert "spark.pyspark.driver.python" not in conf_values(cluster)  # the driver runs in the archive too


def test_wheel_is_shipped_under_a_name_spark_imports(submit):
    argv = submit("--ship", "wheel")
    shipped = option(argv, "--py-files")
    assert shipped.endswith("-whl.zip"), shipped  # Spark adds only .zip/.egg/.py py-files to sys.path
    with zipfile.ZipFile(shipped) as z:
        names = z.namelist()
    assert "skol_spark/cli/main.py" in names and any(n.endswith(".dist-info/entry_points.txt") for n in names)
