"""A newcomer's first hour (issue 22): the two README commands, then the README's next commands.

Cheap checks, no Spark and no TensorFlow: the scripts install the ``skol-spark``
command, the demo publishes into the store ``conf/local.yaml`` reads, the store
it starts outlives it and stops on request, and every subcommand has a
``--help``. The whole sequence (demo, then ``skol-spark predict --conf
conf/local.yaml``) runs in ``tests/test_submit.py``'s slow demo test.
"""

from __future__ import annotations

import argparse
import os
import re
from pathlib import Path

import pytest

from skol_spark.cli import demo_store, demo_text, demo_vectors
from skol_spark.cli.demo import add_demo_arguments
from skol_spark.cli.main import main
from skol_spark.job.config import load_config
from skol_spark.job.model_loading import redis_settings
from skol_spark.store.embedded import free_port

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("script", ["run-tests.sh", "jobs/demo.sh"])
def test_both_first_commands_install_the_skol_spark_command(script):
    text = (ROOT / script).read_text()
    installs = [line for line in text.splitlines()
                if re.search(r"\.venv/bin/python -m pip install .*-e \.(\s|$)", line) and not line.startswith("#")]
    assert installs, f"{script} does not install the package into .venv (pip install -e .)"
    if script == "jobs/demo.sh":  # and the demo runs through that command, as the README's next steps do
        assert re.search(r"^exec \.venv/bin/skol-spark demo \"\$@\"$", text, re.M)


def test_the_demo_publishes_into_the_store_conf_local_yaml_reads(monkeypatch):
    monkeypatch.delenv("SKOL_REDIS_URL", raising=False)
    config = load_config(ROOT / "conf" / "local.yaml")
    defaults = add_demo_arguments(argparse.ArgumentParser()).parse_args([])
    store_url = f"redis://{demo_store.DEFAULT_HOST}:{demo_store.DEFAULT_PORT}/0"
    assert redis_settings(config).url == store_url
    assert defaults.kind == "text"  # the default demo is the one conf/local.yaml scores
    old_flag = add_demo_arguments(argparse.ArgumentParser()).parse_args(["--text"])
    assert vars(old_flag) == vars(defaults)  # --text, the text demo's old name, still runs exactly the default
    assert (config.model.name, config.model.version) == (demo_text.MODEL, "production")
    assert Path(config.input.path) == Path(defaults.workdir) / demo_text.CORPUS
    assert config.input.document_text_col == demo_text.TEXT_COL
    assert Path(config.output.path) == Path(defaults.output)
    assert Path(config.output.annotated_path) == Path(defaults.output).parent / "annotated"  # print_annotated's
    monkeypatch.setenv("SKOL_REDIS_URL", "redis://127.0.0.1:1/3")  # a URL the user set wins on both sides
    assert redis_settings(load_config(ROOT / "conf" / "local.yaml")).url == "redis://127.0.0.1:1/3"
    assert demo_store.choose_store(Path("unused")) == demo_store.DemoStore("redis://127.0.0.1:1/3", "SKOL_REDIS_URL")


def test_the_demo_store_outlives_the_demo_and_stops_on_request(tmp_path, monkeypatch):
    monkeypatch.delenv("SKOL_REDIS_URL", raising=False)
    port = free_port()
    assert not demo_store.answers_ping("127.0.0.1", port)
    started = demo_store.choose_store(tmp_path, port=port)
    try:
        assert started == demo_store.DemoStore(f"redis://127.0.0.1:{port}/0", "started")
        pid = int(demo_store.pid_file(tmp_path).read_text())
        assert demo_store.answers_ping("127.0.0.1", port)
        # the next demo (or any README command) finds the same server rather than starting another
        assert demo_store.choose_store(tmp_path, port=port).origin == "running"
        assert int(demo_store.pid_file(tmp_path).read_text()) == pid
    finally:
        said = demo_store.stop_kept_server(tmp_path)
    assert f"stopped the demo redis-server (pid {pid})" in said
    assert not demo_store.answers_ping("127.0.0.1", port)
    assert not os.path.exists(f"/proc/{pid}/cmdline") or b"redis-server" not in Path(f"/proc/{pid}/cmdline").read_bytes()
    assert "no demo redis-server to stop" in demo_store.stop_kept_server(tmp_path)


def test_stop_redis_never_kills_a_process_that_is_not_the_demo_server(tmp_path):
    folder = tmp_path / "redis"
    folder.mkdir()
    (folder / "redis.pid").write_text(str(os.getpid()))  # a pid reused by another process: this test's
    said = demo_store.stop_kept_server(tmp_path)
    assert "no longer running" in said and not (folder / "redis.pid").exists()


@pytest.mark.parametrize("command", ["report", "demo", "predict", "jvm-archive", "model"])
def test_every_subcommand_has_help(command, capsys):
    assert main([command, "--help"]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"usage: skol-spark {command}"), out[:200]


def test_demo_help_says_text_is_the_default_and_vectors_the_other(capsys):
    assert main(["demo", "--help"]) == 0
    out = " ".join(capsys.readouterr().out.split())
    assert "By default, in text" in out and "--vectors runs the vector demo instead" in out
    assert "--vectors the vector demo instead" in out and "--text the text demo, the default" in out
    assert demo_vectors.MODEL != demo_text.MODEL  # the vector demo never replaces the model conf/local.yaml uses
    assert main(["demo", "--vectors", "--text"]) == 2
    assert "not allowed with argument" in capsys.readouterr().err


def test_predict_help_says_conf_is_required_and_it_is(capsys):
    assert main(["predict", "--help"]) == 0
    out = capsys.readouterr().out
    assert "--conf FILE.yaml" in out.splitlines()[0] and "(required;" in out
    assert main(["predict", "--set", "model.name=demo"]) == 2
    assert "the following arguments are required: --conf" in capsys.readouterr().err
