"""End to end on real local Spark, a real redis-server and a real Keras model trained with a closure loss.

The Spark output must equal the numpy reference (``windowing.score_document`` calling the
Keras model on the same windows) on every line, for every feature encoding, stride and Arrow
batching; bad input must be refused before anything is written.
"""

from __future__ import annotations

import json
import os
import re
import uuid

import numpy as np
import pytest

from skol_spark.job.config import load_config
from skol_spark.errors import InputContractError
from skol_spark.job.run import run_job
from tests.helpers import FEATURES, LABELS, WINDOW, assert_matches_reference, reference_scores, sparse_documents

LENGTHS = [1, WINDOW, WINDOW + 1, 23, 3, 2 * WINDOW, 40, 5, 11, 2, 17, 9]  # 12 documents, 134 lines


@pytest.fixture(scope="module")
def published(publish_model, closure_model):
    """One trained model published twice: default stride 3 (overlapping) and stride == window."""
    overlap = publish_model(closure_model, "closure", stride=3)
    flat = publish_model(closure_model, "closure", stride=WINDOW)
    return {"store": overlap.store, "url": overlap.url, "name": "closure", "model": closure_model,
            3: overlap.version, WINDOW: flat.version}


def publish_fresh_copy(published):
    """The same architecture and closure loss with perturbed weights: a fingerprint no Python
    worker has cached yet, so the run must build it (once per worker)."""
    from tests.helpers import build_bilstm, make_closure_loss

    model = published["model"]
    fresh = build_bilstm()
    rng = np.random.default_rng(uuid.uuid4().int % 2**32)
    fresh.set_weights([w * (1 + 0.05 * rng.random()) for w in model.get_weights()])
    fresh.compile(optimizer="adam", loss=make_closure_loss([1.0, 2.0, 0.5]))
    version = published["store"].publish(fresh, published["name"], labels=LABELS, stride=3)
    return fresh, version


def encode(row, kind, line):
    """One line's features as ``kind``: array | vector (sparse and dense rows mixed) | struct."""
    from pyspark.ml.linalg import Vectors

    nz = np.flatnonzero(row)
    if kind == "array":
        return [float(v) for v in row]
    if kind == "vector":
        if line % 3 == 0:
            return Vectors.dense([float(v) for v in row])
        return Vectors.sparse(FEATURES, nz.tolist(), [float(v) for v in row[nz]])
    if kind == "vector_dense":
        return Vectors.dense([float(v) for v in row])
    return {"indices": nz.tolist(), "values": [float(v) for v in row[nz]]}


def feature_type(kind):
    from pyspark.ml.linalg import VectorUDT
    from pyspark.sql import types as T

    if kind == "array":
        return T.ArrayType(T.FloatType())
    if kind.startswith("vector"):
        return VectorUDT()
    return T.StructType([T.StructField("indices", T.ArrayType(T.IntegerType())),
                         T.StructField("values", T.ArrayType(T.FloatType()))])


def input_schema(kind):
    from pyspark.sql import types as T

    return T.StructType([
        T.StructField("doc_id", T.StringType()), T.StructField("line_number", T.IntegerType()),
        T.StructField("features", feature_type(kind)), T.StructField("page", T.LongType()),
        T.StructField("text", T.StringType()), T.StructField("gold", T.StringType()),
    ])


def write_input(spark, path, docs, kind="array", shuffle_seed=1):
    """Rows in a shuffled order (the job must sort them), with passthrough and a true label."""
    rows = [(doc_id, line, encode(m[line], kind, line), 1000 + line, f"{doc_id}/{line}", LABELS[line % 3])
            for doc_id, m in docs.items() for line in range(m.shape[0])]
    np.random.default_rng(shuffle_seed).shuffle(rows)
    spark.createDataFrame(rows, input_schema(kind)).repartition(3).write.parquet(str(path))
    return str(path)


def job_config(published, input_path, output_path, *extra):
    return load_config(None, [
        f"redis.url={published['url']}",
        f"redis.prefix={published['store'].prefix}",
        f"model.name={published['name']}", f"model.version={published[3]}",
        f"input.path={input_path}", f"output.path={output_path}",
        "output.report=false", "job.progress=false", "scoring.partitions=4", *extra])


def manifest_of(result):
    with open(result.manifest_path.replace("file:", "", 1)) as f:
        return json.load(f)


