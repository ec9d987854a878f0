"""Arrow feature columns -> numpy feature sources (pure pyarrow/numpy, fast)."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

from skol_spark.scoring import rules
from skol_spark.scoring.features import (DenseFeatures, SparseFeatures, concat_sources, decode_features,
                                         nonfinite_rows, to_sparse)

SIZE = 6

# What Spark ML's VectorUDT becomes in Arrow: struct<type, size, indices, values>
VECTOR_TYPE = pa.struct([("type", pa.int8()), ("size", pa.int32()), ("indices", pa.list_(pa.int32())),
                         ("values", pa.list_(pa.float64()))])


def dense_vector(values):
    return {"type": 1, "size": None, "indices": None, "values": [float(v) for v in values]}


def sparse_vector(size, indices, values):
    return {"type": 0, "size": size, "indices": list(indices), "values": [float(v) for v in values]}


def random_matrix(rng, n, density=0.5):
    m = rng.normal(size=(n, SIZE)).astype(np.float32)
    m[rng.random(m.shape) > density] = 0.0
    return m


def as_dense(source) -> np.ndarray:
    return source.take(np.arange(len(source)))


def sparse_rows(matrix):
    return [(np.flatnonzero(r).tolist(), r[np.flatnonzero(r)].tolist()) for r in matrix]


# ---- dense lists ----------------------------------------------------------------------------------

@pytest.mark.parametrize("arrow_type", [pa.list_(pa.float32()), pa.list_(pa.float64()),
                                        pa.large_list(pa.float32()), pa.list_(pa.float32(), SIZE)])
def test_dense_lists_decode_to_the_same_matrix(arrow_type):
    m = random_matrix(np.random.default_rng(0), 7, density=1.0)
    source = decode_features(pa.array(m.tolist(), arrow_type), SIZE)
    assert isinstance(source, DenseFeatures)
    assert source.values.dtype == np.float32 and source.values.shape == (7, SIZE)
    np.testing.assert_array_equal(source.values, m)


@pytest.mark.parametrize("arrow_type", [pa.list_(pa.float32()), pa.list_(pa.float32(), SIZE)])
def test_dense_slices_honour_the_arrow_offset(arrow_type):
    m = random_matrix(np.random.default_rng(1), 10, density=1.0)
    arr = pa.array(m.tolist(), arrow_type)
    np.testing.assert_array_equal(decode_features(arr.slice(3, 4), SIZE).values, m[3:7])
    chunked = pa.chunked_array([arr.slice(0, 2), arr.slice(5, 3)])
    np.testing.assert_array_equal(decode_features(chunked, SIZE).values, m[[0, 1, 5, 6, 7]])


def test_dense_wrong_size_names_the_row():
    arr = pa.array([[0.0] * SIZE, [0.0] * SIZE, [0.0] * (SIZE - 1)], pa.list_(pa.float32()))
    with pytest.raises(ValueError, match=r"5 features instead of 6 \(first row 2\)"):
        decode_features(arr, SIZE)


def test_null_rows_and_unknown_types_are_refused():
    with pytest.raises(ValueError, match="null feature row"):
        decode_features(pa.array([[0.0] * SIZE, None], pa.list_(pa.float32())), SIZE)
    with pytest.raises(ValueError, match="unsupported feature column type"):
        decode_features(pa.array(["a", "b"]), SIZE)


# ---- Spark ML vectors -----------------------------------------------------------------------------

def vector_column(matrix, kinds):
    rows = []
    for r, kind in zip(matrix, kinds):
        nz = np.flatnonzero(r)
        rows.append(dense_vector(r) if kind == "d" else sparse_vector(SIZE, nz, r[nz]))
    return pa.array(rows, VECTOR_TYPE)


@pytest.mark.parametrize("kinds", ["dddddddd", "ssssssss", "dsdsssdd", "sddddddd", "ssssssd"])
def test_vectors_dense_sparse_and_mixed(kinds):
    m = random_matrix(np.random.default_rng(2), len(kinds))
    m[1] = 0.0  # an all-zero sparse vector has no entries at all
    col = vector_column(m, kinds)
    source = decode_features(col, SIZE)
    np.testing.assert_array_equal(as_dense(source), m)
    if "s" not in kinds:
        assert isinstance(source, DenseFeatures)
    # the same rows seen through a slice of the column
    np.testing.assert_array_equal(as_dense(decode_features(col.slice(2, 4), SIZE)), m[2:6])


def test_vector_of_the_wrong_size_is_refused():
    with pytest.raises(ValueError, match="size 9, the model needs 6"):
        decode_features(pa.array([sparse_vector(SIZE, [0], [1.0]), sparse_vector(9, [8], [1.0])], VECTOR_TYPE),
                        SIZE)
    with pytest.raises(ValueError, match="features instead of 6"):
        decode_features(pa.array([dense_vector([1.0] * 5)], VECTOR_TYPE), SIZE)
    with pytest.raises(ValueError, match="a dense vector with 5 values"):
        decode_features(pa.array([dense_vector([1.0] * 5), sparse_vector(SIZE, [0], [1.0])], VECTOR_TYPE), SIZE)


@pytest.mark.parametrize("kinds", ["s", "ds"])
@pytest.mark.parametrize("bad_index", [SIZE, -1])
def test_vector_index_out_of_range_is_refused(kinds, bad_index):
    rows = [dense_vector([1.0] * SIZE)] if kinds == "ds" else []
    rows.append(sparse_vector(SIZE, [0, bad_index], [1.0, 2.0]))
    with pytest.raises(ValueError, match=rf"a sparse index outside 0..5 in features: index {bad_index} in row "
                                         rf"{len(rows) - 1} is outside 0..5"):
        decode_features(pa.array(rows, VECTOR_TYPE), SIZE)


# ---- struct{indices, values[, size]} --------------------------------------------------------------

@pytest.mark.parametrize("with_size", [False, True])
def test_sparse_struct(with_size):
    m = random_matrix(np.random.default_rng(3), 9)
    m[4] = 0.0
    rows = [{"indices": i, "values": v, **({"size": SIZE} if with_size else {})} for i, v in sparse_rows(m)]
    fields = [("indices", pa.list_(pa.int32())), ("values", pa.list_(pa.float32()))]
    col = pa.array(rows, pa.struct(fields + ([("size", pa.int32())] if with_size else [])))
    source = decode_features(col, SIZE)
    assert isinstance(source, SparseFeatures)
    np.testing.assert_array_equal(as_dense(source), m)
    np.testing.assert_array_equal(as_dense(decode_features(col.slice(3, 5), SIZE)), m[3:8])
    np.testing.assert_array_equal(as_dense(decode_features(pa.chunked_array([col.slice(0, 2), col.slice(6)]),
                                                           SIZE)), m[[0, 1, 6, 7, 8]])


def test_sparse_struct_with_some_sizes_null_uses_the_model_size():
    """The driver's validation treats a null size as "the model's size"; the executor must agree."""
    col = pa.array([{"indices": [0], "values": [1.0], "size": None},
                    {"indices": [5], "values": [2.0], "size": SIZE}],
                   pa.struct([("indices", pa.list_(pa.int64())), ("values", pa.list_(pa.float64())),
                              ("size", pa.int64())]))
    expected = np.zeros((2, SIZE), np.float32)
    expected[0, 0], expected[1, 5] = 1.0, 2.0
    np.testing.assert_array_equal(as_dense(decode_features(col, SIZE)), expected)


