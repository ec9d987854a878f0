"""Fault matrix, secrets and supply chain rows S1-S4 (docs/reliability.md)."""

from __future__ import annotations

import re
import threading
import uuid
from pathlib import Path

import pytest

import skol_spark
from skol_spark import errors
from skol_spark.store.embedded import start_redis
from skol_spark.store.connection import RedisSettings, connect
from skol_spark.store.model_store import ModelStore
from tests.fault_tools import ROOT, predict_args, run_cli, run_cli_subprocess
from tests.helpers import LABELS, documents_table, make_documents, read_output, write_config, write_table

MODEL = "fs"
PACKAGE = Path(skol_spark.__file__).parent


@pytest.fixture(scope="module")
def input_path(tmp_path_factory):
    path = tmp_path_factory.mktemp("fs-input") / "lines"
    write_table(path, documents_table(make_documents("d", 8, seed=5)))
    return path


def test_S1_password_canary_absent_from_event_log_output_and_manifest(tmp_path, closure_model, input_path):
    canary = f"canary-{uuid.uuid4().hex}"
    server = start_redis("--requirepass", canary)
    try:
        client = connect(RedisSettings(url=server.url, password_env="", password_file=_file(tmp_path, canary)))
        ModelStore(client, prefix="s1").publish(closure_model, MODEL, labels=LABELS, aliases=["production"])
        client.close()
        events = tmp_path / "events"
        events.mkdir()
        conf = write_config(tmp_path / "job.yaml", redis_url=server.url, prefix="s1", model=MODEL,
                            input_path=input_path, output_path=tmp_path / "out",
                            job={"master": "local[2]", "progress": True,
                                 "spark_conf": {"spark.eventLog.enabled": "true",
                                                "spark.eventLog.dir": f"file://{events}"}})
        result = run_cli_subprocess(["--debug", *predict_args(conf)[:-1]], env={"SKOL_REDIS_PASSWORD": canary},
                                    timeout=400)
    finally:
        server.stop()
        (tmp_path / "pw").unlink(missing_ok=True)

    assert result.code == 0, result.err[-3000:]
    assert list(events.iterdir()), "the event log was written"
    assert any(p.name == "manifest.json" for p in tmp_path.rglob("*"))
    assert canary not in result.out and canary not in result.err
    for path in tmp_path.rglob("*"):
        if path.is_file():
            assert canary.encode() not in path.read_bytes(), f"password found in {path}"


def _file(tmp_path: Path, secret: str) -> str:
    path = tmp_path / "pw"
    path.write_text(secret)
    path.chmod(0o600)
    return str(path)


UNSAFE = [
    (r"\b(c?pickle|cloudpickle|dill|joblib)\.loads?\(", "unpickling"),
    (r"allow_pickle\s*=\s*True", "numpy object arrays"),
    (r"safe_mode\s*=\s*False", "Keras safe mode off"),
    (r"enable_unsafe_deserialization\(\)", "process-wide Keras unsafe mode"),
    (r"\byaml\.(unsafe_)?load\(", "yaml.load without SafeLoader"),
    (r"(?<![\w.])(eval|exec)\(", "eval/exec"),
    (r"\bmarshal\.loads?\(", "marshal"),
]


def test_S2_no_pickle_loads_or_unsafe_keras_deserialization_in_the_package():
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        lines = path.read_text().splitlines()
        for number, line in enumerate(lines, 1):
            code = line.split("#", 1)[0]
            if code.strip().startswith(("\"\"\"", "``")) or "``" in code:
                continue  # docstrings describing what is refused
            for pattern, why in UNSAFE:
                if re.search(pattern, code):
                    found.append(f"{path.relative_to(PACKAGE)}:{number}: {why}: {line.strip()}")
            if "extractall(" in code and "filter" not in " ".join(lines[max(0, number - 3):number]):
                found.append(f"{path.relative_to(PACKAGE)}:{number}: tar extraction without filter='data'")
    assert found == []
    # the one deserialization of an architecture is the vetted one (model.builder.rebuild_model), with safe
    # mode as an argument; nothing calls model_from_json, which has none
    calls = [str(p.relative_to(PACKAGE)) for p in PACKAGE.rglob("*.py")
             if "deserialize_keras_object(" in p.read_text() or "model_from_json(" in p.read_text()]
    assert calls == ["model/builder.py"]
    assert "safe_mode=not allow_unsafe" in (PACKAGE / "model" / "builder.py").read_text()


