"""Device-aware scoring, tested on CPU: the GPU decisions with the detection passed in, the golden check's
tolerance against an independent float64 computation, and what a real local run records in its manifest."""

from __future__ import annotations

import json
import uuid

import numpy as np
import pytest

from skol_spark.model import device
from tests.helpers import FEATURES, LABELS, WINDOW

# ---- pure decisions, detection passed in ------------------------------------------------------------


@pytest.mark.parametrize("visible, expected", [
    (None, 2), ("", 0), ("-1", 0), ("0", 1), ("1,0", 2), ("0,7,1", 1), ("GPU-3f2a,MIG-1", 2), ("x", 0)])
def test_visible_gpus_follow_cuda_visible_devices(visible, expected):
    assert device.visible_gpus(2, visible) == expected


@pytest.mark.parametrize("cores, gpus, partitions, threads, expected", [
    (16, 1, 0, 0, (1, 16)),   # one task per GPU, with the cores
    (16, 2, 0, 0, (2, 8)),
    (16, 0, 0, 0, (4, 4)),    # CPU: up to 4 cores per task
    (2, 0, 0, 0, (1, 2)),
    (16, 1, 3, 0, (3, 0)),    # the user's partitions win, tf_threads as given (0: the task's cores)
    (16, 1, 0, 2, (1, 2)),
])
def test_local_layout_is_one_task_per_gpu(cores, gpus, partitions, threads, expected):
    assert device.local_layout(cores, gpus, partitions=partitions, tf_threads=threads) == expected


def test_gpu_workers_raise_default_batches_only():
    from skol_spark.job.config import ScoringConfig

    defaults = ScoringConfig()
    assert (device.CPU_BATCH_SIZE, device.CPU_ARROW_BATCH) == (defaults.batch_size, defaults.arrow_batch_size)
    assert device.predict_batch_size(512, gpu=True) == device.GPU_BATCH_SIZE > 512
    assert device.predict_batch_size(512, gpu=False) == 512
    assert device.predict_batch_size(300, gpu=True) == 300  # set by the user: kept
    assert device.arrow_batch_size(10_000, gpus=1) == device.GPU_ARROW_BATCH
    assert device.arrow_batch_size(10_000, gpus=0) == 10_000
    assert device.arrow_batch_size(7_000, gpus=1) == 7_000


def test_gpu_scheduling_advice_names_the_missing_setting():
    assert "spark.task.resource.gpu.amount=1" in device.gpu_scheduling_advice("1", None)
    assert device.gpu_scheduling_advice("1", "1") == ""
    assert device.gpu_scheduling_advice(None, None) == ""
    assert "not a number" in device.gpu_scheduling_advice("one", None)
    assert device.task_gpu_index(["3"]) == 3 and device.task_gpu_index([]) is None


def test_the_manifest_names_keras_fused_cudnn_path_only_on_a_gpu():
    import keras

    from tests.helpers import build_bilstm

    arch = json.loads(build_bilstm().to_json())
    paths = device.recurrent_paths(arch, gpu=True)
    assert len(paths) == 2 and set(paths.values()) == {"cudnn"}  # the two directions of the BiLSTM
    assert set(device.recurrent_paths(arch, gpu=False).values()) == {"loop"}
    assert device.predictor_path("keras", paths) == "keras-cudnn"
    assert device.predictor_path("line_projection", paths) == "line_projection"
    inp = keras.Input((WINDOW, FEATURES))
    relu = keras.Model(inp, keras.layers.LSTM(4, activation="relu", return_sequences=True)(inp))
    mixed = {**paths, **device.recurrent_paths(json.loads(relu.to_json()), gpu=True)}
    assert device.predictor_path("keras", mixed) == "keras-cudnn-partly"  # relu does not qualify for cuDNN


