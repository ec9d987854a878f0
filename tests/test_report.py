"""The run report, the run comparison and ``skol-spark report``, on small tables built here."""

from __future__ import annotations

import base64
import csv
import io
import json
import logging
import re
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image

from skol_spark.report.charts import CHART_SIZE, confusion_size
from skol_spark.report.metrics import compute_metrics
from skol_spark.report.build import compare_runs, load_output, report_main, write_comparison, write_report
from skol_spark.report.files import labels_from_data

LABELS = ["Nomenclature", "Description", "Misc"]
VOID = {"meta", "img", "br", "hr", "link", "input", "source", "col", "area", "base", "wbr"}


def scored(n: int = 300, seed: int = 1, truth: bool = True) -> pd.DataFrame:
    """A scoring output: 10 documents, a true label on most lines (one unknown name, some nulls)."""
    rng = np.random.default_rng(seed)
    prediction = rng.integers(0, 3, n)
    probabilities = rng.dirichlet(np.ones(3), n)
    frame = pd.DataFrame({
        "doc_id": [f"doc{i % 10}" for i in range(n)], "line_number": np.arange(n) // 10,
        "label": np.array(LABELS)[prediction], "prediction": prediction,
        "confidence": probabilities.max(axis=1), "probabilities": list(probabilities),
        "model_name": "m", "model_version": 2, "run_id": "abc",
    })
    if truth:
        true = np.where(rng.random(n) < 0.7, frame["label"], np.array(LABELS)[rng.integers(0, 3, n)]).astype(object)
        true[::17] = None
        true[5::23] = "Habitat"
        frame["true_label"] = true
    return frame


class PageChecker(HTMLParser):
    """Tag balance, <img> attributes and every src/href in one pass."""

    def __init__(self):
        super().__init__()
        self.stack, self.errors, self.images, self.references, self.style = [], [], [], [], ""
        self.doctype = False
        self._in_style = False

    def handle_decl(self, decl):
        self.doctype = self.doctype or decl.lower() == "doctype html"

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "img":
            self.images.append(attrs)
        self.references += [v for k, v in attrs.items() if k in ("src", "href", "action", "srcset", "poster")]
        if tag == "script":
            self.errors.append("script tag")
        self._in_style = tag == "style"
        if tag not in VOID:
            self.stack.append(tag)

    def handle_endtag(self, tag):
        if not self.stack or self.stack[-1] != tag:
            self.errors.append(f"</{tag}> closes {self.stack[-1:]}")
        else:
            self.stack.pop()
        self._in_style = False

    def handle_data(self, data):
        if self._in_style:
            self.style += data


def check_page(path: Path) -> PageChecker:
    text = path.read_text(encoding="utf-8")
    checker = PageChecker()
    checker.feed(text)
    checker.close()
    assert checker.doctype, "missing <!DOCTYPE html>"
    assert not checker.errors and not checker.stack, (checker.errors, checker.stack)
    assert all(ref.startswith("data:") for ref in checker.references), checker.references
    assert "url(" not in checker.style and "@import" not in checker.style
    without_data = re.sub(r"data:image/png;base64,[A-Za-z0-9+/=]+", "", text)
    for needle in ("http://", "https://", "//"):
        assert needle not in without_data, needle
    return checker


def embedded_pngs(checker: PageChecker) -> list[bytes]:
    return [base64.b64decode(img["src"].split(",", 1)[1]) for img in checker.images]


