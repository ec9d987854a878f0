"""The model artifact: what the driver loads from Redis and broadcasts.

A ``ModelArtifact`` is plain data (architecture JSON, weights as ``.npz``
bytes, the manifest dict), so it pickles cheaply into a Spark broadcast and
carries nothing executable. Weights are numpy arrays in an ``.npz`` read with
``allow_pickle=False``; anything else (a pickle, an object array) is refused
by a format check before numpy or Keras parse it.
"""

from __future__ import annotations

import hashlib
import io
import zipfile
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from skol_spark.errors import ModelFormatError, ModelIntegrityError

FORMAT_VERSION = 1
ZIP_MAGIC = b"PK\x03\x04"
GOLDEN_WINDOWS = 3
GOLDEN_TOLERANCE = 1e-5


def sha256(data: bytes | str) -> str:
    if isinstance(data, str):
        data = data.encode()
    return hashlib.sha256(data).hexdigest()


@dataclass(frozen=True)
class ModelArtifact:
    """One immutable model version, verified, ready to broadcast.

    ``fingerprint`` (the weights + architecture checksums) keys the per-worker
    model cache, so two versions never share a built model.
    """

    name: str
    version: int
    architecture: str
    weights: bytes
    manifest: dict[str, Any]

    @property
    def fingerprint(self) -> str:
        return sha256(self.manifest["architecture"]["sha256"] + self.manifest["weights"]["sha256"])

    @property
    def labels(self) -> list[str]:
        return list(self.manifest["labels"])

    @property
    def window_size(self) -> int:
        return int(self.manifest["window_size"])

    @property
    def stride(self) -> int:
        return int(self.manifest.get("stride") or self.manifest["window_size"])

    @property
    def feature_size(self) -> int:
        return int(self.manifest["feature_size"])

    def verify(self) -> None:
        """Raise ModelIntegrityError unless both payloads match the manifest's checksums."""
        for part, payload in (("architecture", self.architecture), ("weights", self.weights)):
            expected = self.manifest[part]["sha256"]
            actual = sha256(payload)
            if actual != expected:
                raise ModelIntegrityError(
                    f"model {self.name!r} version {self.version}: {part} checksum mismatch "
                    f"(manifest {expected[:12]}…, stored data {actual[:12]}…). The stored model is "
                    "corrupt or was tampered with: republish it (skol-spark model publish) or load another version")


def encode_weights(arrays: Sequence[np.ndarray]) -> bytes:
    """``get_weights()`` -> ``.npz`` bytes, names ``w00000``.. keep the order."""
    buffer = io.BytesIO()
    np.savez(buffer, **{f"w{i:05d}": np.asarray(a) for i, a in enumerate(arrays)})  # type: ignore[arg-type]
    return buffer.getvalue()


def decode_weights(data: bytes, *, where: str = "weights") -> list[np.ndarray]:
    """``.npz`` bytes -> arrays in order. Refuses anything that is not a plain-array npz.

    A pickle (or any non-zip payload) is rejected by its magic bytes; object
    arrays are rejected by ``allow_pickle=False``; nothing is ever unpickled.
    """
    if not data.startswith(ZIP_MAGIC):
        kind = "a Python pickle" if data[:1] == b"\x80" else "not an .npz archive"
        raise ModelFormatError(f"{where}: payload is {kind}; skol_spark only loads numpy .npz weights "
                               "(republish the model with skol-spark model publish)")
    try:
        check_npz_sizes(data, where=where)
        with np.load(io.BytesIO(data), allow_pickle=False) as npz:
            names = sorted(npz.files)
            if names != [f"w{i:05d}" for i in range(len(names))]:
                raise ModelFormatError(f"{where}: unexpected array names in weights archive: {names[:5]}")
            return [npz[n] for n in names]
    except (ValueError, zipfile.BadZipFile, OSError, EOFError) as e:
        raise ModelFormatError(f"{where}: cannot read weights archive ({e}); republish the model") from None


