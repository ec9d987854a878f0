"""``ConnectServices``: the job's driver-side services on a Spark Connect session (see ``job.services``).

- The model: in the scoring function's closure up to
  ``job.connect_inline_model_mb``, else as a session artifact file read once
  per Python worker (``model.artifact_file``). A closure travels inside the
  query plan, one gRPC message the server caps at
  ``spark.connect.grpc.maxInboundMessageSize`` (128 MiB by default), and the
  driver's JVM serializes it again into every task; a session artifact is
  streamed in small chunks and fetched once per executor.
- Model builds: no accumulators; the scoring tasks flag the first row they
  scored with a model they built, and an ``Observation`` sums the flags
  during the write (no extra Spark job).
- Files: ``LocalFS`` on paths the driver reaches; anything else is refused
  before scoring (``check_sinks``), naming the alternative.
- Cancelling: operation tags (``addTag`` / ``interruptTag``);
  progress: ``registerProgressHandler``.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import tempfile
import threading
import uuid
from typing import Any, Callable, Iterator

from skol_spark.errors import ConfigError
from skol_spark.job.localfs import LocalFS, local_path
from skol_spark.job.shipment import Shipment
from skol_spark.scoring.partition import BUILT_COLUMN

MiB = 1024 * 1024
log = logging.getLogger(__name__)


class ObservedBuilds:
    """Connect: builds counted from flags the scoring tasks put in a column, summed by an ``Observation``."""

    flag_column = True
    tasks = None  # executors get no counter

    def __init__(self) -> None:
        self.observation = None
        self.warm = 0

    def frame(self, df):
        """``df`` (with the flag column) observed and without the column: what is written."""
        from pyspark.sql import Observation, functions as F

        self.observation = Observation(f"skol-model-builds-{uuid.uuid4().hex[:8]}")
        return df.observe(self.observation, F.sum(BUILT_COLUMN).alias("builds")).drop(BUILT_COLUMN)

    def warmed(self, built: int) -> None:
        self.warm += built

    def total(self) -> int | str:
        if self.observation is None:
            return self.warm
        try:
            observed = self.observation.get.get("builds")
        except Exception:  # no metrics came back with the write: say so, do not guess
            return "unknown"
        return self.warm + int(observed or 0)

    def workers(self) -> list | str:
        """Connect has no accumulators: the workers' facts are not gathered."""
        return "unknown on Spark Connect"


class ConnectServices:
    kind = "connect"

    def __init__(self, spark) -> None:
        self.spark = spark

    def conf(self, key: str, default: str | None = None) -> str | None:
        try:
            return self.spark.conf.get(key, default)
        except Exception:  # a setting the service does not expose (e.g. Databricks serverless)
            return default

    def set_conf(self, key: str, value: str) -> None:
        """A tuning setting the service refuses (serverless allows a few) is logged, not fatal."""
        try:
            self.spark.conf.set(key, value)
        except Exception as e:
            log.warning("the Spark Connect service did not take %s=%s (%s); running with its own value",
                        key, value, str(e).splitlines()[0][:200] if str(e) else type(e).__name__)

    def facts(self) -> dict[str, Any]:
        return {"session": self.kind, "application_id": self.conf("spark.app.id", "") or "",
                "master": self.master, "version": self.spark.version}

    @property
    def master(self) -> str:
        return self.conf("spark.master", "") or ""

    def parallelism(self) -> int:
        """Task slots: from a local master's ``local[N]``, else the configured parallelism."""
        match = re.fullmatch(r"local\[(\d+|\*)(?:,\d+)?\]", self.master)
        if match:
            return (os.cpu_count() or 1) if match.group(1) == "*" else int(match.group(1))
        for key in ("spark.default.parallelism", "spark.sql.shuffle.partitions"):
            value = self.conf(key, "") or ""
            if value.isdigit() and int(value) > 0:
                return int(value)
        return 8

    def check_sinks(self, config) -> None:
        """Refuse, before scoring, a path sink whose staging, atomic publish and lock need Hadoop's API."""
        out = config.output
        if out.path:
            check_shared_path(self.spark, out.path, "output.path")
        if out.manifest_path and local_path(out.manifest_path) is None:
            raise ConfigError(
                f"output.manifest_path {out.manifest_path}: a Spark Connect session writes the run manifest "
                "with the driver's file system; use an absolute local path (/Volumes/... on Databricks)")

    def ship(self, artifact, *, inline_max_bytes: int = 0) -> Shipment:
        from skol_spark.model.artifact_file import InlineArtifact

        size = len(artifact.weights) + len(artifact.architecture)
        if size <= inline_max_bytes:
            return Shipment(InlineArtifact(artifact), "closure")
        return Shipment(add_artifact_file(self.spark, artifact), "session-artifact")

    def build_counter(self) -> ObservedBuilds:
        return ObservedBuilds()

    def fs(self, path: str) -> LocalFS:
        return LocalFS()

    @contextlib.contextmanager
    def job_scope(self, tag: str, description: str) -> Iterator[None]:
        """Operations this thread starts inside carry ``tag`` (Connect tags are thread-local)."""
        self.spark.addTag(tag)
        try:
            yield
        finally:
            self.spark.removeTag(tag)

    def cancel(self, tag: str) -> None:
        self.spark.interruptTag(tag)

    def cancel_all(self) -> None:
        self.spark.interruptAll()

    def thread(self, target: Callable[[], None], name: str) -> threading.Thread:
        return threading.Thread(target=target, name=name, daemon=True)

    @contextlib.contextmanager
    def task_progress(self) -> Iterator[Callable[[], tuple[int, int]]]:
        """A callable -> (finished, total) tasks of the running operation, as its progress handler last said."""
        latest = [(0, 0)]

        def handler(stages, inflight_tasks, operation_id, done, **_):
            latest[0] = (sum(s.num_completed_tasks for s in stages), sum(s.num_tasks for s in stages))

        if not hasattr(self.spark, "registerProgressHandler"):  # PySpark < 4: no progress, the job runs on
            yield lambda: latest[0]
            return
        self.spark.registerProgressHandler(handler)
        try:
            yield lambda: latest[0]
        finally:
            self.spark.removeProgressHandler(handler)


