"""``skol-spark model ...`` as a user runs it: real subprocesses with a timeout, a real redis-server.

Only ``publish`` and ``verify`` import TensorFlow (~5 s each); the other actions stay light, so the
whole module runs a dozen subprocesses. ``--help`` of every action is checked in-process.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import pytest

from skol_spark.cli.main import main
from skol_spark.store.embedded import free_port, start_redis
from skol_spark.errors import ConfigError, ModelIntegrityError, ModelNotFoundError, RedisUnavailableError
from skol_spark.cli.model import ACTIONS
from tests.helpers import LABELS

ROOT = Path(__file__).resolve().parents[1]
NAME = "lines"


@dataclass
class Result:
    code: int
    out: str
    err: str
    seconds: float


def run_cli(*args: str, password: str | None = None, timeout: float = 120) -> Result:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SKOL_REDIS")}
    env.update(PYTHONPATH=str(ROOT), TF_CPP_MIN_LOG_LEVEL="3")
    if password is not None:
        env["SKOL_REDIS_PASSWORD"] = password
    start = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", "skol_spark.cli.main", "model", *args], capture_output=True,
                          text=True, timeout=timeout, env=env, cwd=ROOT)
    return Result(proc.returncode, proc.stdout, proc.stderr, time.monotonic() - start)


@pytest.fixture(scope="module")
def closure_model():
    """Compiled with the closure loss, not trained: the files then carry the unloadable loss name, and the
    module skips a fit (CPU matters here: every publish/verify subprocess imports TensorFlow)."""
    from tests.helpers import build_bilstm, make_closure_loss

    model = build_bilstm(seed=3)
    model.compile(optimizer="adam", loss=make_closure_loss([1.0, 2.0, 0.5]), metrics=["accuracy"])
    return model


@pytest.fixture(scope="module")
def model_files(closure_model, tmp_path_factory):
    folder = tmp_path_factory.mktemp("models")
    closure_model.save(folder / "model.keras")
    closure_model.save(folder / "model.h5")  # Keras 3 writing the HDF5 format
    return folder


@pytest.fixture
def cli_store(redis_client):
    """A fresh key prefix per test, so ``list`` output does not depend on test order."""
    from skol_spark.store.model_store import ModelStore

    return ModelStore(redis_client, prefix=f"cli{uuid.uuid4().hex[:8]}")


def opts(redis_server, cli_store) -> list[str]:
    return ["--redis-url", redis_server.url, "--prefix", cli_store.prefix]


def test_every_action_has_help(capsys):
    for action in ACTIONS:
        assert main(["model", action, "--help"]) == 0
        out = capsys.readouterr().out
        assert out.startswith(f"usage: skol-spark model {action}"), out[:200]
        assert "--redis-url" in out and "--prefix" in out
    assert main(["model", "--help"]) == 0
    out = capsys.readouterr().out
    assert all(action in out for action in ACTIONS), out


def test_publish_list_show_alias_verify_delete(redis_server, cli_store, model_files, closure_model):
    o = opts(redis_server, cli_store)
    labels = ",".join(LABELS)

    r = run_cli("publish", NAME, str(model_files / "model.keras"), "--labels", labels, "--alias", "production",
                "--chunk-size", "1000", "--stride", "4", *o)
    assert (r.code, r.out.strip()) == (0, f"published {NAME} v1"), r.err[-2000:]
    r = run_cli("publish", NAME, str(model_files / "model.h5"), "--labels", labels, *o)
    assert (r.code, r.out.strip()) == (0, f"published {NAME} v2"), r.err[-2000:]

    keras_file, h5_file = cli_store.load(NAME, 1), cli_store.load(NAME, 2)
    assert keras_file.manifest["weights"]["chunks"] > 1 and keras_file.stride == 4
    assert keras_file.manifest["source"] == {"kind": "publish", "file": "model.keras"}
    assert h5_file.manifest["source"]["file"] == "model.h5"
    assert keras_file.manifest["golden"] == h5_file.manifest["golden"]  # same model through both formats

    r = run_cli("list", *o)
    assert (r.code, r.out) == (0, f"{NAME}\t2 version(s)\tlatest v2\n"), r.err[-2000:]
    r = run_cli("list", NAME, *o)
    rows = [line.split("\t") for line in r.out.splitlines()]
    assert r.code == 0 and [(row[0], row[-1]) for row in rows] == [("v1", "production"), ("v2", "latest")]
    assert rows[0][2] == f"{closure_model.count_params():,} params"

    r = run_cli("show", NAME, "production", *o)
    assert r.code == 0, r.err[-2000:]
    fields = dict(re.split(r"\s{2,}", line, maxsplit=1) for line in r.out.splitlines())
    assert fields["model"] == f"{NAME} v1 (production)"
    assert fields["labels"] == ", ".join(LABELS)
    assert fields["window / stride"] == "8 / 4"
    # the model is loaded uncompiled; the loss and metric names are still read from the file
    assert fields["trained with"] == "accuracy, weighted_categorical_crossentropy"
    assert h5_file.manifest["compile_objects"] == ["accuracy", "weighted_categorical_crossentropy"]
    assert f"in {keras_file.manifest['weights']['chunks']} chunk(s)" in fields["weights"]

    r = run_cli("show", NAME, "v2", "--json", *o)  # "v2" as list prints it
    assert r.code == 0 and json.loads(r.out) == h5_file.manifest

    r = run_cli("alias", NAME, "staging", "2", *o)
    assert (r.code, r.out.strip()) == (0, f"{NAME}: staging -> v2")
    assert cli_store.aliases(NAME) == {"latest": 2, "production": 1, "staging": 2}

    r = run_cli("verify", NAME, "production", *o)
    assert r.code == 0 and "checksums ok, model rebuilt, golden outputs match" in r.out, r.err[-2000:]

    r = run_cli("delete", NAME, "production", *o)
    assert r.code == ConfigError.exit_code and "aliased as production" in r.err and "--force" in r.err
    assert cli_store.versions(NAME) == [1, 2]
    r = run_cli("delete", NAME, "production", "--force", *o)
    assert (r.code, r.out.strip()) == (0, f"deleted {NAME} v1"), r.err[-2000:]
    assert cli_store.versions(NAME) == [2] and "production" not in cli_store.aliases(NAME)


def test_unknown_model_exits_11_listing_what_exists(redis_server, cli_store, closure_model):
    cli_store.publish(closure_model, "known", labels=LABELS)
    r = run_cli("show", "nope", *opts(redis_server, cli_store))
    assert r.code == ModelNotFoundError.exit_code == 11
    assert "model 'nope' not found" in r.err and "known" in r.err and "Traceback" not in r.err


def test_tampered_weights_exit_12(redis_server, cli_store, closure_model):
    version = cli_store.publish(closure_model, "tampered", labels=LABELS)
    chunk = f"{cli_store.prefix}:model:tampered:v{version}:weights:0"
    byte = cli_store.client.getrange(chunk, 100, 100)
    cli_store.client.setrange(chunk, 100, bytes([byte[0] ^ 0x40]))
    r = run_cli("verify", "tampered", str(version), *opts(redis_server, cli_store))
    assert r.code == ModelIntegrityError.exit_code == 12
    assert "weights checksum mismatch" in r.err and "Traceback" not in r.err


def test_model_list_on_an_empty_store_says_so(redis_server, cli_store):
    """Issue 22: an empty store printed nothing; it now says where it looked (stderr; stdout stays empty)."""
    r = run_cli("list", *opts(redis_server, cli_store), timeout=60)
    assert r.code == 0, r.err[-2000:]
    assert r.out == ""
    url = redis_server.url.replace("//:", "//")  # the fixture's URL carries no password
    assert f"no models in the store at {url} (prefix {cli_store.prefix})" in r.err


def test_unreachable_redis_exits_10_quickly_naming_host_and_port():
    port = free_port()  # nothing listens there
    r = run_cli("list", "--redis-url", f"redis://127.0.0.1:{port}/0", timeout=60)
    assert r.code == RedisUnavailableError.exit_code == 10
    assert f"127.0.0.1:{port}" in r.err and "cannot reach Redis" in r.err
    assert r.seconds < 15, r.seconds  # bounded retry, not redis-py's minute


def test_password_comes_from_the_environment_and_is_never_printed():
    password = f"canary-{uuid.uuid4().hex}"
    wrong = f"wrong-{uuid.uuid4().hex}"
    with start_redis("--requirepass", password) as server:
        bad = run_cli("list", "--redis-url", server.url, password=wrong)
        assert bad.code == RedisUnavailableError.exit_code
        assert f"Redis at 127.0.0.1:{server.port} rejected the credentials" in bad.err
        assert "SKOL_REDIS_PASSWORD" in bad.err  # says where the password comes from
        good = run_cli("list", "--redis-url", server.url, password=password)
        assert good.code == 0, good.err[-2000:]
        for result in (bad, good):
            for secret in (password, wrong):
                assert secret not in result.out and secret not in result.err


def test_publishing_a_lambda_file_exits_14_before_keras_runs_it(redis_server, cli_store, tmp_path):
    import keras

    from skol_spark.errors import UnsafeModelError

    canary = tmp_path / "lambda-ran"
    fn = eval(f"lambda x: (__import__('pathlib').Path({str(canary)!r}).write_text('ran'), x)[1]")
    inp = keras.Input((8, 6))
    model = keras.Model(inp, keras.layers.Dense(len(LABELS), activation="softmax")(keras.layers.Lambda(fn)(inp)))
    for ext in ("keras", "h5"):
        model.save(tmp_path / f"lambda.{ext}")
    assert canary.exists()  # building the model ran the lambda: the canary is live
    for ext in ("keras", "h5"):
        canary.unlink(missing_ok=True)
        r = run_cli("publish", "lam", str(tmp_path / f"lambda.{ext}"), "--labels", ",".join(LABELS),
                    *opts(redis_server, cli_store))
        assert r.code == UnsafeModelError.exit_code == 14, r.err[-2000:]
        assert "Lambda layer" in r.err and not canary.exists()
    assert "lam" not in cli_store.models()