# ---- the output equals the reference ---------------------------------------------------------------

@pytest.mark.parametrize(("kind", "stride", "arrow_batch", "fresh", "projection", "streams"), [
    ("array", 3, 3, True, "auto", 1),           # overlapping windows, documents split across many Arrow batches
    ("array", WINDOW, 10000, False, "auto", 1),  # stride == window, one batch per partition
    ("vector", 3, 5, False, "auto", 1),          # Spark ML vectors, sparse and dense rows mixed
    ("vector_dense", WINDOW, 3, False, "auto", 1),
    ("struct", WINDOW, 3, False, "auto", 1),     # struct{indices, values} sparse input
    ("struct", 3, 5, True, "keras", 1),          # Keras' own call on dense windows
    ("struct", 3, 4, True, "auto", 2),           # one task, two predicts at once over its many Arrow batches
])
def test_output_equals_keras_on_the_same_windows(spark, published, tmp_path, kind, stride, arrow_batch, fresh,
                                                 projection, streams):
    docs = sparse_documents(LENGTHS, seed=len(kind) * 7 + stride)
    input_path = write_input(spark, tmp_path / "in", docs, kind)
    output = str(tmp_path / "out")
    model, version = publish_fresh_copy(published) if fresh else (published["model"], published[stride])
    config = job_config(published, input_path, output, f"model.version={version}",
                        f"scoring.arrow_batch_size={arrow_batch}", "input.label_col=gold",
                        f"scoring.predictor={projection}",
                        *(["scoring.partitions=1", f"scoring.tf_threads={streams}"] if streams > 1 else []))
    result = run_job(spark, config)

    assert result.status == "succeeded"
    assert result.rows_written == sum(LENGTHS)
    df = spark.read.parquet(output)
    rows = df.collect()
    assert len(rows) == sum(LENGTHS)
    assert_matches_reference(rows, reference_scores(model, docs, stride=stride))
    # passthrough and the true label come back on the right line; model and run recorded
    for r in rows:
        assert r["page"] == 1000 + r["line_number"]
        assert r["text"] == f"{r['doc_id']}/{r['line_number']}"
        assert r["true_label"] == LABELS[r["line_number"] % 3]
        assert (r["model_name"], r["model_version"], r["run_id"]) == (published["name"], version, result.run_id)
    assert "gold" not in df.columns and "features" not in df.columns
    assert [n for n in os.listdir(output) if not n.startswith(("_", "."))] == [f"run_id={result.run_id}"]
    assert any(n.startswith("part-") and n.endswith(".parquet")
               for n in os.listdir(os.path.join(output, f"run_id={result.run_id}")))

    manifest = manifest_of(result)
    assert manifest["status"] == "succeeded" and manifest["exit_code"] == 0
    assert manifest["scoring"]["stride"] == stride and manifest["scoring"]["window_size"] == WINDOW
    assert manifest["scoring"]["partitions"] >= 1 and manifest["scoring"]["tf_threads"] in (1, 2, "task cpus")
    assert manifest["scoring"]["predictor"] == {"auto": "line_projection", "keras": "keras"}[projection]
    # built once per Python worker: local[2] runs at most 2 workers, over 4 partitions and many batches
    # (a model a worker already holds from an earlier run of this session is not built again)
    assert (1 if fresh else 0) <= manifest["scoring"]["model_builds"] <= 2
    assert {w.get("predict_streams") for w in manifest["scoring"]["workers"] if w["job"] == "scoring"} == {streams}
    assert manifest["output"]["rows_written"] == sum(LENGTHS)
    assert sum(manifest["output"]["label_counts"].values()) == sum(LENGTHS)


def _executions(spark, since_ms, *needles):
    """(submitted, completed, plan) of the SQL executions submitted since ``since_ms`` (epoch ms) whose physical
    plan names every needle.

    The status store is filled from the listener bus, asynchronously: drained first, one pass over the
    store then answers, also when nothing matches. The pass reads the newest executions first and stops at
    the first one older than ``since_ms``: the shared session keeps up to 1000, and reading every one (three
    py4j calls each) cost seconds per call late in the suite."""
    import time

    for _ in range(20):
        spark.sparkContext._jsc.sc().listenerBus().waitUntilEmpty()
        store = spark._jsparkSession.sharedState().statusStore()
        found, end = [], store.executionsCount()
        while end > 0:
            start = max(0, end - 25)
            chunk = store.executionsList(start, end - start)
            recent = [e for e in (chunk.apply(i) for i in range(chunk.length())) if e.submissionTime() >= since_ms]
            found += [(e.submissionTime(), e.completionTime(), e.physicalPlanDescription()) for e in recent]
            end = start if len(recent) == end - start else 0
        found = [f for f in found if all(n in f[2] for n in needles)]
        if all(f[1].isDefined() for f in found):
            return sorted((s, c.get().getTime(), p) for s, c, p in found)  # epoch ms
        time.sleep(0.1)
    raise AssertionError(f"SQL executions matching {needles} did not complete")