def test_S3_keras_floor_and_legacy_keras_refused(spark, tmp_path, redis_server, redis_client, closure_model,
                                                 input_path, monkeypatch):
    import keras

    major, minor = (int(x) for x in keras.__version__.split(".")[:2])
    assert (major, minor) >= (3, 15)
    assert re.search(r"^keras>=3\.15", (ROOT / "requirements.txt").read_text(), re.M)
    prefix = f"fs3{uuid.uuid4().hex[:6]}"
    ModelStore(redis_client, prefix=prefix).publish(closure_model, MODEL, labels=LABELS, aliases=["production"])
    conf = write_config(tmp_path / "job.yaml", redis_url=redis_server.url, prefix=prefix, model=MODEL,
                        input_path=input_path, output_path=tmp_path / "out")
    monkeypatch.setenv("TF_USE_LEGACY_KERAS", "1")

    result = run_cli(predict_args(conf))

    assert result.code == errors.DependencyError.exit_code == 3, result.err[-2000:]
    assert "TF_USE_LEGACY_KERAS is set" in result.error_line
    assert not (tmp_path / "out").exists()


READ_COMMANDS = {"PING", "AUTH", "HELLO", "CLIENT", "SELECT", "GET", "MGET", "HGET", "HGETALL", "ZSCORE", "ZRANGE",
                 "SMEMBERS", "EXISTS", "STRLEN", "GETRANGE", "TYPE", "TTL", "QUIT", "RESET", "SCAN"}


def test_S4_scoring_job_sends_read_commands_only(spark, tmp_path, redis_server, redis_client, closure_model,
                                                 input_path, monkeypatch):
    prefix = f"fs4{uuid.uuid4().hex[:6]}"
    ModelStore(redis_client, prefix=prefix).publish(closure_model, MODEL, labels=LABELS, aliases=["production"])
    user = f"s4{uuid.uuid4().hex[:6]}"
    redis_client.execute_command("ACL", "SETUSER", user, "on", ">s4-pw", "~*", "resetchannels", "-@all",
                                 "+@read", "+ping", "+@connection")
    seen: list[str] = []
    ready, stop = threading.Event(), threading.Event()

    def watch():
        monitor_client = connect(RedisSettings(url=redis_server.url, socket_timeout=600))
        with monitor_client.monitor() as m:
            ready.set()
            while not stop.is_set():
                try:
                    seen.append(m.next_command()["command"])
                except Exception:  # the server went away at teardown
                    return

    thread = threading.Thread(target=watch, daemon=True)
    thread.start()
    ready.wait(10)
    monkeypatch.setenv("SKOL_REDIS_PASSWORD", "s4-pw")
    conf = write_config(tmp_path / "job.yaml", redis_url=f"redis://{user}@127.0.0.1:{redis_server.port}/0",
                        prefix=prefix, model=MODEL, input_path=input_path, output_path=tmp_path / "out")
    try:
        result = run_cli(predict_args(conf))
    finally:
        stop.set()
        redis_client.execute_command("ACL", "DELUSER", user)
        redis_client.ping()  # wakes the monitor up (MONITOR does not show ACL commands)
        thread.join(timeout=10)


    assert result.code == 0, result.err[-2000:]
    assert read_output(tmp_path / "out").num_rows > 0
    commands = {c.split()[0].upper() for c in seen if c.strip()} - {"ACL"}  # the test's own DELUSER
    assert {"MGET", "GET"} <= commands, seen[:20]  # the monitor saw the job's reads
    assert commands <= READ_COMMANDS, commands - READ_COMMANDS


