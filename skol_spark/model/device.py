"""Where a Python worker scores: CPU or GPU, and what follows from it.

Every decision is a pure function of what was detected, so that CPU-only
machines (CI) test the GPU branches by passing the detection in. The only
functions that look at the machine are ``host_gpus`` (the driver's cheap hint
for laying out a local master, no TensorFlow import) and ``configure_device``
/ ``worker_device`` (TensorFlow's own view, in the worker that builds).

Numerics, the reason this module exists: TensorFlow runs float32 matrix
products on Ampere and newer GPUs as TensorFloat-32 by default (inputs
rounded to a 10-bit mantissa), which can move a large model's outputs beyond
the golden check's tolerance. Scoring turns TF32 off everywhere, so that
float32 means float32 on every device and the golden check keeps one
tolerance; what remains between devices is summation order (cuDNN's fused
LSTM, a GPU's matmul tiling): float32 rounding noise, well inside it
(measurements and the argument: docs/gpu.md).
"""

from __future__ import annotations

import functools
import logging
import os
from dataclasses import dataclass
from typing import Any, Iterable, Sequence

log = logging.getLogger(__name__)

CPU_BATCH_SIZE = 512  # scoring.batch_size's default (tested equal to the config's)
GPU_BATCH_SIZE = 2048  # windows per predict call where the default is left on a GPU worker
CPU_ARROW_BATCH = 10_000  # scoring.arrow_batch_size's default
GPU_ARROW_BATCH = 50_000  # lines per Arrow batch: ~2,000 windows at stride 25, one GPU batch
NVIDIA_PROC = "/proc/driver/nvidia/gpus"


@dataclass(frozen=True)
class WorkerDevice:
    """What TensorFlow in one Python worker scores on (``kind``: ``gpu`` or ``cpu``)."""

    kind: str
    name: str  # e.g. "GPU:0 NVIDIA H100 80GB HBM3" or "CPU"
    memory_growth: bool = False

    @property
    def gpu(self) -> bool:
        return self.kind == "gpu"


def visible_gpus(present: int, cuda_visible_devices: str | None) -> int:
    """GPUs a process started with ``CUDA_VISIBLE_DEVICES`` can use, of ``present`` on the host.

    Unset: all of them. Empty or ``-1``: none. Otherwise CUDA takes entries
    up to the first invalid one (an index out of range or negative);
    ``GPU-``/``MIG-`` UUIDs count as valid.
    """
    if cuda_visible_devices is None:
        return present
    count = 0
    for entry in cuda_visible_devices.split(","):
        entry = entry.strip()
        if entry.startswith(("GPU-", "MIG-")):
            count += 1
            continue
        if not entry.lstrip("-").isdigit() or not 0 <= int(entry) < present:
            break
        count += 1
    return min(count, present)


def host_gpus() -> int:
    """NVIDIA GPUs this process may use, from the driver's /proc entries (no TensorFlow import).

    A hint for laying out a local master's tasks; the worker's TensorFlow is
    the judge of what actually scores (``worker_device``)."""
    try:
        present = len(os.listdir(NVIDIA_PROC))
    except OSError:
        return 0
    return visible_gpus(present, os.environ.get("CUDA_VISIBLE_DEVICES"))


