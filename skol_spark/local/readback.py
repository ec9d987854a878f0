"""The manifest's counts of a run written as local Parquet, read back with Arrow in the driver.

Every run reads back what it published, so the manifest's row and label
counts describe the files, not what the scoring step meant to write. With
Spark, that read-back is a two-stage aggregation planned after the last
prediction: on a local master, a visible part of a one-shot run's end,
almost all of it planning and starting tasks. The same counts come from the
files' ``label`` column without a Spark job.

It reads the same files Spark would: the data files under the run's own
directory (names starting with ``_`` or ``.`` are Spark's bookkeeping). It
declines where it would not see what Spark sees: a remote filesystem,
output not in Parquet, ``label`` as a partition directory, or a file
without the column. Then Spark counts, as it always does on clusters.
"""

from __future__ import annotations

import os
from urllib.parse import urlparse

import pyarrow as pa


class Declined(Exception):
    """The output is not one Arrow reads as Spark would: count with Spark."""


def label_counts(run_dir: str) -> dict[str | None, int]:
    """Rows per label in the Parquet files under ``run_dir`` (a local directory)."""
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    if not os.path.isdir(run_dir):  # also where a scheme-less path named fs.defaultFS's (remote) directory
        raise Declined(f"{run_dir} is not a local directory")
    tables = []
    for file in parquet_files(run_dir):
        if any(part.startswith("label=") for part in os.path.relpath(file, run_dir).split(os.sep)[:-1]):
            raise Declined("label is a partition directory")
        with pq.ParquetFile(file) as parquet:
            if "label" not in parquet.schema_arrow.names:
                raise Declined(f"{file} has no label column")
            tables.append(parquet.read(columns=["label"]))
    if not tables:
        return {}
    counts = pc.value_counts(pa.concat_tables(tables).column("label"))
    return {v.as_py(): int(n.as_py()) for v, n in zip(counts.field("values"), counts.field("counts"))}


def local_path(path: str) -> str | None:
    """The local directory a ``file:`` or scheme-less path names, or None (a remote filesystem, a glob)."""
    if not path or any(c in path for c in "*?[{"):
        return None
    parsed = urlparse(path)
    if parsed.scheme in ("", "file"):
        return parsed.path if parsed.scheme else path
    return None


def parquet_files(root: str):
    """Data files as Spark lists them: hidden (``.``) and metadata (``_``) entries skipped."""
    if os.path.isfile(root):
        yield root
        return
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith((".", "_")))
        for name in sorted(filenames):
            if not name.startswith((".", "_")):
                yield os.path.join(dirpath, name)
