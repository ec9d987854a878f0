"""Where the job runs: a local master or a cluster, behind one seam.

On a local master the driver and the executors share one machine whose cores
are all this run's, so the job can lay out its tasks from the core count, warm
the Python workers that will score, and count the output it just wrote with
Arrow in the driver. On a cluster none of that holds. The job asks
``environment(spark, config)`` once and calls the same methods either way; it
has no branches of its own on the kind of master.
"""

from __future__ import annotations

import logging

log = logging.getLogger(__name__)

TASK_LINES = 200_000  # on a cluster, at least one scoring task per this many lines


def is_local_master(master: str) -> bool:
    """``local``/``local[N]``/``local[N,R]``: driver and executors in one JVM whose cores are all ours
    (``local-cluster`` is a real cluster of separate executor JVMs)."""
    return master.startswith("local") and not master.startswith("local-cluster")


def warm_up_wanted(master: str, worker_reuse: str | None, setting: str) -> bool:
    """``scoring.warm_up``: 'auto' (local masters that reuse workers), 'always' or 'never'."""
    if setting != "auto":
        return setting == "always"
    return is_local_master(master) and (worker_reuse or "true").lower() == "true"


class Cluster:
    """The general case: executors on other machines, a task owns ``spark.task.cpus`` cores."""

    kind = "cluster"

    def __init__(self, services, config) -> None:
        self.config, self.services = config, services  # services: job.services, classic or Connect
        self.cores = services.parallelism()
        self.warm = warm_up_wanted(services.master, services.conf("spark.python.worker.reuse", "true"),
                                   config.scoring.warm_up)

    def tf_threads(self) -> int:
        """TensorFlow threads per scoring task (0: the task's cores)."""
        return self.config.scoring.tf_threads

    def partitions(self, lines: int) -> int:
        """Scoring partitions for ``lines`` input lines (0: keep the input's, clustered by document)."""
        s = self.config.scoring
        if self.config.input.clustered_by_doc:
            return 0
        return s.partitions or max(self.cores, -(-lines // TASK_LINES))

    def warm_up(self, spark, spec, handle, builds):
        """A started ``WarmUp`` building the model in the workers while the driver validates, or None."""
        if not self.warm:
            return None
        from skol_spark.local.warmup import WarmUp

        return WarmUp(spark, self.services, spec, handle, builds, self.warm_workers()).start()

    def warm_workers(self) -> int:
        return self.cores

    def label_counts(self, output_path: str, run_dir: str, fmt: str) -> dict | None:
        """Rows per label of the run just written, or None: Spark counts them."""
        return None


class LocalMaster(Cluster):
    """One machine: tasks get the cores (TensorFlow predicts as fast multi-threaded in one worker as in
    several single-threaded ones, but builds and holds the model once), and the output is a local directory."""

    kind = "local"

    def tf_threads(self) -> int:
        s = self.config.scoring
        if s.partitions:
            return s.tf_threads
        return s.tf_threads or max(1, self.cores // self.partitions(0))

    def partitions(self, lines: int) -> int:
        if self.config.scoring.partitions:
            return super().partitions(lines)
        return -(-self.cores // 4)  # up to 4 cores per task: one TensorFlow pool each

    def warm_workers(self) -> int:
        return min(self.cores, self.partitions(0) or self.cores)

    def label_counts(self, output_path: str, run_dir: str, fmt: str) -> dict | None:
        from skol_spark.local import readback

        directory = readback.local_path(f"{output_path.rstrip('/')}/{run_dir}")
        if fmt != "parquet" or directory is None:
            return None
        try:
            return readback.label_counts(directory)
        except readback.Declined as e:
            log.info("counting the written rows with Spark: %s", e)
        except Exception as e:  # an optimisation only: Spark's read-back is the reference
            log.warning("counting the written rows with Arrow failed (%s: %s); counting them with Spark instead",
                        type(e).__name__, e)
        return None


def environment(spark, config) -> Cluster:
    """The run's ``LocalMaster`` or ``Cluster``, on a classic or a Spark Connect session."""
    from skol_spark.job.services import services_for

    services = services_for(spark)
    return (LocalMaster if is_local_master(services.master) else Cluster)(services, config)