def local_layout(cores: int, gpus: int, *, partitions: int = 0, tf_threads: int = 0) -> tuple[int, int]:
    """``(scoring tasks, TensorFlow threads per task)`` on a local master with ``cores`` and ``gpus``.

    With GPUs: one task per GPU (each task's TensorFlow drives one device; more
    tasks would share it), its threads the cores' share. Without: up to 4 cores
    per task, one TensorFlow pool each. Set values (``scoring.partitions``,
    ``scoring.tf_threads``) win; a partition count the user set keeps
    ``tf_threads`` as given (0: the task's cores).
    """
    if partitions:
        return partitions, tf_threads
    tasks = max(1, gpus) if gpus else -(-max(1, cores) // 4)
    return tasks, tf_threads or max(1, cores // tasks)


def predict_streams(threads: int, configured: int = 0, *, gpu: bool) -> int:
    """Predicts a scoring task runs at once, each on ``threads / streams`` TensorFlow threads.

    On a CPU, auto (0) is one single-threaded predict per core: a recurrent
    model's small per-step products scale poorly across threads, and while one
    predict waits on Python (decoding, windowing, Arrow) another computes. On a
    GPU one predict drives the device. A set value wins, up to ``threads``.
    """
    threads = max(1, threads)
    if configured:
        return max(1, min(configured, threads))
    return 1 if gpu else threads


def tensorflow_sees_gpu() -> bool:
    """Whether this process's TensorFlow lists a GPU (before its runtime starts: thread pools can still be set)."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # set before the import, as configure_tensorflow does
    import tensorflow as tf

    return bool(tf.config.list_physical_devices("GPU"))


def predict_batch_size(configured: int, *, gpu: bool) -> int:
    """Windows per predict call: a GPU worker raises the default (512) to ``GPU_BATCH_SIZE``; a value the
    user set is kept. Batch size changes no output: each window is predicted on its own."""
    return GPU_BATCH_SIZE if gpu and configured == CPU_BATCH_SIZE else configured


def arrow_batch_size(configured: int, *, gpus: int) -> int:
    """Lines per Arrow batch: enough for one GPU predict batch where the default is left and GPUs score."""
    return GPU_ARROW_BATCH if gpus and configured == CPU_ARROW_BATCH else configured


def gpu_scheduling_advice(executor_gpus: str | None, task_gpus: str | None) -> str:
    """A warning when executors have GPUs but tasks do not ask for one ('' when the conf is consistent).

    Without ``spark.task.resource.gpu.amount`` Spark runs as many tasks per
    executor as it has cores, each with its own TensorFlow on the same GPU."""
    try:
        has_gpus = float(executor_gpus or 0) > 0
    except ValueError:
        return f"spark.executor.resource.gpu.amount={executor_gpus!r} is not a number"
    if has_gpus and not task_gpus:
        return ("executors have GPUs (spark.executor.resource.gpu.amount) but tasks do not ask for one: set "
                "spark.task.resource.gpu.amount=1 so that each GPU scores one task at a time")
    return ""


def task_gpu_index(addresses: Sequence[str]) -> int | None:
    """The GPU Spark assigned to this task (``TaskContext.resources()['gpu'].addresses``), or None."""
    for address in addresses:
        if address.strip().isdigit():
            return int(address)
    return None


def lstm_path(config: dict[str, Any], *, gpu: bool) -> str:
    """``cudnn`` or ``loop``: how Keras (TensorFlow backend) runs a serialized LSTM layer's config.

    Keras takes the fused cuDNN kernel where TensorFlow sees a GPU and the
    layer is tanh/sigmoid, not unrolled, with a bias, without recurrent
    dropout, and ``use_cudnn`` is not False (Keras' ``cudnn_ok``).
    """
    qualifies = (config.get("use_cudnn", "auto") in ("auto", True) and config.get("activation", "tanh") == "tanh"
                 and config.get("recurrent_activation", "sigmoid") == "sigmoid"
                 and not config.get("unroll", False) and config.get("use_bias", True)
                 and not config.get("recurrent_dropout", 0.0))
    return "cudnn" if gpu and qualifies else "loop"


def recurrent_paths(architecture: dict[str, Any], *, gpu: bool) -> dict[str, str]:
    """``{LSTM layer name: cudnn | loop}`` for every LSTM in a serialized model (wrapped ones included)."""
    return {node.get("config", {}).get("name", "?"): lstm_path(node.get("config", {}), gpu=gpu)
            for node in layer_configs(architecture) if node.get("class_name") == "LSTM"}


def predictor_path(kind: str, paths: dict[str, str]) -> str:
    """The manifest's predictor: ``line_projection``, ``keras`` or ``keras-cudnn`` (every LSTM fused)."""
    if kind != "keras" or not paths:
        return kind
    return "keras-cudnn" if all(p == "cudnn" for p in paths.values()) else \
        "keras" if not any(p == "cudnn" for p in paths.values()) else "keras-cudnn-partly"


def layer_configs(node: Any) -> Iterable[dict[str, Any]]:
    """Every layer config (a dict with ``class_name``) nested anywhere in an architecture's JSON."""
    if isinstance(node, dict):
        if "class_name" in node:
            yield node
        for value in node.values():
            yield from layer_configs(value)
    elif isinstance(node, list):
        for value in node:
            yield from layer_configs(value)


def configure_device(task_gpu: int | None = None) -> WorkerDevice:
    """Set TensorFlow up for scoring in this process, before its runtime starts; -> what it scores on.

    TF32 off (float32 products in float32: the golden check means the same on
    every device); on a GPU, memory growth on (several Python workers of one
    executor may share a GPU; without it the first takes all its memory) and,
    when Spark assigned the task a GPU, only that one visible. A runtime that
    already started keeps its settings (RuntimeError, ignored), TF32 apart,
    which may change at any time.
    """
    import tensorflow as tf

    exact_float32()
    gpus = tf.config.list_physical_devices("GPU")
    if not gpus:
        return WorkerDevice("cpu", "CPU")
    growth = True
    try:
        if task_gpu is not None and task_gpu < len(gpus):
            tf.config.set_visible_devices([gpus[task_gpu]], "GPU")
        for gpu in tf.config.get_visible_devices("GPU"):
            tf.config.experimental.set_memory_growth(gpu, True)
    except RuntimeError:
        growth = all(tf.config.experimental.get_memory_growth(g) for g in tf.config.get_visible_devices("GPU"))
    first = tf.config.get_visible_devices("GPU")[0]
    details = tf.config.experimental.get_device_details(first)
    index = first.name.rsplit(":", 1)[-1]
    return WorkerDevice("gpu", f"GPU:{index} {details.get('device_name', '')}".strip(), memory_growth=growth)


@functools.lru_cache(maxsize=1)
def worker_device() -> WorkerDevice:
    """This process's device, configured once (the first model build in a Python worker calls it)."""
    return configure_device(_task_gpu())


def _task_gpu() -> int | None:
    try:
        from pyspark import TaskContext
    except ImportError:
        return None
    ctx = TaskContext.get()
    resources = ctx.resources() if ctx is not None else {}
    return task_gpu_index(resources["gpu"].addresses) if "gpu" in resources else None


def exact_float32() -> None:
    """TF32 off in this process: float32 products in float32 (publish, golden check and scoring alike)."""
    import tensorflow as tf

    tf.config.experimental.enable_tensor_float_32_execution(False)


def tf32_enabled() -> bool:
    import tensorflow as tf

    return bool(tf.config.experimental.tensor_float_32_execution_enabled())
