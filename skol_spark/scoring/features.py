"""Feature decoding: Arrow columns -> a numpy feature source, with no per-line Python.

Accepted column types (what users' pipelines produce):
- ``array<float|double>``: dense rows of ``F`` values;
- Spark ML ``VectorUDT`` (Arrow: struct<type, size, indices, values>), dense,
  sparse or mixed;
- a struct ``{indices: array<int>, values: array<float>}`` (optionally ``size``).

Sparse input stays sparse (CSR) until a window batch needs dense rows, so a
100,000-line document of 1,000 TF-IDF features costs its non-zeros, not 400 MB.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa


@dataclass(frozen=True)
class DenseFeatures:
    """``values: float32[n, features]``."""

    values: np.ndarray

    def __len__(self) -> int:
        return int(self.values.shape[0])

    def take(self, rows: np.ndarray) -> np.ndarray:
        """Rows by index; ``-1`` gives a zero (padding) row. -> float32[len(rows), features]."""
        out = self.values[np.maximum(rows, 0)]
        out[rows < 0] = 0.0
        return out

    def slice(self, start: int, stop: int) -> "DenseFeatures":
        return DenseFeatures(self.values[start:stop])


@dataclass(frozen=True)
class SparseFeatures:
    """CSR rows: ``indptr: int64[n+1]``, ``indices: int32[nnz]``, ``data: float32[nnz]``."""

    indptr: np.ndarray
    indices: np.ndarray
    data: np.ndarray
    size: int

    def __len__(self) -> int:
        return int(self.indptr.shape[0] - 1)

    def take(self, rows: np.ndarray) -> np.ndarray:
        """Dense rows by index; ``-1`` gives a zero row. -> float32[len(rows), size]."""
        out = np.zeros((rows.shape[0], self.size), dtype=np.float32)
        valid = np.flatnonzero(rows >= 0)
        r = rows[valid]
        starts, lens = self.indptr[r], self.indptr[r + 1] - self.indptr[r]
        total = int(lens.sum())
        if total == 0:
            return out
        dest_row = np.repeat(valid, lens)
        src = np.arange(total) - np.repeat(np.cumsum(lens) - lens, lens) + np.repeat(starts, lens)
        out[dest_row, self.indices[src]] = self.data[src]
        return out

    def slice(self, start: int, stop: int) -> "SparseFeatures":
        ptr = self.indptr[start:stop + 1]
        return SparseFeatures(ptr - ptr[0], self.indices[ptr[0]:ptr[-1]], self.data[ptr[0]:ptr[-1]], self.size)


FeatureSource = DenseFeatures | SparseFeatures


def concat_sources(parts: list[FeatureSource]) -> FeatureSource:
    """Join feature sources of the same kind (used when a document spans Arrow batches)."""
    if len(parts) == 1:
        return parts[0]
    if all(isinstance(p, DenseFeatures) for p in parts):
        return DenseFeatures(np.concatenate([p.values for p in parts]))
    sparse = [to_sparse(p) for p in parts]
    offsets = np.cumsum([0] + [int(p.indptr[-1]) for p in sparse[:-1]])
    indptr = np.concatenate([sparse[0].indptr[:1]] + [p.indptr[1:] + o for p, o in zip(sparse, offsets)])
    return SparseFeatures(indptr, np.concatenate([p.indices for p in sparse]),
                          np.concatenate([p.data for p in sparse]), sparse[0].size)


def to_sparse(source: FeatureSource) -> SparseFeatures:
    if isinstance(source, SparseFeatures):
        return source
    n, f = source.values.shape
    nz = source.values != 0
    indptr = np.concatenate([[0], np.cumsum(nz.sum(axis=1))]).astype(np.int64)
    cols = np.nonzero(nz)[1].astype(np.int32)
    return SparseFeatures(indptr, cols, source.values[nz].astype(np.float32), f)


def decode_features(column: pa.Array | pa.ChunkedArray, size: int) -> FeatureSource:
    """An Arrow feature column -> DenseFeatures or SparseFeatures of width ``size``.

    Raises ValueError with the first offending row index when a row has the
    wrong length or an index out of range (the driver-side validation reports
    these to the user before the job; this is the executor's guard).
    """
    if isinstance(column, pa.ChunkedArray):
        column = column.combine_chunks()
    if column.null_count:
        raise ValueError(f"{column.null_count} null feature row(s)")
    if pa.types.is_list(column.type) or pa.types.is_large_list(column.type) or pa.types.is_fixed_size_list(column.type):
        return _decode_dense_list(column, size)
    if pa.types.is_struct(column.type):
        names = {column.type.field(i).name for i in range(column.type.num_fields)}
        if {"type", "indices", "values"} <= names:
            return _decode_vector(column, size)
        if {"indices", "values"} <= names:
            return _decode_sparse_struct(column, size)
    raise ValueError(f"unsupported feature column type {column.type}: use array<float>, a Spark ML vector, "
                     "or struct<indices: array<int>, values: array<float>>")


def list_parts(arr: pa.Array) -> tuple[np.ndarray, np.ndarray]:
    """(offsets int64[n+1], flat values) of a list array, honouring slices."""
    if pa.types.is_fixed_size_list(arr.type):
        width = arr.type.list_size
        flat = arr.flatten()
        return np.arange(len(arr) + 1, dtype=np.int64) * width, flat.to_numpy(zero_copy_only=False)
    offsets = arr.offsets.to_numpy().astype(np.int64)
    flat = arr.values.slice(int(offsets[0]), int(offsets[-1] - offsets[0])).to_numpy(zero_copy_only=False)
    return offsets - offsets[0], flat


def _decode_dense_list(column: pa.Array, size: int) -> DenseFeatures:
    offsets, flat = list_parts(column)
    lengths = np.diff(offsets)
    bad = np.flatnonzero(lengths != size)
    if bad.size:
        raise ValueError(f"{bad.size} row(s) have {int(lengths[bad[0]])} features instead of {size} (first row {bad[0]})")
    return DenseFeatures(np.asarray(flat, dtype=np.float32).reshape(len(column), size))


def _csr(indices_col: pa.Array, values_col: pa.Array, size: int) -> SparseFeatures:
    ind_offsets, indices = list_parts(indices_col)
    val_offsets, values = list_parts(values_col)
    if not np.array_equal(ind_offsets, val_offsets):
        raise ValueError("sparse features: indices and values have different lengths in some row")
    return _checked_csr(ind_offsets, indices, values, size)


def _checked_csr(indptr: np.ndarray, indices: np.ndarray, values: np.ndarray, size: int) -> SparseFeatures:
    """CSR with every index checked: a negative index would silently wrap around in ``take``."""
    indices = np.asarray(indices, dtype=np.int64)
    if indices.size and (indices.min() < 0 or indices.max() >= size):
        bad = np.flatnonzero((indices < 0) | (indices >= size))[0]
        row = int(np.searchsorted(indptr, bad, side="right") - 1)
        raise ValueError(f"sparse features: index {int(indices[bad])} in row {row} is outside 0..{size - 1}")
    return SparseFeatures(indptr, indices.astype(np.int32), np.asarray(values, dtype=np.float32), size)


def _decode_sparse_struct(column: pa.StructArray, size: int) -> SparseFeatures:
    if "size" in {column.type.field(i).name for i in range(column.type.num_fields)}:
        # a null size means "the model's size" (as the driver-side validation reads it)
        sizes = column.field("size").fill_null(size).to_numpy(zero_copy_only=False)
        if sizes.size and np.any(sizes != size):
            raise ValueError(f"sparse features declare size {int(sizes[sizes != size][0])}, the model needs {size}")
    return _csr(column.field("indices"), column.field("values"), size)


def _decode_vector(column: pa.StructArray, size: int) -> FeatureSource:
    """Spark ML VectorUDT: type 0 = sparse (size, indices, values), 1 = dense (values)."""
    kinds = column.field("type").to_numpy(zero_copy_only=False)
    values_col = column.field("values")
    if np.all(kinds == 1):
        return _decode_dense_list(values_col, size)
    sizes = column.field("size").to_numpy(zero_copy_only=False)
    sparse_rows = kinds == 0
    if np.any(sizes[sparse_rows] != size):
        raise ValueError(f"sparse vectors of size {int(sizes[sparse_rows][sizes[sparse_rows] != size][0])}, "
                         f"the model needs {size}")
    if np.all(sparse_rows):
        return _csr(column.field("indices"), values_col, size)
    # Mixed dense and sparse rows: give dense rows the indices 0..size-1.
    val_offsets, values = list_parts(values_col)
    lengths = np.diff(val_offsets)
    if np.any(lengths[~sparse_rows] != size):
        raise ValueError(f"dense vectors with {int(lengths[~sparse_rows][lengths[~sparse_rows] != size][0])} "
                         f"values, the model needs {size}")
    indices_col = column.field("indices")
    _, sparse_indices = list_parts(indices_col.fill_null(pa.scalar([], indices_col.type)))
    indices = np.arange(int(lengths.sum()), dtype=np.int64) - np.repeat(val_offsets[:-1], lengths)
    from_sparse = np.repeat(sparse_rows, lengths)
    if int(from_sparse.sum()) != len(sparse_indices):
        raise ValueError("sparse vectors: indices and values have different lengths in some row")
    indices[from_sparse] = sparse_indices
    return _checked_csr(val_offsets, indices, values, size)


def nonfinite_rows(source: FeatureSource) -> np.ndarray:
    """Indices of rows holding NaN or inf (an LSTM turns one NaN into NaN for the rest of the window)."""
    if isinstance(source, DenseFeatures):
        return np.flatnonzero(~np.isfinite(source.values).all(axis=1))
    bad = ~np.isfinite(source.data)
    if not bad.any():
        return np.zeros(0, dtype=np.int64)
    rows = np.repeat(np.arange(len(source)), np.diff(source.indptr))
    return np.unique(rows[bad])