def test_report_with_true_labels_writes_every_chart_embedded_and_sized(tmp_path):
    frame = scored()
    manifest = {"run_id": "abc", "model": {"name": "skol-bilstm", "version": 2, "labels": LABELS},
                "output": {"rows_written": len(frame)}, "duration_seconds": 12.5,
                "throughput": {"lines_per_second": 24.0}}
    result = write_report(frame, LABELS, tmp_path / "r", title="Run <abc>", manifest=manifest)

    pngs = ["confusion_matrix.png", "class_metrics.png", "label_counts.png", "confidence.png"]
    assert set(pngs) <= set(result["paths"])
    sizes = {name: CHART_SIZE for name in pngs} | {"confusion_matrix.png": confusion_size(len(LABELS))}
    for name in pngs:
        with Image.open(result["paths"][name]) as image:
            assert image.format == "PNG" and image.size == sizes[name], name
    checker = check_page(Path(result["paths"]["report.html"]))
    on_disk = {Path(result["paths"][name]).read_bytes() for name in pngs}
    assert set(embedded_pngs(checker)) == on_disk and len(checker.images) == 4
    for img in checker.images:
        with Image.open(io.BytesIO(base64.b64decode(img["src"].split(",", 1)[1]))) as image:
            assert (int(img["width"]), int(img["height"])) == image.size
        assert img["alt"]
    html = Path(result["paths"]["report.html"]).read_text()
    assert "<title>Run &lt;abc&gt;</title>" in html
    for fact in ("skol-bilstm", "Throughput (lines/s)", "<td class=\"num\">24</td>", "12.500", "Habitat"):
        assert fact in html, fact
    expected = compute_metrics(frame["true_label"].to_numpy(object), frame["label"].to_numpy(object), LABELS,
                               doc_ids=frame["doc_id"].to_numpy())
    assert result["metrics"] == expected
    assert f"{expected['per_class']['Misc']['f1']:.3f}" in html
    assert json.loads(Path(result["paths"]["metrics.json"]).read_text())["metrics"] == expected


def test_report_without_true_labels_has_counts_and_confidence_only(tmp_path):
    out = tmp_path / "r"
    write_report(scored(), LABELS, out, title="first, with truth")
    assert (out / "confusion_matrix.png").exists()
    result = write_report(scored(truth=False), LABELS, out, title="no truth")

    assert not (out / "confusion_matrix.png").exists() and not (out / "class_metrics.png").exists()
    assert {"label_counts.png", "confidence.png"} <= set(result["paths"])
    assert "confusion_matrix.png" not in result["paths"]
    checker = check_page(out / "report.html")
    assert len(checker.images) == 2
    assert set(embedded_pngs(checker)) == {(out / "label_counts.png").read_bytes(), (out / "confidence.png").read_bytes()}
    for name in ("label_counts.png", "confidence.png"):
        with Image.open(out / name) as image:
            assert image.size == CHART_SIZE
    assert result["metrics"]["accuracy"] is None
    assert "no evaluation" in (out / "report.html").read_text()


def test_pyarrow_table_and_dataframe_give_the_same_metrics(tmp_path):
    frame = scored(seed=4)
    from_pandas = write_report(frame, LABELS, tmp_path / "a", title="a")
    from_arrow = write_report(pa.Table.from_pandas(frame), LABELS, tmp_path / "b", title="b")
    assert from_arrow["metrics"] == from_pandas["metrics"]
    assert from_arrow["metrics"]["evaluated_lines"] > 0


def test_missing_column_is_a_config_error(tmp_path):
    from skol_spark.errors import ConfigError

    with pytest.raises(ConfigError, match=r"lacks column\(s\) \['confidence'\]"):
        write_report(scored().drop(columns=["confidence"]), LABELS, tmp_path, title="t")


def two_runs():
    """Run A, and run B with three labels changed, one line dropped and one line added."""
    a = scored(n=60, seed=2)
    b = a.copy()
    changes = {}
    for doc, line in (("doc3", 1), ("doc0", 4), ("doc7", 5)):
        row = (b["doc_id"] == doc) & (b["line_number"] == line)
        old = b.loc[row, "label"].item()
        changes[(doc, line)] = b.loc[row, "label"] = LABELS[(LABELS.index(old) + 1) % len(LABELS)]
    b = b[~((b["doc_id"] == "doc9") & (b["line_number"] == 0))]
    extra = b.iloc[[0]].assign(doc_id="doc99", line_number=0)
    return a, pd.concat([b, extra], ignore_index=True), changes