def check_npz_sizes(data: bytes, *, where: str) -> None:
    """Refuse an ``.npz`` whose declared sizes exceed the payload, before numpy allocates by them.

    numpy allocates an array from its header's shape before reading the data, and a deflated member may
    expand without bound; ``encode_weights`` writes uncompressed members, so every declared size (zip
    entry and array header) must fit in the payload that holds it. Raises ModelFormatError.
    """
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        infos = archive.infolist()
        declared = sum(info.file_size for info in infos)
        if declared > len(data):
            raise ModelFormatError(f"{where}: weights archive declares {declared} bytes of arrays in a {len(data)}-byte "
                                   "payload (compressed or forged sizes); skol_spark writes uncompressed .npz: "
                                   "republish the model")
        for info in infos:
            with archive.open(info) as member:
                major, _ = np.lib.format.read_magic(member)
                read_header = np.lib.format.read_array_header_1_0 if major == 1 else np.lib.format.read_array_header_2_0
                shape, _, dtype = read_header(member)
            needed = int(np.prod(shape, dtype=object)) * dtype.itemsize
            if needed > info.file_size:
                raise ModelFormatError(f"{where}: weights array {info.filename} declares shape {shape} ({needed} bytes) "
                                       f"but holds {info.file_size} bytes; republish the model")


def golden_inputs(seed: int, window_size: int, feature_size: int) -> np.ndarray:
    """Deterministic probe windows, ``float32[3, window, features]``.

    Built with integer hashing rather than numpy's RNG so that the same
    windows come out on any numpy version, on any executor. Window 0 is all
    zeros (the smoke test); the others are ~10% non-zero values in [0, 1).
    """
    n = GOLDEN_WINDOWS * window_size * feature_size
    x = (np.arange(n, dtype=np.uint64) + np.uint64(seed)) * np.uint64(0x9E3779B97F4A7C15)
    x ^= x >> np.uint64(31)
    x *= np.uint64(0xBF58476D1CE4E5B9)
    x ^= x >> np.uint64(29)
    values = (x >> np.uint64(40)).astype(np.float32) / np.float32(1 << 24)
    keep = (x & np.uint64(0xFF)) < np.uint64(26)
    out = np.where(keep, values, np.float32(0)).reshape(GOLDEN_WINDOWS, window_size, feature_size)
    out[0] = 0
    return out


def check_golden(artifact: ModelArtifact, predict, *, where: str) -> None:
    """Predict the golden windows and compare with the outputs recorded at publish.

    ``predict``: float32[n, window, features] -> float[n, window, classes].
    Raises EnvironmentMismatchError naming the versions recorded and found.
    """
    from skol_spark.errors import EnvironmentMismatchError

    golden = artifact.manifest.get("golden")
    if not golden:
        return
    inputs = golden_inputs(int(golden["seed"]), artifact.window_size, artifact.feature_size)
    expected = np.asarray(golden["outputs"], dtype=np.float64)
    actual = np.asarray(predict(inputs), dtype=np.float64)
    if actual.shape != expected.shape:
        raise ModelFormatError(
            f"model {artifact.name!r} v{artifact.version}: rebuilt model outputs shape {actual.shape}, "
            f"the manifest recorded {expected.shape}: the manifest disagrees with the model")
    diff = float(np.max(np.abs(actual - expected))) if expected.size else 0.0
    if not np.isfinite(diff) or diff > GOLDEN_TOLERANCE:
        raise EnvironmentMismatchError(
            f"model {artifact.name!r} v{artifact.version} on {where}: golden outputs differ by {diff:.3g} "
            f"(tolerance {GOLDEN_TOLERANCE}). Published with {framework_summary(artifact.manifest.get('framework', {}))}; "
            f"found {framework_summary(framework_versions())}. Install the same TensorFlow/Keras on driver and "
            "executors, or republish the model from this environment")


def framework_versions() -> dict[str, str]:
    import platform

    import keras
    import tensorflow as tf

    return {"tensorflow": tf.__version__, "keras": keras.__version__, "numpy": np.__version__,
            "python": platform.python_version()}


def framework_summary(versions: dict[str, str]) -> str:
    return ", ".join(f"{k} {v}" for k, v in sorted(versions.items())) or "unknown versions"