def add_artifact_file(spark, artifact):
    """Write the artifact to a temporary file, add it to the session, return its ``ArtifactFile`` handle."""
    from skol_spark.errors import JobFailedError
    from skol_spark.model.artifact_file import ArtifactFile, file_name, write_artifact_file

    name = file_name(artifact)
    with tempfile.TemporaryDirectory(prefix="skol-ship-") as tmp:
        path = os.path.join(tmp, name)
        write_artifact_file(artifact, path)
        try:
            spark.addArtifacts(path, file=True)
        except Exception as e:
            if "ARTIFACT_ALREADY_EXISTS" not in str(e) and "already exists" not in str(e):
                raise JobFailedError(f"could not add the model ({os.path.getsize(path) / MiB:.0f} MiB) to the "
                                     f"Spark Connect session as an artifact: {str(e).splitlines()[0][:300]}. "
                                     "Nothing was written") from None
    return ArtifactFile(name)


def check_shared_path(spark, path: str, key: str) -> None:
    """``path`` is local to the driver and Spark writes the same directory there; else ConfigError.

    The driver stages, publishes and locks with ``os`` calls, so Spark's
    writers and the driver must see one file system: a probe file the driver
    writes beside the output is read back through Spark.
    """
    local = local_path(path)
    if local is None:
        raise ConfigError(
            f"{key} {path}: on a Spark Connect session the driver stages, publishes and locks a path sink "
            "through its own file system, and this path is not a local absolute path. Use output.table (a "
            "Delta table commits atomically), or a path the driver reaches locally (/Volumes/<catalog>/"
            "<schema>/<volume>/... on Databricks)")
    parent = os.path.dirname(local.rstrip("/")) or "/"
    token = uuid.uuid4().hex
    probe = os.path.join(parent, f"skol-probe-{token}.txt")  # not hidden: Spark skips names starting with . or _
    try:
        os.makedirs(parent, exist_ok=True)
        with open(probe, "w") as f:
            f.write(token)
    except OSError as e:
        raise ConfigError(f"{key} {path}: the driver cannot write beside it ({e}); on a Spark Connect session "
                          "the driver must reach a path sink through its own file system") from None
    try:
        seen = [r[0] for r in spark.read.text(probe).collect()]
    except Exception as e:  # the path does not exist for Spark
        log.info("Spark could not read the probe file %s: %s", probe, str(e).splitlines()[0][:300] if str(e) else e)
        seen = []
    finally:
        os.remove(probe)
    if seen != [token]:
        raise ConfigError(
            f"{key} {path}: Spark does not see the file the driver wrote beside it, so the driver and the "
            "Spark Connect server are on different file systems and staging could not be published "
            "atomically. Use output.table, or a path both see (/Volumes/... on Databricks)")