def test_sparse_struct_errors():
    t = pa.struct([("indices", pa.list_(pa.int32())), ("values", pa.list_(pa.float32())), ("size", pa.int32())])
    with pytest.raises(ValueError, match="declared size 7, the model needs 6"):
        decode_features(pa.array([{"indices": [0], "values": [1.0], "size": 7}], t), SIZE)
    with pytest.raises(ValueError, match="outside 0..5"):
        decode_features(pa.array([{"indices": [6], "values": [1.0], "size": 6}], t), SIZE)
    with pytest.raises(ValueError, match="outside 0..5"):
        decode_features(pa.array([{"indices": [-2], "values": [1.0], "size": 6}], t), SIZE)
    with pytest.raises(ValueError, match="indices and values differ in length"):
        decode_features(pa.array([{"indices": [0, 1], "values": [1.0], "size": 6}], t), SIZE)


# ---- feature sources ------------------------------------------------------------------------------

def test_sparse_take_with_padding_equals_dense_indexing():
    rng = np.random.default_rng(4)
    m = random_matrix(rng, 30, density=0.3)
    m[[0, 7, 29]] = 0.0
    sparse, dense = to_sparse(DenseFeatures(m)), DenseFeatures(m)
    for _ in range(50):
        rows = rng.integers(-1, 30, size=int(rng.integers(1, 40)))
        expected = np.where((rows >= 0)[:, None], m[np.maximum(rows, 0)], 0.0)
        np.testing.assert_array_equal(sparse.take(rows), expected)
        np.testing.assert_array_equal(dense.take(rows), expected)
    assert sparse.take(np.array([-1, -1])).tolist() == [[0.0] * SIZE] * 2
    # take never writes through to the source
    dense.take(np.array([-1, 0]))
    np.testing.assert_array_equal(dense.values, m)


