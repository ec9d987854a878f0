"""The typed config: YAML + --set overrides, errors that name the field, redaction."""

from __future__ import annotations

import pytest

from skol_spark.job.config import JobConfig, config_from_dict, load_config, redact_url
from skol_spark.errors import ConfigError


def write(tmp_path, text: str) -> str:
    path = tmp_path / "job.yaml"
    path.write_text(text)
    return str(path)


def test_yaml_and_overrides_build_a_frozen_typed_config(tmp_path):
    conf = write(tmp_path, "model:\n  name: m\n  version: 3\ninput:\n  path: in\noutput:\n  path: out\n"
                           "  partition_by: [model_version]\nscoring:\n  batch_size: 128\n")
    config = load_config(conf, ["output.mode=append", "scoring.stride=4", "job.spark_conf={a.b: 1}"])
    assert config.model.version == "3" and config.scoring.batch_size == 128 and config.scoring.stride == 4
    assert config.output.mode == "append" and config.output.partition_by == ("model_version",)
    assert config.job.spark_conf == (("a.b", "1"),)
    with pytest.raises(AttributeError):
        config.output.mode = "error"  # type: ignore[misc]
    # one Spark setting at a time, merged into the file's spark_conf (values stay strings)
    conf = write(tmp_path, "job:\n  spark_conf:\n    spark.a: '1'\n")
    config = load_config(conf, ["job.spark_conf.spark.driver.extraJavaOptions=-Xss4m -Dx=1", "job.spark_conf.spark.b=2"])
    assert dict(config.job.spark_conf) == {"spark.a": "1", "spark.driver.extraJavaOptions": "-Xss4m -Dx=1",
                                           "spark.b": "2"}


@pytest.mark.parametrize("override, field", [
    ("output.mode=upsert", "output.mode"),
    ("scoring.batch_size=zero", "scoring.batch_size"),
    ("scoring.bad_input=ignore", "scoring.bad_input"),
    ("scoring.warm_up=yes", "scoring.warm_up"),
    ("scoring.predictor=fast", "scoring.predictor"),
    ("scoring.sort=never", "scoring.sort"),
    ("input.validation=arrow", "input.validation"),
    ("job.jvm_class_archive=on", "job.jvm_class_archive"),
    ("job.jvm_class_archive=off", "YAML reads on/off"),  # YAML false: refused with the reason
    ("job.jvm_jit=c1", "job.jvm_jit"),

    ("scoring.bad_input=quarantine", "quarantine_path"),
    ("model.nmae=x", "model: unknown key"),
    ("outptu.mode=error", "unknown config section"),
    ("output.mode", "expected section.key=value"),
    ("scoring.stride=9", "stride"),
    ("redis.socket_timeout=0", "socket_timeout"),
    ("output.dynamic_partition_overwrite=true", "partition_by"),
    ("output.format=csv", "output.format: csv cannot hold the probabilities column"),
    ("output.format=text", "use parquet (the default), orc or json"),
])
def test_bad_values_name_the_field(override, field):
    overrides = [override] + (["scoring.window_size=8"] if "stride" in override else [])
    with pytest.raises(ConfigError) as err:
        load_config(None, overrides)
    assert field in str(err.value)


def test_missing_file_and_bad_yaml_are_config_errors(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "nope.yaml")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(write(tmp_path, "model: [unclosed\n"))


def test_redaction_hides_url_passwords():
    assert redact_url("redis://scorer:s3cret@host:6379/0") == "redis://scorer:***@host:6379/0"
    assert redact_url("rediss://:s3cret@host:6380") == "rediss://:***@host:6380"
    config = load_config(None, ["redis.url=redis://u:canary-pw@h:1/0"])
    assert "canary-pw" not in repr(config.redacted())
    assert JobConfig().redacted()["redis"]["url"] == ""


def test_shipped_example_configs_parse():
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent / "conf"
    files = sorted(root.glob("*.yaml")) + sorted(root.glob("databricks/*.yaml"))
    assert len(files) >= 2
    for path in files:
        load_config(path)


def test_watermark_without_its_column_is_refused():
    with pytest.raises(ConfigError, match="needs input.watermark_col"):
        config_from_dict({"model": {"name": "m"}, "input": {"path": "in", "watermark_min": "2026-11-01"},
                          "output": {"path": "out"}})


@pytest.mark.parametrize("overrides, needs", [
    ([], False),  # the default: local[*] with a warm-up, whose workers make the smoke test
    (["job.master=local[2,2]"], False),
    (["scoring.warm_up=never"], True),  # the driver's own smoke test needs TensorFlow
    (["job.master=spark://head:7077"], True),  # a cluster: no warm-up on auto
    (["job.master=local-cluster[2,1,1024]"], True),
    (["job.master=spark://head:7077", "scoring.warm_up=always"], False),
    (["job.spark_conf.spark.python.worker.reuse=false"], True),  # no worker left to score with the warm model
])
def test_the_driver_imports_tensorflow_only_when_it_makes_the_smoke_test(tmp_path, overrides, needs):
    from skol_spark.cli.main import driver_needs_tensorflow

    config = load_config(write(tmp_path, "model:\n  name: m\ninput:\n  path: in\noutput:\n  path: out\n"), overrides)
    assert driver_needs_tensorflow(config) is needs


@pytest.mark.parametrize("warm_up, needs", [("auto", False), ("never", True)])
def test_a_running_session_tells_whether_the_driver_needs_tensorflow(spark, tmp_path, warm_up, needs):
    """Under spark-submit the CLI decides once the session exists (spark-submit chose the master)."""
    from skol_spark.cli.main import driver_needs_tensorflow

    assert spark.sparkContext.master.startswith("local")
    config = load_config(write(tmp_path, "model:\n  name: m\ninput:\n  path: in\noutput:\n  path: out\n"),
                         [f"scoring.warm_up={warm_up}"])
    assert driver_needs_tensorflow(config, spark.sparkContext) is needs


@pytest.mark.parametrize("override, replacement", [
    ("input.validation=spark", "one Spark scan"),
    ("job.jvm_jit=default", "spark.driver.extraJavaOptions"),
    ("job.prestart_worker=never", "Spark's own daemon"),
])
def test_a_removed_key_is_refused_naming_what_replaced_it(override, replacement):
    key = override.split("=")[0]
    with pytest.raises(ConfigError) as e:
        load_config(None, [override])
    assert f"{key} was removed" in str(e.value) and replacement in str(e.value)
