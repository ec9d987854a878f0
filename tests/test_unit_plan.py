"""The run's plan (``job/plan.py``) and the local-master seam (``skol_spark.local``): pure decisions.

No Spark here: a ``sc`` is a plain object with the three things the seam reads
(``defaultParallelism``, ``master``, ``getConf()``), and the artifact is a real
``ModelArtifact`` whose manifest is all the plan consults.
"""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from skol_spark.errors import ConfigError
from skol_spark.job.config import load_config
from skol_spark.job.plan import RunPlan, reads_input_partitions, resolve_window, trusts_clustering
from skol_spark.job.sink import OutputPaths
from skol_spark.local import TASK_LINES, Cluster, LocalMaster, environment, is_local_master, warm_up_wanted
from skol_spark.model.artifact import ModelArtifact
from skol_spark.scoring.partition import BuildSpec


def config(*overrides: str):
    return load_config(None, ["model.name=m", "input.path=/in", "output.path=/data/out", *overrides])


def artifact(*, window: int = 8, stride: int | None = None, variable: bool = False, features: int = 6):
    manifest = {"window_size": window, "feature_size": features, "labels": ["A", "B", "C"],
                "architecture": {"sha256": "a"}, "weights": {"sha256": "w"}}
    if stride is not None:
        manifest["stride"] = stride
    if variable:
        manifest["variable_length"] = True
    return ModelArtifact(name="m", version=4, architecture="{}", weights=b"", manifest=manifest)


def fake_sc(cores: int, master: str = "local[*]", reuse: str | None = None):
    """Both faces the seam may see: a SparkContext's (``environment``) and job.services' (``Cluster``)."""
    conf = {} if reuse is None else {"spark.python.worker.reuse": reuse}
    return SimpleNamespace(defaultParallelism=cores, master=master, getConf=lambda: SimpleNamespace(get=conf.get),
                           parallelism=lambda: cores, conf=lambda key, default=None: conf.get(key, default))


# ---- resolve_window ------------------------------------------------------------------------------------

def test_window_and_stride_come_from_the_model_by_default():
    assert resolve_window(config(), artifact(window=8, stride=3)) == (8, 3)
    assert resolve_window(config(), artifact(window=8)) == (8, 8)  # no stride recorded: the window


def test_configured_stride_overrides_the_models():
    assert resolve_window(config("scoring.stride=2"), artifact(window=8, stride=3)) == (8, 2)


def test_fixed_window_model_refuses_another_window():
    with pytest.raises(ConfigError, match=r"scoring.window_size 5 differs from the model's fixed window 8"):
        resolve_window(config("scoring.window_size=5"), artifact(window=8))


def test_variable_length_model_takes_another_window_and_strides_by_it():
    # the model's recorded stride belongs to its own window: another window strides by itself
    assert resolve_window(config("scoring.window_size=5"), artifact(window=8, stride=3, variable=True)) == (5, 5)
    assert resolve_window(config("scoring.window_size=5", "scoring.stride=2"),
                          artifact(window=8, variable=True)) == (5, 2)


def test_stride_larger_than_the_models_window_is_refused():
    with pytest.raises(ConfigError, match=r"scoring.stride 9 must be between 1 and the window size 8"):
        resolve_window(config("scoring.stride=9"), artifact(window=8))


# ---- trusting the input's clustering -------------------------------------------------------------------

@pytest.mark.parametrize(("clustered", "partitions", "trusts", "reads"), [
    (False, 0, False, True),   # keep the input's partitions
    (False, 1, False, True),   # one partition holds every document
    (False, 4, False, False),  # the general case: a shuffle by document
    (True, 1, False, True),    # one partition: nothing to trust
    (True, 4, True, True),     # clustered input merged without a shuffle, on the claim's word
])
def test_which_runs_read_the_input_partitions(clustered, partitions, trusts, reads):
    c = config(f"input.clustered_by_doc={str(clustered).lower()}")
    assert trusts_clustering(c, partitions) is trusts
    assert reads_input_partitions(c, partitions) is reads


# ---- the local seam ------------------------------------------------------------------------------------

@pytest.mark.parametrize(("master", "local"), [
    ("local", True), ("local[2]", True), ("local[*]", True), ("local[4,2]", True),
    ("local-cluster[2,1,1024]", False), ("spark://host:7077", False), ("yarn", False),
])
def test_is_local_master(master, local):
    assert is_local_master(master) is local