def test_source_slices_and_concatenation():
    rng = np.random.default_rng(5)
    m = random_matrix(rng, 12)
    sparse = to_sparse(DenseFeatures(m))
    np.testing.assert_array_equal(as_dense(sparse.slice(4, 9)), m[4:9])
    np.testing.assert_array_equal(as_dense(DenseFeatures(m).slice(4, 9)), m[4:9])
    parts = [sparse.slice(0, 3), DenseFeatures(m[3:5]), sparse.slice(5, 12)]
    joined = concat_sources(parts)
    assert isinstance(joined, SparseFeatures) and len(joined) == 12
    np.testing.assert_array_equal(as_dense(joined), m)
    dense_joined = concat_sources([DenseFeatures(m[:4]), DenseFeatures(m[4:])])
    assert isinstance(dense_joined, DenseFeatures)
    np.testing.assert_array_equal(dense_joined.values, m)


def test_nonfinite_rows():
    m = np.ones((6, SIZE), np.float32)
    m[1, 2], m[4, 0], m[4, 5], m[5, 3] = np.nan, np.inf, np.nan, -np.inf
    assert nonfinite_rows(DenseFeatures(m)).tolist() == [1, 4, 5]
    assert nonfinite_rows(to_sparse(DenseFeatures(m))).tolist() == [1, 4, 5]
    assert nonfinite_rows(DenseFeatures(np.ones((3, SIZE), np.float32))).size == 0
    col = pa.array([sparse_vector(SIZE, [1], [1.0]), sparse_vector(SIZE, [2], [float("nan")])], VECTOR_TYPE)
    assert nonfinite_rows(decode_features(col, SIZE)).tolist() == [1]


# ---- issue 22: sparse rules, float32 overflow, null-like keys, overflow-free order ---------------------

STRUCT = pa.struct([("indices", pa.list_(pa.int64())), ("values", pa.list_(pa.float64()))])


@pytest.mark.parametrize("kind", ["struct", "vector", "mixed"])
def test_duplicate_sparse_index_is_refused_naming_row_and_index(kind):
    """Spark ML's SparseVector refuses repeated indices; numpy's assignment would keep one value silently."""
    good, bad = ([0, 3], [1.0, 2.0]), ([5, 1, 5], [1.0, 2.0, 3.0])  # unsorted, 5 twice
    if kind == "struct":
        col = pa.array([{"indices": i, "values": v} for i, v in (good, bad)], STRUCT)
    else:
        first = dense_vector([1.0] * SIZE) if kind == "mixed" else sparse_vector(SIZE, *good)
        col = pa.array([first, sparse_vector(SIZE, *bad)], VECTOR_TYPE)
    with pytest.raises(ValueError, match=r"1 row\(s\) with the same sparse index twice in one line of features: "
                                         r"index 5 appears 2 times in row 1 \(first row 1\)"):
        decode_features(col, SIZE)


def test_unsorted_unique_sparse_indices_are_accepted():
    col = pa.array([{"indices": [4, 0, 2], "values": [4.0, 1.0, 2.0]}], STRUCT)
    np.testing.assert_array_equal(as_dense(decode_features(col, SIZE))[0], [1.0, 0, 2.0, 0, 4.0, 0])


@pytest.mark.parametrize("indices", [[0, None], [-3], [SIZE], [2**40]])
def test_null_negative_and_huge_sparse_indices_are_outside(indices):
    col = pa.array([{"indices": [1], "values": [1.0]}, {"indices": indices, "values": [1.0] * len(indices)}],
                   STRUCT)
    shown = "null" if None in indices else str(indices[0])
    with pytest.raises(ValueError, match=rf"1 row\(s\) with a sparse index outside 0..5 in features: index {shown} "
                                         r"in row 1"):
        decode_features(col, SIZE)


@pytest.mark.parametrize("kinds", ["ss", "ds"])
def test_sparse_indices_and_values_of_different_lengths_say_so(kinds):
    rows = [sparse_vector(SIZE, [0], [1.0]) if kinds[0] == "s" else dense_vector([1.0] * SIZE),
            {"type": 0, "size": SIZE, "indices": [0, 1, 2], "values": [1.0]}]
    with pytest.raises(ValueError, match=r"sparse features whose indices and values differ in length: "
                                         r"3 indices and 1 values \(first row 1\)"):
        decode_features(pa.array(rows, VECTOR_TYPE), SIZE)


