"""The benchmark's text variant: the same lines as the vector corpus, the ratio it reports, its run order."""

from __future__ import annotations

import numpy as np
import pyarrow.parquet as pq

from benchmarks import bench, text_workload, workload


def run(lines: int, seconds: float) -> dict:
    return {"lines": lines, "job_seconds": seconds}


def test_the_ratio_is_text_lines_per_second_over_the_vector_paths_where_both_ran():
    results = {"text": {"250k": run(250_000, 50.0), "1000k": run(1_000_000, 125.0)},
               "text_vectors": {"250k": run(250_000, 40.0)}}
    assert text_workload.path_ratios(results, ["250k", "1000k"]) == {"250k": 0.8}
    results["text_vectors"]["1000k"] = run(1_000_000, 100.0)
    ratios = text_workload.path_ratios(results, ["250k", "1000k"])
    assert ratios == {"250k": 0.8, "1000k": 0.8}
    assert "250k: 0.80x, 1000k: 0.80x" in text_workload.headline(ratios)[0]
    assert text_workload.headline(text_workload.path_ratios({"text": results["text"]}, ["250k"])) == []


def test_the_summary_carries_the_ratio_on_the_text_row():
    results = {"text": {"10k": run(10_000, 4.0), "40k": run(40_000, 10.0)},
               "text_vectors": {"10k": run(10_000, 2.0), "40k": run(40_000, 8.0)}}
    summary = bench.summarize(results, ["10k", "40k"])
    assert summary["text"]["10k"]["ratio_to_vector_path"] == 0.5
    assert summary["text"]["40k"]["ratio_to_vector_path"] == 0.8
    assert "ratio_to_vector_path" not in summary["text_vectors"]["40k"]


def test_text_and_its_vector_path_alternate_like_an_a_b_pair():
    order = bench.run_order(["ceiling", "text", "text_vectors"], ["s", "l"], repeat=2)
    assert order == [("ceiling", "s"), ("ceiling", "s"), ("ceiling", "l"), ("ceiling", "l"),
                     ("text_vectors", "s"), ("text", "s"), ("text_vectors", "s"), ("text", "s"),
                     ("text_vectors", "l"), ("text", "l"), ("text_vectors", "l"), ("text", "l")]
    assert bench.run_order(["text"], ["s"]) == [("text", "s")]
    baseline = bench.run_order(["skol_spark_baseline", "skol_spark"], ["s"])
    assert baseline == [("skol_spark_baseline", "s"), ("skol_spark", "s")]


def test_only_the_text_variant_reads_text_and_both_score_the_text_model():
    assert text_workload.overrides("text") == [f"model.name={text_workload.MODEL_NAME}", "input.text_col=text"]
    assert text_workload.overrides("text_vectors") == [f"model.name={text_workload.MODEL_NAME}"]


def test_the_text_corpus_has_the_vector_corpus_documents_keys_and_files(tmp_path):
    vectors = workload.write_corpus(tmp_path / "vectors", 3_000, seed=11)
    text = text_workload.write_text_corpus(tmp_path / "text", 3_000, seed=11, vocab=text_workload.vocabulary(200))
    assert (text["lines"], text["documents"]) == (vectors["lines"], vectors["documents"])
    for part in sorted((tmp_path / "vectors").glob("*.parquet")):
        keys = pq.read_table(part, columns=["doc_id", "line_number"])
        assert keys.equals(pq.read_table(tmp_path / "text" / part.name, columns=["doc_id", "line_number"]))
    lines = pq.read_table(tmp_path / "text").column("text").to_pylist()
    assert all(line and not line.startswith(" ") for line in lines)
    assert np.mean([len(line.split()) for line in lines]) > 5