@pytest.fixture
def executions(spark):
    """``executions(*needles)``: ``_executions`` of the SQL executions this test started."""
    import time

    since_ms = int(time.time() * 1000) - 1000  # a second of margin: the needles name this test's own paths
    return lambda *needles: _executions(spark, since_ms, *needles)


@pytest.mark.parametrize("partition_by", [(), ("model_version",)])
def test_scored_rows_are_written_as_they_come_without_a_sort_on_run_id(spark, published, tmp_path, partition_by,
                                                                       executions):
    """run_id names the run's directory; a partitionBy("run_id") would make Spark hold every scored row back
    in a sort until the last prediction. Layout and rows stay the same."""
    docs = sparse_documents(LENGTHS, seed=31)
    input_path = write_input(spark, tmp_path / "in", docs)
    output = str(tmp_path / "out")
    extra = [f"output.partition_by={partition_by[0]}"] if partition_by else []
    result = run_job(spark, job_config(published, input_path, output, *extra))

    plans = [plan for _, _, plan in executions("InsertIntoHadoopFsRelationCommand", f"skol-staging-{result.run_id}")]
    assert len(plans) == 1, plans
    sorts = re.findall(r"\(\d+\) Sort[^\n]*\nInput[^\n]*\nArguments: \[([^\]]*)\]", plans[0])
    assert sorts and not any("run_id" in keys for keys in sorts), plans[0]  # the scoring sort, no run_id sort
    assert any("model_version" in keys for keys in sorts) == bool(partition_by)  # user partitions: sorted
    run_dir = os.path.join(output, f"run_id={result.run_id}")
    assert sorted(n for n in os.listdir(output) if not n.startswith(".")) == ["_SUCCESS", f"run_id={result.run_id}"]
    files = [os.path.join(d, n) for d, _, names in os.walk(run_dir) for n in names if n.endswith(".parquet")]
    assert files and not any(n.startswith("_") for n in os.listdir(run_dir))
    if partition_by:
        assert os.listdir(run_dir) == [f"model_version={published[3]}"]
    import pyarrow.parquet as pq

    assert "run_id" not in pq.read_schema(files[0]).names  # a directory value, as a partition column is
    rows = spark.read.parquet(output).collect()
    assert {r["run_id"] for r in rows} == {result.run_id}
    assert_matches_reference(rows, reference_scores(published["model"], docs, stride=3))


def test_the_input_is_validated_by_one_spark_scan_before_scoring(spark, published, tmp_path, executions):
    """One rule, one place: the validation scan is one Spark aggregation over the input, finished before the
    scoring job's write started; no second read of the input ahead of scoring."""
    docs = sparse_documents(LENGTHS, seed=43)
    input_path = write_input(spark, tmp_path / "in", docs)
    output = str(tmp_path / "out")
    result = run_job(spark, job_config(published, input_path, output))

    manifest = manifest_of(result)
    assert (manifest["input"]["lines"], manifest["input"]["documents"]) == (sum(LENGTHS), len(docs))
    scans = executions("HashAggregate", str(tmp_path / "in"))
    writes = executions("InsertIntoHadoopFsRelationCommand", f"skol-staging-{result.run_id}")
    assert len(scans) == 1 and len(writes) == 1
    assert scans[0][1] <= writes[0][0]
    assert not executions("noop-table", str(tmp_path / "in"))
    assert_matches_reference(spark.read.parquet(output).collect(), reference_scores(published["model"], docs, stride=3))


def _label_counts_from_keras(model, docs):
    """Lines per predicted label, from direct Keras predictions: independent of the job and its output."""
    counts = {}
    for probs in reference_scores(model, docs, stride=3).values():
        label = LABELS[int(np.argmax(probs))]
        counts[label] = counts.get(label, 0) + 1
    return {label: counts.get(label, 0) for label in LABELS}


