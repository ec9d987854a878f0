"""Writing output so that a failed or killed run never leaves half a result.

Layout: every run's rows land under ``<output>/run_id=<run id>/`` (plus any
``partition_by`` directories below). A run writes to a hidden staging
directory beside the output and then publishes with directory renames:

- ``error`` / ``overwrite``: stage the whole result, then swap it in
  (``overwrite`` moves the old output aside first and deletes it only after
  the new one is in place: a crash in between is repaired by the next run);
- ``append`` / ``incremental``: stage, then rename one ``run_id=...``
  directory into the output: the batch appears at once or not at all.

Renames are atomic on HDFS and local filesystems; on object stores (S3, GCS)
they are copies: use a table format with atomic commits (Delta) or a
``table`` sink there. A lock file beside the output stops two runs of the
same batch from writing at once. All file operations go through Hadoop's
FileSystem API so any URI Spark can write works.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import time
from dataclasses import dataclass

from skol_spark.errors import ConfigError, OutputLockedError

log = logging.getLogger(__name__)

STALE_LOCK_SECONDS = 24 * 3600


class HadoopFS:
    """A tiny wrapper over ``org.apache.hadoop.fs.FileSystem`` for one path's filesystem."""

    def __init__(self, spark, path: str) -> None:
        jvm = spark.sparkContext._jvm
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

    def delete(self, p: str) -> None:
        self.fs.delete(self.path(p), True)

    def mkdirs(self, p: str) -> None:
        self.fs.mkdirs(self.path(p))

    def list(self, p: str) -> list[str]:
        if not self.exists(p):
            return []
        return [str(s.getPath().getName()) for s in self.fs.listStatus(self.path(p))]

    def create_new(self, p: str, data: bytes) -> bool:
        """Create a file only if absent: the lock primitive; False when it exists.

        Hadoop's ``createNewFile`` checks, then creates: two racing runs can
        both pass the check (on a local disk both then hold the lock) or one
        fails with FileAlreadyExistsException. So a local file is created
        with ``O_EXCL`` (atomic in the kernel), and other filesystems with
        ``create(overwrite=false)``, which the HDFS NameNode decides atomically.
        """
        if self.fs.getScheme() == "file":
            try:
                fd = os.open(str(self.fs.pathToFile(self.path(p)).getAbsolutePath()),
                             os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
            except FileExistsError:
                return False
            with os.fdopen(fd, "wb") as f:
                f.write(data)
            return True
        from py4j.protocol import Py4JJavaError

        try:
            self.write(p, data, overwrite=False)
        except Py4JJavaError as e:
            if e.java_exception.getClass().getName().endswith("FileAlreadyExistsException"):
                return False
            raise
        return True

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


def split_path(output: str) -> tuple[str, str]:
    output = output.rstrip("/")
    if "/" not in output:
        return ".", output
    parent, base = output.rsplit("/", 1)
    return parent or "/", base


@dataclass(frozen=True)
class OutputPaths:
    output: str
    run_id: str

    @property
    def _parent_base(self) -> tuple[str, str]:
        return split_path(self.output)

    @property
    def staging(self) -> str:
        parent, base = self._parent_base
        return f"{parent}/.{base}.skol-staging-{self.run_id}"

    @property
    def old(self) -> str:
        parent, base = self._parent_base
        return f"{parent}/.{base}.skol-old-{self.run_id}"

    @property
    def lock(self) -> str:
        parent, base = self._parent_base
        return f"{parent}/.{base}.skol-lock"

    @property
    def runs(self) -> str:
        """Where run manifests and reports go: beside the output, never inside it."""
        parent, base = self._parent_base
        return f"{parent}/{base}_runs"

    def run_dir(self) -> str:
        return f"{self.runs}/{self.run_id}"

    @property
    def partition_dir(self) -> str:
        return f"run_id={self.run_id}"


class OutputLock:
    """An exclusive lock file beside the output: holder, host, pid and start time inside."""

    def __init__(self, fs: HadoopFS, paths: OutputPaths) -> None:
        self.fs, self.paths, self.held = fs, paths, False

    def acquire(self) -> None:
        parent, _ = split_path(self.paths.output)
        self.fs.mkdirs(parent)
        body = json.dumps({"run_id": self.paths.run_id, "host": socket.gethostname(), "pid": os.getpid(),
                           "started": time.time()}).encode()
        if self.fs.create_new(self.paths.lock, body):
            self.held = True
            return
        holder = self._holder()
        if holder and (time.time() - float(holder.get("started", 0)) > STALE_LOCK_SECONDS or _holder_died(holder)):
            log.warning("breaking a stale output lock held by run %s since %s (host %s, pid %s no longer running "
                        "or lock too old)", holder.get("run_id"), time.ctime(float(holder.get("started", 0))),
                        holder.get("host"), holder.get("pid"))
            self.fs.delete(self.paths.lock)
            if self.fs.create_new(self.paths.lock, body):
                self.held = True
                return
        raise OutputLockedError(
            f"output {self.paths.output} is locked by run {holder.get('run_id', '?') if holder else '?'} "
            f"(host {holder.get('host', '?') if holder else '?'}, pid {holder.get('pid', '?') if holder else '?'}). "
            f"Two runs must not write the same output: wait for it, or if it died, delete {self.paths.lock}")

    def _holder(self) -> dict | None:
        try:
            return json.loads(self.fs.read(self.paths.lock) or b"{}")
        except Exception:
            return None

    def release(self) -> None:
        if self.held:
            self.fs.delete(self.paths.lock)
            self.held = False


def _holder_died(holder: dict) -> bool:
    """True when the lock's driver ran on this host and its process is gone (a killed run)."""
    if holder.get("host") != socket.gethostname():
        return False
    try:
        os.kill(int(holder.get("pid", 0)), 0)
    except ProcessLookupError:
        return True
    except (PermissionError, ValueError, TypeError, OSError):
        return False
    return False


def recover(fs: HadoopFS, paths: OutputPaths) -> None:
    """Repair what a killed run left: restore a moved-aside output, drop stale staging."""
    parent, base = split_path(paths.output)
    for name in fs.list(parent):
        full = f"{parent}/{name}"
        if name.startswith(f".{base}.skol-old-") and not fs.exists(paths.output):
            log.warning("restoring %s from %s (a previous run died while publishing)", paths.output, full)
            fs.rename(full, paths.output)
        elif name.startswith(f".{base}.skol-staging-") or name.startswith(f".{base}.skol-old-"):
            log.warning("removing stale %s left by a killed run", full)
            fs.delete(full)


def check_mode(fs: HadoopFS, output: str, mode: str) -> None:
    """``error`` mode refuses an existing output before any work starts."""
    if mode == "error" and fs.exists(output) and any(not n.startswith(("_", ".")) for n in fs.list(output)):
        raise ConfigError(f"output {output} already exists and output.mode is 'error': choose another path, or "
                          "set output.mode to overwrite, append or incremental")


# Formats whose output is a directory of files, one set per write: a run's partition directory can be
# written on its own. Others (a Delta table's log sits at its root) keep Spark's partitioned write.
FILE_FORMATS = ("parquet", "orc", "avro", "json")  # csv and text cannot hold arrays: refused by config


def write_staged(df, paths: OutputPaths, *, fmt: str, partition_by: tuple[str, ...], fs=None) -> None:
    """Write the result under the staging directory, one ``run_id=`` partition.

    A file format is written straight into ``run_id=<id>/`` instead of through
    ``partitionBy("run_id")``: Spark sorts a partitioned write's rows by its
    partition columns, and with one run_id per run that sort only held every
    scored row back (in the JVM's memory) until the last prediction, then
    wrote them all after it. Written directly, batches are encoded while the
    model predicts the next ones. The files are the same: a partition
    column is never stored in them.
    """
    spark = df.sparkSession
    staged_run = f"{paths.staging}/{paths.partition_dir}"
    if fmt in FILE_FORMATS:
        writer = df.drop("run_id").write.format(fmt).mode("overwrite")
        if partition_by:
            writer = writer.partitionBy(*partition_by)
        writer.save(staged_run)
    else:
        df.write.format(fmt).mode("overwrite").partitionBy("run_id", *partition_by).save(paths.staging)
    fs = fs or HadoopFS(spark, paths.staging)  # or job.localfs.LocalFS on a Spark Connect session
    fs.delete(f"{staged_run}/_SUCCESS")  # publish() marks the output itself
    if not fs.exists(staged_run) or not any(not n.startswith(("_", ".")) for n in fs.list(staged_run)):
        # An empty result may write no partition directory or no file, and a directory without files has
        # no schema ("Unable to infer schema"): write one empty file that carries the columns.
        spark.createDataFrame([], df.drop("run_id").schema).coalesce(1).write.format(fmt).mode("overwrite") \
            .save(staged_run)


def read_published_run(spark, paths: OutputPaths, *, fmt: str, schema=None):
    """This run's published rows (file formats written by ``write_staged``), read from its own ``run_id=``
    directory.

    The manifest's counts and the report are read back after every run. An
    append or incremental output gathers one directory per run, and reading
    the whole output filtered by run_id makes Spark list (and, for a schema,
    sample) every earlier run's files first: work that grows with the
    output's history. ``basePath`` keeps run_id (and any ``partition_by``
    columns under it) as columns, as a read of the whole output would.
    ``schema``, the scored DataFrame's (the files hold exactly it), spares
    Spark a job that infers it: a footer read for Parquet, a second pass over
    every written line for JSON.
    """
    reader = spark.read.format(fmt).option("basePath", paths.output)
    if schema is not None:
        reader = reader.schema(schema)
    return reader.load(f"{paths.output}/{paths.partition_dir}")


def publish(fs: HadoopFS, paths: OutputPaths, mode: str) -> None:
    """Move the staged run into place (see module docstring for the per-mode steps)."""
    staged_run = f"{paths.staging}/{paths.partition_dir}"
    if not fs.exists(staged_run):  # an empty result writes no partition directory
        fs.mkdirs(staged_run)
    if mode in ("append", "incremental"):
        fs.mkdirs(paths.output)
        fs.rename(staged_run, f"{paths.output}/{paths.partition_dir}")
        fs.delete(paths.staging)
        return
    fs.delete(f"{paths.staging}/_SUCCESS")
    had_old = fs.exists(paths.output)
    if had_old:
        fs.rename(paths.output, paths.old)
    fs.rename(paths.staging, paths.output)
    if had_old:
        fs.delete(paths.old)
    fs.write(f"{paths.output}/_SUCCESS", b"")


def write_dynamic_overwrite(df, output: str, *, fmt: str, partition_by: tuple[str, ...]) -> None:
    """Replace only the partitions this run writes (Spark stages and commits them itself)."""
    df.write.format(fmt).mode("overwrite").option("partitionOverwriteMode", "dynamic") \
        .partitionBy(*partition_by).save(output)


def write_table(df, table: str, *, fmt: str, mode: str, partition_by: tuple[str, ...]) -> None:
    """``saveAsTable``: the catalog's commit protocol (atomic for Delta/Iceberg tables)."""
    spark_mode = {"error": "errorifexists", "incremental": "append"}.get(mode, mode)
    writer = df.write.mode(spark_mode)
    if fmt:
        writer = writer.format(fmt)
    if partition_by:
        writer = writer.partitionBy(*partition_by)
    writer.saveAsTable(table)
