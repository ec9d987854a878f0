"""The text benchmark's workload: the bench's documents as raw text, and the same lines as feature vectors.

The text corpus has the vector corpus' documents (``workload.document_lengths``, the same seeds, keys and
files); every line is a few words of a synthetic pseudo-Latin vocabulary (Zipf-ish frequencies). A feature
pipeline of the original project's shape (``demo_text.pipeline_stages``: words and their suffixes, counted
and IDF-weighted) is fitted once on a separate sample, with vocabulary caps that make it exactly
``workload.FEATURES`` long, so the model published with it is the vector bench's model. The corpus is then
featurized once by Spark ML's own fitted pipeline and written beside the text as skol_spark's sparse-struct
input: the ``text_vectors`` variant scores those vectors, the ``text`` variant the raw text through the
pipeline skol_spark rebuilds from Redis, with the same model version; their lines/s ratio is the
featurization's cost, and their probabilities must agree.

Set up in its own process (it starts a local Spark, which must not stay alive beside the timed runs):

    python -m benchmarks.text_workload --redis-url URL --work DIR --corpus 250k:250000:11 [--corpus ...]

prints JSON ``{"model": {...}, "corpora": {size: {"text": summary, "text_vectors": summary}}}``.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import numpy as np

from benchmarks import workload

ROOT = Path(__file__).resolve().parent.parent
VARIANTS = ("text", "text_vectors")
MODEL_NAME = "bench-bilstm-text"
WORD_VOCAB, SUFFIX_VOCAB = 700, 300  # the pipeline's vocabulary caps: together workload.FEATURES
SAMPLE_LINES, SAMPLE_SEED, VOCAB_SEED = 20_000, 5, 3
SYLLABLES = ("ba", "ce", "di", "fo", "gu", "la", "me", "ni", "po", "ru", "sa", "te", "vi", "xo", "zu", "an",
             "el", "is", "or", "um", "tri", "cha", "spo", "lam", "cys", "pil", "ste", "bra", "gen", "ous")
GOAL = 0.8  # the text path's lines/s over the vector path's, at the large scale


def overrides(variant: str) -> list[str]:
    """The skol_spark job settings of a text-benchmark variant (on top of bench.run_skol_spark's config)."""
    extra = ["input.text_col=text"] if variant == "text" else []
    return [f"model.name={MODEL_NAME}", *extra]


# ---- the corpus ---------------------------------------------------------------------------------

def vocabulary(size: int = 6000) -> np.ndarray:
    """``size`` distinct pseudo-Latin words of 2-4 syllables (fixed seed: every corpus and the sample share it)."""
    rng = np.random.default_rng(VOCAB_SEED)
    words: dict[str, None] = {}
    while len(words) < size:
        words["".join(rng.choice(SYLLABLES, size=int(rng.integers(2, 5))))] = None
    return np.asarray(list(words))


def text_lines(n: int, rng: np.random.Generator, vocab: np.ndarray):
    """``n`` lines of 1 + Poisson(8) words, word ``r`` drawn with weight ``1 / (r + 5)``. -> Arrow strings."""
    import pyarrow as pa
    import pyarrow.compute as pc

    weights = 1.0 / (np.arange(len(vocab)) + 5.0)
    counts = 1 + rng.poisson(8, n)
    offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int32)
    ids = rng.choice(len(vocab), size=int(offsets[-1]), p=weights / weights.sum())
    tokens = pa.array(vocab).take(pa.array(ids))
    return pc.binary_join(pa.ListArray.from_arrays(pa.array(offsets), tokens), " ")


def write_text_corpus(path: Path, total_lines: int, *, seed: int, vocab: np.ndarray) -> dict:
    """The vector corpus' documents (same lengths, keys and files for ``seed``), a ``text`` column per line."""
    lengths = workload.document_lengths(total_lines, seed)
    text = text_lines(int(lengths.sum()), np.random.default_rng(seed + 2), vocab)
    workload.write_documents(path, lengths, seed, lambda lo, hi: {"text": text[lo:hi]})
    return workload.corpus_summary(path, lengths)


# ---- the pipeline, the model, the featurized copy ------------------------------------------------

def fit_pipeline(spark, directory: Path, vocab: np.ndarray):
    """Fit the pipeline on a sample of the same language; refuse one that is not ``workload.FEATURES`` long."""
    from pyspark.ml import Pipeline

    from skol_spark.cli.demo_text import pipeline_stages
    from skol_spark.store.pipeline import pipeline_from_dir

    sample = text_lines(SAMPLE_LINES, np.random.default_rng(SAMPLE_SEED), vocab).to_pylist()
    df = spark.createDataFrame([(t,) for t in sample], ["value"])
    fitted = Pipeline(stages=pipeline_stages(WORD_VOCAB, SUFFIX_VOCAB)).fit(df)
    fitted.write().overwrite().save(str(directory))
    size = pipeline_from_dir(directory).feature_size
    if size != workload.FEATURES:
        raise RuntimeError(f"the fitted pipeline makes {size} features, the bench model reads {workload.FEATURES}: "
                           f"the {SAMPLE_LINES}-line sample did not fill the vocabulary caps; raise SAMPLE_LINES")
    return fitted


