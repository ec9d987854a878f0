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


import logging
from dataclasses import dataclass

from skol_spark.errors import ConfigError, JobFailedError
from skol_spark.job.hadoop_fs import HadoopFS, first_line
from skol_spark.job.output_lock import INCOMPLETE_LOCK_SECONDS, STALE_LOCK_SECONDS, OutputLock, discard_staging

__all__ = ["HadoopFS", "OutputLock", "OutputPaths", "STALE_LOCK_SECONDS", "INCOMPLETE_LOCK_SECONDS", "check_mode",
           "discard_staging", "publish", "read_published_run", "recover", "write_dynamic_overwrite",
           "write_staged", "write_table"]

log = logging.getLogger(__name__)



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

    def _sibling(self, name: str) -> str:
        """``name`` beside the output (``/name`` for an output at the root: ``//`` would read as a host)."""
        parent, base = self._parent_base
        return f"{parent.rstrip('/')}/{name.format(base=base, run=self.run_id)}"

    @property
    def staging(self) -> str:
        return self._sibling(".{base}.skol-staging-{run}")

    @property
    def old(self) -> str:
        return self._sibling(".{base}.skol-old-{run}")

    @property
    def lock(self) -> str:
        return self._sibling(".{base}.skol-lock")

    @property
    def runs(self) -> str:
        """Where run manifests and reports go: beside the output, never inside it."""
        return self._sibling("{base}_runs")

    def run_dir(self) -> str:
        return f"{self.runs}/{self.run_id}"

    @property
    def partition_dir(self) -> str:
        return f"run_id={self.run_id}"

def recover(fs: HadoopFS, paths: OutputPaths) -> None:
    """Repair what a killed run left: restore a moved-aside output, drop stale staging.

    A restore that fails stops the run (writing on would publish beside, and
    later delete, the earlier output); stale directories that cannot be
    removed are only reported.
    """
    parent, base = split_path(paths.output)
    for name in fs.list(parent):
        full = f"{parent}/{name}"
        if name.startswith(f".{base}.skol-old-") and not fs.exists(paths.output):
            log.warning("restoring %s from %s (a previous run died while publishing)", paths.output, full)
            try:
                fs.rename(full, paths.output)
            except Exception as e:
                raise JobFailedError(f"{paths.output} was moved aside to {full} by a run that died while "
                                     f"publishing, and restoring it failed ({first_line(e)}); rename it back "
                                     "by hand, then rerun. Nothing was written") from None
        elif name.startswith(f".{base}.skol-staging-") or name.startswith(f".{base}.skol-old-"):
            log.warning("removing stale %s left by a killed run", full)
            _after_publish(f"remove the stale {full}", fs.remove, full)


def _after_publish(what: str, step, *args) -> None:
    """Run a cleanup step whose failure must not fail the run: logged as a warning (the run manifest
    records warnings)."""
    try:
        step(*args)
    except Exception as e:
        log.warning("could not %s: %s (the output is complete; remove it by hand or let the next run do it)",
                    what, first_line(e))


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
    """Move the staged run into place (see module docstring for the per-mode steps).

    One rename is the commit: before it, a failure raises JobFailedError and
    the earlier output is as it was; after it, the rows are published, and
    what is left (removing the staging directory or the moved-aside earlier
    output) is cleanup whose failure is a warning: failing a published run
    would invite a retry that writes every row a second time.
    """
    staged_run = f"{paths.staging}/{paths.partition_dir}"
    try:
        if not fs.exists(staged_run):  # an empty result writes no partition directory
            fs.mkdirs(staged_run)
        if mode in ("append", "incremental"):
            fs.mkdirs(paths.output)
            fs.rename(staged_run, f"{paths.output}/{paths.partition_dir}")
        else:
            fs.write(f"{paths.staging}/_SUCCESS", b"")  # marked before the rename: published with the rows
            _swap_in(fs, paths)
    except JobFailedError:
        raise
    except Exception as e:
        raise JobFailedError(f"publishing {paths.output} failed ({first_line(e)}); nothing was published and "
                             "earlier output is unchanged") from None
    if mode in ("append", "incremental"):
        _after_publish(f"remove the staging directory {paths.staging}", fs.remove, paths.staging)
    elif fs.exists(paths.old):
        _after_publish(f"remove the earlier output, moved aside to {paths.old}", fs.remove, paths.old)


def _swap_in(fs: HadoopFS, paths: OutputPaths) -> None:
    """Move the earlier output aside, the staging directory into its place; put it back if that fails."""
    had_old = fs.exists(paths.output)
    if had_old:
        fs.rename(paths.output, paths.old)
    try:
        fs.rename(paths.staging, paths.output)
    except Exception:
        if had_old:
            fs.rename(paths.old, paths.output)  # if this fails too, the next run's recover() restores it
        raise


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
