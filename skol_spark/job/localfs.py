"""Staging, publish and the lock on the driver's local file system: path sinks on a Spark Connect session.

A Connect session has no Hadoop FileSystem API (no py4j). Where the driver
reaches the output through its own file system (a local directory; Unity
Catalog volumes, mounted at ``/Volumes/...`` on Databricks' drivers), the
same steps run with ``os``: a rename inside one file system is atomic, a lock
file is created with ``O_EXCL``. ``LocalFS`` has ``HadoopFS``'s methods, so
``job.sink`` uses either. Which paths qualify is decided by ``local_path``;
that Spark writes the same place the driver sees is checked by
``job.connect.check_shared_path`` before scoring.
"""

from __future__ import annotations

import os
import shutil
from urllib.parse import urlparse


def local_path(path: str) -> str | None:
    """``/x`` or ``file:/x`` / ``file:///x`` -> ``/x``; None for anything else (other schemes, relative paths)."""
    parsed = urlparse(path)
    if parsed.scheme == "file" and parsed.netloc in ("", "localhost"):
        return parsed.path or None
    if parsed.scheme == "" and path.startswith("/"):
        return path
    return None


class LocalFS:
    """``HadoopFS``'s methods on local paths (``/x`` or ``file:`` URIs)."""

    def __init__(self, path: str = "") -> None:
        if path and local_path(path) is None:
            raise ValueError(f"{path} is not a local absolute path")

    @staticmethod
    def _p(p: str) -> str:
        local = local_path(p)
        if local is not None:
            return local
        if urlparse(p).scheme:
            raise OSError(f"{p}: not on the driver's file system (a Spark Connect session has no Hadoop "
                          "FileSystem API); use a local absolute path, /Volumes/... on Databricks")
        return p  # relative: the driver's working directory, as Hadoop resolves it on a local master

    def exists(self, p: str) -> bool:
        return os.path.lexists(self._p(p))

    def rename(self, src: str, dst: str) -> None:
        """Atomic within one file system; refuses to replace an existing ``dst`` (Hadoop would move into it)."""
        if self.exists(dst):
            raise OSError(f"rename {src} -> {dst} failed: the destination exists")
        os.rename(self._p(src), self._p(dst))

    def delete(self, p: str) -> None:
        local = self._p(p)
        if os.path.isdir(local) and not os.path.islink(local):
            shutil.rmtree(local)
        elif os.path.lexists(local):
            os.remove(local)

    def mkdirs(self, p: str) -> None:
        os.makedirs(self._p(p), exist_ok=True)

    def list(self, p: str) -> list[str]:
        local = self._p(p)
        return sorted(os.listdir(local)) if os.path.isdir(local) else []

    def create_new(self, p: str, data: bytes) -> bool:
        """Create a file only if absent (``O_EXCL``: atomic in the kernel): the lock primitive."""
        try:
            fd = os.open(self._p(p), os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        except FileExistsError:
            return False
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        return True

    def write(self, p: str, data: bytes, *, overwrite: bool = True) -> None:
        local = self._p(p)
        os.makedirs(os.path.dirname(local) or ".", exist_ok=True)
        if not overwrite:
            if not self.create_new(p, data):
                raise FileExistsError(local)
            return
        with open(local, "wb") as f:
            f.write(data)

    def read(self, p: str) -> bytes:
        with open(self._p(p), "rb") as f:
            return f.read()
