"""The driver's input checks (``job/validate.py``): schema, the one-job scan's counts, and the refusal
messages; tiny DataFrames built in each test on the session Spark."""

from __future__ import annotations

import pytest

from skol_spark.errors import InputContractError
from skol_spark.job.validate import (FIXES, InputReport, check_schema, feature_kind, refuse_bad_input,
                                     refuse_split_documents, scan_input)

KEYS = dict(doc_col="doc", line_col="line", features_col="f")


def frame(spark, rows, features="array<float>", line="int", partitions=1):
    """``rows`` in this order, cut into ``partitions`` consecutive slices."""
    return spark.createDataFrame(spark.sparkContext.parallelize(rows, partitions),
                                 f"doc string, line {line}, f {features}")


# ---- schema (no job runs) ------------------------------------------------------------------------------

def test_feature_kinds():
    from pyspark.ml.linalg import VectorUDT
    from pyspark.sql import types as T

    assert feature_kind(T.ArrayType(T.FloatType())) == "array"
    assert feature_kind(T.ArrayType(T.DoubleType())) == "array"
    assert feature_kind(VectorUDT()) == "vector"
    sparse = T.StructType([T.StructField("indices", T.ArrayType(T.IntegerType())),
                           T.StructField("values", T.ArrayType(T.FloatType()))])
    assert feature_kind(sparse) == "sparse"
    assert feature_kind(T.StructType([*sparse.fields, T.StructField("size", T.IntegerType())])) == "sparse"


@pytest.mark.parametrize("spark_type", ["array<int>", "string", "struct<indices:array<int>>"])
def test_unsupported_feature_types_are_named(spark, spark_type):
    from pyspark.sql.types import _parse_datatype_string

    with pytest.raises(InputContractError, match=rf"feature column has type {spark_type}; expected array<float>"):
        feature_kind(_parse_datatype_string(spark_type))


def test_check_schema_returns_the_kind(spark):
    assert check_schema(frame(spark, [], line="bigint"), **KEYS) == "array"


@pytest.mark.parametrize(("keys", "missing", "key"), [
    (dict(KEYS, doc_col="doc_id"), "doc_id", "input.doc_id_col"),
    (dict(KEYS, features_col="x"), "x", "input.features_col"),
    (dict(KEYS, label_col="gold"), "gold", "input.label_col"),
])
def test_check_schema_names_a_missing_column_and_the_setting(spark, keys, missing, key):
    with pytest.raises(InputContractError, match=rf"input has no column '{missing}' \({key}\); its columns are "
                                                 rf"\['doc', 'line', 'f'\]. Rename the column upstream or set {key}"):
        check_schema(frame(spark, []), **keys)


def test_check_schema_wants_an_integer_line_number(spark):
    with pytest.raises(InputContractError, match=r"column 'line' \(input.line_col\) must be an integer line "
                                                 r"number, got string"):
        check_schema(frame(spark, [], line="string"), **KEYS)


# ---- the scan ------------------------------------------------------------------------------------------

def test_scan_counts_every_problem_once_with_an_example(spark):
    nan = float("nan")
    rows = [("a", 0, [0.1, 0.2]), ("a", 1, [0.3, 0.4]), ("a", 1, [0.3, 0.4]), ("a", 1, [0.5, 0.6]),  # 2 dups
            ("b", 0, None), ("b", 1, [0.1]),                                   # null features, wrong size
            ("c", 0, [nan, 0.0]), ("c", 1, [0.0, float("inf")]), ("c", 2, [None, 1.0]),  # 3 non-finite
            (None, 0, [0.0, 0.0]), ("d", None, [0.0, 0.0])]                    # null keys
    report = scan_input(frame(spark, rows), **KEYS, kind="array", feature_size=2)
    assert report.lines == 11
    assert report.documents == 5  # a, b, c, d and the null document
    counts = {flag: count for flag, (count, _) in report.bad.items()}
    assert {flag: n for flag, n in counts.items() if n} == {"null_key": 2, "null_features": 1, "bad_size": 1,
                                                            "nonfinite": 3, "duplicate": 2}
    assert report.bad["duplicate"][1] == {"doc": "a", "line": 1}
    assert report.bad["null_features"][1] == {"doc": "b", "line": 0}
    assert report.bad["bad_size"][1] == {"doc": "b", "line": 1}
    assert report.bad["nonfinite"][1]["doc"] == "c"
    assert not report.ok
    assert report.split_documents == (0, None) and report.scattered_documents == -1  # not asked for


