"""The model artifact as one file: how a Spark Connect session ships a model too large for a closure.

A Connect session has no broadcast variables. A small artifact travels in the
scoring function's closure (``InlineArtifact``); a large one is written to a
file the driver adds to the session (``spark.addArtifacts(path, file=True)``)
and each Python worker reads it once with ``SparkFiles`` (``ArtifactFile``).

The file is a stored (uncompressed) zip of plain data: the manifest and a
small header as JSON, the architecture JSON, the weights ``.npz``. Nothing in
it is ever unpickled, and the worker verifies both checksums against the
manifest before any model is built from it, as the driver did after Redis.
"""

from __future__ import annotations

import json
import threading
import zipfile
from dataclasses import dataclass

from skol_spark.errors import ModelFormatError
from skol_spark.model.artifact import ModelArtifact

SUFFIX = ".skol-model.zip"
_MEMBERS = ("header.json", "manifest.json", "architecture.json", "weights.npz")
_lock = threading.Lock()
_loaded: dict[str, ModelArtifact] = {}  # per Python worker: file name -> artifact (one model per run)


def file_name(artifact: ModelArtifact) -> str:
    """Named by content: the same model added twice to one session is the same file."""
    return f"skol-{artifact.name}-v{artifact.version}-{artifact.fingerprint[:16]}{SUFFIX}"


def write_artifact_file(artifact: ModelArtifact, path: str) -> None:
    header = {"name": artifact.name, "version": artifact.version, "format": 1}
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_STORED, allowZip64=True) as z:
        z.writestr("header.json", json.dumps(header))
        z.writestr("manifest.json", json.dumps(artifact.manifest))
        z.writestr("architecture.json", artifact.architecture)
        z.writestr("weights.npz", artifact.weights)


def read_artifact_file(path: str) -> ModelArtifact:
    """The verified artifact in ``path``; ModelFormatError / ModelIntegrityError when it is not one."""
    try:
        with zipfile.ZipFile(path) as z:
            if sorted(z.namelist()) != sorted(_MEMBERS):
                raise ModelFormatError(f"{path}: not a skol_spark model file (members {z.namelist()[:6]})")
            header = json.loads(z.read("header.json"))
            artifact = ModelArtifact(name=str(header["name"]), version=int(header["version"]),
                                     architecture=z.read("architecture.json").decode(),
                                     weights=z.read("weights.npz"), manifest=json.loads(z.read("manifest.json")))
    except (OSError, zipfile.BadZipFile, ValueError, KeyError) as e:
        raise ModelFormatError(f"cannot read the model file {path} shipped with the session ({e})") from None
    artifact.verify()
    return artifact


@dataclass(frozen=True)
class InlineArtifact:
    """The artifact itself, pickled into the scoring function's closure (small models only)."""

    artifact: ModelArtifact

    @property
    def value(self) -> ModelArtifact:
        return self.artifact


@dataclass(frozen=True)
class ArtifactFile:
    """A session artifact file, read once per Python worker (``value``, on executors only)."""

    name: str

    @property
    def value(self) -> ModelArtifact:
        from pyspark import SparkFiles

        with _lock:
            if self.name not in _loaded:
                artifact = read_artifact_file(SparkFiles.get(self.name))
                _loaded.clear()  # one model per worker, as the model cache keeps it
                _loaded[self.name] = artifact
            return _loaded[self.name]