@pytest.mark.parametrize(("master", "reuse", "setting", "wanted"), [
    ("local[2]", None, "auto", True),        # Spark's default reuses workers
    ("local[2]", "true", "auto", True),
    ("local[2]", "false", "auto", False),    # a warmed worker would not be the one that scores
    ("yarn", "true", "auto", False),
    ("yarn", "false", "always", True),
    ("local[2]", "true", "never", False),
])
def test_warm_up_wanted(master, reuse, setting, wanted):
    assert warm_up_wanted(master, reuse, setting) is wanted


@pytest.mark.parametrize(("cores", "partitions", "tf_threads", "warm_workers"), [
    (1, 1, 1, 1),
    (2, 1, 2, 1),
    (8, 2, 4, 2),   # up to 4 cores per task
    (9, 3, 3, 3),
])
def test_local_master_lays_tasks_out_from_the_cores(cores, partitions, tf_threads, warm_workers):
    env = LocalMaster(fake_sc(cores), config())
    assert env.kind == "local"
    assert env.partitions(10 * TASK_LINES) == partitions  # the line count does not matter locally
    assert env.partitions(0) == partitions
    assert env.tf_threads() == tf_threads
    assert env.warm_workers() == warm_workers
    assert env.warm is True


def test_local_master_keeps_configured_partitions_and_threads():
    env = LocalMaster(fake_sc(8), config("scoring.partitions=3", "scoring.tf_threads=2"))
    assert env.partitions(0) == 3
    assert env.tf_threads() == 2
    assert env.warm_workers() == 3
    # partitions set, threads not: 0 (the task's cores, spark.task.cpus) as configured
    assert LocalMaster(fake_sc(8), config("scoring.partitions=3")).tf_threads() == 0


def test_local_master_threads_override_the_derived_count():
    assert LocalMaster(fake_sc(8), config("scoring.tf_threads=1")).tf_threads() == 1


def test_cluster_sizes_tasks_by_lines_and_never_by_local_cores():
    env = Cluster(fake_sc(8, master="yarn"), config())
    assert env.kind == "cluster"
    assert env.partitions(0) == 8  # at least one task per core
    assert env.partitions(3 * TASK_LINES) == 8
    assert env.partitions(15 * TASK_LINES + 1) == 16  # one task per TASK_LINES lines, rounded up
    assert env.tf_threads() == 0
    assert env.warm_workers() == 8
    assert env.warm is False
    assert env.label_counts("/out", "run_id=x", "parquet") is None  # Spark counts on a cluster


def test_clustered_input_keeps_its_partitions_on_a_cluster():
    env = Cluster(fake_sc(8, master="yarn"), config("input.clustered_by_doc=true", "scoring.partitions=5"))
    assert env.partitions(100 * TASK_LINES) == 0


def test_environment_picks_the_seam_from_the_master():
    for master, cls in (("local[2]", LocalMaster), ("local-cluster[2,1,1024]", Cluster), ("yarn", Cluster)):
        spark = SimpleNamespace(sparkContext=fake_sc(4, master=master, reuse="true"))
        assert type(environment(spark, config())) is cls


def test_warm_up_is_not_started_when_not_wanted():
    env = LocalMaster(fake_sc(4, reuse="false"), config())
    assert env.warm is False
    assert env.warm_up(spark=None, spec=None, handle=None, builds=None) is None


# ---- RunPlan.scoring_plan ------------------------------------------------------------------------------

def test_scoring_plan_carries_the_config_the_artifact_and_the_layout():
    c = config("input.doc_id_col=doc", "input.line_col=n", "input.features_col=x", "scoring.batch_size=32")
    env = LocalMaster(fake_sc(8), c)
    build = BuildSpec(custom_modules=("tests.custom_layers",), tf_threads=env.tf_threads())
    plan = RunPlan(config=c, artifact=artifact(window=8, stride=3), run_id="r1", env=env, window=8, stride=3,
                   build=build, paths=OutputPaths("/data/out", "r1"))
    assert plan.keys == {"doc_col": "doc", "line_col": "n", "features_col": "x"}

    s = plan.scoring_plan(("doc", "n", "page"), lines=1000, presorted=True)
    assert (s.doc_col, s.line_col, s.features_col) == ("doc", "n", "x")
    assert s.carry_cols == ("doc", "n", "page")
    assert s.labels == ("A", "B", "C") and isinstance(s.labels, tuple)
    assert (s.window, s.stride, s.batch_size, s.feature_size) == (8, 3, 32, 6)
    assert (s.model_name, s.model_version, s.run_id) == ("m", 4, "r1")
    assert s.build == build and s.build.tf_threads == 4
    assert s.partitions == 2  # the environment's layout, not a config value
    assert s.presorted is True
    assert plan.scoring_plan((), lines=0, presorted=False).presorted is False
