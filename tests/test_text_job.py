"""Scoring raw text end to end: lines or whole documents in, the same rows as the vector path (plus text) out.

Every expectation is computed independently: the fitted Spark ML pipeline applied in-process, then Keras
called directly on the windows (tests/textkit.py). Real local Spark, real redis-server, real Keras models.
"""

from __future__ import annotations

import io
import json
import tarfile
import uuid
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from skol_spark.store.legacy import import_legacy, pack_directory
from skol_spark.store.model_store import ModelStore
from tests.helpers import LABELS, WINDOW, train_closure_model
from tests.helpers import assert_no_output
from tests.fault_tools import run_cli
from tests.helpers import assert_matches_reference, read_output, write_config
from tests.textkit import fit_pipeline, make_text_documents, reference_text_scores

FEATURES = 36
MODEL = "text"


@pytest.fixture(scope="module")
def fitted(spark, tmp_path_factory):
    path = tmp_path_factory.mktemp("pipeline") / "feature_pipeline"
    return {"model": fit_pipeline(spark, path, legacy=True), "dir": path}


@pytest.fixture(scope="module")
def published(redis_client, fitted):
    store = ModelStore(redis_client, prefix=f"txt{uuid.uuid4().hex[:8]}")
    model = train_closure_model(features=FEATURES, seed=4)
    store.publish(model, MODEL, labels=LABELS, aliases=["production"], feature_pipeline=fitted["dir"])
    return {"store": store, "model": model}


def write_lines(path: Path, docs: dict[str, list[str | None]]) -> None:
    rows = [(d, i, t) for d, lines in docs.items() for i, t in enumerate(lines)]
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.table({"doc_id": [r[0] for r in rows], "line_number": pa.array([r[1] for r in rows], pa.int32()),
                             "text": [r[2] for r in rows], "ingest_date": ["2026-11-01"] * len(rows)}), str(path))


def write_documents(path: Path, texts: dict[str, str | None]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.table({"doc_id": list(texts), "body": list(texts.values()),
                             "ingest_date": ["2026-11-01"] * len(texts)}), str(path))


def job_conf(tmp_path, redis_server, prefix: str, *, model: str = MODEL, **sections) -> tuple[str, Path]:
    output = tmp_path / "out" / "predictions"
    extra = {"output": {"mode": "overwrite", **sections.pop("output", {})}, **sections}
    conf = write_config(tmp_path / "job.yaml", timeouts=(2, 5), redis_url=redis_server.url, prefix=prefix, model=model,
                        input_path=str(tmp_path / "input"), output_path=str(output), extra=extra)
    return conf, output


def predict(conf: str):
    return run_cli(["predict", "--conf", conf, "--quiet"])


def text_by_key(table) -> dict[tuple[str, int], str]:
    return {(r["doc_id"], r["line_number"]): r["text"] for r in table.select(["doc_id", "line_number", "text"])
            .to_pylist()}


def test_lines_input_scores_like_the_pipeline_then_keras(spark, tmp_path, redis_server, fitted, published):
    docs = make_text_documents("ln", 9, seed=21)
    write_lines(tmp_path / "input" / "part-0.parquet", docs)
    conf, output = job_conf(tmp_path, redis_server, published["store"].prefix, input={"text_col": "text"})
    result = predict(conf)
    assert result.code == 0, result.text
    out = read_output(output)
    assert_matches_reference(out, reference_text_scores(published["model"], fitted["model"], spark, docs))
    assert text_by_key(out) == {(d, i): t for d, lines in docs.items() for i, t in enumerate(lines)}


def test_documents_input_numbers_every_line_blank_ones_included(spark, tmp_path, redis_server, fitted, published):
    docs = make_text_documents("dc", 7, seed=22)
    docs["dc-blank"] = ["", "", "Agaricus campestris sp. nov. 1801", ""]
    texts = {d: ("\r\n" if i % 2 else "\n").join(lines) for i, (d, lines) in enumerate(docs.items())}
    texts["dc-trailing"] = "pileus convex brown\nspores smooth\n"
    docs["dc-trailing"] = ["pileus convex brown", "spores smooth", ""]
    write_documents(tmp_path / "input" / "part-0.parquet", texts)
    conf, output = job_conf(tmp_path, redis_server, published["store"].prefix, input={"document_text_col": "body"})
    result = predict(conf)
    assert result.code == 0, result.text
    out = read_output(output)
    assert "body" not in out.column_names
    assert_matches_reference(out, reference_text_scores(published["model"], fitted["model"], spark, docs))
    assert text_by_key(out) == {(d, i): t for d, lines in docs.items() for i, t in enumerate(lines)}
    assert sum(1 for t in text_by_key(out).values() if t == "") >= 4


