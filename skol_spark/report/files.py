"""Reading a scoring run back: its output dataset, its run manifest, the columns a report needs.

Kept apart from the report so the comparison and the CLI can read runs
without drawing anything, and so the reading rules live in one place: hive
partitions typed from the files, Spark's ``_``/``.`` side files skipped, a
manifest accepted wherever an output directory is.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from skol_spark.errors import ConfigError

log = logging.getLogger(__name__)

REQUIRED_COLUMNS = ("doc_id", "line_number", "label", "confidence")
TRUE_COLUMN = "true_label"
IGNORE_PREFIXES = [".", "_"]  # Spark's _SUCCESS, _temporary/, .crc files


def read_manifest(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The run manifest JSON at ``path`` as a dict; ConfigError if missing or not a JSON object."""
    try:
        manifest = json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError as e:
        raise ConfigError(f"{path}: no such run manifest; pass the manifest the job wrote "
                          "(output.manifest_path) or the output dataset directory") from e
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ConfigError(f"{path}: cannot be read as a run manifest ({e}); pass the JSON file the job wrote") from e
    if not isinstance(manifest, dict):
        raise ConfigError(f"{path}: a run manifest is a JSON object, this file holds a {type(manifest).__name__}")
    return manifest


def manifest_output_path(manifest: dict[str, Any], where: str = "the run manifest") -> str:
    """``manifest["output"]["path"]``, or ConfigError naming the missing key."""
    path = (manifest.get("output") or {}).get("path") if isinstance(manifest.get("output"), dict) else None
    if not path:
        raise ConfigError(f"{where} has no output.path; pass the output dataset directory itself")
    return str(path)


def _hive_partitioning(source: str) -> Any:
    """Hive partitioning whose keys (``run_id=.../``) take the files' type, else string.

    pyarrow would infer ``run_id=20240101`` as int32 and then refuse to merge
    it with a string ``run_id`` column in the files; typing the keys from the
    files (or as strings, which Spark's partition values are) avoids both.
    """
    import pyarrow.dataset as ds

    plain = ds.dataset(source, format="parquet", ignore_prefixes=IGNORE_PREFIXES)
    root = source.split("://", 1)[-1].rstrip("/")
    keys: list[str] = []
    for file in plain.files:
        relative = file[len(root):] if file.startswith(root) else file
        for segment in relative.strip("/").split("/")[:-1]:
            key = segment.split("=", 1)[0]
            if "=" in segment and key not in keys:
                keys.append(key)
    if not keys:
        return None
    types = {name: plain.schema.field(name).type for name in plain.schema.names}
    return ds.partitioning(pa.schema([(key, types.get(key, pa.string())) for key in keys]), flavor="hive")


def load_output(path: str | os.PathLike[str]) -> pa.Table:
    """Read a scoring job's output dataset (a directory of Parquet files, maybe hive-partitioned).

    ``path`` may also be a run manifest (``*.json``): its ``output.path`` is
    read. Files and directories starting with ``_`` or ``.`` are skipped.
    Raises ConfigError for a missing path, an unreadable dataset or one with
    no rows.
    """
    source = str(path)
    if source.endswith(".json"):
        return load_run(read_manifest(source), f"run manifest {path}")
    table, files = _read_dataset(source)
    if table.num_rows == 0:
        raise ConfigError(f"{source}: no scored lines in this dataset ({files} Parquet files); "
                          "check the path, or that the run wrote any output")
    log.info("read %d scored lines from %s (%d files)", table.num_rows, source, files)
    return table


def load_run(manifest: dict[str, Any], where: str = "the run manifest") -> pa.Table:
    """The rows of the one run that ``manifest`` records, never a later run's.

    Each run publishes its rows under ``<output.path>/run_id=<run id>/``, and a
    later run in ``overwrite`` mode replaces them: reading the whole output
    would then report the later run's rows under this run's title. So the
    run's own directory is read (or, for dynamic partition overwrite, which
    has no such level, the output's rows whose ``run_id`` column is this
    run's). Raises ConfigError (exit 2) when none of them are left.
    """
    root = manifest_output_path(manifest, where)
    run_id = manifest.get("run_id")
    if not run_id:  # a manifest that predates run_id: the whole output is all there is
        return load_output(root)
    run_dir = f"{root.rstrip('/')}/run_id={run_id}"
    if "://" in run_dir or Path(run_dir).is_dir():
        table, files = _read_dataset(run_dir)
    else:
        table, files = _read_dataset(root, run_id=str(run_id))
    if table.num_rows == 0:
        raise ConfigError(f"run {run_id}'s scored lines are no longer in {root} (a later run replaced them, "
                          "or they were deleted), so its report cannot be rebuilt; rerun that job, or "
                          "report the output as it is now: skol-spark report " + root)
    log.info("read run %s's %d scored lines from %s (%d files)", run_id, table.num_rows, root, files)
    return table


