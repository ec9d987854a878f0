"""The Databricks wheel task, checked as far as possible without a workspace.

The wheel is built the way the README says; the job definition in
conf/databricks must name an entry point the wheel really has, and its
parameters must parse into a valid config with the same parser the task runs.
On Databricks the job reuses the runtime's SparkSession and must never stop it.
"""

from __future__ import annotations

import configparser
import json
import shlex
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from skol_spark.cli import main as cli
from skol_spark.job.config import load_config, require_job_fields

ROOT = Path(__file__).resolve().parent.parent
JOB_JSON = ROOT / "conf" / "databricks" / "job.json"
JOB_YAML = ROOT / "conf" / "databricks" / "job.yaml"


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation", "-w",
                    str(out), str(ROOT)], check=True, timeout=300, capture_output=True)
    (found,) = out.glob("skol_spark-*.whl")
    return found


def wheel_entry_points(whl: Path) -> dict[str, str]:
    with zipfile.ZipFile(whl) as z:
        name = next(n for n in z.namelist() if n.endswith(".dist-info/entry_points.txt"))
        parser = configparser.ConfigParser(delimiters=("=",))
        parser.optionxform = str  # keep names as written
        parser.read_string(z.read(name).decode())
    return {k.strip(): v.strip() for k, v in parser["console_scripts"].items()}


def test_wheel_has_the_entry_points_and_every_module(wheel):
    points = wheel_entry_points(wheel)
    assert points["skol-spark"] == "skol_spark.cli.main:main"
    assert points["skol-spark-job"] == "skol_spark.cli.main:job_entry"
    with zipfile.ZipFile(wheel) as z:
        names = set(z.namelist())
        metadata = z.read(next(n for n in names if n.endswith(".dist-info/METADATA"))).decode()
    modules = {f"skol_spark/{p.name}" for p in (ROOT / "skol_spark").glob("*.py")}
    assert modules <= names, f"missing from the wheel: {sorted(modules - names)}"
    assert "skol_spark/py.typed" in names
    assert not any(n.startswith(("tests/", "benchmarks/", "jobs/")) for n in names)
    # Databricks provides Spark: the wheel must not pull PyPI pyspark over the runtime (only the [spark] extra)
    requires = [line for line in metadata.splitlines() if line.startswith("Requires-Dist:")]
    pyspark = [line for line in requires if "pyspark" in line]
    assert pyspark and all("extra ==" in line for line in pyspark), pyspark
    assert any(line.startswith("Requires-Dist: keras>=3.15") for line in requires), requires


def test_job_definition_names_what_the_wheel_provides(wheel):
    job = json.loads(JOB_JSON.read_text())
    (task,) = job["tasks"]
    wheel_task = task["python_wheel_task"]
    assert wheel_task["package_name"] == "skol_spark" == wheel.name.split("-")[0]
    target = wheel_entry_points(wheel)[wheel_task["entry_point"]]
    module, func = target.split(":")
    assert callable(getattr(__import__(module, fromlist=[func]), func))
    assert any(lib.get("whl", "").endswith(wheel.name) for lib in task["libraries"]), \
        f"job.json installs another wheel than {wheel.name} (bump both with the version)"
    cron = job["schedule"]["quartz_cron_expression"].split()
    assert len(cron) in (6, 7) and job["schedule"]["timezone_id"]
    assert job["max_concurrent_runs"] == 1  # two runs of one batch must not race (the output lock would refuse)
    cluster = task["new_cluster"]
    assert cluster["spark_conf"]["spark.sql.execution.arrow.maxRecordsPerBatch"].isdigit()
    env = cluster["spark_env_vars"]
    assert env["SKOL_REDIS_PASSWORD"] == "{{secrets/skol/redis-password}}"
    assert env["TF_NUM_INTRAOP_THREADS"] == env["TF_NUM_INTEROP_THREADS"] == "1"
    # secrets never in Spark conf (Spark's event log records it)
    assert not any("redis" in k.lower() or "secret" in v for k, v in cluster["spark_conf"].items())


def test_job_parameters_parse_into_a_valid_config(capsys):
    job = json.loads(JOB_JSON.read_text())
    params = list(job["tasks"][0]["python_wheel_task"]["parameters"])
    conf_at = params.index("--conf") + 1
    assert params[conf_at].startswith("/dbfs/") and Path(params[conf_at]).name == JOB_YAML.name
    params[conf_at] = str(JOB_YAML)  # /dbfs/skol/conf/job.yaml is where README says to copy it
    args = cli.build_parser().parse_args(params)
    assert args.command == "predict"
    config = load_config(args.conf, args.overrides)
    require_job_fields(config)
    assert config.output.mode == "incremental" and config.model.name
    assert config.job.nothing_to_do_exit_code == 0  # no "skipped" state on Databricks: nothing new is a success
    assert cli.main([*params, "--dry-run"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["output"]["path"] == config.output.path


def test_job_entry_raises_the_exit_code(monkeypatch):
    """A wheel task ignores the return value: failures must surface as SystemExit(code)."""
    monkeypatch.setattr(sys, "argv", ["skol-spark-job", "predict", "--conf", "/no/such.yaml"])
    with pytest.raises(SystemExit) as raised:
        cli.job_entry()
    assert raised.value.code == 2
    monkeypatch.setattr(sys, "argv", ["skol-spark-job", "predict", "--conf", str(JOB_YAML), "--dry-run"])
    assert cli.job_entry() is None


def test_on_databricks_the_runtime_session_is_reused_and_never_stopped(spark, monkeypatch, tmp_path, redis_server,
                                                                       redis_client, closure_model):
    """predict on Databricks: the runtime's session (here: the active test session) survives the run."""
    from skol_spark.store.model_store import ModelStore
    from tests.helpers import LABELS, make_documents, read_output, write_input

    ModelStore(redis_client, prefix="dbx").publish(closure_model, "skol-lines", labels=LABELS,
                                                   aliases=["production"])
    lines = write_input(tmp_path / "in" / "part-0.parquet", make_documents("x", 3, seed=9))
    monkeypatch.setenv("DATABRICKS_RUNTIME_VERSION", "15.4")
    stopped = []
    monkeypatch.setattr(type(spark), "stop", lambda self: stopped.append(self))
    argv = ["predict", "--conf", str(JOB_YAML), "--quiet", "--set", f"redis.url={redis_server.url}",
            "--set", "redis.prefix=dbx", "--set", "scoring.bad_input=refuse",
            "--set", f"input.path={tmp_path / 'in'}", "--set", f"output.path={tmp_path / 'out'}",
            "--set", f"output.manifest_path={tmp_path / 'runs'}", "--set", "output.report=false"]
    assert cli.main(argv) == 0  # no session injected: main finds the runtime's active session
    assert read_output(tmp_path / "out").num_rows == lines
    # the next night finds nothing new: a success (job.yaml sets nothing_to_do_exit_code 0), session injected
    from skol_spark.errors import NothingToDo

    with pytest.raises(NothingToDo) as nothing:
        cli.predict_command(cli.build_parser().parse_args(argv), spark=spark)
    assert nothing.value.exit_code_override == 0
    assert stopped == []
    assert spark.range(3).count() == 3


def test_readme_job_command_is_what_the_job_runs():
    """The equivalent shell command (README) uses the same parameters."""
    params = json.loads(JOB_JSON.read_text())["tasks"][0]["python_wheel_task"]["parameters"]
    assert shlex.join(["skol-spark", *params]).startswith("skol-spark predict --conf /dbfs/")
