"""The validation scan of a small local Parquet input, read with Arrow in the driver.

On a local master the Spark scan's cost is not its data but its cold JVM:
planning a query of some forty aggregates, compiling three stages and
JIT-compiling the reader took 3-4 s at 200k lines, on the same two cores
as the Python worker importing TensorFlow for the warm-up (traced: the
worker's build finished 1.1-1.4 s earlier with no scan at all). The same
checks over the key and feature columns take a fraction of a second in
Arrow and numpy, in a driver that is otherwise waiting.

It gives the same ``InputReport`` as ``validate.scan_input``: the same
flags, counted per (document, line) key the same way, so a refusal reads
alike whichever scan ran (tests/test_local_scan.py compares them). Where
anything differs from what Spark would read (a remote path, a glob, a key
that is a partition directory, files that disagree on types), it declines
and the Spark scan runs.

The read order it reports is a sufficient condition for Spark's: a
document whose lines are one run inside one Parquet row group is one run
in any task that reads that row group, since Spark splits Parquet files at
row-group boundaries only, in whatever order it packs the splits.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from skol_spark.scoring.features import list_parts
from skol_spark.job.validate import FLAGS, InputReport

MAX_LINES = 2_000_000  # ~1 s of one driver core (200k lines: 0.1 s warm); above it, Spark scans in parallel
ROW_FLAGS = tuple(f for f in FLAGS if f != "duplicate")


class Declined(Exception):
    """The input is not one the Arrow scan reads exactly as Spark would: use the Spark scan."""


@dataclass(frozen=True)
class Columns:
    doc: str
    line: str
    features: str
    kind: str  # validate.feature_kind: array, vector or sparse
    feature_size: int


def eligible_files(path: str, *, max_lines: int = MAX_LINES) -> list[str] | None:
    """The input's data files when it is local Parquet of at most ``max_lines`` rows (footers only), else None."""
    from skol_spark.local.jvm_jit import parquet_footers

    found = parquet_footers(path, limit=max_lines)
    return found[0] if found is not None and found[1] <= max_lines else None


def scan_files(files: list[str], cols: Columns, *, check_order: bool = False) -> InputReport:
    """One pass over the files' row groups: totals and, per problem, the number of lines and one example.

    Raises ``Declined`` where Arrow would not read what Spark reads.
    """
    import pyarrow.parquet as pq

    parts = []
    for file in files:
        handle = pq.ParquetFile(file)
        names = set(handle.schema_arrow.names)
        missing = {cols.doc, cols.line, cols.features} - names
        if missing:  # a partition directory, or a file without the column: Spark's reading rules apply
            raise Declined(f"{file} has no column(s) {sorted(missing)}")
        for group in range(handle.num_row_groups):
            table = handle.read_row_group(group, columns=[cols.doc, cols.line, cols.features])
            parts.append(key_flags(table, cols, part=len(parts)))
    if not parts:
        return InputReport(lines=0, documents=0, bad={f: (0, None) for f in FLAGS},
                           scattered_documents=0 if check_order else -1, scan="arrow")
    try:
        keys = pa.concat_tables(parts)
    except (pa.ArrowInvalid, pa.ArrowTypeError) as e:  # files disagree on a key's type
        raise Declined(str(e)) from None
    return report(keys, check_order=check_order)


def key_flags(table: pa.Table, cols: Columns, *, part: int) -> pa.Table:
    """Per line: document, line number, the row flags of ``validate.line_flags``, and which row group."""
    doc, line = table.column(cols.doc).combine_chunks(), table.column(cols.line).combine_chunks()
    flags = feature_flags(table.column(cols.features).combine_chunks(), cols.kind, cols.feature_size)
    flags["null_key"] = _nulls(doc) | _nulls(line)
    columns = {"_doc": doc, "_line": line.cast(pa.int64())}
    columns.update({f: pa.array(flags[f], pa.bool_()) for f in ROW_FLAGS})
    columns["_part"] = pa.array(np.full(len(table), part, dtype=np.int32))
    return pa.table(columns)


