"""Fault matrix, model artifact rows M1-M10 (docs/reliability.md).

Each test copies the module's published model under a fresh key prefix,
damages or tampers with the copy the way a bad disk, an eviction or an
attacker with write access to Redis would, and runs the real CLI on it.
"""

from __future__ import annotations

import io
import json
import os
import pickle
import shutil
import subprocess
import sys
import tarfile
import uuid

import numpy as np
import pytest

from skol_spark import errors
from skol_spark.model.artifact import sha256
from skol_spark.store.model_store import ModelStore
from tests.fault_tools import ROOT, CliResult, predict_args, run_cli
from tests.helpers import LABELS, assert_no_output, documents_table, make_documents, write_config, write_table

MODEL = "fa"


@pytest.fixture(scope="module")
def source(redis_client, closure_model):
    store = ModelStore(redis_client, prefix=f"fa{uuid.uuid4().hex[:6]}", chunk_size=1024)
    version = store.publish(closure_model, MODEL, labels=LABELS, aliases=["production"])
    return store, version


@pytest.fixture(scope="module")
def input_path(tmp_path_factory):
    path = tmp_path_factory.mktemp("fa-input") / "lines"
    write_table(path, documents_table(make_documents("d", 6, seed=2)))
    return path


class Copy:
    """A copy of the source model under its own prefix, with tamper helpers."""

    def __init__(self, source):
        store, self.version = source
        self.client = store.client
        self.prefix = f"{store.prefix}x{uuid.uuid4().hex[:4]}"
        for key in self.client.scan_iter(f"{store.prefix}:*"):
            new = self.prefix + key.decode()[len(store.prefix):]
            self.client.restore(new, 0, self.client.dump(key), replace=True)

    def key(self, *parts) -> str:
        return ":".join([self.prefix, "model", MODEL, f"v{self.version}", *map(str, parts)])

    @property
    def manifest(self) -> dict:
        return json.loads(self.client.get(self.key("manifest")))

    @manifest.setter
    def manifest(self, value: dict) -> None:
        self.client.set(self.key("manifest"), json.dumps(value, sort_keys=True))

    def set_architecture(self, text: str) -> None:
        """Replace the architecture AND fix its checksum (an attacker with write access can)."""
        self.client.set(self.key("architecture"), text)
        m = self.manifest
        m["architecture"] = {"sha256": sha256(text), "bytes": len(text.encode())}
        self.manifest = m

    def set_weights(self, payload: bytes) -> None:
        """Replace the weights payload (one chunk) AND fix its checksum."""
        m = self.manifest
        for i in range(int(m["weights"]["chunks"])):
            self.client.delete(self.key("weights", i))
        self.client.set(self.key("weights", 0), payload)
        m["weights"].update(sha256=sha256(payload), bytes=len(payload), chunks=1)
        self.manifest = m


@pytest.fixture
def copy(source):
    return Copy(source)


@pytest.fixture
def keras_calls(monkeypatch):
    """Record any model rebuild: tests assert Keras never saw the artifact."""
    import keras

    from skol_spark.model import builder as model_builder

    calls = []
    real_rebuild, real_from_json = model_builder.rebuild_model, keras.models.model_from_json

    def rebuild(*a, **k):
        calls.append("rebuild_model")
        return real_rebuild(*a, **k)

    def from_json(*a, **k):
        calls.append("model_from_json")
        return real_from_json(*a, **k)

    monkeypatch.setattr(model_builder, "rebuild_model", rebuild)
    monkeypatch.setattr(keras.models, "model_from_json", from_json)
    return calls


def run(tmp_path, redis_server, copy, input_path, **sections):
    job = write_config(tmp_path / "job.yaml", redis_url=redis_server.url, prefix=copy.prefix, model=MODEL,
                       input_path=input_path, output_path=tmp_path / "out", **sections)
    return run_cli(predict_args(job))


