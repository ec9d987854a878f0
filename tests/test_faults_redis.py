"""Fault matrix, model store rows R1-R12 (docs/reliability.md): a real redis-server, a real CLI run.

Failure rows check the exit code, the stable one-line message and that no
output was written. Success rows check the rows that were written.
"""

from __future__ import annotations

import os
import re
import signal
import threading
import time
import uuid

import numpy as np
import pytest

from skol_spark.store.embedded import free_port, start_redis
from skol_spark.errors import ModelIntegrityError, ModelStoreError, RedisUnavailableError
from skol_spark.store.connection import RedisSettings, connect
from skol_spark.store.model_store import ModelStore
from skol_spark.store.publishing import commit_version
from tests.fault_tools import Proxy, make_certs, predict_args, run_cli, run_cli_subprocess, start_tls_redis, wide_model
from tests.helpers import (LABELS, assert_no_output, documents_table, make_documents, read_output, write_config,
                           write_table)

MODEL = "fr"


@pytest.fixture(scope="module")
def prefix():
    return f"fr{uuid.uuid4().hex[:6]}"


@pytest.fixture(scope="module")
def published(redis_client, closure_model, prefix):
    """The module's model, v1 = production, in 512-byte chunks (so chunks can go missing)."""
    store = ModelStore(redis_client, prefix=prefix, chunk_size=512)
    version = store.publish(closure_model, MODEL, labels=LABELS, aliases=["production"])
    return store, version


@pytest.fixture(scope="module")
def input_path(tmp_path_factory):
    path = tmp_path_factory.mktemp("fr-input") / "lines"
    write_table(path, documents_table(make_documents("d", 12, seed=1)))
    return path


def conf(tmp_path, redis_url, prefix, input_path, **sections):
    return write_config(tmp_path / "job.yaml", redis_url=redis_url, prefix=prefix, model=MODEL,
                        input_path=input_path, output_path=tmp_path / "out", **sections)


def test_R1_unreachable_redis_fails_fast_naming_host_port(tmp_path, input_path):
    port = free_port()  # nothing listens here
    job = conf(tmp_path, f"redis://127.0.0.1:{port}/0", "x", input_path)

    result = run_cli_subprocess(predict_args(job), timeout=120)

    assert result.code == RedisUnavailableError.exit_code, result.err[-2000:]
    assert f"cannot reach Redis at 127.0.0.1:{port}" in result.error_line
    assert_no_output(tmp_path / "out")


def test_R2_frozen_redis_times_out_then_rerun_succeeds(spark, tmp_path, published, prefix, input_path):
    server = start_redis()
    try:
        src = published[0].client
        # copy the model into this server, which we may freeze
        dst = connect(RedisSettings(url=server.url))
        for key in src.scan_iter(f"{prefix}:*"):
            dst.restore(key, 0, src.dump(key), replace=True)
        job = conf(tmp_path, server.url, prefix, input_path)
        os.kill(server.process.pid, signal.SIGSTOP)
        try:
            result = run_cli(predict_args(job))
        finally:
            os.kill(server.process.pid, signal.SIGCONT)

        assert result.code == RedisUnavailableError.exit_code, result.err[-2000:]
        assert f"Redis at 127.0.0.1:{server.port}" in result.error_line and "Timeout" in result.error_line
        assert result.seconds < 12, f"took {result.seconds:.1f}s: a frozen Redis must time out, not hang"
        assert_no_output(tmp_path / "out")

        # frozen in the middle of a load (after the connection is up): a driver-side timeout, not a hang
        store = ModelStore(connect(RedisSettings(url=server.url, socket_timeout=1, retries=1)), prefix=prefix)
        os.kill(server.process.pid, signal.SIGSTOP)
        started = time.monotonic()
        try:
            with pytest.raises(RedisUnavailableError, match="TimeoutError"):
                store.load(MODEL, "production")
        finally:
            os.kill(server.process.pid, signal.SIGCONT)
        assert time.monotonic() - started < 10

        again = run_cli(predict_args(job))
        assert again.code == 0, again.err[-2000:]
        assert read_output(tmp_path / "out").num_rows == documents_table(make_documents("d", 12, seed=1)).num_rows
    finally:
        os.kill(server.process.pid, signal.SIGCONT)
        server.stop()