def feature_flags(feats: pa.Array, kind: str, size: int) -> dict[str, np.ndarray]:
    """``null_features``, ``bad_size`` and ``nonfinite`` per row, as the Spark scan computes them."""
    n = len(feats)
    missing = _nulls(feats)
    if kind == "array":
        values, lengths = feats, _lengths(feats)
    elif kind == "vector":  # Spark ML vector: dense (type 1) -> len(values); sparse (type 0) -> its size
        values = feats.field("values")
        dense = feats.field("type").fill_null(1).to_numpy(zero_copy_only=False) == 1
        lengths = np.where(dense, _lengths(values), feats.field("size").fill_null(-1).to_numpy(zero_copy_only=False))
    else:
        indices, values = feats.field("indices"), feats.field("values")
        missing = missing | _nulls(indices) | _nulls(values)
        if "size" in {feats.type.field(i).name for i in range(feats.type.num_fields)}:
            lengths = feats.field("size").fill_null(size).to_numpy(zero_copy_only=False).astype(np.int64)
        else:
            lengths = np.full(n, size, dtype=np.int64)
        rows, flat = _elements(indices)  # a null index is NaN here: neither below 0 nor above (array_max skips it)
        lengths[rows[(flat < 0) | (flat >= size)]] = -1  # an index outside the model's features
        lengths[_lengths(indices) != _lengths(values)] = -1
    rows, numbers = _elements(values)  # a null element is NaN here: refused alike
    if kind == "vector":
        with np.errstate(over="ignore"):
            numbers = numbers.astype(np.float32)  # Spark checks vector_to_array(..., "float32")
    nonfinite = np.zeros(n, dtype=bool)
    nonfinite[rows[~np.isfinite(numbers)]] = True
    return {"null_features": missing, "bad_size": ~missing & (lengths != size), "nonfinite": ~missing & nonfinite}


def _nulls(arr: pa.Array) -> np.ndarray:
    return arr.is_null().to_numpy(zero_copy_only=False)


def _lengths(lists: pa.Array) -> np.ndarray:
    """List lengths per row, -1 for a null list."""
    return pc.list_value_length(lists).fill_null(-1).to_numpy(zero_copy_only=False).astype(np.int64)


def _elements(lists: pa.Array) -> tuple[np.ndarray, np.ndarray]:
    """(each element's row, the elements as numbers; null elements NaN)."""
    offsets, flat = list_parts(lists)
    rows = np.repeat(np.arange(len(lists)), np.diff(offsets))
    return rows, np.asarray(flat, dtype=np.float64) if flat.dtype.kind in "iub" else flat


def report(keys: pa.Table, *, check_order: bool) -> InputReport:
    """Totals over every line's key and flags, aggregated per (document, line) as the Spark scan does: a key's
    lines all count when any of them is flagged; a duplicated key counts its extra lines."""
    per_key = keys.group_by(["_doc", "_line"], use_threads=False).aggregate(
        [([], "count_all")] + [(f, "any") for f in ROW_FLAGS])
    n = per_key.column("count_all").to_numpy()
    hits = {f: per_key.column(f"{f}_any").to_numpy(zero_copy_only=False) for f in ROW_FLAGS}
    hits["duplicate"] = n > 1
    bad = {}
    for flag in FLAGS:
        where = np.flatnonzero(hits[flag])
        weight = n[where] - 1 if flag == "duplicate" else n[where]
        bad[flag] = (int(weight.sum()), _example(per_key, int(where[0])) if where.size else None)
    documents = pc.count_distinct(keys.column("_doc"), mode="all").as_py()
    return InputReport(lines=keys.num_rows, documents=int(documents), bad=bad,
                       scattered_documents=scattered(keys) if check_order else -1, scan="arrow")


def _example(per_key: pa.Table, row: int) -> dict[str, Any]:
    doc = per_key.column("_doc")[row].as_py()
    return {"doc": None if doc is None else str(doc), "line": per_key.column("_line")[row].as_py()}


def scattered(keys: pa.Table) -> int:
    """Documents that are not one run of rows inside one row group, in read order."""
    from skol_spark.scoring.partition import run_starts

    docs = keys.column("_doc").combine_chunks()
    part = keys.column("_part").combine_chunks().to_numpy(zero_copy_only=False)
    starts = np.union1d(run_starts(docs), np.flatnonzero(part[1:] != part[:-1]) + 1)  # a row group ends a run
    runs = pa.table({"_doc": docs.take(pa.array(starts.astype(np.int64)))})
    per_doc = runs.group_by("_doc", use_threads=False).aggregate([([], "count_all")])
    return int(np.count_nonzero(per_doc.column("count_all").to_numpy() > 1))
