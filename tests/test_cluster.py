"""A real Spark standalone cluster (one master, two workers, separate JVMs) on 127.0.0.1.

Catches what ``local`` mode hides: the package must reach the executors only
through what ``spark-submit.sh`` ships (``--py-files``), never through the
driver's ``sys.path``; the broadcast artifact and the scorer closure must
pickle; executors on other JVMs must give the same numbers as Keras itself.
Neither the workers nor the submit process see a PYTHONPATH, and the
executors run a bare interpreter that sees the test venv's libraries but not
its editable install of skol_spark (``run-tests.sh`` installs one), so an
unshipped package fails (the negative control proves it).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import uuid
import sys
import sysconfig
import time
import urllib.request
from pathlib import Path

import pytest

from skol_spark.store.embedded import free_port
from skol_spark.store.model_store import ModelStore
from tests.helpers import (LABELS, WINDOW, assert_matches_reference, make_documents, read_output, reference_scores,
                           train_closure_model, write_config, write_input)
from tests.test_text_job import write_documents
from tests.textkit import fit_pipeline, make_text_documents, reference_text_scores

pytestmark = [pytest.mark.slow, pytest.mark.cluster]

ROOT = Path(__file__).resolve().parent.parent
STRIP = ("PYTHONPATH", "SKOL_REDIS_URL", "SKOL_FAULT", "PYSPARK_PYTHON", "PYSPARK_DRIVER_PYTHON", "SPARK_HOME",
         "PYSPARK_SUBMIT_ARGS", "PYSPARK_GATEWAY_PORT", "PYSPARK_GATEWAY_SECRET")


def spark_home() -> Path:
    import pyspark

    return Path(pyspark.__file__).parent


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in STRIP}
    env.update(SPARK_LOCAL_IP="127.0.0.1", SPARK_LOCAL_HOSTNAME="127.0.0.1", **extra)
    return env


def wait_for_workers(ui_port: int, count: int, procs, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    state: dict = {}
    while time.monotonic() < deadline:
        dead = [p.args for p in procs if p.poll() is not None]
        assert not dead, f"cluster process exited early: {dead}"
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{ui_port}/json/", timeout=2) as r:
                state = json.load(r)
            if sum(w.get("state") == "ALIVE" for w in state.get("workers", [])) >= count:
                return
        except OSError:
            pass
        time.sleep(1)
    raise AssertionError(f"standalone cluster not ready in {timeout:.0f}s: {state}")


def bare_executor_python(where: Path) -> str:
    """A venv whose only link to the test venv is a path line: its libraries import, but the ``.pth`` hooks
    inside it (the editable install of skol_spark among them) never run, as on a node the package was not
    installed on."""
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(where)], check=True)
    site = Path(subprocess.run([str(where / "bin" / "python"), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                               check=True, capture_output=True, text=True).stdout.strip())
    (site / "test-venv-libraries.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    return str(where / "bin" / "python")


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """``spark://127.0.0.1:PORT`` with two 1-core workers; every process stopped by its group in teardown."""
    work = tmp_path_factory.mktemp("standalone")
    python = bare_executor_python(work / "executor-venv")
    spark_class = str(spark_home() / "bin" / "spark-class")
    port, ui = free_port(), free_port()
    env = clean_env(SPARK_WORKER_DIR=str(work / "worker"), SPARK_LOG_DIR=str(work / "logs"))
    procs: list[subprocess.Popen] = []
    logs = []

    def start(name: str, *args: str) -> None:
        log = open(work / f"{name}.log", "wb")
        logs.append(log)
        procs.append(subprocess.Popen([spark_class, *args], env=env, stdout=log, stderr=subprocess.STDOUT,
                                      start_new_session=True, cwd=work))

    try:
        start("master", "org.apache.spark.deploy.master.Master", "--host", "127.0.0.1", "--port", str(port),
              "--webui-port", str(ui))
        url = f"spark://127.0.0.1:{port}"
        for i in range(2):
            start(f"worker{i}", "org.apache.spark.deploy.worker.Worker", "--host", "127.0.0.1",
                  "--port", str(free_port()), "--webui-port", str(free_port()), "--cores", "1", "--memory", "4g",
                  "--work-dir", str(work / f"worker{i}"), url)
        wait_for_workers(ui, 2, procs)
        yield {"url": url, "work": work, "python": python}
    finally:
        for p in reversed(procs):
            try:
                os.killpg(p.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
        for p in procs:
            try:
                p.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, signal.SIGKILL)
                p.wait()
        for log in logs:
            log.close()


@pytest.fixture(scope="module")
def published(publish_model):
    return publish_model(train_closure_model(seed=11), "lines", prefix="cluster", stride=WINDOW // 2,
                         aliases=["production"]).model


SUBMIT_CONF = ["--conf", "spark.executor.cores=1", "--conf", "spark.cores.max=2", "--conf", "spark.executor.memory=1g",
               "--conf", "spark.ui.enabled=false", "--conf", "spark.sql.shuffle.partitions=4"]


def executor_logs(work: Path) -> str:
    texts = [p.read_text(errors="replace")[-1500:] for p in sorted(work.glob("worker*/app-*/*/stderr"))]
    return "\n---\n".join(texts[-2:])


