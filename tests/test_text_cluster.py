"""Raw text on a real standalone cluster: the feature pipeline runs on executors that get nothing from Redis,
cannot read the driver's temporary directories and cannot import the original project's suffix class (it
exists only in tests/legacy_stages, on the test process's path); skol_spark ships the rebuilt stages in the
query plan."""

from __future__ import annotations

import uuid

import pytest

from skol_spark.store.model_store import ModelStore
from tests.helpers import LABELS, WINDOW, train_closure_model
from tests.helpers import assert_matches_reference, read_output, write_config
from tests.test_cluster import cluster, submit_to_cluster  # noqa: F401
from tests.test_text_job import write_documents
from tests.textkit import fit_pipeline, make_text_documents, reference_text_scores

pytestmark = [pytest.mark.slow, pytest.mark.cluster]


def test_standalone_cluster_scores_raw_text(cluster, spark, redis_client, redis_server, tmp_path):  # noqa: F811
    fitted = fit_pipeline(spark, tmp_path / "feature_pipeline", legacy=True)
    model = train_closure_model(features=36, seed=12)
    prefix = f"ctext{uuid.uuid4().hex[:6]}"
    ModelStore(redis_client, prefix=prefix).publish(model, "text", labels=LABELS, stride=WINDOW // 2,
                                                    aliases=["production"],
                                                    feature_pipeline=tmp_path / "feature_pipeline")
    docs = make_text_documents("ct", 12, seed=13, max_lines=30)
    write_documents(tmp_path / "in" / "part-0.parquet", {d: "\n".join(lines) for d, lines in docs.items()})
    conf = write_config(tmp_path / "job.yaml", timeouts=(2, 5), redis_url="", prefix=prefix, model="text",
                        input_path=str(tmp_path / "in"), output_path=str(tmp_path / "out"), mode="append",
                        extra={"scoring": {"partitions": 4}, "input": {"document_text_col": "body"},
                               "output": {"annotated_path": str(tmp_path / "annotated")}})
    manifest = submit_to_cluster(cluster, conf, redis_server, tmp_path)
    assert manifest["spark"]["master"] == cluster["url"] and manifest["annotated"]["documents"] == len(docs)
    table = read_output(tmp_path / "out")
    assert_matches_reference(table, reference_text_scores(model, fitted, spark, docs, stride=WINDOW // 2))
    assert list(cluster["work"].glob("worker*/app-*/*/stderr")), "no executor ran on the standalone workers"
