"""The Arrow validation scan (``local_scan``) against the Spark scan, on the same Parquet files.

Each case states its expected counts (what the data contract says) and both
scans must report them: a refusal reads alike whichever scan ran.
"""

from __future__ import annotations

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from skol_spark.local import local_scan
from skol_spark.job.validate import FLAGS, check_schema, scan_input

SIZE = 4
KEYS = dict(doc_col="doc_id", line_col="line_number", features_col="features")


def clean_rows():
    """Three documents; features as (indices, values) pairs."""
    return [(doc, line, ([0, 2], [0.5, 1.0 + line])) for doc, n in (("a", 5), ("b", 3), ("c", 4))
            for line in range(n)]


def as_kind(kind: str, sparse, *, dense: bool = False):
    """One row's features in the column type of ``kind``; ``sparse`` is (indices, values[, size]) or None.
    ``dense``: a Spark ML vector row is written dense (vector columns mix both)."""
    if sparse is None:
        return None
    indices, values, *size = sparse
    width = size[0] if size else SIZE
    if kind == "sparse":
        return {"indices": indices, "values": values, "size": size[0] if size else None}
    if kind == "vector":
        from pyspark.ml.linalg import Vectors

        if not dense:
            return Vectors.sparse(width, indices, values)
    row = [0.0] * width
    for i, v in zip(indices, values):
        row[i] = v
    return Vectors.dense(row) if kind == "vector" else row


def frame(spark, kind: str, rows):
    from pyspark.sql import types as T

    features = {
        "sparse": T.StructType([T.StructField("indices", T.ArrayType(T.IntegerType())),
                                T.StructField("values", T.ArrayType(T.FloatType())),
                                T.StructField("size", T.IntegerType())]),
        "array": T.ArrayType(T.FloatType()),
        "array_double": T.ArrayType(T.DoubleType()),
    }
    if kind == "vector":
        from pyspark.ml.linalg import VectorUDT

        features["vector"] = VectorUDT()
    schema = T.StructType([T.StructField("doc_id", T.StringType()), T.StructField("line_number", T.IntegerType()),
                           T.StructField("features", features[kind])])
    data = [(d, n, as_kind("array" if kind == "array_double" else kind, f,
                           dense=n is not None and n % 2 == 0 and (f is None or len(f) == 2)))
            for d, n, f in rows]
    return spark.createDataFrame(data, schema)


def both_scans(spark, path, *, check_order: bool = True):
    df = spark.read.parquet(str(path))
    kind = check_schema(df, **KEYS)
    by_spark = scan_input(df, kind=kind, feature_size=SIZE, check_order=check_order, **KEYS)
    files = local_scan.eligible_files(str(path))
    assert files, "a local Parquet directory is eligible"
    cols = local_scan.Columns(doc="doc_id", line="line_number", features="features", kind=kind, feature_size=SIZE)
    return by_spark, local_scan.scan_files(files, cols, check_order=check_order)


def counts(report) -> dict[str, int]:
    return {flag: report.bad[flag][0] for flag in FLAGS}


nan, inf = float("nan"), float("inf")
CASES = {
    # name: (row edits, kinds it applies to, expected counts)
    "clean": ([], ("sparse", "array", "array_double", "vector"), {}),
    "nonfinite": ([("b", 1, ([0, 1], [nan, 1.0])), ("c", 2, ([1, 3], [inf, 2.0]))],
                  ("sparse", "array", "array_double", "vector"), {"nonfinite": 2}),
    "null element": ([("a", 3, ([0, 1], [None, 1.0]))], ("sparse", "array"), {"nonfinite": 1}),
    "null features": ([("a", 1, None)], ("sparse", "array", "vector"), {"null_features": 1}),
    "index outside": ([("a", 0, ([0, SIZE], [1.0, 1.0])), ("b", 0, ([-1, 2], [1.0, 1.0]))], ("sparse",),
                      {"bad_size": 2}),
    "declared size": ([("c", 0, ([0, 1], [1.0, 1.0], SIZE + 1))], ("sparse", "array", "vector"), {"bad_size": 1}),
    "indices and values differ": ([("c", 1, ([0, 1, 2], [1.0, 1.0]))], ("sparse",), {"bad_size": 1}),
    "null keys": ([(None, 0, ([0], [1.0])), ("b", None, ([0], [1.0]))], ("sparse",), {"null_key": 2}),
    # a duplicated key counts its extra line as a duplicate, and both its lines when either is bad
    "duplicate": ([("a", 2, ([0, 1], [1.0, 1.0])), ("a", 2, ([0, 1], [nan, 1.0]))], ("sparse", "array"),
                  {"duplicate": 1, "nonfinite": 2}),
}


