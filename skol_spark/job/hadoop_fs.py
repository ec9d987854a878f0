"""Hadoop's FileSystem API from the driver, for any URI Spark can write (local disk, HDFS, object stores).

The few operations the sink and the output lock need, each with the
semantics they rely on (``remove`` raises when something stays behind,
``create_new`` is atomic and all-or-nothing).
"""

from __future__ import annotations

import contextlib
import os
import uuid


class HadoopFS:
    """A tiny wrapper over ``org.apache.hadoop.fs.FileSystem`` for one path's filesystem."""

    def __init__(self, spark, path: str) -> None:
        jvm = spark.sparkContext._jvm
        self.spark = spark
        self._jvm = jvm
        self._conf = spark.sparkContext._jsc.hadoopConfiguration()
        self.fs = jvm.org.apache.hadoop.fs.Path(path).getFileSystem(self._conf)

    def path(self, p: str):
        return self._jvm.org.apache.hadoop.fs.Path(p)

    def exists(self, p: str) -> bool:
        return bool(self.fs.exists(self.path(p)))

    def rename(self, src: str, dst: str) -> None:
        if not self.fs.rename(self.path(src), self.path(dst)):
            raise OSError(f"rename {src} -> {dst} failed")

    def delete(self, p: str) -> bool:
        """Delete ``p`` recursively if it exists; False when nothing was deleted (see ``remove``)."""
        return bool(self.fs.delete(self.path(p), True))

    def remove(self, p: str) -> None:
        """Delete ``p`` recursively; absent is fine, still there afterwards raises OSError."""
        if not self.delete(p) and self.exists(p):
            raise OSError(f"could not delete {p} (Hadoop's delete returned false: a file in it may be "
                          "read-only or immutable)")

    def status(self, p: str):
        """Hadoop's ``FileStatus`` of ``p``, or None when nothing is there."""
        path = self.path(p)
        return self.fs.getFileStatus(path) if self.fs.exists(path) else None

    def local_path(self, p: str) -> str | None:
        """The local file system path of ``p`` when it is on this machine's disk (``file:``), else None."""
        if self.fs.getScheme() != "file":
            return None
        return str(self.fs.pathToFile(self.path(p)).getAbsolutePath())

    def mkdirs(self, p: str) -> None:
        self.fs.mkdirs(self.path(p))

    def list(self, p: str) -> list[str]:
        if not self.exists(p):
            return []
        return [str(s.getPath().getName()) for s in self.fs.listStatus(self.path(p))]

    def create_new(self, p: str, data: bytes) -> bool:
        """Create ``p`` holding ``data`` only if absent: the lock primitive; False when it exists.

        The file appears whole or not at all: ``data`` goes to a unique
        temporary name first, which is then linked (local disk: ``link(2)``
        fails when the name exists, atomically in the kernel) or renamed
        (HDFS: the NameNode refuses to rename onto an existing file) into
        place. A create-then-write lock left an empty file when the disk
        was full, which no rule could read or break. Hadoop's
        ``createNewFile`` checks, then creates: racing runs could both win.
        A write that fails raises (OSError / Py4JJavaError) and leaves nothing.
        """
        suffix = f".{uuid.uuid4().hex}.tmp"
        local = self.local_path(p)
        if local is not None:
            try:
                with open(local + suffix, "xb") as f:
                    f.write(data)
                    f.flush()
                    os.fsync(f.fileno())  # a full disk may only say so here (delayed allocation)
                os.link(local + suffix, local)
                return True
            except FileExistsError:
                return False
            finally:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(local + suffix)
        try:
            self.write(p + suffix, data, overwrite=False)
            return bool(self.fs.rename(self.path(p + suffix), self.path(p)))
        finally:
            with contextlib.suppress(Exception):
                self.fs.delete(self.path(p + suffix), False)

    def write_whole(self, p: str, data: bytes) -> None:
        """Write ``p`` so that it appears complete or not at all (a full disk must not leave half a file):
        a temporary sibling, renamed into place; removed when anything fails."""
        tmp = f"{p}.{uuid.uuid4().hex}.tmp"
        try:
            self.write(tmp, data)
            if self.exists(p):
                self.delete(p)
            if not self.fs.rename(self.path(tmp), self.path(p)):
                raise OSError(f"rename {tmp} -> {p} failed")
        except BaseException:
            with contextlib.suppress(Exception):
                self.fs.delete(self.path(tmp), False)
            raise

    def write(self, p: str, data: bytes, *, overwrite: bool = True) -> None:
        stream = self.fs.create(self.path(p), overwrite)
        try:
            stream.write(bytearray(data))
        finally:
            stream.close()

    def read(self, p: str) -> bytes:
        stream = self.fs.open(self.path(p))
        try:
            return bytes(self._jvm.org.apache.commons.io.IOUtils.toByteArray(stream))
        finally:
            stream.close()


def first_line(error: BaseException) -> str:
    """An exception's first line (Py4J errors carry the whole Java stack trace), or its type's name."""
    text = str(error).strip()
    return text.splitlines()[0][:300] if text else type(error).__name__