@pytest.mark.parametrize("partition_by,counted_by", [((), "arrow"), (("model_version",), "arrow"),
                                                     (("label",), "spark")])
def test_local_parquet_output_is_counted_with_arrow(spark, published, tmp_path, partition_by, counted_by,
                                                    executions):
    """The manifest's read-back of a local Parquet output on a local master: the driver reads the label column
    with Arrow instead of planning a Spark aggregation after the last prediction. Where ``label`` is a
    partition directory, Spark counts. The counts equal Keras' own labels either way."""
    docs = sparse_documents(LENGTHS, seed=53)
    input_path = write_input(spark, tmp_path / "in", docs)
    output = str(tmp_path / "out")
    extra = [f"output.partition_by={partition_by[0]}"] if partition_by else []
    result = run_job(spark, job_config(published, input_path, output, *extra))

    out = manifest_of(result)["output"]
    assert out["counted_by"] == counted_by
    assert out["label_counts"] == _label_counts_from_keras(published["model"], docs)
    assert out["rows_written"] == result.rows_written == sum(LENGTHS)
    read_backs = executions("HashAggregate", f"run_id={result.run_id}")
    assert len(read_backs) == (0 if counted_by == "arrow" else 1)
    assert_matches_reference(spark.read.parquet(output).collect(), reference_scores(published["model"], docs, stride=3))


def test_a_failing_arrow_count_falls_back_to_spark(spark, published, tmp_path, monkeypatch, caplog):
    """Counting with Arrow is an optimisation: if it breaks (fault injected), Spark counts, and the run
    succeeds with the same counts."""
    from skol_spark.local import readback as local_readback

    def broken(*args, **kwargs):
        raise OSError("injected fault in the Arrow read-back")

    monkeypatch.setattr(local_readback, "label_counts", broken)
    docs = sparse_documents(LENGTHS, seed=59)
    input_path = write_input(spark, tmp_path / "in", docs)
    with caplog.at_level("WARNING", logger="skol_spark.local"):
        result = run_job(spark, job_config(published, input_path, str(tmp_path / "out")))

    out = manifest_of(result)["output"]
    assert out["counted_by"] == "spark"
    assert "counting the written rows with Arrow failed (OSError: injected fault" in caplog.text
    assert out["label_counts"] == _label_counts_from_keras(published["model"], docs)


@pytest.mark.parametrize("fmt", ["orc", "json"])
def test_other_file_formats_hold_the_same_rows_and_counts(spark, published, tmp_path, fmt):
    """The formats the README names besides Parquet: written, read back for the manifest's counts, equal to Keras."""
    docs = sparse_documents(LENGTHS, seed=37)
    input_path = write_input(spark, tmp_path / "in", docs)
    output = str(tmp_path / "out")
    result = run_job(spark, job_config(published, input_path, output, f"output.format={fmt}"))

    rows = spark.read.format(fmt).load(output).collect()
    assert {r["run_id"] for r in rows} == {result.run_id}
    assert_matches_reference(rows, reference_scores(published["model"], docs, stride=3))
    run_dir = os.path.join(output, f"run_id={result.run_id}")
    assert any(n.startswith("part-") and n.endswith(f".{fmt}") for n in os.listdir(run_dir))
    manifest = manifest_of(result)
    assert manifest["output"]["rows_written"] == len(rows) == sum(LENGTHS)
    labels = [r["label"] for r in rows]
    assert manifest["output"]["label_counts"] == {lab: labels.count(lab) for lab in LABELS}


def test_empty_input_is_a_successful_run_with_zero_rows(spark, published, tmp_path):
    input_path = write_input(spark, tmp_path / "in", {}, "array")
    output = str(tmp_path / "out")
    result = run_job(spark, job_config(published, input_path, output))
    assert result.status == "succeeded" and result.rows_written == 0
    manifest = manifest_of(result)
    assert manifest["exit_code"] == 0 and manifest["output"]["rows_written"] == 0
    df = spark.read.parquet(output)
    assert df.count() == 0
    fields = {f.name: f.dataType.simpleString() for f in df.schema.fields}
    assert fields["doc_id"] == "string" and fields["line_number"] == "int"
    assert fields["label"] == "string" and fields["probabilities"] == "array<float>"
    assert {"page", "text", "prediction", "confidence", "model_name", "model_version", "run_id"} <= set(fields)


