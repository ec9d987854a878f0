"""Read a saved Spark ML ``PipelineModel`` directory with plain Python, trusting none of it.

Spark ML's own reader imports whatever Python class a stage's metadata names,
and here that metadata comes from Redis. So the directory is parsed by hand:
each ``metadata/part-*`` file is one JSON line (class, uid, params), each
fitted stage's ``data/*.parquet`` is read with pyarrow, and every class name
is checked against the allow-list (``check_stage_class``) before anything is
imported. Layout (written by Spark's Scala or Python pipeline writer)::

    <dir>/metadata/part-00000...           {"class": "...PipelineModel", "paramMap": {"stageUids": [...]}}
    <dir>/stages/<i>_<uid>/metadata/part-*  {"class": "org.apache.spark.ml.feature.Tokenizer", ...}
    <dir>/stages/<i>_<uid>/data/*.parquet   fitted state (a vocabulary, IDF weights, labels)
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from skol_spark.errors import ModelFormatError, UnsafeModelError

PIPELINE_CLASSES = ("org.apache.spark.ml.PipelineModel", "pyspark.ml.pipeline.PipelineModel")
ALLOW_KEY = "model.pipeline_modules"
# the original project's suffix stage, and skol_spark's own: both rebuilt from skol_spark.text.suffix
SUFFIX_CLASSES = ("skol_classifier.preprocessing.SuffixTransformer", "skol_spark.text.suffix.SuffixTransformer")


@dataclass(frozen=True)
class SavedStage:
    """One stage as saved: ``cls`` is the class its metadata names, ``params`` the defaults overlaid with the
    set values, ``data`` the rows of its Parquet data (empty for stages without fitted state)."""

    index: int
    uid: str
    cls: str
    params: dict[str, Any]
    data: list[dict[str, Any]] = field(default_factory=list)

    @property
    def short_name(self) -> str:
        return self.cls.rsplit(".", 1)[-1]


def pipeline_root(extracted: Path) -> Path:
    """The directory holding ``metadata/`` and ``stages/``: ``extracted`` itself or its one subdirectory."""
    for candidate in (extracted, *sorted(p for p in extracted.iterdir() if p.is_dir())):
        if (candidate / "metadata").is_dir():
            return candidate
    raise ModelFormatError(f"{extracted} holds no saved Spark ML pipeline (no metadata/ directory); save the "
                           "fitted PipelineModel with model.write().save(DIR) and give that DIR")


def read_metadata(directory: Path) -> dict[str, Any]:
    """The one JSON line in ``directory/metadata/part-*``."""
    parts = sorted((directory / "metadata").glob("part-*"))
    if not parts:
        raise ModelFormatError(f"saved pipeline: {directory.name}/metadata has no part-* file; the pipeline "
                               "was not saved completely, save it again")
    try:
        lines = [ln for ln in parts[0].read_text(encoding="utf-8").splitlines() if ln.strip()]
        metadata = json.loads(lines[0]) if lines else None
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ModelFormatError(f"saved pipeline: {parts[0].name} in {directory.name}/metadata is not JSON "
                               f"({e}); save the pipeline again") from None
    if not isinstance(metadata, dict) or not isinstance(metadata.get("class"), str):
        raise ModelFormatError(f"saved pipeline: {directory.name}/metadata names no class; save it again")
    return metadata


def check_stage_class(cls: str, allowed_modules: Sequence[str]) -> None:
    """Refuse (exit 14) a class outside pyspark's and Spark's ML packages, skol_spark's own stages and the
    user's allowed modules, before anything imports it."""
    if cls.startswith(("org.apache.spark.ml.", "pyspark.ml.")) or cls in SUFFIX_CLASSES:
        return
    module = cls.rpartition(".")[0]
    if module and module in allowed_modules:
        return
    raise UnsafeModelError(
        f"the feature pipeline has a stage of class {cls!r}, from a module that is not allowed: loading it "
        f"would import and run that module's code. Nothing was imported. If you trust it, name its module "
        f"in {ALLOW_KEY} (e.g. --set {ALLOW_KEY}={module or cls}); otherwise refit the pipeline with Spark ML "
        "stages")


def read_saved_pipeline(directory: Path, allowed_modules: Sequence[str] = ()) -> list[SavedStage]:
    """A saved PipelineModel directory -> its stages in order, every class checked before any data is read."""
    directory = pipeline_root(Path(directory))
    top = read_metadata(directory)
    if top["class"] not in PIPELINE_CLASSES:
        raise ModelFormatError(f"saved pipeline: the top-level class is {top['class']!r}, expected a fitted "
                               "PipelineModel (Pipeline.fit(...).write().save(DIR))")
    uids = (top.get("paramMap") or {}).get("stageUids")
    if not isinstance(uids, list) or not uids:
        raise ModelFormatError("saved pipeline: its metadata lists no stageUids; save the pipeline again")
    stage_dirs = {p.name.partition("_")[2]: p for p in (directory / "stages").glob("*_*") if p.is_dir()}
    metadata = []
    for uid in uids:
        if uid not in stage_dirs:
            raise ModelFormatError(f"saved pipeline: stage {uid!r} has no directory under stages/; save it again")
        meta = read_metadata(stage_dirs[uid])
        check_stage_class(meta["class"], allowed_modules)
        metadata.append(meta)
    return [SavedStage(index=i, uid=uid, cls=meta["class"],
                       params={**(meta.get("defaultParamMap") or {}), **(meta.get("paramMap") or {})},
                       data=read_stage_data(stage_dirs[uid]))
            for i, (uid, meta) in enumerate(zip(uids, metadata))]


def read_stage_data(directory: Path) -> list[dict[str, Any]]:
    """The rows of a stage's ``data/*.parquet`` (pyarrow; vectors come back as Spark's vector struct)."""
    files = sorted((directory / "data").glob("*.parquet"))
    if not files:
        return []
    import pyarrow.parquet as pq

    try:
        return [row for f in files for row in pq.read_table(str(f)).to_pylist()]
    except Exception as e:  # pyarrow raises several types for a damaged file
        raise ModelFormatError(f"saved pipeline: {directory.name}/data is not readable Parquet "
                               f"({type(e).__name__}: {e}); save the pipeline again") from None


def vector_values(value: Any, where: str) -> list[float]:
    """Spark's saved vector struct (``type`` 1 dense, 0 sparse) -> its values as a dense list."""
    if not isinstance(value, dict) or value.get("type") not in (0, 1):
        raise ModelFormatError(f"saved pipeline: {where} is not a saved Spark ML vector")
    if value["type"] == 1:
        return [float(v) for v in value["values"]]
    dense = [0.0] * int(value["size"])
    for i, v in zip(value["indices"], value["values"]):
        dense[int(i)] = float(v)
    return dense