def test_local_master_lays_out_one_task_per_detected_gpu(spark):
    from skol_spark.job.config import load_config
    from skol_spark.local import LocalMaster, environment

    config = load_config(None, ["input.path=x", "output.path=y", "model.name=m"])
    cores = spark.sparkContext.defaultParallelism
    gpu = environment(spark, config, gpus=1)
    assert isinstance(gpu, LocalMaster)
    assert (gpu.partitions(10**6), gpu.tf_threads(), gpu.warm_workers()) == (1, cores, 1)
    assert gpu.arrow_batch_size() == device.GPU_ARROW_BATCH and gpu.devices() == {"gpus": 1}
    cpu = environment(spark, config, gpus=0)
    assert (cpu.partitions(10**6), cpu.tf_threads()) == (-(-cores // 4), max(1, cores // -(-cores // 4)))
    assert cpu.arrow_batch_size() == config.scoring.arrow_batch_size


def test_scoring_turns_tf32_off_on_any_device():
    import tensorflow as tf

    tf.config.experimental.enable_tensor_float_32_execution(True)
    found = device.configure_device()
    assert not device.tf32_enabled()
    assert found == device.WorkerDevice("cpu", "CPU")  # this machine has no GPU; TensorFlow agrees


# ---- the golden check: strict enough to catch a wrong weight order, not a reordered summation ---------

@pytest.fixture(scope="module")
def golden_artifact(redis_client, closure_model):
    from skol_spark.store.model_store import ModelStore

    store = ModelStore(redis_client, prefix=f"t{uuid.uuid4().hex[:8]}")
    return store.load("golden", store.publish(closure_model, "golden", labels=LABELS, stride=3))


def golden_diff(artifact, predict) -> float:
    from skol_spark.model.artifact import golden_inputs

    golden = artifact.manifest["golden"]
    x = golden_inputs(int(golden["seed"]), artifact.window_size, artifact.feature_size)
    return float(np.max(np.abs(np.asarray(predict(x), np.float64) - np.asarray(golden["outputs"]))))


def test_another_summation_order_passes_the_golden_check_with_a_wide_margin(golden_artifact, closure_model):
    """float64 numpy (another order and precision than any float32 kernel, cuDNN's included) and the line
    projection (another order of x·K) stay two orders of magnitude inside the tolerance."""
    from benchmarks.numerics import reference_predict
    from skol_spark.model.artifact import GOLDEN_TOLERANCE, check_golden
    from skol_spark.model.projection import line_predictor

    for predict in (reference_predict(closure_model), reference_predict(closure_model, dtype=np.float32),
                    line_predictor(closure_model, gpu=False)):
        check_golden(golden_artifact, predict, where="test")
        assert golden_diff(golden_artifact, predict) <= GOLDEN_TOLERANCE / 100


def test_a_wrong_weight_order_fails_the_golden_check(golden_artifact, closure_model):
    """The two directions' weights exchanged: same shapes, so Keras accepts them silently."""
    from benchmarks.numerics import swapped_directions
    from skol_spark.errors import EnvironmentMismatchError
    from skol_spark.model.artifact import check_golden
    from skol_spark.model.builder import make_predict_fn, rebuild_model

    model = rebuild_model(golden_artifact)
    model.set_weights(swapped_directions(closure_model))
    with pytest.raises(EnvironmentMismatchError, match="golden outputs differ"):
        check_golden(golden_artifact, make_predict_fn(model), where="test")
    assert golden_diff(golden_artifact, make_predict_fn(model)) > 100 * 1e-5


def test_an_old_keras_gate_activation_fails_the_golden_check(golden_artifact, closure_model):
    """A different Keras on the executors: the LSTM gates as Keras < 2.3 computed them by default."""
    from benchmarks.numerics import reference_predict
    from skol_spark.errors import EnvironmentMismatchError
    from skol_spark.model.artifact import check_golden

    with pytest.raises(EnvironmentMismatchError, match="golden outputs differ"):
        check_golden(golden_artifact, reference_predict(closure_model, recurrent_activation="hard_sigmoid"),
                     where="test")


def test_tf32_rounding_moves_the_benchmark_model_beyond_the_tolerance_which_is_why_scoring_turns_it_off():
    """Products' inputs rounded to TF32's 10-bit mantissa (Ampere/Hopper GPUs by default) on the benchmark's
    BiLSTM (1,000 features, 128 units): beyond 1e-5, while float64 stays far inside it. (On the tests' tiny
    model TF32 rounding stays inside the tolerance: short dot products.)"""
    from benchmarks import workload
    from benchmarks.numerics import reference_predict, rounded
    from skol_spark.model.artifact import GOLDEN_TOLERANCE, golden_inputs
    from skol_spark.model.builder import make_predict_fn

    assert rounded(np.float32([1 + 2**-12, 1 + 2**-10]), 10).tolist() == [1.0, 1 + 2**-10]
    model = workload.build_model()
    x = golden_inputs(20240521, workload.WINDOW, workload.FEATURES)
    expected = make_predict_fn(model)(x)  # float32, as at publish

    def diff(predict) -> float:
        return float(np.max(np.abs(predict(x) - expected)))

    assert diff(reference_predict(model)) <= GOLDEN_TOLERANCE / 10
    assert diff(reference_predict(model, dtype=np.float32, mantissa_bits=10)) > GOLDEN_TOLERANCE


# ---- what a real local run records ---------------------------------------------------------------------

def test_the_manifest_says_which_device_precision_and_tolerance_scored(spark, redis_server, golden_artifact,
                                                                        closure_model, tmp_path):
    from skol_spark.job.config import load_config
    from skol_spark.job.run import run_job
    from skol_spark.model.artifact import GOLDEN_TOLERANCE
    from tests import helpers as jobkit

    docs = jobkit.make_documents("dev", 6, seed=3)
    lines = jobkit.write_input(tmp_path / "in" / "part.parquet", docs)
    config = load_config(None, [
        f"redis.url={redis_server.url}", "model.name=golden", "model.version=1", f"input.path={tmp_path / 'in'}",
        f"output.path={tmp_path / 'out'}", "output.report=false", "job.progress=false", "scoring.batch_size=7"])
    result = run_job(spark, config, artifact=golden_artifact)

    jobkit.assert_matches_reference(jobkit.read_output(tmp_path / "out"),
                                    jobkit.reference_scores(closure_model, docs, stride=3))
    with open(result.manifest_path.replace("file:", "", 1)) as f:
        scoring = json.load(f)["scoring"]
    assert scoring["devices"] == {"gpus": 0}
    workers = [w for w in scoring["workers"] if w["job"] == "scoring"]
    assert 1 <= sum(w["tasks"] for w in workers) <= scoring["partitions"]
    for w in workers:
        assert (w["device"], w["tf32"], w["golden_tolerance"]) == ("CPU", False, GOLDEN_TOLERANCE)
        assert w["predictor"] == "line_projection" and w["batch_size"] == 7  # CPU keeps the batch it was given
        assert w["host"]
    assert scoring["model_builds"] == sum(w["builds"] for w in scoring["workers"])
    assert lines == result.rows_written