# ---- bad input is refused before anything is written --------------------------------------------------

def _bad_rows(problem):
    """Rows of a small valid input, then broken in one way; -> (rows, words the error must name)."""
    docs = sparse_documents([4, 9, 3], seed=5)
    rows = [[doc_id, line, [float(v) for v in m[line]], line, "t", "Misc"]
            for doc_id, m in docs.items() for line in range(m.shape[0])]
    if problem == "size":
        rows[5][2] = rows[5][2][:-1]
        return rows, ["features", "size 6", "doc-01"]
    if problem == "nan":
        rows[6][2][2] = float("nan")
        return rows, ["NaN, inf or null values in features", "doc-01"]
    if problem == "inf":
        rows[14][2][0] = float("-inf")
        return rows, ["NaN, inf or null values in features", "doc-02"]
    if problem == "null_doc":
        rows[2][0] = None
        return rows, ["null doc_id/line_number"]
    if problem == "null_line":
        rows[7][1] = None
        return rows, ["null doc_id/line_number", "doc-01"]
    if problem == "duplicate":
        rows.append(list(rows[10]))
        return rows, ["duplicate (doc_id, line_number)", "doc-01", "line_number=6"]
    if problem == "null_element":
        rows[3][2][1] = None
        return rows, ["NaN, inf or null values in features", "doc-00"]
    raise AssertionError(problem)


@pytest.mark.parametrize("problem", ["size", "nan", "inf", "null_doc", "null_line", "duplicate", "null_element"])
def test_bad_input_is_refused_and_nothing_is_written(spark, published, tmp_path, problem):
    rows, words = _bad_rows(problem)
    input_path = str(tmp_path / "in")
    spark.createDataFrame([tuple(r) for r in rows], input_schema("array")).write.parquet(input_path)
    output = str(tmp_path / "out")
    with pytest.raises(InputContractError) as info:
        run_job(spark, job_config(published, input_path, output))
    message = str(info.value)
    for word in words:
        assert word in message, f"{word!r} not in: {message}"
    assert not os.path.exists(output)
    assert not [n for n in os.listdir(tmp_path) if n.startswith(".out.")], os.listdir(tmp_path)


def test_missing_column_is_refused_naming_it(spark, published, tmp_path):
    input_path = str(tmp_path / "in")
    rows, _ = _bad_rows("size")
    df = spark.createDataFrame([tuple(r) for r in rows[:3]], input_schema("array")).drop("line_number")
    df.write.parquet(input_path)
    output = str(tmp_path / "out")
    with pytest.raises(InputContractError, match=r"no column 'line_number' \(input.line_col\)"):
        run_job(spark, job_config(published, input_path, output))
    assert not os.path.exists(output)


def test_feature_size_of_every_row_differs_from_the_model(spark, published, tmp_path):
    """A whole input featurized with another vocabulary: refused, naming the model's size."""
    from pyspark.ml.linalg import Vectors

    input_path = str(tmp_path / "in")
    rows = [("d", i, Vectors.sparse(FEATURES + 2, [i % 8], [1.0]), 0, "t", "Misc") for i in range(5)]
    spark.createDataFrame(rows, input_schema("vector")).write.parquet(input_path)
    output = str(tmp_path / "out")
    with pytest.raises(InputContractError, match=r"5 line\(s\) with features not of size 6"):
        run_job(spark, job_config(published, input_path, output))
    assert not os.path.exists(output)


def test_bad_sparse_structs_are_refused(spark, published, tmp_path):
    """A negative index would wrap around to the last feature, an index >= size has no column,
    and a struct with null indices is no vector: all refused on the driver, with counts."""
    input_path = str(tmp_path / "in")
    good = {"indices": [0, 5], "values": [1.0, 2.0]}
    rows = [("a", 0, good), ("a", 1, {"indices": [-1], "values": [1.0]}),
            ("b", 0, {"indices": [2, 6], "values": [1.0, 1.0]}), ("b", 1, good),
            ("c", 0, {"indices": None, "values": None}), ("c", 1, {"indices": [1], "values": [None]})]
    rows = [(d, n, f, 0, "t", "Misc") for d, n, f in rows]
    spark.createDataFrame(rows, input_schema("struct")).write.parquet(input_path)
    output = str(tmp_path / "out")
    with pytest.raises(InputContractError) as info:
        run_job(spark, job_config(published, input_path, output))
    message = str(info.value)
    assert "2 line(s) with a sparse index outside 0..5 in features, e.g. doc_id=" in message
    assert "not of size" not in message  # what is wrong is the index, not the size
    assert "1 line(s) with null features, e.g. doc_id='c' line_number=0" in message
    assert "1 line(s) with NaN, inf or null values in features, e.g. doc_id='c' line_number=1" in message
    assert not os.path.exists(output)