def test_M1_flipped_weight_byte_is_a_checksum_mismatch_before_keras(spark, tmp_path, redis_server, copy,
                                                                    input_path, keras_calls):
    chunk = copy.client.get(copy.key("weights", 1))
    flipped = chunk[:100] + bytes([chunk[100] ^ 0x01]) + chunk[101:]
    copy.client.set(copy.key("weights", 1), flipped)

    result = run(tmp_path, redis_server, copy, input_path)

    assert result.code == errors.ModelIntegrityError.exit_code, result.err[-2000:]
    assert f"model '{MODEL}' version {copy.version}: weights checksum mismatch" in result.error_line
    assert keras_calls == []
    assert_no_output(tmp_path / "out")


def test_M2_tampered_manifest_checksum_is_refused(spark, tmp_path, redis_server, copy, input_path, keras_calls):
    m = copy.manifest
    m["weights"]["sha256"] = "0" * 64
    copy.manifest = m

    result = run(tmp_path, redis_server, copy, input_path)

    assert result.code == errors.ModelIntegrityError.exit_code, result.err[-2000:]
    assert "weights checksum mismatch (manifest 000000000000" in result.error_line
    assert keras_calls == []
    assert_no_output(tmp_path / "out")


def test_M3_truncated_weights_are_refused(spark, tmp_path, redis_server, copy, input_path, keras_calls):
    last = int(copy.manifest["weights"]["chunks"]) - 1
    copy.client.set(copy.key("weights", last), copy.client.get(copy.key("weights", last))[:-10])

    result = run(tmp_path, redis_server, copy, input_path)

    assert result.code == errors.ModelIntegrityError.exit_code, result.err[-2000:]
    assert "weights is" in result.error_line and "(truncated)" in result.error_line
    assert keras_calls == []
    assert_no_output(tmp_path / "out")


def test_M4_lambda_layer_is_refused_and_never_runs(spark, tmp_path, redis_server, copy, input_path, keras_calls):
    import keras

    from skol_spark.model.artifact import encode_weights

    marker = tmp_path / "lambda-ran"
    path = str(marker)
    inp = keras.Input((8, 6))
    x = keras.layers.Lambda(lambda t: (open(path, "w").close(), t)[1], name="sneaky")(inp)
    out = keras.layers.TimeDistributed(keras.layers.Dense(3, activation="softmax"))(x)
    sneaky = keras.Model(inp, out)
    marker.unlink(missing_ok=True)  # building the model traced the lambda once; from here on it must never run
    with pytest.raises(errors.UnsafeModelError, match="Lambda"):  # publish refuses it already
        ModelStore(copy.client, prefix=copy.prefix).publish(sneaky, "other", labels=LABELS)
    assert not marker.exists()
    # written behind the store's back (an attacker with write access to Redis): the loader refuses it too
    copy.set_architecture(sneaky.to_json())
    copy.set_weights(encode_weights(sneaky.get_weights()))

    result = run(tmp_path, redis_server, copy, input_path)

    assert result.code == errors.UnsafeModelError.exit_code, result.err[-2000:]
    assert "Lambda layer (sneaky)" in result.error_line
    assert "model.allow_unsafe_deserialization" in result.error_line  # the explicit opt-in is named
    assert not marker.exists()
    assert "model_from_json" not in keras_calls
    assert_no_output(tmp_path / "out")


@pytest.mark.parametrize("module, cls, code, message", [
    ("os", "system", errors.UnsafeModelError.exit_code, "Python's own library"),
    ("builtins", "eval", errors.UnsafeModelError.exit_code, "Python's own library"),
    ("evil_pkg.layers", "Pwn", errors.ModelFormatError.exit_code, "model.custom_layer_modules"),
])
def test_M5_json_naming_an_arbitrary_module_is_refused(spark, tmp_path, redis_server, copy, input_path,
                                                       keras_calls, module, cls, code, message):
    import sys

    arch = json.loads(copy.client.get(copy.key("architecture")))
    layers = arch["config"]["layers"]
    layers[-1] = {**layers[-1], "module": module, "class_name": cls, "registered_name": cls}
    copy.set_architecture(json.dumps(arch))
    before = set(sys.modules)

    result = run(tmp_path, redis_server, copy, input_path)

    assert result.code == code, result.err[-2000:]
    assert f"{cls!r}" in result.error_line and f"{module!r}" in result.error_line and message in result.error_line
    assert "model_from_json" not in keras_calls
    assert "evil_pkg" not in set(sys.modules) - before
    assert_no_output(tmp_path / "out")