@pytest.mark.parametrize("arrow_type", [pa.list_(pa.float64()), "vector", "struct"])
def test_float64_beyond_float32_range_is_nonfinite_after_decoding(arrow_type):
    """What the model sees is float32: 1e300 is inf there, and must be refused like inf."""
    rows = [[0.5] * SIZE, [1e300] + [0.5] * (SIZE - 1), [-1e39] + [0.5] * (SIZE - 1), [3.0e38] * SIZE]
    if arrow_type == "vector":
        col = pa.array([dense_vector(r) for r in rows[:2]] + [sparse_vector(SIZE, [0], r[:1]) for r in rows[2:]],
                       VECTOR_TYPE)
    elif arrow_type == "struct":
        col = pa.array([{"indices": list(range(SIZE)), "values": r} for r in rows], STRUCT)
    else:
        col = pa.array(rows, arrow_type)
    assert nonfinite_rows(decode_features(col, SIZE)).tolist() == [1, 2]


def test_null_like_keys_are_null_or_nan():
    assert rules.null_like(pa.array([1.0, None, float("nan"), -0.0, float("inf")])).tolist() == \
        [False, True, True, False, False]
    assert rules.null_like(pa.chunked_array([pa.array([float("nan")], pa.float32()), pa.array([2.0], pa.float32())])
                           ).tolist() == [True, False]
    assert rules.null_like(pa.array(["NaN", None])).tolist() == [False, True]  # the string "NaN" is a name
    assert rules.null_like(pa.array([3, None], pa.int64())).tolist() == [False, True]


def test_line_order_comparison_does_not_overflow():
    big = np.iinfo(np.int64).max
    numbers = np.array([big, -2, 0, 5], dtype=np.int64)
    assert rules.follows(numbers).tolist() == [False, True, True]
    assert np.diff(numbers)[0] > 0  # what the subtraction said: the reason for comparing
    small = np.array([np.iinfo(np.int32).max, np.iinfo(np.int32).min], dtype=np.int32)
    assert rules.follows(small).tolist() == [False]


def test_repeated_index_rows_finds_every_row_once():
    indptr = np.array([0, 2, 5, 5, 8])
    indices = np.array([1, 1, 3, 0, 3, 2, 0, 1])
    assert rules.repeated_index_rows(indptr, indices).tolist() == [0, 1]
    assert rules.repeated_index_rows(np.array([0, 1]), np.array([4])).tolist() == []


# ---- the worker's guard over a batch (partition.in_line_order / check_batch) --------------------------------

def _plan():
    from skol_spark.scoring.partition import ScoringPlan

    return ScoringPlan(doc_col="doc", line_col="line", features_col="f", carry_cols=("doc", "line"),
                       labels=("a", "b"), window=4, stride=4, batch_size=8, feature_size=SIZE,
                       model_name="m", model_version=1, run_id="r", presorted=True)


def test_in_line_order_sorts_lines_spanning_int64():
    from skol_spark.scoring.partition import in_line_order

    big = np.iinfo(np.int64).max
    table = pa.table({"doc": ["a", "a", "a", "a", "b", "b"], "line": pa.array([big, -2, 0, 5, 1, 0], pa.int64())})
    ordered = in_line_order(table, _plan())
    assert ordered.column("line").to_pylist() == [-2, 0, 5, big, 0, 1]
    in_order = pa.table({"doc": ["a", "a", "b"], "line": pa.array([-2, big, -big], pa.int64())})
    assert in_line_order(in_order, _plan()) is in_order  # already ordered: no take


def test_check_batch_refuses_nan_document_ids():
    from skol_spark.errors import InputContractError
    from skol_spark.scoring.partition import check_batch

    table = pa.table({"doc": pa.array([1.0, float("nan"), float("nan")]), "line": pa.array([0, 0, 1], pa.int32())})
    features = DenseFeatures(np.ones((3, SIZE), np.float32))
    with pytest.raises(InputContractError, match=r"2 line\(s\) with null doc/line \(or NaN\), e.g. doc=nan line=0"):
        check_batch(table, _plan(), features)
    check_batch(table.slice(0, 1), _plan(), features.slice(0, 1))  # a finite float id is a fine key
