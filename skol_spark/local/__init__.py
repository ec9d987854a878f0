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
GPU_CONF = ("spark.executor.resource.gpu.amount", "spark.task.resource.gpu.amount")


def is_local_master(master: str) -> bool:
    """``local``/``local[N]``/``local[N,R]``: driver and executors in one JVM whose cores are all ours
    (``local-cluster`` is a real cluster of separate executor JVMs)."""
    return master.startswith("local") and not master.startswith("local-cluster")


def warm_up_wanted(master: str, worker_reuse: str | None, setting: str) -> bool:
    """``scoring.warm_up``: 'auto' (local masters that reuse workers), 'always' or 'never'."""
    if setting != "auto":
        return setting == "always"
    return is_local_master(master) and (worker_reuse or "true").lower() == "true"


def session_conf(master: str, conf: dict[str, str], *, class_archive: str = "auto") -> dict[str, str]:
    """Settings for a session this package starts on ``master``: a local JVM maps the class archive that
    ``skol-spark jvm-archive`` recorded, if any (the caller's own Java options come after, so they win)."""
    if not is_local_master(master):
        return dict(conf)
    from skol_spark.local.jvm_archive import session_java_options

    options = (session_java_options(class_archive), conf.get("spark.driver.extraJavaOptions", ""))
    if not any(options):
        return dict(conf)
    return {**conf, "spark.driver.extraJavaOptions": " ".join(x for x in options if x)}


class Cluster:
    """The general case: executors on other machines, a task owns ``spark.task.cpus`` cores."""

    kind = "cluster"

    def __init__(self, services, config, *, gpus: int | None = None) -> None:
        self.config, self.services = config, services  # services: job.services, classic or Connect
        self.cores = services.parallelism()
        self.warm = warm_up_wanted(services.master, services.conf("spark.python.worker.reuse", "true"),
                                   config.scoring.warm_up)
        self.gpu_conf = {k: services.conf(k) for k in GPU_CONF if services.conf(k) is not None}
        self.gpus = self.detect_gpus() if gpus is None else gpus

    def detect_gpus(self) -> int:
        """GPUs per executor as Spark schedules them (``spark.executor.resource.gpu.amount``); warns when
        tasks do not ask for one (``device.gpu_scheduling_advice``)."""
        from skol_spark.model.device import gpu_scheduling_advice

        advice = gpu_scheduling_advice(self.gpu_conf.get(GPU_CONF[0]), self.gpu_conf.get(GPU_CONF[1]))
        if advice:
            log.warning("%s", advice)
        try:
            return int(float(self.gpu_conf.get(GPU_CONF[0]) or 0))
        except ValueError:
            return 0

    def arrow_batch_size(self) -> int:
        """Lines per Arrow batch (``device.arrow_batch_size``: larger where GPUs score)."""
        from skol_spark.model.device import arrow_batch_size

        return arrow_batch_size(self.config.scoring.arrow_batch_size, gpus=self.gpus)

    def devices(self) -> dict:
        """For the run manifest: GPUs the layout counted on and Spark's GPU settings (the workers' own view
        is in ``scoring.workers``)."""
        return {"gpus": self.gpus, **self.gpu_conf}

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
    """One machine: tasks get the cores (one worker builds and holds the model once and runs a predict per
    core, ``scoring.predict_streams``), and the output is a local directory."""

    kind = "local"

    def detect_gpus(self) -> int:
        """GPUs on this machine (``device.host_gpus``: the driver's /proc view, no TensorFlow import)."""
        from skol_spark.model.device import host_gpus

        return host_gpus()

    def tf_threads(self) -> int:
        return self._layout()[1]

    def partitions(self, lines: int) -> int:
        if self.config.scoring.partitions:
            return super().partitions(lines)
        return self._layout()[0]  # one task per GPU, else up to 4 cores per task: one TensorFlow pool each

    def _layout(self) -> tuple[int, int]:
        from skol_spark.model.device import local_layout

        s = self.config.scoring
        return local_layout(self.cores, self.gpus, partitions=s.partitions, tf_threads=s.tf_threads)

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


def environment(spark, config, *, gpus: int | None = None) -> Cluster:
    """The run's ``LocalMaster`` or ``Cluster``, on a classic or a Spark Connect session; ``gpus``: the
    detection, passed in (tests), else made."""
    from skol_spark.job.services import services_for

    services = services_for(spark)
    return (LocalMaster if is_local_master(services.master) else Cluster)(services, config, gpus=gpus)