def test_M6_unknown_custom_layer_names_class_and_fix(spark, tmp_path, redis_server, copy, input_path):
    arch = json.loads(copy.client.get(copy.key("architecture")))
    layers = arch["config"]["layers"]
    layers[-1] = {**layers[-1], "module": "my_layers", "class_name": "Attention", "registered_name": "Attention"}
    copy.set_architecture(json.dumps(arch))

    result = run(tmp_path, redis_server, copy, input_path)

    assert result.code == errors.ModelFormatError.exit_code, result.err[-2000:]
    assert "'Attention'" in result.error_line and "add `my_layers` to model.custom_layer_modules" in result.error_line
    assert_no_output(tmp_path / "out")


def test_M7_manifest_disagreeing_with_the_model_names_both_numbers(spark, tmp_path, redis_server, copy,
                                                                    input_path):
    m = copy.manifest
    m["labels"] = [*LABELS, "Extra"]
    copy.manifest = m

    result = run(tmp_path, redis_server, copy, input_path)

    assert result.code == errors.ModelFormatError.exit_code, result.err[-2000:]
    # refused from the manifest itself: 4 labels, outputs recorded for 3 classes (both named)
    assert "golden.outputs" in result.error_line and "labels=4" in result.error_line
    assert "found [3][8][3]" in result.error_line
    assert_no_output(tmp_path / "out")


def _evil_archive(tmp_path) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for name, data in (("metadata.json", b"{}"), ("../../escaped.txt", b"pwned")):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        link = tarfile.TarInfo("passwd")
        link.type, link.linkname = tarfile.SYMTYPE, "/etc/passwd"
        tar.addfile(link)
    return buffer.getvalue()


def test_M8_unsafe_legacy_archive_is_refused_before_extraction(tmp_path, redis_server, redis_client, monkeypatch):
    """End to end through ``model import-legacy`` (member-by-member cases: tests/test_legacy.py)."""
    work = tmp_path / "a" / "b"
    work.mkdir(parents=True)
    archive = work / "legacy.tar.gz"
    archive.write_bytes(_evil_archive(tmp_path))
    monkeypatch.chdir(work)
    prefix = f"fam{uuid.uuid4().hex[:6]}"

    result = run_cli(["model", "import-legacy", "legacy", "--file", str(archive), "--redis-url", redis_server.url,
                      "--prefix", prefix])

    assert result.code == errors.UnsafeModelError.exit_code, result.err[-2000:]
    assert "refused" in result.error_line and "escaped.txt" in result.error_line
    assert not list(tmp_path.rglob("escaped.txt")) and not (tmp_path / "escaped.txt").exists()
    assert not list(tmp_path.rglob("passwd"))
    assert ModelStore(redis_client, prefix=prefix).models() == []


class _Pwn:
    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        return (open, (self.path, "w"))