def test_R3_redis_killed_after_the_broadcast_job_succeeds(spark, tmp_path, published, prefix, input_path, monkeypatch):
    """The driver is the only Redis client: once the artifact is loaded, Redis may go away."""
    from skol_spark.job import run as job_module

    server = start_redis()
    src = published[0].client
    dst = connect(RedisSettings(url=server.url))
    for key in src.scan_iter(f"{prefix}:*"):
        dst.restore(key, 0, src.dump(key), replace=True)
    dst.close()
    real = job_module.SmokeTest.start

    def kill_redis_then_smoke(self):
        server.stop()  # the artifact is loaded; executors must not need Redis
        return real(self)

    monkeypatch.setattr(job_module.SmokeTest, "start", kill_redis_then_smoke)
    try:
        result = run_cli(predict_args(conf(tmp_path, server.url, prefix, input_path)))
    finally:
        server.stop()

    assert server.process.poll() is not None
    assert result.code == 0, result.err[-2000:]
    assert read_output(tmp_path / "out").num_rows == documents_table(make_documents("d", 12, seed=1)).num_rows
    # and statically: nothing on the executor path imports a Redis client
    import skol_spark

    pkg = os.path.dirname(skol_spark.__file__)
    executor_side = [os.path.join(d, f) for sub in ("scoring", "model") for d, _, fs in os.walk(os.path.join(pkg, sub))
                     for f in fs if f.endswith(".py")]
    assert len(executor_side) >= 8
    for module in executor_side:
        text = open(module).read()
        assert not re.search(r"^\s*(import|from)\s+(redis|skol_spark\.(store|job))\b", text, re.M), module


def _copy_store(published, prefix, url):
    dst = connect(RedisSettings(url=url))
    for key in published[0].client.scan_iter(f"{prefix}:*"):
        dst.restore(key, 0, published[0].client.dump(key), replace=True)
    return dst


