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
import uuid
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
        """Create a file holding ``data`` only if absent: the lock primitive. The file appears whole or not
        at all (a temporary file, then ``link(2)``, which fails atomically when the name exists)."""
        local = self._p(p)
        tmp = f"{local}.{uuid.uuid4().hex}.tmp"
        try:
            with open(tmp, "xb") as f:
                f.write(data)
            os.link(tmp, local)
        except FileExistsError:
            return False
        finally:
            if os.path.lexists(tmp):
                os.remove(tmp)
        return True

    def remove(self, p: str) -> None:
        """Delete ``p`` recursively; absent is fine, still there afterwards raises OSError."""
        self.delete(p)
        if self.exists(p):
            raise OSError(f"could not delete {p}")

    def status(self, p: str):
        """``p``'s status (``isDirectory()``, ``getModificationTime()`` in ms, as Hadoop's), or None."""
        local = self._p(p)
        if not os.path.lexists(local):
            return None
        return _Status(os.path.isdir(local), int(os.stat(local, follow_symlinks=False).st_mtime * 1000))

    def local_path(self, p: str) -> str | None:
        return local_path(p)

    def write_whole(self, p: str, data: bytes) -> None:
        """Write ``p`` so that it appears complete or not at all: a temporary sibling, ``os.replace``d."""
        local = self._p(p)
        os.makedirs(os.path.dirname(local) or ".", exist_ok=True)
        tmp = f"{local}.{uuid.uuid4().hex}.tmp"
        try:
            with open(tmp, "wb") as f:
                f.write(data)
            os.replace(tmp, local)
        finally:
            if os.path.lexists(tmp):
                os.remove(tmp)

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


class _Status:
    """The two facts of Hadoop's ``FileStatus`` that skol_spark reads."""

    def __init__(self, directory: bool, mtime_ms: int) -> None:
        self._directory, self._mtime_ms = directory, mtime_ms

    def isDirectory(self) -> bool:  # noqa: N802  (Hadoop's name)
        return self._directory

    def getModificationTime(self) -> int:  # noqa: N802
        return self._mtime_ms