def test_M9_pickle_in_place_of_weights_is_refused_never_unpickled(spark, tmp_path, redis_server, copy, input_path,
                                                                  keras_calls):
    marker = tmp_path / "unpickled"
    payload = pickle.dumps(_Pwn(str(marker)), protocol=4)
    copy.set_weights(payload)

    result = run(tmp_path, redis_server, copy, input_path)

    assert result.code == errors.ModelFormatError.exit_code, result.err[-2000:]
    assert "payload is a Python pickle" in result.error_line and "numpy .npz" in result.error_line
    assert not marker.exists()
    assert "model_from_json" not in keras_calls
    # also a zip that holds an object array (np.save with allow_pickle) is refused, not unpickled
    buffer = io.BytesIO()
    np.savez(buffer, w00000=np.array([_Pwn(str(marker))], dtype=object))
    from skol_spark.model.artifact import decode_weights

    with pytest.raises(errors.ModelFormatError, match="cannot read weights archive"):
        decode_weights(buffer.getvalue())
    assert not marker.exists()


@pytest.mark.parametrize("warm_up", ["auto", "never"])
def test_M10_model_that_cannot_predict_fails_the_driver_smoke_test(spark, tmp_path, redis_server, redis_client,
                                                                    closure_model, input_path, warm_up):
    """With a warm-up (local masters) its workers' build fails first and the driver repeats the check, so the
    error is the driver's either way, before anything is written."""
    from tests.helpers import build_bilstm

    broken = build_bilstm()
    broken.set_weights([np.full_like(w, np.nan) for w in closure_model.get_weights()])
    store = ModelStore(redis_client, prefix=f"fan{uuid.uuid4().hex[:6]}")
    store.publish(broken, MODEL, labels=LABELS, aliases=["production"])
    job = write_config(tmp_path / "job.yaml", redis_url=redis_server.url, prefix=store.prefix, model=MODEL,
                       input_path=input_path, output_path=tmp_path / "out", scoring={"warm_up": warm_up})

    result = run_cli(predict_args(job))

    assert result.code == errors.EnvironmentMismatchError.exit_code, result.err[-2000:]
    assert "on driver: golden outputs differ by nan" in result.error_line
    assert ("the warm-up job failed to build the model" in result.err) == (warm_up == "auto")
    assert_no_output(tmp_path / "out")


# ---- hardening (issue 22, items 10, 11, 13): counts, sizes and fields read from untrusted artifacts -------------
def model_cli(action: str, redis_server, copy, *extra: str):
    return run_cli(["model", action, MODEL, *extra, "--redis-url", redis_server.url, "--prefix", copy.prefix])


def assert_clean_failure(result, code: int, *phrases: str) -> None:
    assert result.code == code, result.text[-2000:]
    assert "Traceback" not in result.text, result.err[-2000:]
    for phrase in phrases:
        assert phrase in result.error_line, result.error_line


def test_manifest_claiming_a_billion_chunks_is_refused_by_what_the_store_holds(redis_server, copy):
    import tracemalloc

    chunks = int(copy.manifest["weights"]["chunks"])
    cases = {  # what the manifest claims -> what the store shows first
        "billion": (dict(chunks=10**9, bytes=10**12), copy.key("weights", 10**9 - 1)),
        # a planted last key: the batches still stop at the first missing chunk
        "planted": (dict(chunks=10**6, bytes=10**9), copy.key("weights", chunks)),
        "oversized bytes": (dict(bytes=10**12), "(truncated)"),
    }
    original = copy.manifest
    for label, (claim, named) in cases.items():
        m = json.loads(json.dumps(original))
        m["weights"].update(claim)
        copy.manifest = m
        if label == "planted":
            copy.client.set(copy.key("weights", 10**6 - 1), b"x")
        tracemalloc.start()
        try:
            result = model_cli("verify", redis_server, copy, str(copy.version))
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
        assert_clean_failure(result, errors.ModelIntegrityError.exit_code, named)
        assert "weights" in result.error_line
        assert peak < 20 * 1024**2, f"{label}: {peak} bytes allocated to refuse the manifest"
        assert result.seconds < 10, label


