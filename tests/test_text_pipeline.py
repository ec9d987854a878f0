"""The feature pipeline stored with a model: parsed without trust, rebuilt for the executors, checked.

Real Spark ML pipelines fitted on a synthetic corpus (tests/textkit.py), one with the original project's
Python suffix stage (a test-only module under its class name), a real redis-server, real Keras models.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import sys
import tarfile
from pathlib import Path

import numpy as np
import pytest

from skol_spark.errors import ModelFormatError, UnsafeModelError
from skol_spark.store import pipeline as stored
from skol_spark.store.legacy import pack_directory
from skol_spark.text.suffix import SuffixTransformer, suffixes
from tests.helpers import LABELS, train_closure_model
from tests.fault_tools import run_cli
from tests.textkit import fit_pipeline, legacy_suffix_class, make_text_documents

FEATURES = 36  # 24 word + 12 suffix columns (textkit.fit_pipeline's defaults)


@pytest.fixture(scope="module")
def legacy_dir(spark, tmp_path_factory):
    path = tmp_path_factory.mktemp("pipeline") / "feature_pipeline"
    fit_pipeline(spark, path, legacy=True)
    return path


@pytest.fixture(scope="module")
def text_model():
    return train_closure_model(features=FEATURES, seed=4)


def _stage_metadata(directory: Path, index: int) -> Path:
    stage = next(p for p in (directory / "stages").iterdir() if p.name.startswith(f"{index}_"))
    return next((stage / "metadata").glob("part-*"))


def renamed_stage(src: Path, dst: Path, index: int, cls: str) -> Path:
    """A copy of a saved pipeline whose stage ``index`` names another class (what tampering in Redis does)."""
    shutil.copytree(src, dst)
    meta_file = _stage_metadata(dst, index)
    meta = json.loads(meta_file.read_text())
    meta["class"] = cls
    meta_file.write_text(json.dumps(meta) + "\n")
    return dst


def test_suffix_stage_matches_python_slices(spark):
    words = [["agaricus", "ab", "a", "", "sp.", "pileus"], ["ébène", "x"], []]
    df = spark.createDataFrame([(i, w) for i, w in enumerate(words)], "i int, words array<string>")
    ours = {r["i"]: r["suffixes"] for r in SuffixTransformer(inputCol="words").transform(df).collect()}
    legacy = {r["i"]: r["suffixes"] for r in legacy_suffix_class()(inputCol="words").transform(df).collect()}
    for i, w in enumerate(words):
        expected = [t[-n:] for t in w for n in (2, 3, 4)]  # the original's definition, written out
        assert ours[i] == expected == legacy[i] == suffixes(w)
    assert ours[0][:3] == ["us", "cus", "icus"] and ours[0][6:9] == ["a", "a", "a"]


def test_suffix_stage_saves_and_loads_under_its_own_name(tmp_path):
    stage = SuffixTransformer(inputCol="tokens", outputCol="ends")
    stage.write().save(str(tmp_path / "s"))
    meta = json.loads(next((tmp_path / "s" / "metadata").glob("part-*")).read_text())
    assert meta["class"] == "skol_spark.text.suffix.SuffixTransformer"
    loaded = SuffixTransformer.load(str(tmp_path / "s"))
    assert (loaded.getInputCol(), loaded.getOutputCol()) == ("tokens", "ends")


def test_rebuilt_pipeline_equals_spark_ml_load(spark, legacy_dir):
    """The executors' pipeline (public constructors, no files) gives Spark ML's own features to 1e-6."""
    from pyspark.ml import PipelineModel

    parsed = stored.pipeline_from_dir(legacy_dir)
    assert (parsed.text_col, parsed.features_col, parsed.feature_size) == ("value", "combined_idf", FEATURES)
    assert parsed.stage_classes[3] == "skol_classifier.preprocessing.SuffixTransformer"
    assert sorted(parsed.labels) == sorted(LABELS)
    docs = make_text_documents("eq", 6, seed=11)
    rows = [(f"{d}:{i}", t) for d, lines in docs.items() for i, t in enumerate(lines)] + [("odd", "Zzz qq é a")]
    df = spark.createDataFrame(rows, "key string, value string")
    legacy_suffix_class()  # Spark ML's loader imports the class its metadata names; ours never does
    theirs = {r["key"]: r["combined_idf"].toArray()
              for r in PipelineModel.load(str(legacy_dir)).transform(df.withColumn("label", df["value"]))
              .select("key", "combined_idf").collect()}
    ours = {r["key"]: r["combined_idf"].toArray() for r in parsed.transform(df).select("key", "combined_idf").collect()}
    assert set(ours) == set(theirs) == {k for k, _ in rows}
    worst = max(float(np.max(np.abs(ours[k] - theirs[k]))) for k in ours)
    assert worst <= 1e-6
    assert sum(float(np.abs(v).sum()) > 0 for v in ours.values()) > len(rows) // 2  # not all-zero vectors


def test_publish_stores_pipeline_and_cli_shows_and_verifies_it(store, redis_server, legacy_dir, text_model):
    version = store.publish(text_model, "text", labels=LABELS, feature_pipeline=legacy_dir)
    manifest = store.manifest("text", version)
    summary = manifest["feature_pipeline"]
    assert (summary["text_col"], summary["features_col"], summary["feature_size"]) == ("value", "combined_idf",
                                                                                        FEATURES)
    assert manifest["extras"]["feature_pipeline"]["chunks"] >= 1
    reread = stored.pipeline_from_archive(store.load_extra("text", version, "feature_pipeline"))
    assert reread.summary() == summary
    where = ["--redis-url", redis_server.url, "--prefix", store.prefix, "text", str(version)]
    shown = run_cli(["model", "show", *where])
    assert shown.code == 0, shown.text
    assert "Tokenizer -> CountVectorizerModel -> IDFModel -> SuffixTransformer" in shown.out
    assert f"combined_idf ({FEATURES} features)" in shown.out and "value" in shown.out
    verified = run_cli(["model", "verify", *where])
    assert verified.code == 0, verified.text
    assert "feature pipeline ok" in verified.out and f"{FEATURES} features" in verified.out


def test_publish_refuses_pipeline_of_another_size(store, legacy_dir, closure_model):
    with pytest.raises(ModelFormatError, match=rf"makes {FEATURES}-long vectors .* model reads 6 features"):
        store.publish(closure_model, "wrong-size", labels=LABELS, feature_pipeline=legacy_dir)
    assert store.versions("wrong-size") == []


def test_foreign_stage_is_refused_and_never_imported(store, legacy_dir, text_model, tmp_path, monkeypatch):
    canary = tmp_path / "canary"
    monkeypatch.setenv("SKOL_CANARY_FILE", str(canary))
    legacy_suffix_class()  # puts tests/legacy_stages (home of skol_canary) on sys.path: an import would succeed
    tampered = renamed_stage(legacy_dir, tmp_path / "tampered", 3, "skol_canary.stage.EvilStage")
    with pytest.raises(UnsafeModelError) as refused:
        store.publish(text_model, "evil", labels=LABELS, feature_pipeline=tampered)
    assert refused.value.exit_code == 14
    assert "'skol_canary.stage.EvilStage'" in str(refused.value) and "model.pipeline_modules" in str(refused.value)
    with pytest.raises(UnsafeModelError):
        stored.pipeline_from_archive(pack_directory(tampered))
    assert not canary.exists() and "skol_canary.stage" not in sys.modules
    assert store.versions("evil") == []
    # the canary works, and the config key is what lets a module in: allowed, building the stage imports it
    allowed = stored.pipeline_from_dir(tampered, allowed_modules=("skol_canary.stage",))
    with pytest.raises(ModelFormatError, match="not a Spark ML Transformer"):
        allowed.build()
    assert canary.read_text() == "imported"


def test_unsupported_stage_is_refused_at_publish(store, legacy_dir, text_model, tmp_path):
    odd = renamed_stage(legacy_dir, tmp_path / "odd", 0, "org.apache.spark.ml.feature.SQLTransformer")
    with pytest.raises(ModelFormatError, match="SQLTransformer, which skol_spark cannot rebuild") as refused:
        store.publish(text_model, "odd", labels=LABELS, feature_pipeline=odd)
    assert refused.value.exit_code == 13 and store.versions("odd") == []


def test_pipeline_archive_with_escaping_member_is_refused(tmp_path):
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        info = tarfile.TarInfo("feature_pipeline/../../escaped")
        info.size = 2
        tar.addfile(info, io.BytesIO(b"no"))
    cwd = os.getcwd()
    with pytest.raises(UnsafeModelError, match="'..' path component"):
        stored.pipeline_from_archive(buffer.getvalue())
    assert os.getcwd() == cwd and not (tmp_path.parent / "escaped").exists()


def test_cli_publish_takes_a_feature_pipeline_and_refuses_a_foreign_one(store, redis_server, legacy_dir, text_model,
                                                                         tmp_path, monkeypatch):
    model_file = tmp_path / "model.keras"
    text_model.save(model_file)
    where = ["--redis-url", redis_server.url, "--prefix", store.prefix]
    done = run_cli(["model", "publish", "cli-text", str(model_file), "--labels", ",".join(LABELS),
                    "--feature-pipeline", str(legacy_dir), *where])
    assert done.code == 0, done.text
    assert store.manifest("cli-text", "latest")["feature_pipeline"]["feature_size"] == FEATURES
    monkeypatch.setenv("SKOL_CANARY_FILE", str(tmp_path / "canary"))
    tampered = renamed_stage(legacy_dir, tmp_path / "tampered", 0, "skol_canary.stage.EvilStage")
    refused = run_cli(["model", "publish", "cli-evil", str(model_file), "--labels", ",".join(LABELS),
                       "--feature-pipeline", str(tampered), *where])
    assert refused.code == 14 and "skol_canary.stage.EvilStage" in refused.err and "pipeline_modules" in refused.err
    assert not (tmp_path / "canary").exists() and store.versions("cli-evil") == []
