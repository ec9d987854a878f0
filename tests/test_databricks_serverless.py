"""The serverless Databricks job (Spark Connect), checked as far as possible without a workspace.

Like tests/test_databricks.py for the classic job cluster: the definition must
name an entry point the built wheel has, install that wheel through its
environment, and its parameters must parse into a valid config with the
parser the task runs. Serverless compute has no DBFS mounts and no cluster
environment: every location is a Unity Catalog volume or table, and the Redis
password comes from a secret the driver reads itself.
"""

from __future__ import annotations

import json
import sys
import types
from pathlib import Path

import pytest

from skol_spark.cli import main as cli
from skol_spark.errors import ConfigError
from skol_spark.job.config import load_config, require_job_fields
from skol_spark.job.localfs import local_path
from tests.test_databricks import wheel, wheel_entry_points  # noqa: F401  (the module-scoped wheel fixture)

ROOT = Path(__file__).resolve().parent.parent
JOB_JSON = ROOT / "conf" / "databricks" / "job-serverless.json"
JOB_YAML = ROOT / "conf" / "databricks" / "job-serverless.yaml"


def test_serverless_job_installs_the_wheel_through_its_environment(wheel):  # noqa: F811
    job = json.loads(JOB_JSON.read_text())
    (task,) = job["tasks"]
    assert not {"new_cluster", "existing_cluster_id", "job_cluster_key", "libraries"} & set(task), \
        "a serverless task names no cluster and installs libraries through its environment"
    (environment,) = [e for e in job["environments"] if e["environment_key"] == task["environment_key"]]
    assert any(dep.endswith(wheel.name) and dep.startswith("/Volumes/") for dep in environment["spec"]["dependencies"]), \
        f"the environment installs another wheel than {wheel.name}, or not from a volume"
    assert environment["spec"]["environment_version"].isdigit()
    wheel_task = task["python_wheel_task"]
    assert wheel_task["package_name"] == "skol_spark" == wheel.name.split("-")[0]
    module, func = wheel_entry_points(wheel)[wheel_task["entry_point"]].split(":")
    assert callable(getattr(__import__(module, fromlist=[func]), func))
    assert job["max_concurrent_runs"] == 1
    assert "{{secrets/" not in JOB_JSON.read_text()  # no cluster environment: the driver reads the secret


def test_serverless_parameters_parse_into_a_config_on_volumes_and_tables(capsys):
    params = list(json.loads(JOB_JSON.read_text())["tasks"][0]["python_wheel_task"]["parameters"])
    conf_at = params.index("--conf") + 1
    assert params[conf_at].startswith("/Volumes/") and Path(params[conf_at]).name == JOB_YAML.name
    params[conf_at] = str(JOB_YAML)
    config = load_config(JOB_YAML, cli.build_parser().parse_args(params).overrides)
    require_job_fields(config)
    assert "dbfs" not in json.dumps(config.redacted()).lower()
    for key, value in (("output.path", config.output.path), ("output.manifest_path", config.output.manifest_path),
                       ("scoring.quarantine_path", config.scoring.quarantine_path)):
        assert value.startswith("/Volumes/") and local_path(value), f"{key} {value}: not a volume path"
    assert config.input.table.count(".") == 2  # catalog.schema.table
    assert config.redis.password_secret == "skol/redis-password"
    assert ":" not in config.redis.url.split("://", 1)[1].split("@")[0]  # no password in the URL
    assert config.output.mode == "incremental" and config.job.nothing_to_do_exit_code == 0
    assert cli.main([*params, "--dry-run"]) == 0
    assert json.loads(capsys.readouterr().out)["redis"]["password_secret"] == "skol/redis-password"


def test_the_redis_password_comes_from_the_secret(monkeypatch):
    """dbutils exists only on Databricks: a stand-in module records what the driver asks for."""
    from skol_spark.store.connection import RedisSettings, read_password

    asked = []

    class Secrets:
        def get(self, scope, key):
            asked.append((scope, key))
            return "s3cret-canary"

    runtime = types.ModuleType("databricks.sdk.runtime")
    runtime.dbutils = types.SimpleNamespace(secrets=Secrets())
    for name in ("databricks", "databricks.sdk"):
        monkeypatch.setitem(sys.modules, name, types.ModuleType(name))
    monkeypatch.setitem(sys.modules, "databricks.sdk.runtime", runtime)
    monkeypatch.setenv("SKOL_REDIS_PASSWORD", "not-this-one")
    assert read_password(RedisSettings(password_secret="skol/redis-password")) == "s3cret-canary"
    assert asked == [("skol", "redis-password")]
    with pytest.raises(ConfigError, match="expected <scope>/<key>"):
        read_password(RedisSettings(password_secret="no-slash"))


def test_a_secret_outside_databricks_is_refused_naming_the_alternatives(monkeypatch):
    from skol_spark.store.connection import RedisSettings, read_password

    monkeypatch.setitem(sys.modules, "databricks.sdk.runtime", None)  # import fails
    with pytest.raises(ConfigError, match="SKOL_REDIS_PASSWORD or redis.password_file"):
        read_password(RedisSettings(password_secret="skol/redis-password"))