MALFORMED = {  # field named in the message -> how the manifest is damaged
    "weights.chunks": lambda m: m["weights"].update(chunks="many"),
    "weights": lambda m: m.update(weights=None),
    "labels": lambda m: m.update(labels=5),
    "window_size": lambda m: m.update(window_size=-1),
    "golden.outputs": lambda m: m["golden"].update(outputs=[[1, 2], [3]]),
    "extras.feature_pipeline": lambda m: m.update(extras={"feature_pipeline": None}),
    "architecture.sha256": lambda m: m["architecture"].update(sha256=123),
    "format_version": lambda m: m.update(format_version="two"),
    "stride": lambda m: m.update(stride=m["window_size"] + 5),
    "framework": lambda m: m.update(framework=["tensorflow"]),
    "feature_kind": lambda m: m.update(feature_kind="bogus"),
    "weights.bytes": lambda m: m["weights"].update(bytes=-5),
    "architecture": lambda m: m.update(architecture="sha"),
    "extras": lambda m: m.update(extras=[1]),
}


@pytest.mark.parametrize("field", sorted(MALFORMED))
def test_malformed_manifest_exits_13_naming_the_field(redis_server, copy, field):
    m = copy.manifest
    MALFORMED[field](m)
    copy.manifest = m

    for action in ("verify", "show"):
        result = model_cli(action, redis_server, copy, str(copy.version))
        assert_clean_failure(result, errors.ModelFormatError.exit_code, f"manifest field {field}:")
    listed = run_cli(["model", "list", MODEL, "--redis-url", redis_server.url, "--prefix", copy.prefix])
    assert listed.code == 0 and f"v{copy.version}\tunreadable:" in listed.out, listed.text[-2000:]
    assert f"manifest field {field}:" in listed.out
    deleted = model_cli("delete", redis_server, copy, str(copy.version), "--force")  # still removable
    assert deleted.code == 0, deleted.text[-2000:]


def test_manifest_window_size_is_bounded_by_its_golden_outputs(redis_server, copy):
    """A window of a billion lines would size the probe windows (and every scoring window) before any
    check: it is refused from the recorded outputs, which hold the real window size."""
    m = copy.manifest
    m["window_size"] = 10**9
    copy.manifest = m

    result = model_cli("verify", redis_server, copy, str(copy.version))

    assert_clean_failure(result, errors.ModelFormatError.exit_code, "manifest field golden.outputs:",
                         "window_size=1000000000", "found [3][8][3]")


def test_malformed_manifest_stops_predict_before_spark_runs(spark, tmp_path, redis_server, copy, input_path,
                                                             keras_calls):
    m = copy.manifest
    m["weights"] = None
    copy.manifest = m

    result = run(tmp_path, redis_server, copy, input_path)

    assert_clean_failure(result, errors.ModelFormatError.exit_code, "manifest field weights:", "got None")
    assert keras_calls == []
    assert_no_output(tmp_path / "out")


def test_weights_archive_declaring_more_than_it_holds_is_refused(redis_server, copy):
    """An .npz whose array header claims a terabyte: numpy would allocate by the header before reading."""
    import zipfile

    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(header, {"descr": "<f8", "fortran_order": False, "shape": (10**11,)})
    payload = io.BytesIO()
    with zipfile.ZipFile(payload, "w") as archive:
        archive.writestr("w00000.npy", header.getvalue() + b"\0" * 64)
    copy.set_weights(payload.getvalue())

    result = model_cli("verify", redis_server, copy, str(copy.version))

    assert_clean_failure(result, errors.ModelFormatError.exit_code, "declares shape (100000000000,)")