def test_compare_lists_exactly_the_changed_lines():
    a, b, changes = two_runs()
    result = compare_runs(a, b, LABELS)
    got = {(r["doc_id"], r["line_number"]): r for r in result["changed_lines"]}
    assert set(got) == set(changes)
    assert [(r["doc_id"], r["line_number"]) for r in result["changed_lines"]] == sorted(changes)
    for key, new in changes.items():
        old = a.loc[(a["doc_id"] == key[0]) & (a["line_number"] == key[1])].iloc[0]
        assert got[key]["label_a"] == old["label"] and got[key]["label_b"] == new
        assert got[key]["true_label"] == old["true_label"]
    assert (result["lines_a"], result["lines_b"], result["common_lines"]) == (60, 60, 59)
    assert (result["only_a"], result["only_b"], result["changed_count"]) == (1, 1, 3)
    assert sum(t["count"] for t in result["transitions"]) == 3
    json.dumps(result, allow_nan=False)


def test_compare_f1_deltas_are_b_minus_a_on_common_lines():
    a, b, _ = two_runs()
    result = compare_runs(a, b, LABELS)
    common = a.merge(b[["doc_id", "line_number"]], on=["doc_id", "line_number"])
    common_b = b.merge(a[["doc_id", "line_number"]], on=["doc_id", "line_number"])
    ma = compute_metrics(common["true_label"].to_numpy(object), common["label"].to_numpy(object), LABELS)
    mb = compute_metrics(common_b["true_label"].to_numpy(object), common_b["label"].to_numpy(object), LABELS)
    for name in LABELS:
        f1 = result["f1"]["per_class"][name]
        assert (f1["a"], f1["b"]) == (pytest.approx(ma["per_class"][name]["f1"]), pytest.approx(mb["per_class"][name]["f1"]))
        assert f1["delta"] == pytest.approx(f1["b"] - f1["a"])
    assert any(result["f1"]["per_class"][n]["delta"] != 0 for n in LABELS)
    assert compare_runs(a.drop(columns=["true_label"]), b, LABELS)["f1"] is None


def test_compare_refuses_duplicate_keys():
    from skol_spark.errors import ConfigError

    a = scored(n=20)
    with pytest.raises(ConfigError, match="duplicate"):
        compare_runs(pd.concat([a, a.iloc[[3]]]), a, LABELS)


def test_write_comparison_caps_the_html_and_writes_every_line_to_csv(tmp_path):
    a, b, changes = two_runs()
    paths = write_comparison(compare_runs(a, b, LABELS), tmp_path, title="A vs B", max_html_lines=2)
    with open(paths["changed_lines.csv"], newline="") as f:
        rows = list(csv.DictReader(f))
    assert {(r["doc_id"], int(r["line_number"])) for r in rows} == set(changes)
    assert {r["label_b"] for r in rows} == set(changes.values())
    checker = check_page(Path(paths["comparison.html"]))
    assert checker.images == []
    html = Path(paths["comparison.html"]).read_text()
    shown = [key for key in sorted(changes) if f"<td>{key[0]}</td><td>{key[1]}</td>" in html]
    assert shown == sorted(changes)[:2]
    assert "Showing the first 2" in html and "changed_lines.csv" in html


def write_dataset(root: Path, frame: pd.DataFrame, run_id: str = "abc", keep_column: bool = False) -> Path:
    """A Spark-like output: hive subdirectory, two part files, _SUCCESS, a .crc and a _temporary dir."""
    part_dir = root / f"run_id={run_id}"
    part_dir.mkdir(parents=True)
    data = frame if keep_column else frame.drop(columns=["run_id"])
    half = len(data) // 2
    pq.write_table(pa.Table.from_pandas(data.iloc[:half], preserve_index=False), part_dir / "part-0.parquet")
    pq.write_table(pa.Table.from_pandas(data.iloc[half:], preserve_index=False), part_dir / "part-1.parquet")
    (root / "_SUCCESS").write_text("")
    (part_dir / ".part-0.parquet.crc").write_bytes(b"not parquet")
    (root / "_temporary").mkdir()
    (root / "_temporary" / "junk.parquet").write_bytes(b"not parquet")
    return root


