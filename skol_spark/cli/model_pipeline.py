"""The feature-pipeline options of ``skol-spark model publish`` / ``verify`` (see docs/text.md)."""

from __future__ import annotations


def add_pipeline_args(p, *, publish: bool = False) -> None:
    if publish:
        p.add_argument("--feature-pipeline", default=None, metavar="DIR",
                       help="a saved, fitted Spark ML PipelineModel directory that turns text into the model's "
                            "features; stored with the version (see docs/text.md)")
    p.add_argument("--pipeline-module", action="append", default=[], metavar="MODULE",
                   help="module whose Python pipeline stages may be loaded (repeatable; model.pipeline_modules)")


def verify_pipeline(store, artifact, modules: tuple[str, ...]) -> None:
    """Re-read the version's feature pipeline (checksum, allowed classes, output size = model features).

    Only a version published with a usable pipeline has one to verify (its manifest summary); an import
    whose ``feature_pipeline/`` could not be used keeps it as a plain extra, and ``model show`` says so.
    """
    from skol_spark.store import pipeline

    if pipeline.EXTRA not in artifact.manifest:  # none, or an import's unusable one kept as a plain extra
        return
    loaded = pipeline.load(store, artifact.name, artifact.version, artifact.manifest, allowed_modules=modules)
    print(f"{artifact.name} v{artifact.version}: feature pipeline ok ({len(loaded.saved)} stage(s) read "
          f"{loaded.text_col!r}, {loaded.feature_size} features = the model's)")