def test_local_layout_gives_one_task_every_core_unless_told_otherwise(spark, tmp_path):
    """On a local master the automatic layout is one scoring task per 4 cores, with TensorFlow threads = cores."""
    from skol_spark.job.config import config_from_dict
    from skol_spark.local import LocalMaster, environment

    def layout(**scoring):
        config = config_from_dict({"model": {"name": "m"}, "input": {"path": "in"},
                                   "output": {"path": str(tmp_path / "out")}, "scoring": scoring})
        env = environment(spark, config)
        assert isinstance(env, LocalMaster)
        return env.partitions(10_000_000), env.tf_threads()

    cores = spark.sparkContext.defaultParallelism  # local[2] in the tests
    assert layout() == (-(-cores // 4), cores // -(-cores // 4)) == (1, 2)
    assert layout(tf_threads=1) == (1, 1)
    # explicit partitions: TensorFlow threads come from the task's cores (spark.task.cpus) on the worker
    assert layout(partitions=4) == (4, 0)
    assert layout(partitions=3, tf_threads=2) == (3, 2)


# ---- shuffle-free layouts -------------------------------------------------------------------------

def _one_file_per_partition(spark, path):
    """Read settings under which every input file is a partition of its own (none packed together)."""
    largest = max(os.path.getsize(os.path.join(path, n)) for n in os.listdir(path) if n.endswith(".parquet"))
    for key in ("spark.sql.files.maxPartitionBytes", "spark.sql.files.openCostInBytes"):
        spark.conf.set(key, str(largest + 1))


def _reset_file_splits(spark):
    for key in ("spark.sql.files.maxPartitionBytes", "spark.sql.files.openCostInBytes"):
        spark.conf.unset(key)


def _scoring_plan_text(spark, config, presorted=False):
    """The physical plan of the scoring step, as the job builds it (nothing runs)."""
    from skol_spark.job.inputs import carried_columns, read_input
    from skol_spark.job.score import scoring_frame
    from skol_spark.local import environment
    from skol_spark.scoring.partition import BuildSpec, ScoringPlan

    df = read_input(spark, config)
    env = environment(spark, config)
    plan = ScoringPlan(doc_col="doc_id", line_col="line_number", features_col="features",
                       carry_cols=tuple(carried_columns(df, config)), labels=tuple(LABELS), window=WINDOW, stride=3,
                       batch_size=8, feature_size=FEATURES, model_name="m", model_version=1, run_id="r",
                       build=BuildSpec(tf_threads=env.tf_threads()), partitions=env.partitions(0),
                       presorted=presorted)
    frame = scoring_frame(df, plan, config, spark.sparkContext.broadcast(None), None)
    return frame._jdf.queryExecution().executedPlan().toString()


def test_one_scoring_partition_reads_the_input_itself_without_a_shuffle(spark, published, tmp_path):
    """The local layout (one task on local[2]) merges the input's partitions instead of shuffling them."""
    docs = sparse_documents(LENGTHS, seed=21)
    input_path = write_input(spark, tmp_path / "in", docs)  # 3 files, rows shuffled: documents span files
    output = str(tmp_path / "out")
    config = job_config(published, input_path, output, "scoring.partitions=0")

    text = _scoring_plan_text(spark, config)
    assert "Exchange" not in text and "Coalesce 1" in text, text
    result = run_job(spark, config)

    assert result.rows_written == sum(LENGTHS)
    assert manifest_of(result)["scoring"]["partitions"] == 1
    assert manifest_of(result)["scoring"]["sort"] == "spark"  # documents interleaved: the scan saw it
    assert_matches_reference(spark.read.parquet(output).collect(), reference_scores(published["model"], docs, stride=3))


def test_input_clustered_by_document_keeps_its_partitions_and_equals_keras(spark, published, tmp_path):
    docs = sparse_documents(LENGTHS, seed=22)
    rows = [(doc_id, line, encode(m[line], "array", line), 1000 + line, f"{doc_id}/{line}", LABELS[line % 3])
            for doc_id, m in docs.items() for line in range(m.shape[0])]
    np.random.default_rng(3).shuffle(rows)  # whole documents per file, lines in no order within it
    input_path = str(tmp_path / "in")
    spark.createDataFrame(rows, input_schema("array")).repartition(3, "doc_id").write.parquet(input_path)
    output = str(tmp_path / "out")
    config = job_config(published, input_path, output, "input.clustered_by_doc=true", "scoring.partitions=2")
    _one_file_per_partition(spark, input_path)
    try:
        text = _scoring_plan_text(spark, config)
        result = run_job(spark, config)
    finally:
        _reset_file_splits(spark)

    assert "Exchange" not in text, text  # (a coalesce to no fewer partitions than the input has is elided)
    assert result.rows_written == sum(LENGTHS)
    assert_matches_reference(spark.read.parquet(output).collect(), reference_scores(published["model"], docs, stride=3))


def test_a_false_clustered_by_document_claim_is_refused_before_writing(spark, published, tmp_path):
    """A document split over input partitions would be scored as two sequences: refused, naming one."""
    docs = sparse_documents(LENGTHS, seed=23)
    input_path = write_input(spark, tmp_path / "in", docs)  # round-robin: every long document spans files
    output = str(tmp_path / "out")
    config = job_config(published, input_path, output, "input.clustered_by_doc=true", "scoring.partitions=2")
    _one_file_per_partition(spark, input_path)
    try:
        with pytest.raises(InputContractError) as err:
            run_job(spark, config)
    finally:
        _reset_file_splits(spark)

    message = str(err.value)
    assert "input.clustered_by_doc is set" in message and "more than one input partition" in message
    assert "e.g. doc_id='doc-" in message and "nothing was written" in message
    assert not os.path.exists(output)


# ---- input already in document order: streamed without Spark's sort -----------------------------------

def _write_in_document_order(spark, path, docs, cut_inside):
    """Two Parquet files, every document's rows together but its lines shuffled (what a featurizer that
    writes document by document produces). The files split at a document boundary, or with ``cut_inside``
    in the middle of the longest document."""
    rng = np.random.default_rng(7)
    rows = []
    for doc_id, m in docs.items():
        rows += [(doc_id, int(line), encode(m[line], "array", line), 1000 + int(line), f"{doc_id}/{line}",
                  LABELS[line % 3]) for line in rng.permutation(m.shape[0])]
    longest = max(docs, key=lambda d: docs[d].shape[0])
    first = next(i for i, r in enumerate(rows) if r[0] == longest)
    cut = first + docs[longest].shape[0] // 2 if cut_inside else first
    for part in (rows[:cut], rows[cut:]):
        spark.createDataFrame(part, input_schema("array")).coalesce(1).write.mode("append").parquet(path)


@pytest.mark.parametrize(("cut_inside", "sort", "expected"), [
    (False, "auto", "input order"),
    (False, "always", "spark"),
    (True, "auto", "spark"),  # a document split over two files: a run of rows never crosses a partition
])
def test_input_in_document_order_skips_the_sort_and_equals_keras(spark, published, tmp_path, cut_inside, sort,
                                                                  expected):
    docs = sparse_documents(LENGTHS, seed=24)
    input_path = str(tmp_path / "in")
    _write_in_document_order(spark, input_path, docs, cut_inside)
    output = str(tmp_path / "out")
    config = job_config(published, input_path, output, "scoring.partitions=0", f"scoring.sort={sort}")
    _one_file_per_partition(spark, input_path)
    try:
        streamed, sorted_ = _scoring_plan_text(spark, config, presorted=True), _scoring_plan_text(spark, config)
        result = run_job(spark, config)
    finally:
        _reset_file_splits(spark)

    assert " Sort [" in sorted_ and " Sort [" not in streamed, streamed
    assert manifest_of(result)["scoring"]["sort"] == expected
    assert result.rows_written == sum(LENGTHS)
    rows = spark.read.parquet(output).collect()
    assert_matches_reference(rows, reference_scores(published["model"], docs, stride=3))  # lines ordered by the worker
    for r in rows:
        assert r["page"] == 1000 + r["line_number"] and r["text"] == f"{r['doc_id']}/{r['line_number']}"
