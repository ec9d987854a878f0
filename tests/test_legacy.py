"""Importing the original SKOL project's model archives (tar.gz at one Redis key).

Archives are built here the way the original project wrote them
(``tar.add(model_dir, arcname=".")``). Keras 2 h5 files are written by
``tf_keras`` in a subprocess (tests/fixtures/make_keras2_h5.py) so this process
only ever has Keras 3 loaded.
"""

from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import importlib.util
import io
import json
import subprocess
import sys
import tarfile
import warnings
from pathlib import Path

import numpy as np
import pytest

from skol_spark.errors import ModelFormatError, ModelNotFoundError, UnsafeModelError
from skol_spark.store.legacy import (import_legacy, labels_from_mapping, read_archive_from_redis, read_legacy_archive,
                               redact_secrets, safe_extract)
from tests.helpers import FEATURES, LABELS, WINDOW

FIXTURE_SCRIPT = Path(__file__).parent / "fixtures" / "make_keras2_h5.py"
PIPELINE_FILES = {"metadata/part-00000": b'{"class":"org.apache.spark.ml.PipelineModel"}\n',
                  "stages/0_Tokenizer_1/metadata/part-00000": b'{"class":"Tokenizer"}\n',
                  "_SUCCESS": b""}
# Shuffled on purpose: labels must come out ordered by index, not by dict order.
LABEL_MAPPING = {"Misc": 2, "Nomenclature": 0, "Description": 1}


def legacy_metadata(*, window=WINDOW, stride=4, input_size=FEATURES, num_classes=3, mapping=None):
    return {"label_mapping": dict(mapping or LABEL_MAPPING),
            "config": {"tokenizer": "line", "model_type": "rnn",
                       "model_params": {"input_size": input_size, "hidden_size": 4, "num_layers": 1,
                                        "num_classes": num_classes, "window_size": window,
                                        "prediction_stride": stride, "couchdb_password": "hunter2-canary",
                                        "couchdb_url": "http://admin:s3cret-canary@couch:5984"}},
            "version": "2.1"}


def make_archive(tmp_path: Path, *, model=None, h5: Path | None = None, metadata=None, pipeline=True) -> bytes:
    """A tar.gz laid out as the original project's _save_model_to_redis wrote it."""
    model_dir = tmp_path / "skol_model_v2_src"
    model_dir.mkdir()
    if model is not None:
        model.save(model_dir / "classifier_model.h5")
    elif h5 is not None:
        (model_dir / "classifier_model.h5").write_bytes(h5.read_bytes())
    if metadata is not None:
        (model_dir / "metadata.json").write_text(json.dumps(metadata, indent=2))
    if pipeline:
        for rel, data in PIPELINE_FILES.items():
            (model_dir / "feature_pipeline" / rel).parent.mkdir(parents=True, exist_ok=True)
            (model_dir / "feature_pipeline" / rel).write_bytes(data)
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        tar.add(model_dir, arcname=".")
    return buffer.getvalue()


def random_windows(n=6, seed=3):
    return np.random.default_rng(seed).random((n, WINDOW, FEATURES), dtype=np.float32)


