"""The per-line data contract: each rule once, in the two forms that enforce it, side by side.

The worker's guard (``features.decode_features`` and ``partition.check_batch``)
checks decoded Arrow/numpy batches and is the reference. The driver's
validation scan (``job.validate.line_flags``) states the same rules as Spark
SQL columns, so that it can count the offending lines in one job before
anything is written, and ``job.quarantine.bad_documents`` can set them aside. Both forms
are tested on the same cases (``tests/test_faults_data.py``,
``test_line_rules_agree_between_worker_and_scan``).

The SQL forms import pyspark lazily; nothing here runs at import time.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

# flag -> what is wrong (``{col}``: the feature column, ``{size}``: the model's feature size)
WHAT = {
    "null_key": "null {doc}/{line} (or NaN)",
    "null_features": "null {col}",
    "bad_size": "{col} not of size {size} (the model's feature size)",
    "bad_index": "a sparse index outside 0..{last} in {col}",
    "repeated_index": "the same sparse index twice in one line of {col}",
    "sparse_lengths": "sparse {col} whose indices and values differ in length",
    "nonfinite": "NaN, inf or null values in {col}",  # as the model sees them: float32
    "duplicate": "duplicate ({doc}, {line}) rows",
}
FIXES = {
    "null_key": "drop or fill rows whose document id or line number is null or NaN (NaN is not equal to "
                "itself, so it cannot name a document)",
    "null_features": "every line needs a feature vector; drop the lines or featurize them",
    "bad_size": "featurize with the same vocabulary/pipeline the model was trained with",
    "bad_index": "featurize with the model's vocabulary: every index must be in 0..size-1",
    "repeated_index": "sum or deduplicate the entries of each sparse vector (Spark ML's own vectors refuse "
                      "repeated indices; which value would win is undefined)",
    "sparse_lengths": "build each sparse vector from one list of (index, value) pairs",
    "nonfinite": "replace NaN/inf/null values upstream, and scale values into float32's range (the model sees "
                 "float32, where a double beyond +-3.4e38 is inf; an LSTM turns one NaN or inf into NaN for the "
                 "whole window)",
    "duplicate": "deduplicate the input on (document id, line number)",
}
FLAGS = tuple(WHAT)


def describe(flag: str, *, doc: str, line: str, col: str, size: int) -> str:
    return WHAT[flag].format(doc=doc, line=line, col=col, size=size, last=size - 1)


# ---- keys: null or NaN -------------------------------------------------------------------------------------
def null_like(keys: pa.Array | pa.ChunkedArray) -> np.ndarray:
    """``bool[n]``: the key is null or NaN. NaN is not equal to itself, so the worker would cut a NaN document
    into one-line documents, while Spark's grouping puts all NaN rows together: refused like a null."""
    mask = keys.is_null().to_numpy(zero_copy_only=False)
    if pa.types.is_floating(keys.type):
        mask = mask | pc.is_nan(keys).fill_null(False).to_numpy(zero_copy_only=False)
    return np.asarray(mask, dtype=bool)


def null_like_sql(column, dtype):
    """The Spark column form of ``null_like`` for a key column of Spark type ``dtype``."""
    from pyspark.sql import functions as F
    from pyspark.sql import types as T

    if isinstance(dtype, (T.FloatType, T.DoubleType)):
        return column.isNull() | F.isnan(column)
    return column.isNull()


# ---- line order ----------------------------------------------------------------------------------------------
def follows(numbers: np.ndarray) -> np.ndarray:
    """``bool[n-1]``: line ``i+1`` has a greater number than line ``i``. Compares, never subtracts: the
    difference of two int64 line numbers (``INT64_MAX`` and ``-2``) overflows and looks positive."""
    return numbers[1:] > numbers[:-1]


# ---- sparse indices ------------------------------------------------------------------------------------------
def bad_index_mask(indices: np.ndarray, size: int) -> np.ndarray:
    """``bool[nnz]``: an index outside ``0..size-1``; a null index (NaN once decoded) is outside too. A negative
    index would silently wrap around in numpy's indexing."""
    idx = np.asarray(indices, dtype=np.float64)
    return ~((idx >= 0) & (idx < size))


def repeated_index_rows(indptr: np.ndarray, indices: np.ndarray) -> np.ndarray:
    """Rows (``int64[k]``, ascending) in which some index appears twice: their indices are not strictly
    increasing once sorted, as Spark ML's ``SparseVector`` requires (numpy would keep one value silently)."""
    lengths = np.diff(indptr)
    if indices.size < 2:
        return np.zeros(0, dtype=np.int64)
    rows = np.repeat(np.arange(lengths.size), lengths)
    order = np.lexsort((indices, rows))
    idx, row = indices[order], rows[order]
    again = (idx[1:] == idx[:-1]) & (row[1:] == row[:-1])
    return np.unique(row[1:][again]).astype(np.int64)


def sparse_flags_sql(indices, values, feature_size: int) -> dict:
    """The SQL form of the sparse rules of ``features._csr``/``_checked_csr``: ``{flag: Column}`` (null when
    ``indices`` or ``values`` is null: the caller counts those as missing features). A line breaks the first
    rule the decoder checks, in its order: lengths, then index range, then repeats."""
    from pyspark.sql import functions as F

    lengths = F.coalesce(F.size(indices), F.lit(0)) != F.coalesce(F.size(values), F.lit(0))
    outside = ~lengths & F.exists(indices, lambda i: i.isNull() | (i < 0) | (i >= feature_size))
    return {
        "sparse_lengths": lengths,
        "bad_index": outside,
        "repeated_index": ~lengths & ~outside & (F.size(F.array_distinct(indices)) != F.size(indices)),
    }


# ---- values the model sees -----------------------------------------------------------------------------------
def nonfinite_rows(source) -> np.ndarray:
    """Rows (``int64[k]``) of a decoded ``DenseFeatures``/``SparseFeatures`` (already float32, what the model
    sees: a float64 beyond float32's range is inf there) holding NaN or inf."""
    if hasattr(source, "values"):
        return np.flatnonzero(~np.isfinite(source.values).all(axis=1))
    bad = ~np.isfinite(source.data)
    if not bad.any():
        return np.zeros(0, dtype=np.int64)
    rows = np.repeat(np.arange(len(source)), np.diff(source.indptr))
    return np.unique(rows[bad])


def nonfinite_sql(values):
    """The SQL form of ``nonfinite_rows``: some element is null (NaN to the model), or is NaN or inf once cast to
    float32 as the worker casts it (1e300 passes as a double and is inf as a float)."""
    from pyspark.sql import functions as F

    def bad(x):
        as_model = x.cast("float")
        return x.isNull() | F.isnan(as_model) | (F.abs(as_model) == F.lit(float("inf")))

    return F.exists(values, bad)