def _tar_gz(members: list[tuple[str, int, bytes | None]]) -> bytes:
    """(name, declared size, data or None: the header alone, no data after it) -> tar.gz bytes."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for name, size, data in members:
            info = tarfile.TarInfo(name)
            info.size = size
            if data is None:
                tar.fileobj.write(info.tobuf(tarfile.GNU_FORMAT))  # a header that lies: no data follows
            else:
                tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def test_legacy_archive_expanding_to_gigabytes_is_refused_before_extraction(tmp_path, redis_server, redis_client):
    from skol_spark.store.safe_tar import MAX_TOTAL_BYTES, safe_extract

    claims_2gb = _tar_gz([("metadata.json", 2, b"{}"), ("classifier_model.h5", 2 * 1024**3, None)])
    zeros = _tar_gz([("metadata.json", 2, b"{}"), ("classifier_model.h5", 3_000_000, b"\0" * 3_000_000)])
    assert len(claims_2gb) < 4096 and len(zeros) < 64 * 1024  # a bomb: tiny compressed, large expanded
    prefix = f"fab{uuid.uuid4().hex[:6]}"
    for archive, limit in ((claims_2gb, None), (zeros, "1000000")):
        path = tmp_path / "legacy.tar.gz"
        path.write_bytes(archive)
        result = run_cli(["model", "import-legacy", "legacy", "--file", str(path), "--redis-url", redis_server.url,
                          "--prefix", prefix, *(["--max-unpacked-bytes", limit] if limit else [])])
        cap = int(limit or MAX_TOTAL_BYTES)
        assert_clean_failure(result, errors.UnsafeModelError.exit_code, f"expands to more than {cap} bytes",
                             "'classifier_model.h5'")
        dest = tmp_path / f"dest-{cap}"
        with pytest.raises(errors.UnsafeModelError, match="expands to more than"):
            safe_extract(archive, dest, max_bytes=cap)
        assert list(dest.iterdir()) == []  # refused from the headers: not even metadata.json was written
    assert ModelStore(redis_client, prefix=prefix).models() == []


def _in_small_tmpfs(tmp_path, size: str, argv: list[str]):
    """The CLI in a private mount namespace whose TMPDIR is a ``size`` tmpfs (a full temp disk, for real)."""
    unshare = shutil.which("unshare")
    mount_dir = tmp_path / "small-tmp"
    mount_dir.mkdir()
    if not unshare or subprocess.run([unshare, "-rm", "true"], capture_output=True).returncode != 0:
        pytest.skip("needs unshare -rm (user and mount namespaces) to give the CLI a small temp disk")
    script = 'mount -t tmpfs -o size="$1" tmpfs "$2" && shift 2 && exec "$@"'
    cmd = [unshare, "-rm", "sh", "-c", script, "sh", size, str(mount_dir), sys.executable, "-m",
           "skol_spark.cli.main", *argv]
    env = {**os.environ, "PYTHONPATH": str(ROOT), "TMPDIR": str(mount_dir), "TF_CPP_MIN_LOG_LEVEL": "3"}
    proc = subprocess.run(cmd, env=env, cwd=str(ROOT), capture_output=True, text=True, timeout=240)
    return CliResult(proc.returncode, proc.stdout, proc.stderr, 0.0)


@pytest.mark.parametrize("case", ["declared", "filled"])
def test_legacy_archive_on_a_full_temp_disk_is_reported_as_disk_full(tmp_path, redis_server, case):
    """``declared``: the members add up to more than the disk's free space (refused before writing);
    ``filled``: small members that fit by their sizes but not by the disk's blocks (ENOSPC mid-way)."""
    if case == "declared":
        members = [("metadata.json", 2, b"{}"), ("classifier_model.h5", 4_000_000, b"\0" * 4_000_000)]
    else:
        members = [("metadata.json", 2, b"{}")] + [(f"feature_pipeline/part-{i:04d}", 1, b"x") for i in range(600)]
    archive = tmp_path / "legacy.tar.gz"
    archive.write_bytes(_tar_gz(members))

    result = _in_small_tmpfs(tmp_path, "1m", ["model", "import-legacy", "legacy", "--file", str(archive),
                                              "--redis-url", redis_server.url, "--prefix", "fad"])

    detail = "the archive expands to 4000002 bytes" if case == "declared" else "it filled up while extracting"
    assert_clean_failure(result, errors.LocalResourceError.exit_code, "not enough disk space", detail,
                         "point TMPDIR at a larger disk")
    assert "not a readable" not in result.err
