"""A model version's feature pipeline in the store: packed, checksummed, immutable, read without trust.

The pipeline is a saved Spark ML ``PipelineModel`` directory, packed into a
reproducible tar.gz and stored as the version's ``feature_pipeline`` extra
(chunked and checksummed like the weights, written with the version and never
changed). Its summary (stages, text column, feature column and size) goes
into the manifest, so ``model show`` and the job know what it reads and makes
without unpacking it. Reading it back extracts the archive with the same
checks as a legacy model archive and parses it with ``skol_spark.text.saved``:
nothing a stage's metadata names is imported unless allowed.
"""

from __future__ import annotations

import logging
import tempfile
from pathlib import Path
from typing import Any, Sequence

from skol_spark.errors import ModelFormatError, ModelNotFoundError
from skol_spark.text.rebuild import FeaturePipeline, plan_pipeline
from skol_spark.text.saved import read_saved_pipeline

log = logging.getLogger(__name__)

EXTRA = "feature_pipeline"


def pipeline_from_dir(directory: str | Path, allowed_modules: Sequence[str] = ()) -> FeaturePipeline:
    """A saved PipelineModel directory -> its parsed pipeline (classes checked, no Spark needed)."""
    return plan_pipeline(read_saved_pipeline(Path(directory), allowed_modules))


def pipeline_from_archive(packed: bytes, allowed_modules: Sequence[str] = ()) -> FeaturePipeline:
    """A packed pipeline (tar.gz) -> its parsed pipeline; the archive is vetted before extraction and the
    temporary directory is gone on return (the parsed stages hold everything the job needs)."""
    from skol_spark.store.safe_tar import safe_extract

    with tempfile.TemporaryDirectory(prefix="skol-pipeline-") as tmp:
        safe_extract(packed, Path(tmp))
        return pipeline_from_dir(Path(tmp), allowed_modules)


def pack_pipeline(source: str | Path | bytes) -> bytes:
    """A directory (packed here) or already-packed bytes (an import's ``feature_pipeline/``) -> tar.gz bytes."""
    from skol_spark.store.safe_tar import pack_directory

    if isinstance(source, (bytes, bytearray)):
        return bytes(source)
    directory = Path(source)
    if not directory.is_dir():
        raise ModelFormatError(f"feature pipeline {directory} is not a directory; give the directory a fitted "
                               "PipelineModel was saved to (model.write().save(DIR))")
    return pack_directory(directory)


def check_size(pipeline: FeaturePipeline, model_features: int, where: str) -> None:
    """The pipeline must make exactly the vectors the model reads (names both sizes)."""
    if pipeline.feature_size != model_features:
        raise ModelFormatError(
            f"{where}: the feature pipeline makes {pipeline.feature_size}-long vectors ({pipeline.features_col}) "
            f"but the model reads {model_features} features; they were not fitted together: publish the "
            "pipeline the model was trained on")


def prepare(source: str | Path | bytes, model_features: int, *, allowed_modules: Sequence[str] = (),
            where: str = "publish") -> tuple[bytes, dict[str, Any]]:
    """(packed bytes, manifest summary) for ``ModelStore.publish``; refuses an unsafe, unsupported or
    mis-sized pipeline before anything is written."""
    packed = pack_pipeline(source)
    pipeline = pipeline_from_archive(packed, allowed_modules)
    check_size(pipeline, model_features, where)
    return packed, pipeline.summary()


def load(store, name: str, version: int, manifest: dict[str, Any], *,
         allowed_modules: Sequence[str] = ()) -> FeaturePipeline:
    """The version's pipeline, checksum-verified and parsed; ModelNotFoundError when it has none."""
    if EXTRA not in (manifest.get("extras") or {}):
        raise ModelNotFoundError(
            f"model {name!r} v{version} has no feature pipeline, so it cannot score text; publish the model "
            "with --feature-pipeline DIR (or ModelStore.publish(..., feature_pipeline=DIR)), or give feature "
            "vectors (input.features_col)")
    pipeline = pipeline_from_archive(store.load_extra(name, version, EXTRA), allowed_modules)
    check_size(pipeline, int(manifest["feature_size"]), f"model {name!r} v{version}")
    return pipeline


def describe_lines(manifest: dict[str, Any]) -> list[tuple[str, str]]:
    """``model show`` rows for the pipeline summary in a manifest (none when the version has none)."""
    summary = manifest.get(EXTRA)
    if not summary:
        return [("text input", "no (no feature pipeline)")] if EXTRA not in manifest.get("extras", {}) else \
            [("text input", "no (the imported feature_pipeline/ is kept as an extra but cannot be used; "
                            "import-legacy logged why)")]
    return [("pipeline", " -> ".join(c.rsplit(".", 1)[-1] for c in summary["stages"])),
            ("text column", summary["text_col"]),
            ("pipeline output", f"{summary['features_col']} ({summary['feature_size']} features)")]


def for_import(packed: bytes | None, model_features: int) -> tuple[dict[str, bytes], bytes | None]:
    """(extras, feature_pipeline) for publishing an imported archive's ``feature_pipeline/``.

    A pipeline that parses, is allowed and fits the model is published as the version's pipeline (text
    input works); one that does not is kept byte for byte as a plain extra, with a warning saying why,
    so that importing a model never fails on its pipeline.
    """
    from skol_spark.errors import SkolError

    if packed is None:
        return {}, None
    try:
        prepare(packed, model_features, where="import-legacy")
    except SkolError as e:
        log.warning("legacy archive: its feature_pipeline/ is kept as an extra but cannot featurize text (%s)", e)
        return {EXTRA: packed}, None
    return {}, packed