@pytest.mark.parametrize("case,kind", [(case, kind) for case, (_, kinds, _) in CASES.items() for kind in kinds])
def test_the_arrow_scan_reports_what_the_spark_scan_reports(spark, tmp_path, case, kind):
    edits, _, expected = CASES[case]
    rows = [r for r in clean_rows() if not any(r[:2] == e[:2] for e in edits if e[0] and e[1] is not None)]
    rows += edits
    frame(spark, kind, rows).coalesce(1).write.parquet(str(tmp_path / "in"))

    by_spark, by_arrow = both_scans(spark, tmp_path / "in")

    want = {flag: expected.get(flag, 0) for flag in FLAGS}
    assert counts(by_spark) == want
    assert counts(by_arrow) == want
    assert (by_arrow.lines, by_arrow.documents) == (by_spark.lines, by_spark.documents) == \
        (len(rows), len({r[0] for r in rows}))
    assert by_arrow.scan == "arrow" and by_spark.scan == "spark"
    for flag in FLAGS:  # each example names a flagged line
        if want[flag]:
            example = by_arrow.bad[flag][1]
            assert any(example == {"doc": e[0], "line": e[1]} for e in edits), (flag, example)


def write_groups(path, groups: list[list[tuple[str, int]]], *, row_group_size: int):
    """One Parquet file per group of (doc, line) rows, cut into row groups of ``row_group_size``."""
    path.mkdir()
    for i, keys in enumerate(groups):
        table = pa.table({"doc_id": [d for d, _ in keys], "line_number": pa.array([n for _, n in keys], pa.int32()),
                          "features": pa.array([[0.5] * SIZE for _ in keys], pa.list_(pa.float32()))})
        pq.write_table(table, path / f"part-{i}.parquet", row_group_size=row_group_size)


def doc(name, n, start=0):
    return [(name, i) for i in range(start, start + n)]


@pytest.mark.parametrize("groups,row_group_size,arrow_scattered", [
    ([doc("a", 4) + doc("b", 4), doc("c", 3)], 4, 0),  # each document one row group
    ([doc("a", 3) + doc("b", 3)], 4, 1),  # b crosses a row-group boundary: sorted, to be safe
    ([doc("a", 2) + doc("b", 2) + doc("a", 2, start=2)], 100, 1),  # a comes back
    ([doc("a", 2), doc("a", 2, start=2)], 100, 1),  # a in two files
])
def test_read_order_is_claimed_only_where_any_spark_split_keeps_documents_whole(spark, tmp_path, groups,
                                                                               row_group_size, arrow_scattered):
    write_groups(tmp_path / "in", groups, row_group_size=row_group_size)

    by_spark, by_arrow = both_scans(spark, tmp_path / "in")

    assert by_arrow.scattered_documents == arrow_scattered
    if by_arrow.in_document_order:  # the claim the scoring task streams on must hold for Spark's read
        assert by_spark.in_document_order
    if by_spark.scattered_documents:
        assert not by_arrow.in_document_order


def test_without_the_order_check_none_is_reported(spark, tmp_path):
    write_groups(tmp_path / "in", [doc("a", 2) + doc("b", 2) + doc("a", 2, start=2)], row_group_size=100)
    _, by_arrow = both_scans(spark, tmp_path / "in", check_order=False)
    assert by_arrow.scattered_documents == -1


def test_an_empty_input_is_zero_lines(spark, tmp_path):
    frame(spark, "sparse", []).coalesce(1).write.parquet(str(tmp_path / "in"))
    by_spark, by_arrow = both_scans(spark, tmp_path / "in")
    assert (by_arrow.lines, by_arrow.documents, by_arrow.ok) == (by_spark.lines, by_spark.documents, True) == \
        (0, 0, True)


def test_only_small_local_parquet_is_eligible(tmp_path):
    write_groups(tmp_path / "in", [doc("a", 5), doc("b", 5)], row_group_size=100)
    (tmp_path / "in" / "_SUCCESS").write_text("")

    assert [p.rsplit("/", 1)[1] for p in local_scan.eligible_files(str(tmp_path / "in"))] == \
        ["part-0.parquet", "part-1.parquet"]  # metadata files skipped, as Spark skips them
    assert local_scan.eligible_files(f"file://{tmp_path}/in") is not None
    assert local_scan.eligible_files(str(tmp_path / "in"), max_lines=9) is None  # too many rows
    assert local_scan.eligible_files("s3a://bucket/in") is None
    assert local_scan.eligible_files(str(tmp_path / "i*")) is None  # a glob: Spark's rules
    assert local_scan.eligible_files(str(tmp_path / "missing")) is None
    (tmp_path / "csv").mkdir()
    (tmp_path / "csv" / "part-0.csv").write_text("doc_id,line_number\na,0\n")
    assert local_scan.eligible_files(str(tmp_path / "csv")) is None


def test_a_key_in_a_partition_directory_declines_to_spark(spark, tmp_path):
    frame(spark, "array", clean_rows()).write.partitionBy("doc_id").parquet(str(tmp_path / "in"))
    files = local_scan.eligible_files(str(tmp_path / "in"))
    cols = local_scan.Columns(doc="doc_id", line="line_number", features="features", kind="array",
                              feature_size=SIZE)
    with pytest.raises(local_scan.Declined, match="doc_id"):
        local_scan.scan_files(files, cols)


def test_vector_values_beyond_float32_are_refused_as_spark_refuses_them(spark, tmp_path):
    rows = clean_rows()[:-1] + [("c", 3, ([0, 1], [1e300, 1.0]))]
    frame(spark, "vector", rows).coalesce(1).write.parquet(str(tmp_path / "in"))
    by_spark, by_arrow = both_scans(spark, tmp_path / "in")
    assert counts(by_arrow)["nonfinite"] == counts(by_spark)["nonfinite"] == 1