@pytest.fixture(scope="module")
def keras2_files(tmp_path_factory):
    """h5 files + expected predictions written by tf_keras (Keras 2) in its own process."""
    if importlib.util.find_spec("tf_keras") is None:
        pytest.skip("tf_keras is not installed (pip install tf-keras): cannot write Keras 2 h5 files")
    out = tmp_path_factory.mktemp("keras2")
    env = {**os.environ, "TF_USE_LEGACY_KERAS": "1", "TF_CPP_MIN_LOG_LEVEL": "3"}
    done = subprocess.run([sys.executable, str(FIXTURE_SCRIPT), str(out)], env=env, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    return out


def test_keras3_h5_archive_round_trips_through_redis(store, redis_client, closure_model, tmp_path):
    from skol_spark.model.builder import build_predictor

    archive = make_archive(tmp_path, model=closure_model, metadata=legacy_metadata())
    redis_client.set(f"{store.prefix}:legacy:rnn", archive)

    version = import_legacy(store, read_archive_from_redis(redis_client, f"{store.prefix}:legacy:rnn"),
                            "legacy-k3", notes="from the old project")

    artifact = store.load("legacy-k3", version)
    assert artifact.labels == LABELS
    assert (artifact.window_size, artifact.stride, artifact.feature_size) == (WINDOW, 4, FEATURES)
    x = random_windows()
    np.testing.assert_allclose(build_predictor(artifact)(x), closure_model(x, training=False).numpy(), atol=1e-5)

    with tarfile.open(fileobj=io.BytesIO(store.load_extra("legacy-k3", version, "feature_pipeline"))) as tar:
        files = {m.name: tar.extractfile(m).read() for m in tar.getmembers() if m.isfile()}
    assert files == {f"feature_pipeline/{rel}": data for rel, data in PIPELINE_FILES.items()}

    source = artifact.manifest["source"]
    assert source["kind"] == "import-legacy"
    assert source["metadata"]["label_mapping"] == LABEL_MAPPING
    assert source["metadata"]["config"]["model_params"]["window_size"] == WINDOW
    assert "couchdb_password" not in source["metadata"]["config"]["model_params"]
    assert "canary" not in json.dumps(artifact.manifest)


@pytest.mark.parametrize("kind", ["functional", "sequential"])
def test_keras2_h5_is_translated_and_predicts_like_tf_keras(kind, keras2_files, store, tmp_path):
    import keras

    from skol_spark.model.builder import make_predict_fn, rebuild_model

    h5 = keras2_files / f"{kind}.h5"
    with pytest.raises(ValueError, match="time_major"):  # why the translation exists
        keras.models.load_model(h5, compile=False)
    archive = make_archive(tmp_path, h5=h5, metadata=legacy_metadata(stride=None), pipeline=False)

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        version = import_legacy(store, archive, f"legacy-k2-{kind}")
        artifact = store.load(f"legacy-k2-{kind}", version)
        predicted = make_predict_fn(rebuild_model(artifact))(np.load(keras2_files / "inputs.npy"))

    assert (artifact.labels, artifact.window_size, artifact.stride) == (LABELS, WINDOW, WINDOW)
    assert artifact.manifest["extras"] == {}
    assert artifact.manifest["source"]["h5_keras_version"].startswith("2.")
    assert any("time_major" in t for t in artifact.manifest["source"]["keras2_translations"])
    np.testing.assert_allclose(predicted, np.load(keras2_files / f"{kind}.npy"), atol=1e-5)
    # a Keras 2 functional file declares its input as a list: publish and predict hand it one (no warning per worker)
    assert not [w for w in caught if "structure of `inputs`" in str(w.message)], [str(w.message) for w in caught]
    # the translated BiLSTM qualifies for line projection and still predicts like tf_keras
    from skol_spark.model.builder import build_predictor

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        fast = build_predictor(artifact, line_projection=True)
        projected = fast(np.load(keras2_files / "inputs.npy"))
    assert hasattr(fast, "predict_rows")
    np.testing.assert_allclose(projected, np.load(keras2_files / f"{kind}.npy"), atol=1e-5)
    assert not [w for w in caught if "structure of `inputs`" in str(w.message)], [str(w.message) for w in caught]


def test_older_tf_keras_dialect_is_translated(keras2_files, tmp_path):
    """The tf_keras file hand-edited to what tf.keras <= 2.12 / 1.x wrote: no module keys,
    dtype Policy dicts, initializers carrying a dtype. Each of these alone fails in Keras 3."""
    import h5py

    from skol_spark.model.builder import make_predict_fn

    h5 = tmp_path / "old.h5"
    h5.write_bytes((keras2_files / "functional.h5").read_bytes())
    with h5py.File(h5, "r+") as f:
        config = json.loads(f.attrs["model_config"])
        for node in _class_nodes(config):
            node.pop("module", None)
            node.pop("registered_name", None)
            cfg = node.get("config")
            if node["class_name"] in ("GlorotUniform", "Orthogonal", "Zeros"):
                cfg["dtype"] = "float32"
            elif isinstance(cfg, dict) and cfg.get("dtype") == "float32" and node["class_name"] != "InputLayer":
                cfg["dtype"] = {"class_name": "Policy", "config": {"name": "float32"}}
        f.attrs["model_config"] = json.dumps(config)
    archive = make_archive(tmp_path, h5=h5, metadata=legacy_metadata(), pipeline=False)

    legacy = read_legacy_archive(archive)

    assert {"lstm: added module keras.layers", "lstm: dtype Policy -> 'float32'",
            "kernel_initializer: dropped initializer dtype"} <= set(legacy.translations)
    predicted = make_predict_fn(legacy.model)(np.load(keras2_files / "inputs.npy"))
    np.testing.assert_allclose(predicted, np.load(keras2_files / "functional.npy"), atol=1e-5)


def test_untranslatable_keras2_key_names_the_layer_and_key(keras2_files, tmp_path):
    import h5py

    h5 = tmp_path / "odd.h5"
    h5.write_bytes((keras2_files / "functional.h5").read_bytes())
    with h5py.File(h5, "r+") as f:
        config = json.loads(f.attrs["model_config"])
        next(n for n in _class_nodes(config) if n["class_name"] == "LSTM")["config"]["zoneout"] = 0.1
        f.attrs["model_config"] = json.dumps(config)

    with pytest.raises(ModelFormatError, match="layer 'lstm' \\(LSTM\\), config key 'zoneout'"):
        read_legacy_archive(make_archive(tmp_path, h5=h5, metadata=legacy_metadata(), pipeline=False))


def _class_nodes(node):
    if isinstance(node, dict):
        if "class_name" in node:
            yield node
        for value in node.values():
            yield from _class_nodes(value)
    elif isinstance(node, list):
        for value in node:
            yield from _class_nodes(value)


def _tar_with(*members: tuple[tarfile.TarInfo, bytes]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for info, data in members:
            info.size = len(data) if info.isreg() else 0
            tar.addfile(info, io.BytesIO(data) if info.isreg() else None)
    return buffer.getvalue()


def _member(name: str, kind: bytes = tarfile.REGTYPE, linkname: str = "") -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.linkname = kind, linkname
    return info


@pytest.mark.parametrize("case", ["parent", "absolute", "symlink", "hardlink", "device", "fifo"])
def test_unsafe_members_refuse_the_whole_archive(case, tmp_path):
    dest = tmp_path / "box" / "out"
    outside = tmp_path / "box" / "evil"
    bad = {"parent": _member("../evil"),
           "absolute": _member(str(outside)),
           "symlink": _member("link", tarfile.SYMTYPE, "/etc/passwd"),
           "hardlink": _member("link", tarfile.LNKTYPE, "/etc/passwd"),
           "device": _member("link", tarfile.CHRTYPE),
           "fifo": _member("link", tarfile.FIFOTYPE)}[case]
    archive = _tar_with((_member("ok.txt"), b"fine"), (bad, b"pwned"))

    with pytest.raises(UnsafeModelError, match=r"member .*refused"):
        safe_extract(archive, dest)

    assert not outside.exists()
    assert not (dest / "link").exists() and not (dest / "link").is_symlink()
    assert not (dest / "ok.txt").exists(), "members before the bad one must not be extracted either"


def test_member_count_and_size_caps(tmp_path):
    files = [(_member(f"f{i}"), b"x") for i in range(4)]
    with pytest.raises(UnsafeModelError, match="more than 3 members"):
        safe_extract(_tar_with(*files), tmp_path / "a", max_members=3)
    with pytest.raises(UnsafeModelError, match="more than 10 bytes"):
        safe_extract(_tar_with((_member("big"), b"x" * 11)), tmp_path / "b", max_bytes=10)
    safe_extract(_tar_with(*files), tmp_path / "c", max_members=4)
    assert sorted(p.name for p in (tmp_path / "c").iterdir()) == ["f0", "f1", "f2", "f3"]


def test_not_a_tar_is_a_format_error(tmp_path):
    with pytest.raises(ModelFormatError, match="not a readable tar"):
        safe_extract(b"PK\x03\x04 a zip, not a tar", tmp_path / "out")


def test_lambda_layer_is_refused_and_never_runs(store, tmp_path):
    import keras

    canary = tmp_path / "lambda-ran"

    def make_side_effect(path):
        return lambda x: (open(path, "w").close(), x)[1]

    inp = keras.Input((WINDOW, FEATURES))
    hidden = keras.layers.Lambda(make_side_effect(str(canary)))(inp)
    model = keras.Model(inp, keras.layers.Dense(3, activation="softmax")(hidden))
    archive = make_archive(tmp_path, model=model, metadata=legacy_metadata())
    canary.unlink()  # building the model ran the lambda once, here, on purpose

    with pytest.raises(UnsafeModelError, match="Lambda"):
        import_legacy(store, archive, "legacy-lambda")

    assert not canary.exists()
    assert store.models() == []


@pytest.mark.parametrize("metadata, match", [
    (None, "no metadata.json"),
    ({"config": {"model_type": "rnn"}}, "label_mapping must be"),
    (legacy_metadata(mapping={"a": 0, "b": 2}), r"indices are \[0, 2\]"),
    (legacy_metadata(mapping={"a": 0, "b": 0}), "distinct integer"),
    ({**legacy_metadata(), "config": {"model_type": "logistic"}}, "model_type is 'logistic'"),
    (legacy_metadata(window="8"), "model_params.window_size"),
])
def test_malformed_archives_are_refused_with_the_key(metadata, match, tmp_path):
    h5 = tmp_path / "not-really.h5"
    h5.write_bytes(b"\x89HDF\r\n\x1a\n")
    with pytest.raises(ModelFormatError, match=match):
        read_legacy_archive(make_archive(tmp_path, h5=h5, metadata=metadata))


def test_metadata_that_disagrees_with_the_model_names_both_numbers(closure_model, tmp_path):
    archive = make_archive(tmp_path, model=closure_model, metadata=legacy_metadata(input_size=7))
    with pytest.raises(ModelFormatError, match="model_params.input_size is 7 but classifier_model.h5 has 6"):
        read_legacy_archive(archive)


def test_missing_redis_key_is_named(redis_client):
    with pytest.raises(ModelNotFoundError, match="'no:such:model'"):
        read_archive_from_redis(redis_client, "no:such:model")


def test_labels_and_secret_redaction_helpers():
    assert labels_from_mapping({"b": 1.0, "a": 0}) == ["a", "b"]
    clean, dropped = redact_secrets({"tokenizer": "line", "redis": {"url": "redis://u:pw@h:6379/0", "auth": "x"},
                                     "api_key": "k", "author": "me"})
    assert clean == {"tokenizer": "line", "redis": {"url": "redis://***@h:6379/0"}, "author": "me"}
    assert sorted(dropped) == ["api_key", "redis.auth", "redis.url"]