def submit_to_cluster(cluster, conf: str, redis_server, tmp_path: Path, *, ship: str = "zip") -> dict:
    """``spark-submit.sh CONF`` to the standalone cluster; asserts exit 0 -> the run manifest."""
    cmd = [str(ROOT / "spark-submit.sh"), conf, "--master", cluster["url"], "--ship", ship, "--quiet",
           "--", *SUBMIT_CONF]
    # PYSPARK_PYTHON: the executors' interpreter, as a cluster admin would set it (valid on every node here)
    env = clean_env(SKOL_REDIS_URL=redis_server.url, PYTHON=sys.executable, PYSPARK_PYTHON=cluster["python"],
                    SKOL_BUILD_DIR=str(tmp_path / "build"))
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=420, cwd=tmp_path)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:] + executor_logs(cluster["work"])
    manifest_path = next(line.split(": ", 1)[1] for line in done.stdout.splitlines() if line.startswith("manifest: "))
    return json.loads(Path(manifest_path).read_text())


@pytest.mark.parametrize("ship", ["zip", "wheel"])
def test_spark_submit_to_standalone_cluster_matches_keras(ship, cluster, published, redis_server, tmp_path):
    docs = make_documents("c", 16, seed=12, max_lines=30)
    write_input(tmp_path / "in" / "part-0.parquet", docs)
    conf = write_config(tmp_path / "job.yaml", redis_url="", prefix="cluster", model="lines",
                        input_path=str(tmp_path / "in"), output_path=str(tmp_path / "out"), mode="append",
                        timeouts=(2, 5), scoring={"partitions": 4})
    manifest = submit_to_cluster(cluster, conf, redis_server, tmp_path, ship=ship)
    assert manifest["status"] == "succeeded" and manifest["spark"]["master"] == cluster["url"]
    table = read_output(tmp_path / "out")
    assert manifest["output"]["rows_written"] == table.num_rows == manifest["input"]["lines"]
    assert_matches_reference(table, reference_scores(published, docs, stride=WINDOW // 2))
    # the executors really were other processes on the workers
    assert list(cluster["work"].glob("worker*/app-*/*/stderr")), "no executor ran on the standalone workers"


NEGATIVE = """
import sys
from pyspark.sql import SparkSession
spark = SparkSession.builder.getOrCreate()
def probe(_):
    try:
        import skol_spark
        return "imported " + skol_spark.__file__
    except ImportError as e:
        return "ImportError " + str(e)
print("RESULT", spark.sparkContext.parallelize([0, 1], 2).map(probe).collect())
spark.stop()
"""


def test_negative_control_executors_cannot_import_an_unshipped_package(cluster, tmp_path):
    """Without --py-files the executors cannot import skol_spark: the test above is not fooled by a path."""
    script = tmp_path / "probe.py"
    script.write_text(NEGATIVE)
    submit = str(spark_home() / "bin" / "spark-submit")
    env = clean_env(PYSPARK_PYTHON=cluster["python"], PYSPARK_DRIVER_PYTHON=sys.executable)
    done = subprocess.run([submit, "--master", cluster["url"], *SUBMIT_CONF, str(script)], env=env,
                          capture_output=True, text=True, timeout=240, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    result = next(line for line in done.stdout.splitlines() if line.startswith("RESULT"))
    assert result.count("ImportError") == 2 and "imported" not in result, result


# ---- raw text: the feature pipeline runs on executors that get nothing from Redis, cannot read the driver's
# temporary directories and cannot import the original project's suffix class (it exists only in
# tests/legacy_stages, on the test process's path); skol_spark ships the rebuilt stages in the query plan.

def test_standalone_cluster_scores_raw_text(cluster, spark, redis_client, redis_server, tmp_path):
    fitted = fit_pipeline(spark, tmp_path / "feature_pipeline", legacy=True)
    model = train_closure_model(features=36, seed=12)
    prefix = f"ctext{uuid.uuid4().hex[:6]}"
    ModelStore(redis_client, prefix=prefix).publish(model, "text", labels=LABELS, stride=WINDOW // 2,
                                                    aliases=["production"],
                                                    feature_pipeline=tmp_path / "feature_pipeline")
    docs = make_text_documents("ct", 12, seed=13, max_lines=30)
    write_documents(tmp_path / "in" / "part-0.parquet", {d: "\n".join(lines) for d, lines in docs.items()})
    conf = write_config(tmp_path / "job.yaml", timeouts=(2, 5), redis_url="", prefix=prefix, model="text",
                        input_path=str(tmp_path / "in"), output_path=str(tmp_path / "out"), mode="append",
                        extra={"scoring": {"partitions": 4}, "input": {"document_text_col": "body"},
                               "output": {"annotated_path": str(tmp_path / "annotated")}})
    manifest = submit_to_cluster(cluster, conf, redis_server, tmp_path)
    assert manifest["spark"]["master"] == cluster["url"] and manifest["annotated"]["documents"] == len(docs)
    table = read_output(tmp_path / "out")
    assert_matches_reference(table, reference_text_scores(model, fitted, spark, docs, stride=WINDOW // 2))
    assert list(cluster["work"].glob("worker*/app-*/*/stderr")), "no executor ran on the standalone workers"