def test_R4_connection_dropped_mid_transfer_is_retried_or_fails_clearly(published, prefix, redis_server):
    store = published[0]
    expected = store.load(MODEL, "production")
    host, port = "127.0.0.1", redis_server.port
    size = len(expected.weights)
    # drop the first connection half-way through the weights: the retry reads the whole version again
    with Proxy((host, port), drop_after=size // 2, drop_connections=1) as proxy:
        client = connect(RedisSettings(url=proxy.url(), retries=3))
        loaded = ModelStore(client, prefix=prefix).load(MODEL, "production")
        client.close()
        assert proxy.dropped == 1
    assert loaded.weights == expected.weights and loaded.architecture == expected.architecture
    loaded.verify()
    # every connection dropped: a clear error, never a half-loaded model
    with Proxy((host, port), drop_after=size // 2, drop_connections=None) as proxy:
        client = connect(RedisSettings(url=proxy.url(), retries=2))
        with pytest.raises(RedisUnavailableError, match=r"lost Redis at .*retried and gave up"):
            ModelStore(client, prefix=prefix, where=f"127.0.0.1:{proxy.port}").load(MODEL, "production")
        assert proxy.dropped >= 3


@pytest.fixture(scope="module")
def wide_published(redis_client, prefix):
    """A > 1 MB model in 256 KB chunks."""
    store = ModelStore(redis_client, prefix=prefix, chunk_size=256 * 1024)
    model = wide_model()
    version = store.publish(model, "wide", labels=LABELS)
    return store, version, model


def test_R5_slow_link_succeeds_within_budget_or_times_out_clearly(wide_published, prefix, redis_server):
    store, version, _ = wide_published
    size = store.load("wide", version).manifest["weights"]["bytes"]
    assert size > 1_000_000
    # 2 MB/s: socket_timeout bounds one read, not the transfer, so a slow but live link succeeds
    with Proxy(("127.0.0.1", redis_server.port), bytes_per_second=2e6) as proxy:
        client = connect(RedisSettings(url=proxy.url(), socket_timeout=1))
        started = time.monotonic()
        artifact = ModelStore(client, prefix=prefix).load("wide", version)
        elapsed = time.monotonic() - started
        client.close()
    artifact.verify()
    assert size / 2e6 * 0.8 < elapsed < 30
    # a link that stalls longer than socket_timeout on a read: a clear timeout naming the setting
    with Proxy(("127.0.0.1", redis_server.port), delay=3, delay_after=1000) as proxy:
        client = connect(RedisSettings(url=proxy.url(), socket_timeout=1, retries=0))
        started = time.monotonic()
        with pytest.raises(RedisUnavailableError, match="TimeoutError.*redis.socket_timeout"):
            ModelStore(client, prefix=prefix).load("wide", version)
        assert time.monotonic() - started < 15


def test_R6_missing_chunk_fails_naming_the_part(spark, tmp_path, published, prefix, input_path, redis_client,
                                                redis_server):
    store, version = published
    manifest = store.manifest(MODEL, version)
    assert manifest["weights"]["chunks"] >= 2
    # a fresh copy of the version under another prefix, so the module's model stays whole
    other = f"{prefix}r6"
    for key in redis_client.scan_iter(f"{prefix}:*"):
        redis_client.restore(other + key.decode()[len(prefix):], 0, redis_client.dump(key), replace=True)
    missing = f"{other}:model:{MODEL}:v{version}:weights:1"
    redis_client.delete(missing)
    job = conf(tmp_path, redis_server.url, other, input_path)

    result = run_cli(predict_args(job))

    assert result.code == ModelIntegrityError.exit_code, result.err[-2000:]
    assert "incomplete" in result.error_line and missing in result.error_line
    assert_no_output(tmp_path / "out")


def _url(client) -> str:
    kw = client.connection_pool.connection_kwargs
    return f"redis://{kw['host']}:{kw['port']}/{kw.get('db', 0)}"


def test_R7_republish_while_reading_every_load_is_one_version(redis_client, closure_model, prefix):
    from tests.helpers import train_closure_model

    store = ModelStore(redis_client, prefix=f"{prefix}r7", chunk_size=2048)
    models = [closure_model, train_closure_model(seed=3)]
    store.publish(models[0], MODEL, labels=LABELS, aliases=["production"])
    stop = threading.Event()
    published = []

    def republish():
        writer = ModelStore(connect(RedisSettings(url=_url(redis_client))), prefix=store.prefix, chunk_size=2048)
        i = 1
        while not stop.is_set() and i < 12:
            published.append(writer.publish(models[i % 2], MODEL, labels=LABELS, aliases=["production"]))
            i += 1

    thread = threading.Thread(target=republish)
    thread.start()
    seen = set()
    try:
        while thread.is_alive():
            artifact = store.load(MODEL, "production")  # verify() inside: checksums of one version
            artifact.verify()
            seen.add(artifact.version)
    finally:
        stop.set()
        thread.join()
    assert len(published) >= 5 and len(seen) >= 2, (published, seen)
    weights = {store.load(MODEL, v).manifest["weights"]["sha256"] for v in store.versions(MODEL)}
    assert len(weights) == 2  # only the two real models, never a mixture


def test_R8_alias_moved_mid_job_rows_carry_one_version(spark, tmp_path, redis_client, closure_model, prefix, input_path,
                                                       monkeypatch):
    from skol_spark.job import run as job_module
    from tests.helpers import train_closure_model

    store = ModelStore(redis_client, prefix=f"{prefix}r8")
    v1 = store.publish(closure_model, MODEL, labels=LABELS, aliases=["production"])
    v2 = store.publish(train_closure_model(seed=5), MODEL, labels=LABELS)
    real = job_module.SmokeTest.start

    def move_alias_then_smoke(self):
        store.set_alias(MODEL, "production", v2)  # moved after the driver resolved it
        return real(self)

    monkeypatch.setattr(job_module.SmokeTest, "start", move_alias_then_smoke)
    result = run_cli(predict_args(conf(tmp_path, _url(redis_client), store.prefix, input_path)))

    assert result.code == 0, result.err[-2000:]
    assert store.aliases(MODEL)["production"] == v2
    out = read_output(tmp_path / "out")
    assert set(out.column("model_version").to_pylist()) == {v1}
    # retried tasks: see test_E1 (a crashed attempt's retry gives rows identical to a clean run)


@pytest.fixture(scope="module")
def acl_users(redis_client):
    redis_client.execute_command("ACL", "SETUSER", "scorer", "on", ">scorer-pw", "~*", "resetchannels",
                                 "-@all", "+@read", "+ping", "+@connection")
    redis_client.execute_command("ACL", "SETUSER", "pinger", "on", ">pinger-pw", "~*", "-@all", "+ping",
                                 "+@connection")
    yield
    redis_client.execute_command("ACL", "DELUSER", "scorer", "pinger")


def test_R9_read_only_acl_user_scores_and_missing_permission_is_clear(spark, tmp_path, published, prefix, input_path,
                                                                      redis_server, acl_users, monkeypatch):
    url = f"redis://scorer@127.0.0.1:{redis_server.port}/0"
    monkeypatch.setenv("SKOL_REDIS_PASSWORD", "scorer-pw")
    ok = run_cli(predict_args(conf(tmp_path, url, prefix, input_path)))
    assert ok.code == 0, ok.err[-2000:]
    assert read_output(tmp_path / "out").num_rows > 0

    # the read-only user cannot publish (so a scoring job cannot change the store)
    ro = ModelStore(connect(RedisSettings(url=url)), prefix=prefix)
    with pytest.raises(RedisUnavailableError, match="NOPERM"):
        ro.set_alias(MODEL, "staging", 1)

    bad = tmp_path / "pinger"
    bad.mkdir()
    monkeypatch.setenv("SKOL_REDIS_PASSWORD", "pinger-pw")
    result = run_cli(predict_args(conf(bad, f"redis://pinger@127.0.0.1:{redis_server.port}/0", prefix,
                                       input_path)))
    assert result.code == RedisUnavailableError.exit_code, result.err[-2000:]
    assert "denied a command (NOPERM)" in result.error_line and "read commands" in result.error_line
    assert_no_output(bad / "out")


@pytest.fixture(scope="module")
def tls(tmp_path_factory, published, prefix):
    certs = make_certs(tmp_path_factory.mktemp("tls"))
    proc, port = start_tls_redis(certs)
    try:
        client = connect(RedisSettings(url=f"rediss://127.0.0.1:{port}/0", ssl_ca_file=certs["ca.crt"]))
        for key in published[0].client.scan_iter(f"{prefix}:*"):
            client.restore(key, 0, published[0].client.dump(key), replace=True)
        client.close()
        yield certs, port
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_R10_tls_right_ca_works_wrong_ca_fails_clearly(spark, tmp_path, tls, prefix, input_path):
    certs, port = tls
    url = f"rediss://127.0.0.1:{port}/0"
    good = tmp_path / "good"
    good.mkdir()
    ok = run_cli(predict_args(conf(good, url, prefix, input_path, redis={"ssl_ca_file": certs["ca.crt"]})))
    assert ok.code == 0, ok.err[-2000:]
    assert read_output(good / "out").num_rows > 0

    result = run_cli(predict_args(conf(tmp_path, url, prefix, input_path,
                                       redis={"ssl_ca_file": certs["other-ca.crt"]})))
    assert result.code == RedisUnavailableError.exit_code, result.err[-2000:]
    assert f"cannot reach Redis at 127.0.0.1:{port}" in result.error_line
    assert "certificate verify failed" in result.error_line
    assert_no_output(tmp_path / "out")


def test_R11_wrong_password_is_a_clear_auth_error_and_never_shown(tmp_path, input_path, monkeypatch):
    right, wrong = f"right-{uuid.uuid4().hex}", f"canary-{uuid.uuid4().hex}"
    server = start_redis("--requirepass", right)
    try:
        monkeypatch.setenv("SKOL_REDIS_PASSWORD", wrong)
        result = run_cli(predict_args(conf(tmp_path, server.url, "x", input_path)))
    finally:
        server.stop()

    assert result.code == RedisUnavailableError.exit_code, result.err[-2000:]
    assert f"Redis at 127.0.0.1:{server.port} rejected the credentials" in result.error_line
    assert "SKOL_REDIS_PASSWORD" in result.error_line
    assert_no_output(tmp_path / "out")
    for secret in (right, wrong):
        assert secret not in result.text
        for path in tmp_path.rglob("*"):
            if path.is_file():
                assert secret.encode() not in path.read_bytes(), path


def test_R12_chunks_below_max_bulk_length_round_trip(wide_published, prefix):
    from skol_spark.model.builder import build_predictor

    store, version, model = wide_published
    server = start_redis("--proto-max-bulk-len", "1mb")
    try:
        client = connect(RedisSettings(url=server.url))
        artifact = store.load("wide", version)
        assert len(artifact.weights) > 1024 * 1024  # one value would exceed the server's limit
        with pytest.raises(ModelStoreError):
            ModelStore(client, prefix=prefix, chunk_size=4 * 1024 * 1024).publish(model, "wide", labels=LABELS)
        client = connect(RedisSettings(url=server.url))
        small = ModelStore(client, prefix=prefix, chunk_size=512 * 1024)
        v = small.publish(model, "wide", labels=LABELS)
        loaded = small.load("wide", v)
        assert loaded.manifest["weights"]["chunks"] >= 3
        assert loaded.weights == artifact.weights
        predict = build_predictor(loaded)  # golden outputs reproduced from the reassembled chunks
        x = np.zeros((1, 8, 300), np.float32)
        np.testing.assert_allclose(predict(x), model(x).numpy(), atol=1e-6)
        client.delete(f"{prefix}:model:wide:v{v}:weights:2")
        with pytest.raises(ModelIntegrityError, match=rf"incomplete: .* weights has \d+ chunk\(s\) but the last one "
                                                      rf"\({prefix}:model:wide:v{v}:weights:2\) does not exist"):
            small.load("wide", v)
    finally:
        server.stop()


# ---- hardening (issue 22, item 12): a publish killed with SIGKILL -----------------------------------------------
def _keys(client, pattern: str) -> dict[str, bytes]:
    return {k.decode(): client.get(k) for k in client.scan_iter(match=pattern, count=1000)
            if client.type(k) == b"string"}


def _publish_and_kill(client, prefix: str, model_file, base: str) -> tuple[int, float]:
    """Run ``skol-spark model publish`` in a subprocess and SIGKILL it once its first weight chunk is in
    Redis (payload being written, version not yet visible). Returns (version, kill time). Retries when the
    publish wins the race and commits first."""
    from tests.fault_tools import kill_group

    pending = f"{prefix}:model:big:pending"
    for _ in range(3):
        before = set(client.hkeys(pending))
        proc = run_cli_subprocess(["model", "publish", "big", str(model_file), "--labels", ",".join(LABELS),
                                   "--chunk-size", "16384", *base], background=True)
        version = None
        while proc.poll() is None:
            fresh = set(client.hkeys(pending)) - before
            if fresh and version is None:
                version = int(fresh.pop())
            if version is not None and client.exists(f"{prefix}:model:big:v{version}:weights:0"):
                kill_group(proc)
                killed_at = time.monotonic()
                time.sleep(0.5)  # the server finishes the commands already in its socket buffer
                if client.zscore(f"{prefix}:model:big:versions", version) is None:
                    return version, killed_at
                break
            time.sleep(0.001)
        if proc.poll() is None:
            kill_group(proc)
    raise AssertionError("could not kill a publish between its payload and its commit in 3 tries")


def test_publish_killed_with_sigkill_leaves_orphans_that_model_gc_finds_and_removes(redis_server, redis_client,
                                                                                     tmp_path):
    from tests.fault_tools import wide_model

    prefix = f"gc{uuid.uuid4().hex[:6]}"
    base = ["--redis-url", redis_server.url, "--prefix", prefix]
    model = wide_model(features=1000, units=4000)  # 16 MB of weights: ~1000 chunks of 16 KiB
    model_file = tmp_path / "big.keras"
    model.save(model_file)
    published = ModelStore(redis_client, prefix=prefix, chunk_size=16384).publish(model, "big", labels=LABELS,
                                                                                    aliases=["production"])
    counter = f"{prefix}:model:big:next"  # the version counter: moved on by the killed publishes
    kept_before = {k: v for k, v in _keys(redis_client, f"{prefix}:*").items() if k != counter}

    old, old_killed = _publish_and_kill(redis_client, prefix, model_file, base)
    old_keys = _keys(redis_client, f"{prefix}:model:big:v{old}:*")
    young, young_killed = _publish_and_kill(redis_client, prefix, model_file, base)
    young_keys = _keys(redis_client, f"{prefix}:model:big:v{young}:*")
    grace = max(2.0, (young_killed - old_killed) / 2)  # the first is older than this, the second younger
    assert old_keys and young_keys and f"{prefix}:model:big:v{old}:manifest" not in old_keys
    assert ModelStore(redis_client, prefix=prefix).versions("big") == [published]  # neither became visible

    listing = run_cli(["model", "gc", "--grace", str(grace), *base])

    assert listing.code == 0, listing.text[-2000:]
    assert re.search(rf"big v{old}\t{len(old_keys)} key\(s\)\t[\d,]+ bytes\tstarted \d+ s ago\torphan\n", listing.out)
    assert re.search(rf"big v{young}\t{len(young_keys)} key\(s\)\t.*\tkept: in progress", listing.out)
    assert f"big v{published}\t" not in listing.out
    assert "1 orphaned version(s)" in listing.out and "remove them with --delete" in listing.out
    assert _keys(redis_client, f"{prefix}:model:big:v{old}:*") == old_keys  # listing removes nothing

    removed = run_cli(["model", "gc", "--grace", str(grace), "--delete", *base])

    assert removed.code == 0 and f"big v{old}\t" in removed.out and "\tremoved" in removed.out, removed.text
    assert _keys(redis_client, f"{prefix}:model:big:v{old}:*") == {}
    assert not redis_client.hexists(f"{prefix}:model:big:pending", old)
    assert _keys(redis_client, f"{prefix}:model:big:v{young}:*") == young_keys  # in progress: untouched
    for key, value in kept_before.items():  # the published version, byte for byte
        assert redis_client.get(key) == value, key
    loaded = ModelStore(redis_client, prefix=prefix).load("big", "production")
    assert loaded.version == published and loaded.weights  # checksums verified on load
    with pytest.raises(ModelStoreError, match="model gc, which removed its keys"):  # a late commit is refused
        commit_version(ModelStore(redis_client, prefix=prefix), "big", old, "{}", [])
    assert redis_client.zscore(f"{prefix}:model:big:versions", old) is None

    rest = run_cli(["model", "gc", "--grace", "0", "--delete", *base])

    assert rest.code == 0 and f"big v{young}\t" in rest.out, rest.text
    after = {k: v for k, v in _keys(redis_client, f"{prefix}:*").items() if k != counter}
    assert after == kept_before, sorted(set(after) ^ set(kept_before))  # only the published version is left
    assert run_cli(["model", "gc", *base]).out.strip() == "0 orphaned version(s), 0 bytes"