def _read_dataset(source: str, *, run_id: str | None = None) -> tuple[pa.Table, int]:
    """The Parquet dataset at ``source`` (rows of ``run_id`` only, when given) and its file count."""
    if "://" not in source and not Path(source).exists():
        raise ConfigError(f"{source}: no such file or directory; pass the output dataset directory the job "
                          "wrote (output.path) or its run manifest JSON")
    import pyarrow.dataset as ds

    try:
        dataset = ds.dataset(source, format="parquet", partitioning=_hive_partitioning(source),
                             ignore_prefixes=IGNORE_PREFIXES)
        if run_id is None:
            return dataset.to_table(), len(dataset.files)
        if "run_id" not in dataset.schema.names:
            return dataset.schema.empty_table(), len(dataset.files)
        return dataset.to_table(filter=ds.field("run_id").cast(pa.string()) == run_id), len(dataset.files)
    except (OSError, pa.ArrowException) as e:
        raise ConfigError(f"{source}: cannot be read as a Parquet dataset ({e}); pass the directory the "
                          "scoring job wrote") from e


def scored_columns(table: pd.DataFrame | pa.Table) -> pd.DataFrame:
    """The columns a report needs, as pandas; ``true_label`` is added as all-null when absent.

    Raises ConfigError naming the missing columns.
    """
    names = list(table.column_names if isinstance(table, pa.Table) else table.columns)
    missing = [c for c in REQUIRED_COLUMNS if c not in names]
    if missing:
        raise ConfigError(f"the scored table lacks column(s) {missing} (it has {names}); pass the scoring "
                          "job's output, which has doc_id, line_number, label, prediction and confidence")
    wanted = [c for c in (*REQUIRED_COLUMNS, TRUE_COLUMN) if c in names]
    frame = table.select(wanted).to_pandas() if isinstance(table, pa.Table) else table[wanted].copy()
    if TRUE_COLUMN not in frame:
        frame[TRUE_COLUMN] = None
    for column in ("label", TRUE_COLUMN):
        frame[column] = frame[column].astype(object)
    return frame


def labels_from_data(table: pa.Table) -> list[str]:
    """The model's labels recovered from the distinct (``prediction``, ``label``) pairs, by index.

    Raises ConfigError when there is no ``prediction`` column or the pairs
    disagree (two models' output in one dataset). A class that was never
    predicted cannot be named from the data: that is logged as a warning,
    since its true labels will then count as unknown; pass the labels
    explicitly in that case.
    """
    if "prediction" not in table.column_names or "label" not in table.column_names:
        raise ConfigError("the output has no prediction/label columns to recover the model's labels from; "
                          "pass --labels a,b,c or the run manifest")
    pairs = table.select(["prediction", "label"]).group_by(["prediction", "label"]).aggregate([]).to_pandas()
    pairs = pairs.sort_values("prediction")
    if pairs["prediction"].duplicated().any() or pairs["label"].duplicated().any():
        clash = pairs[pairs["prediction"].duplicated(keep=False) | pairs["label"].duplicated(keep=False)]
        raise ConfigError(f"the output maps prediction indices to labels inconsistently "
                          f"({clash.to_dict('records')[:4]}): it mixes models; report one run (its manifest) "
                          "or pass --labels")
    indices = [int(i) for i in pairs["prediction"]]
    classes = indices[-1] + 1
    if "probabilities" in table.column_names:  # its width is the model's class count
        widest = pc.max(pc.list_value_length(table.column("probabilities"))).as_py()
        classes = max(classes, int(widest or 0))
    if indices != list(range(classes)):
        log.warning("labels recovered from the data lack class indices %s (never predicted); their true labels "
                    "count as unknown; pass --labels or the run manifest to name every class",
                    sorted(set(range(classes)) - set(indices)))
    return [str(name) for name in pairs["label"]]