# ---- hardening (issue 22, item 9): credentials in the URL itself ------------------------------------------------
def test_password_in_the_url_query_string_appears_nowhere(spark, tmp_path, closure_model, input_path):
    """``redis://user@host/0?password=X`` (redis-py reads it): never printed, logged, put into an error or
    a manifest, by ``predict`` (dry run, run-config log line, manifest.json) or ``model`` commands."""
    import logging

    from skol_spark.job.config import redact_url

    canary, wrong = f"canary-{uuid.uuid4().hex}", f"wrong-{uuid.uuid4().hex}"
    server = start_redis("--requirepass", canary)
    root = logging.getLogger()
    level = root.level
    results = []
    try:
        url = f"redis://default@127.0.0.1:{server.port}/0?password={canary}&db=0"
        client = connect(RedisSettings(url=url, password_env=""))  # the query-string password authenticates
        ModelStore(client, prefix="q").publish(closure_model, MODEL, labels=LABELS, aliases=["production"])
        client.close()
        conf = write_config(tmp_path / "job.yaml", redis_url=url, prefix="q", model=MODEL, input_path=input_path,
                            output_path=tmp_path / "out")
        root.setLevel(logging.DEBUG)  # the run-config line is a DEBUG record (the manifest keeps the config)
        dry = run_cli(["predict", "--conf", conf, "--dry-run"])
        ran = run_cli(["--debug", "predict", "--conf", conf])
        model = ["--redis-url", url, "--prefix", "q"]
        listed = run_cli(["model", "list", MODEL, *model])
        shown = run_cli(["model", "show", MODEL, "--json", *model])
        bad = [run_cli([*debug, "model", "list", "--redis-url", u]) for debug in ([], ["--debug"]) for u in (
            url.replace(canary, wrong),  # wrong password in the query
            f"redis://default@127.0.0.1:1/0?password={wrong}",  # unreachable, password in the query
            f"redis://default:{wrong}@127.0.0.1:{server.port}/0",  # wrong password in the user info
            f"redis://u:{wrong}/x@127.0.0.1:{server.port}/0",  # an unescaped '/' in the password: a bad port
        )]
        results = [dry, ran, listed, shown, *bad]
    finally:
        root.setLevel(level)
        server.stop()

    assert dry.code == 0 and "password=***" in dry.out, dry.text[-2000:]
    assert ran.code == 0 and "run config:" in ran.err and "password=***" in ran.err, ran.text[-3000:]
    assert listed.code == 0 and "production" in listed.out and shown.code == 0, listed.text + shown.text
    assert [r.code for r in bad] == [10, 10, 10, 2] * 2, [r.error_line for r in bad]
    for result in results:
        assert canary not in result.text and wrong not in result.text, result.text[-2000:]
    manifests = [p for p in tmp_path.rglob("manifest.json")]
    assert manifests and "password=***" in manifests[0].read_text()
    for path in tmp_path.rglob("*"):
        if path.is_file() and path != Path(conf):  # the user's own config holds the URL as they wrote it
            data = path.read_bytes()
            assert canary.encode() not in data and wrong.encode() not in data, f"password found in {path}"
    for given, shown_as in [  # every credential redis-py would take from a URL is masked, nothing else
        ("redis://alice:pw@h:6379/0?password=x1&ssl_password=x2&db=2&socket_timeout=3",
         "redis://alice:***@h:6379/0?password=***&ssl_password=***&db=2&socket_timeout=3"),
        ("rediss://h/0?username=bob&password=p%40ss#frag", "rediss://h/0?username=***&password=***#***"),
        ("redis://u:p@ss/w0rd@h:1/0", "redis://u:***@h:1/0"),
        ("unix://:pw@/run/redis.sock?db=1", "unix://:***@/run/redis.sock?db=1"),
        ("redis://127.0.0.1:6379/0", "redis://127.0.0.1:6379/0"),
    ]:
        assert redact_url(given) == shown_as