def test_load_output_reads_hive_partitions_and_skips_side_files(tmp_path):
    frame = scored(n=50)
    table = load_output(write_dataset(tmp_path / "out", frame))
    assert table.num_rows == 50
    assert set(table.column("run_id").to_pylist()) == {"abc"}
    numeric = load_output(write_dataset(tmp_path / "out2", frame.assign(run_id="20240101"), "20240101", True))
    assert numeric.column("run_id").to_pylist() == ["20240101"] * 50


def test_labels_from_data_warns_about_a_class_never_predicted(tmp_path, caplog):
    frame = scored(n=60)
    assert labels_from_data(pa.Table.from_pandas(frame)) == LABELS
    frame = frame[frame["prediction"] != 1]
    with caplog.at_level(logging.WARNING, logger="skol_spark.report.files"):
        assert labels_from_data(pa.Table.from_pandas(frame)) == ["Nomenclature", "Misc"]
    assert "[1]" in caplog.text and "--labels" in caplog.text


def test_report_main_on_an_output_directory(tmp_path, capsys):
    out = write_dataset(tmp_path / "out", scored())
    assert report_main([str(out), "--out", str(tmp_path / "report")]) == 0
    printed = capsys.readouterr().out
    for name in ("report.html", "confusion_matrix.png", "class_metrics.png", "label_counts.png", "confidence.png"):
        assert (tmp_path / "report" / name).exists(), name
        assert str(tmp_path / "report" / name) in printed
    assert "macro avg" in printed and "Nomenclature" in printed
    assert "skol_spark run abc" in (tmp_path / "report" / "report.html").read_text()


def test_report_main_on_a_manifest_with_comparison(tmp_path, capsys):
    a, b, changes = two_runs()
    write_dataset(tmp_path / "a", a.assign(run_id="runA"), "runA")
    write_dataset(tmp_path / "b", b.assign(run_id="runB"), "runB")
    manifest = {"run_id": "runB", "output": {"path": str(tmp_path / "b")},
                "model": {"name": "m", "version": 3, "labels": LABELS}}
    (tmp_path / "manifest.json").write_text(json.dumps(manifest))
    assert report_main([str(tmp_path / "manifest.json"), "--compare", str(tmp_path / "a")]) == 0
    report_dir = tmp_path / "manifest_report"
    assert (report_dir / "report.html").exists() and (report_dir / "comparison.html").exists()
    with open(report_dir / "changed_lines.csv", newline="") as f:
        assert len(list(csv.DictReader(f))) == len(changes)
    assert "3 of 59 common lines changed label" in capsys.readouterr().out
    check_page(report_dir / "comparison.html")


def test_report_main_labels_option_and_bad_labels(tmp_path, capsys):
    out = write_dataset(tmp_path / "out", scored(truth=False))
    assert report_main([str(out), "--out", str(tmp_path / "r"), "--labels", ",".join(LABELS)]) == 0
    assert "predicted-label counts" in capsys.readouterr().out
    assert report_main([str(out), "--out", str(tmp_path / "r"), "--labels", "Misc,Description"]) == 2
    assert "'Nomenclature'" in capsys.readouterr().err


def test_report_main_missing_path_and_empty_output_return_2(tmp_path, capsys):
    assert report_main([str(tmp_path / "nowhere")]) == 2
    err = capsys.readouterr().err
    assert "nowhere" in err and "no such file or directory" in err
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "_SUCCESS").write_text("")
    assert report_main([str(tmp_path / "empty")]) == 2
    assert "no scored lines" in capsys.readouterr().err
    (tmp_path / "m.json").write_text(json.dumps({"run_id": "x"}))
    assert report_main([str(tmp_path / "m.json")]) == 2
    assert "output.path" in capsys.readouterr().err


