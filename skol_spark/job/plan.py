"""The run's plan: the config and the model artifact resolved, once, into what every later phase reads.

Built before any Spark job runs, from things known without reading the
input (the environment, the window, how workers rebuild the model); the
executors' ``ScoringPlan`` is derived from it once the validation scan has
counted the input (``scoring_plan``).
"""

from __future__ import annotations

from dataclasses import dataclass

from skol_spark.errors import ConfigError
from skol_spark.job.config import JobConfig
from skol_spark.job.sink import OutputPaths
from skol_spark.local import Cluster, environment
from skol_spark.scoring.specs import BuildSpec, ScoringPlan


@dataclass(frozen=True)
class RunPlan:
    config: JobConfig
    artifact: object  # model.artifact.ModelArtifact
    run_id: str
    env: Cluster  # LocalMaster or Cluster (skol_spark.local)
    window: int
    stride: int
    build: BuildSpec
    paths: OutputPaths

    @property
    def keys(self) -> dict[str, str]:
        inp = self.config.input
        return dict(doc_col=inp.doc_id_col, line_col=inp.line_col, features_col=inp.features_col)

    def scoring_plan(self, carry_cols: tuple[str, ...], *, lines: int, presorted: bool,
                     flag_builds: bool = False) -> ScoringPlan:
        """What the scoring tasks get (with the artifact's handle)."""
        a, s = self.artifact, self.config.scoring
        return ScoringPlan(**self.keys, carry_cols=carry_cols, labels=tuple(a.labels), window=self.window,
                           stride=self.stride, batch_size=s.batch_size, feature_size=a.feature_size,
                           model_name=a.name, model_version=a.version, run_id=self.run_id, build=self.build,
                           partitions=self.env.partitions(lines), presorted=presorted,
                           flag_builds=flag_builds)


def make_plan(spark, config: JobConfig, artifact, run_id: str) -> RunPlan:
    env = environment(spark, config)
    window, stride = resolve_window(config, artifact)
    build = BuildSpec(custom_modules=config.model.custom_layer_modules,
                      allow_unsafe=config.model.allow_unsafe_deserialization,
                      line_projection=config.scoring.predictor == "auto", tf_threads=env.tf_threads(),
                      streams=config.scoring.predict_streams)
    out = config.output
    return RunPlan(config=config, artifact=artifact, run_id=run_id, env=env, window=window, stride=stride,
                   build=build, paths=OutputPaths(out.path or out.table, run_id))


def resolve_window(config: JobConfig, artifact) -> tuple[int, int]:
    window = config.scoring.window_size or artifact.window_size
    if not artifact.manifest.get("variable_length") and window != artifact.window_size:
        raise ConfigError(f"scoring.window_size {window} differs from the model's fixed window "
                          f"{artifact.window_size}; remove the setting or use a variable-length model")
    stride = config.scoring.stride or (artifact.stride if window == artifact.window_size else window)
    if not 1 <= stride <= window:
        raise ConfigError(f"scoring.stride {stride} must be between 1 and the window size {window}")
    return window, stride


def trusts_clustering(config: JobConfig, partitions: int) -> bool:
    """Whether scoring keeps or merges the input's partitions on the word of ``input.clustered_by_doc``
    (then the validation scan checks the claim). One partition holds every document: nothing to trust."""
    return config.input.clustered_by_doc and partitions != 1


def reads_input_partitions(config: JobConfig, partitions: int) -> bool:
    """Whether scoring keeps or merges the input's partitions (no shuffle), so each task sees the rows in the
    order the input is read."""
    return partitions in (0, 1) or trusts_clustering(config, partitions)
