"""Annotated documents out: the YEDDA merge rule, and the job's annotated output beside its lines.

The job's annotated text is compared with the merge of the reference labels (the fitted pipeline applied
in-process, Keras called directly on the windows), not with its own output.
"""

from __future__ import annotations

import json

import numpy as np
import pyarrow.dataset as ds
import pytest

from skol_spark.job.annotated import yedda
from tests.helpers import LABELS
from tests.helpers import read_output
from tests.test_text_job import fitted, job_conf, predict, published, write_documents, write_lines  # noqa: F401
from tests.textkit import make_text_documents, reference_text_scores


def test_yedda_merges_consecutive_equal_labels():
    lines = [("Agaricus x sp. nov.", "Nomenclature"), ("pileus convex", "Description"), ("", "Description"),
             ("spores smooth", "Description"), ("see figure", "Misc"), ("Boletus y", "Nomenclature")]
    assert yedda(lines) == ("[@ Agaricus x sp. nov. #Nomenclature*]\n"
                            "[@ pileus convex\n\nspores smooth #Description*]\n"
                            "[@ see figure #Misc*]\n"
                            "[@ Boletus y #Nomenclature*]")


@pytest.mark.parametrize("lines, expected", [
    ([], ""),
    ([("one", "Misc")], "[@ one #Misc*]"),
    ([("a", "Misc"), ("b", "Misc"), ("c", "Misc")], "[@ a\nb\nc #Misc*]"),
    ([("a", "Misc"), ("b", "Description"), ("c", "Misc")], "[@ a #Misc*]\n[@ b #Description*]\n[@ c #Misc*]"),
])
def test_yedda_edge_cases(lines, expected):
    assert yedda(lines) == expected


def expected_annotations(reference, docs: dict[str, list[str]]) -> dict[str, str]:
    return {doc: yedda((text, LABELS[int(np.argmax(reference[(doc, i)]))]) for i, text in enumerate(lines))
            for doc, lines in docs.items()}


def read_annotated(path, fmt: str) -> list[dict]:
    return ds.dataset(str(path), format=fmt, partitioning="hive", exclude_invalid_files=True).to_table().to_pylist()


@pytest.mark.parametrize("shape, fmt", [("documents", "json"), ("lines", "parquet")])
def test_job_writes_annotated_documents(spark, tmp_path, redis_server, fitted, published, shape, fmt):  # noqa: F811
    docs = make_text_documents(f"an-{shape}", 6, seed=31)
    docs[f"an-{shape}-blank"] = ["", "pileus convex brown", ""]
    if shape == "documents":
        write_documents(tmp_path / "input" / "part-0.parquet", {d: "\n".join(lines) for d, lines in docs.items()})
        text_input = {"document_text_col": "body"}
    else:
        write_lines(tmp_path / "input" / "part-0.parquet", docs)
        text_input = {"text_col": "text"}
    annotated = tmp_path / "out" / "annotated"
    conf, output = job_conf(tmp_path, redis_server, published["store"].prefix, input=text_input,
                            output={"annotated_path": str(annotated), "annotated_format": fmt})
    result = predict(conf)
    assert result.code == 0, result.text
    reference = reference_text_scores(published["model"], fitted["model"], spark, docs)
    rows = read_annotated(annotated, fmt)
    assert sorted(r["doc_id"] for r in rows) == sorted(docs)
    assert {r["doc_id"]: r["annotated"] for r in rows} == expected_annotations(reference, docs)
    run_ids = set(read_output(output).column("run_id").to_pylist())
    assert {(r["model_name"], r["model_version"], r["run_id"]) for r in rows} == \
        {("text", published["store"].resolve("text", "production"), run_ids.pop())}
    manifest = json.loads(next((output.parent / "predictions_runs").glob("*/manifest.json")).read_text())
    assert manifest["annotated"] == {"path": str(annotated), "format": fmt, "documents": len(docs)}
    assert not list(annotated.parent.glob(".annotated.skol-staging-*"))