def test_null_text_is_refused_with_its_count(tmp_path, redis_server, published):
    docs = make_text_documents("nl", 4, seed=23)
    docs["nl-000"][0] = None
    docs["nl-002"][-1] = None
    write_lines(tmp_path / "input" / "part-0.parquet", docs)
    conf, output = job_conf(tmp_path, redis_server, published["store"].prefix, input={"text_col": "text"})
    result = predict(conf)
    assert result.code == 20, result.text
    assert "2 line(s) with null features" in result.text
    assert_no_output(output)


def test_null_text_quarantines_its_document(spark, tmp_path, redis_server, fitted, published):
    docs = make_text_documents("nq", 6, seed=24)
    docs["nq-001"][0] = None
    write_lines(tmp_path / "input" / "part-0.parquet", docs)
    conf, output = job_conf(tmp_path, redis_server, published["store"].prefix, input={"text_col": "text"},
                            scoring={"bad_input": "quarantine", "quarantine_path": str(tmp_path / "q"),
                                     "max_quarantine_fraction": 1.0, "batch_size": 64})
    result = predict(conf)
    assert result.code == 0, result.text
    clean = {d: lines for d, lines in docs.items() if d != "nq-001"}
    assert_matches_reference(read_output(output), reference_text_scores(published["model"], fitted["model"], spark,
                                                                        clean))


def test_text_input_needs_a_version_with_a_pipeline(tmp_path, redis_server, published, closure_model):
    store = published["store"]
    store.publish(closure_model, "vectors-only", labels=LABELS, aliases=["production"])
    write_lines(tmp_path / "input" / "part-0.parquet", {"d": ["pileus convex"]})
    conf, output = job_conf(tmp_path, redis_server, store.prefix, model="vectors-only", input={"text_col": "text"})
    result = predict(conf)
    assert result.code == 11, result.text
    assert "has no feature pipeline" in result.text
    assert_no_output(output)


def test_pipeline_of_another_size_is_refused_naming_both(tmp_path, redis_server, published, fitted, closure_model):
    """A pipeline stored beside a model it does not fit (an import keeps it as an extra) cannot score text."""
    store = published["store"]
    store.publish(closure_model, "misfit", labels=LABELS, aliases=["production"],
                  extras={"feature_pipeline": pack_directory(fitted["dir"])})
    write_lines(tmp_path / "input" / "part-0.parquet", {"d": ["pileus convex"]})
    conf, output = job_conf(tmp_path, redis_server, store.prefix, model="misfit", input={"text_col": "text"})
    result = predict(conf)
    assert result.code == 13, result.text
    assert f"makes {FEATURES}-long vectors" in result.text and "model reads 6 features" in result.text
    assert_no_output(output)


def legacy_archive(tmp_path: Path, model, pipeline_dir: Path) -> bytes:
    """The original project's archive: classifier_model.h5, metadata.json, feature_pipeline/."""
    src = tmp_path / "legacy_src"
    src.mkdir()
    model.save(src / "classifier_model.h5")
    (src / "metadata.json").write_text(json.dumps({
        "label_mapping": {name: i for i, name in enumerate(LABELS)},
        "config": {"model_type": "rnn", "model_params": {"window_size": WINDOW, "prediction_stride": WINDOW,
                                                         "input_size": FEATURES, "num_classes": len(LABELS)}}}))
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        tar.add(src, arcname=".")
        tar.add(pipeline_dir, arcname="feature_pipeline")
    return buffer.getvalue()


def test_legacy_archive_imports_and_scores_raw_text(spark, tmp_path, redis_server, fitted, published):
    store = published["store"]
    version = import_legacy(store, legacy_archive(tmp_path, published["model"], fitted["dir"]), "legacy-text")
    store.set_alias("legacy-text", "production", version)
    summary = store.manifest("legacy-text", version)["feature_pipeline"]
    assert summary["stages"][3] == "skol_classifier.preprocessing.SuffixTransformer"
    assert summary["feature_size"] == FEATURES
    docs = make_text_documents("lg", 5, seed=25)
    write_documents(tmp_path / "input" / "part-0.parquet", {d: "\n".join(lines) for d, lines in docs.items()})
    conf, output = job_conf(tmp_path, redis_server, store.prefix, model="legacy-text",
                            input={"document_text_col": "body"})
    result = predict(conf)
    assert result.code == 0, result.text
    assert_matches_reference(read_output(output), reference_text_scores(published["model"], fitted["model"], spark,
                                                                        docs))