def test_report_of_an_old_manifest_reads_that_runs_rows_or_refuses(tmp_path, capsys):
    """Issue 22: a manifest's report is built from that run's own run_id= directory, not from the output as a
    later run left it; when a later run replaced those rows, it refuses (exit 2) instead of mislabelling."""
    out = tmp_path / "out"
    write_dataset(out, scored(n=40, seed=1).assign(run_id="runA"), "runA")
    later = tmp_path / "later"  # a second run appended beside it: 70 other rows
    write_dataset(later, scored(n=70, seed=2).assign(run_id="runB"), "runB")
    (later / "run_id=runB").rename(out / "run_id=runB")
    manifest = {"run_id": "runA", "output": {"path": str(out)}, "model": {"name": "m", "version": 2,
                                                                         "labels": LABELS}}
    (tmp_path / "a.json").write_text(json.dumps(manifest))
    assert report_main([str(tmp_path / "a.json"), "--out", str(tmp_path / "ra")]) == 0
    capsys.readouterr()
    metrics = json.loads((tmp_path / "ra" / "metrics.json").read_text())["metrics"]
    assert metrics["lines"] == 40
    assert "skol_spark run runA" in (tmp_path / "ra" / "report.html").read_text()
    assert load_output(out).num_rows == 110  # the output directory itself still reads as a whole

    import shutil

    shutil.rmtree(out / "run_id=runA")  # what a later overwrite run does to runA's rows
    assert report_main([str(tmp_path / "a.json"), "--out", str(tmp_path / "gone")]) == 2
    err = capsys.readouterr().err
    assert "run runA's scored lines are no longer in" in err and str(out) in err
    assert not (tmp_path / "gone").exists()


def test_report_of_a_dynamic_overwrite_run_keeps_only_its_run_id_rows(tmp_path, capsys):
    """Dynamic partition overwrite writes no run_id= level: the run's rows are those whose run_id column is its."""
    out = tmp_path / "out"
    out.mkdir()
    mixed = pd.concat([scored(n=30, seed=1).assign(run_id="runA"), scored(n=50, seed=2).assign(run_id="runB")])
    pq.write_table(pa.Table.from_pandas(mixed, preserve_index=False), out / "part-0.parquet")
    for run_id, lines in (("runA", 30), ("runB", 50), ("runC", 0)):
        (tmp_path / f"{run_id}.json").write_text(json.dumps({"run_id": run_id, "output": {"path": str(out)}}))
        code = report_main([str(tmp_path / f"{run_id}.json"), "--out", str(tmp_path / run_id)])
        capsys.readouterr()
        if lines:
            assert code == 0
            assert json.loads((tmp_path / run_id / "metrics.json").read_text())["metrics"]["lines"] == lines
        else:
            assert code == 2


def test_report_throughput_is_a_whole_number_of_lines_per_second(tmp_path):
    manifest = {"run_id": "r1", "throughput": {"lines_per_second": 4787.0}, "duration_seconds": 2.5}
    write_report(scored(n=30), LABELS, tmp_path, title="t", manifest=manifest)
    page = (tmp_path / "report.html").read_text()
    assert re.search(r"<td>Throughput \(lines/s\)</td><td class=\"num\">4,787</td>", page), page[:3000]
    assert "4,787.000" not in page


def test_writing_a_report_logs_its_directory_only_at_debug(tmp_path, caplog):
    """The job draws the report in a temporary directory it then deletes: naming it at INFO misleads."""
    with caplog.at_level(logging.INFO, logger="skol_spark.report.build"):
        write_report(scored(n=30), LABELS, tmp_path / "tmp-draw", title="t")
    assert "tmp-draw" not in caplog.text