def featurize(spark, fitted, text: dict, dest: Path, seed: int) -> dict:
    """Spark ML's fitted pipeline over the text corpus -> the same lines as a sparse-struct vector corpus."""
    import pyarrow.parquet as pq

    from skol_spark.scoring.features import decode_features, to_sparse

    spark_out = dest.parent / f"{dest.name}-spark"
    lines = spark.read.parquet(text["path"]).withColumnRenamed("text", "value")
    fitted.transform(lines).selectExpr("doc_id", "line_number", "combined_idf AS features") \
        .write.mode("overwrite").parquet(str(spark_out))
    table = pq.read_table(spark_out).sort_by([("doc_id", "ascending"), ("line_number", "ascending")])
    feats = to_sparse(decode_features(table.column("features"), workload.FEATURES))
    lengths = workload.document_lengths(text["lines"], seed)
    keys = pq.read_table(text["path"], columns=["doc_id", "line_number"])
    if not keys.equals(table.select(["doc_id", "line_number"])):
        raise RuntimeError(f"the featurized lines in {spark_out} are not the text corpus' lines in its order")
    workload.write_documents(dest, lengths, seed,
                             lambda lo, hi: {"features": workload.sparse_struct(feats.indptr[lo:hi + 1],
                                                                                feats.indices, feats.data)})
    return workload.corpus_summary(dest, lengths, nnz_per_line=round(len(feats.data) / max(1, text["lines"]), 2))


def build(redis_url: str, work: Path, corpora: list[tuple[str, int, int]]) -> dict:
    """Fit, publish (model + pipeline as ``MODEL_NAME``, alias production), write and featurize each corpus."""
    from benchmarks.variants import spark_session

    vocab = vocabulary()
    spark = spark_session()
    try:
        fitted = fit_pipeline(spark, work / "text-pipeline", vocab)
        version, params = workload.publish_model(redis_url, MODEL_NAME, work / "text-pipeline")
        out = {}
        for size, lines, seed in corpora:
            text = write_text_corpus(work / f"text-corpus-{size}", lines, seed=seed, vocab=vocab)
            vectors = featurize(spark, fitted, text, work / f"text-vectors-{size}", seed)
            out[size] = {"text": text, "text_vectors": vectors}
    finally:
        spark.stop()
    return {"model": {"name": MODEL_NAME, "version": version, "parameters": params,
                      "word_vocabulary": WORD_VOCAB, "suffix_vocabulary": SUFFIX_VOCAB}, "corpora": out}


def prepare(redis_url: str, work: Path, corpora: list[tuple[str, int, int]], env: dict[str, str]) -> dict:
    """Run ``build`` in its own process (bench.py's side); its log goes to ``work/text-setup.log``."""
    cmd = [sys.executable, "-m", "benchmarks.text_workload", "--redis-url", redis_url, "--work", str(work)]
    for size, lines, seed in corpora:
        cmd += ["--corpus", f"{size}:{lines}:{seed}"]
    log = work / "text-setup.log"
    with open(log, "w") as err:
        proc = subprocess.run(cmd, env=env, stdout=subprocess.PIPE, stderr=err, text=True,
                              cwd=ROOT)
    if proc.returncode:
        raise RuntimeError(f"text benchmark setup exited {proc.returncode}; log {log}:\n{log.read_text()[-3000:]}")
    return json.loads(proc.stdout)


# ---- the report -----------------------------------------------------------------------------------

def path_ratios(results: dict, sizes: list[str]) -> dict[str, float]:
    """Per scale, the text path's lines/s over the vector path's on the same lines (both runs present)."""
    text, vectors = results.get("text", {}), results.get("text_vectors", {})
    return {size: round((text[size]["lines"] / text[size]["job_seconds"])
                        / (vectors[size]["lines"] / vectors[size]["job_seconds"]), 3)
            for size in sizes if size in text and size in vectors}


def headline(ratios: dict[str, float]) -> list[str]:
    """The text benchmark's line in the report's headline area (none without both variants)."""
    if not ratios:
        return []
    cells = ", ".join(f"{size}: {ratio:.2f}x" for size, ratio in ratios.items())
    return [f"**Text path: text lines/s over the vector path's on the same lines (same model version), {cells}** "
            f"(goal at 250k lines and above: >= {GOAL:.1f}x).", ""]


def note(text: dict | None) -> list[str]:
    """The report's note on the text variants' model and vectors (none when they did not run)."""
    if not text:
        return []
    model, corpora = text["model"], text["corpora"]
    nnz = ", ".join(f"{size}: {c['text_vectors']['nnz_per_line']}" for size, c in corpora.items())
    return ["", f"text and text_vectors scored model {model['name']} v{model['version']} (the workload's model, "
                f"published with a feature pipeline of {model['word_vocabulary']} words + "
                f"{model['suffix_vocabulary']} suffixes; nnz/line of its vectors {nnz}); their max abs diff is "
                "against text_vectors."]


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--redis-url", required=True)
    p.add_argument("--work", required=True)
    p.add_argument("--corpus", action="append", default=[], help="SIZE:LINES:SEED (repeatable)")
    args = p.parse_args(argv)
    corpora = [(s, int(n), int(seed)) for s, n, seed in (c.split(":") for c in args.corpus)]
    print(json.dumps(build(args.redis_url, Path(args.work), corpora)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