def test_a_keys_only_scan_counts_the_key_rules_and_never_reads_the_features(spark):
    """``features=False`` (refused bad input: the scoring tasks check the features): the same key counts as
    the full scan, and a feature column that fails whenever it is evaluated does not fail the scan."""
    from pyspark.sql import functions as F

    nan = float("nan")
    rows = [("a", 0, [0.1, 0.2]), ("a", 1, [0.3]), ("a", 1, [nan, 0.4]), (None, 0, None), ("b", None, [0.0, 0.0])]
    full = scan_input(frame(spark, rows), **KEYS, kind="array", feature_size=2)
    poisoned = frame(spark, rows).withColumn(
        "f", F.when(F.col("line") >= -1, F.raise_error(F.lit("the features were read"))).otherwise(F.col("f")))
    with pytest.raises(Exception, match="the features were read"):
        poisoned.select(F.size("f")).collect()  # the poisoned column does fail wherever it is evaluated
    keys = scan_input(poisoned, **KEYS, kind="array", feature_size=2, features=False)
    assert not keys.features_checked and full.features_checked
    assert keys.bad == {flag: full.bad[flag] for flag in ("null_key", "duplicate")}
    assert keys.bad["duplicate"][0] == 1 and keys.bad["null_key"][0] == 2
    assert (keys.lines, keys.documents) == (full.lines, full.documents) == (5, 3)
    assert full.bad["bad_size"][0] and full.bad["nonfinite"][0]  # what the scoring tasks check instead
    assert "keys" in keys.scan and full.scan == "spark"


def test_scan_of_good_input_in_document_order(spark):
    rows = [(d, i, [float(i), 1.0]) for d in ("a", "b", "c") for i in range(3)]
    report = scan_input(frame(spark, rows), **KEYS, kind="array", feature_size=2, check_clustered=True,
                        check_order=True)
    assert (report.lines, report.documents, report.ok) == (9, 3, True)
    assert all(count == 0 and example is None for count, example in report.bad.values())
    assert report.split_documents == (0, None)
    assert report.scattered_documents == 0 and report.in_document_order


def test_scan_finds_scattered_and_split_documents(spark):
    interleaved = [("a", 0, [1.0]), ("b", 0, [1.0]), ("a", 1, [1.0]), ("c", 0, [1.0]), ("c", 1, [1.0])]
    report = scan_input(frame(spark, interleaved), **KEYS, kind="array", feature_size=1, check_order=True)
    assert report.scattered_documents == 1 and not report.in_document_order  # only a: b and c are runs

    # two partitions of one row each, both lines of one document: split across partitions
    split = frame(spark, [("a", 0, [1.0]), ("a", 1, [1.0]), ("b", 0, [1.0])], partitions=2)
    report = scan_input(split, **KEYS, kind="array", feature_size=1, check_clustered=True)
    assert report.split_documents == (1, "a")  # b is whole in the second partition
    with pytest.raises(InputContractError, match=r"1 document\(s\) have lines in more than one input partition "
                                                 r"\(e.g. doc='a'\)"):
        refuse_split_documents(report, doc_col="doc")


# ---- refusal messages (no job runs) --------------------------------------------------------------------

def test_refuse_bad_input_lists_each_problem_with_count_example_and_fix():
    report = InputReport(lines=40, documents=4, bad={
        "null_key": (0, None), "null_features": (0, None),
        "bad_size": (3, {"doc": "d-7", "line": 2}),
        "nonfinite": (1, {"doc": "d-9", "line": 0}),
        "duplicate": (2, None),
    })
    with pytest.raises(InputContractError) as raised:
        refuse_bad_input(report, feature_size=6, **KEYS)
    lines = str(raised.value).splitlines()
    assert lines[0] == "input refused, nothing was written (40 lines in 4 documents):"
    assert lines[1:4] == [
        f"  - 3 line(s) with f not of size 6 (the model's feature size), e.g. doc='d-7' line=2: {FIXES['bad_size']}",
        f"  - 1 line(s) with NaN, inf or null values in f, e.g. doc='d-9' line=0: {FIXES['nonfinite']}",
        f"  - 2 line(s) with duplicate (doc, line) rows: {FIXES['duplicate']}",
    ]
    assert "scoring.bad_input: quarantine" in lines[-1]


def test_good_reports_are_not_refused():
    ok = InputReport(lines=3, documents=1, bad={"duplicate": (0, None)}, split_documents=(0, None))
    refuse_bad_input(ok, feature_size=6, **KEYS)
    refuse_split_documents(ok, doc_col="doc")


@pytest.mark.parametrize(("output", "scoring", "up_front"), [
    ({"path": "out"}, {}, False),                                        # staged: the tasks check the features
    ({"path": "out"}, {"bad_input": "quarantine", "quarantine_path": "q"}, True),  # must know bad documents first
    ({"table": "db.scored", "mode": "overwrite"}, {}, True),             # an overwrite may drop the old table first
    ({"table": "db.scored", "mode": "append"}, {}, True),
    ({"path": "out", "mode": "overwrite", "partition_by": ["ingest_date"],
      "dynamic_partition_overwrite": True}, {}, True),                   # written in place, not staged
])
def test_features_are_checked_before_scoring_unless_a_staged_path_sink_takes_the_refusal(output, scoring,
                                                                                         up_front):
    from skol_spark.job.config import config_from_dict
    from skol_spark.job.run import features_checked_before_scoring

    config = config_from_dict({"model": {"name": "m"}, "input": {"path": "in"}, "output": output,
                               "scoring": scoring})
    assert features_checked_before_scoring(config) is up_front
