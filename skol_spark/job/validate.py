"""Driver-side input checks: the data contract is enforced before any output exists.

The schema is checked without running anything; the per-line checks (the
rules of ``scoring.rules``: null or NaN keys, null/NaN/inf features or values
beyond float32, wrong feature size, bad sparse indices, duplicate keys) run
as ONE aggregation job over keys and flags only (features are never
shuffled), which also yields the line and document totals used for sizing
and progress. Where bad input is refused, not quarantined, it reads the
keys only: the scoring tasks check every feature anyway, and when one
refuses a feature the driver runs the full scan to list every problem
(``job.run``); nothing is published either way. A scan that Spark itself cannot run (an unreadable file, a
vector the JVM refuses to deserialize) ends in one clear error, not a trace.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any, Callable

from skol_spark.errors import InputContractError, JobFailedError
from skol_spark.scoring import rules
from skol_spark.scoring.rules import FIXES, FLAGS  # noqa: F401  (one list of rules: re-exported)

KEY_FLAGS = ("null_key", "duplicate")  # the rules that need no feature

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class InputReport:
    """Totals of one validation pass; ``bad`` maps a flag to (line count, example)."""

    lines: int
    documents: int
    bad: dict[str, tuple[int, Any]] = field(default_factory=dict)
    split_documents: tuple[int, Any] = (0, None)  # (count, example doc) spanning input partitions, if checked
    scattered_documents: int = -1  # documents whose lines are not one run of the input's rows (-1: not checked)
    scan: str = "spark"  # which scan made the report (run manifest: input.validated_by)
    features_checked: bool = True  # False: keys only, the scoring tasks check the features

    @property
    def in_document_order(self) -> bool:
        """Every document's lines are one run of rows inside one input partition, as the input is read."""
        return self.scattered_documents == 0

    @property
    def ok(self) -> bool:
        return not any(count for count, _ in self.bad.values())


def feature_kind(dtype) -> str:
    """'array', 'vector' or 'sparse' for a supported Spark type; raises InputContractError otherwise."""
    from pyspark.ml.linalg import VectorUDT
    from pyspark.sql import types as T

    if isinstance(dtype, VectorUDT):
        return "vector"
    if isinstance(dtype, T.ArrayType) and isinstance(dtype.elementType, (T.FloatType, T.DoubleType)):
        return "array"
    if isinstance(dtype, T.StructType) and {"indices", "values"} <= set(dtype.fieldNames()):
        return "sparse"
    raise InputContractError(
        f"feature column has type {dtype.simpleString()}; expected array<float>, a Spark ML vector, or "
        "struct<indices: array<int>, values: array<float>> (set input.features_col to the right column)")


def check_schema(df, *, doc_col: str, line_col: str, features_col: str, label_col: str = "") -> str:
    """Raise InputContractError naming a missing/mistyped column; returns the feature kind."""
    from pyspark.sql import types as T

    columns = df.columns
    for key, name in (("input.doc_id_col", doc_col), ("input.line_col", line_col),
                      ("input.features_col", features_col), ("input.label_col", label_col)):
        if name and name not in columns:
            raise InputContractError(f"input has no column {name!r} ({key}); its columns are {columns}. "
                                     f"Rename the column upstream or set {key}")
    line_type = df.schema[line_col].dataType
    if not isinstance(line_type, (T.IntegerType, T.LongType, T.ShortType, T.ByteType)):
        raise InputContractError(f"column {line_col!r} (input.line_col) must be an integer line number, "
                                 f"got {line_type.simpleString()} (a float line number can be NaN, which orders "
                                 "nowhere); cast it to an integer upstream")
    doc_type = df.schema[doc_col].dataType
    if not isinstance(doc_type, (T.StringType, T.NumericType, T.BinaryType, T.BooleanType, T.DateType,
                                 T.TimestampType, T.TimestampNTZType)):
        raise InputContractError(f"column {doc_col!r} (input.doc_id_col) must be a string or a number naming the "
                                 f"document, got {doc_type.simpleString()}; derive an id column upstream")
    collation = getattr(doc_type, "collation", "UTF8_BINARY") if isinstance(doc_type, T.StringType) else ""
    if collation not in ("", "UTF8_BINARY"):
        raise InputContractError(
            f"column {doc_col!r} (input.doc_id_col) has collation {collation}: Spark would group ids that this "
            "collation calls equal (e.g. differing in case) as one document, while the scoring task compares "
            f"them byte for byte. Use collate({doc_col}, 'UTF8_BINARY') upstream")
    return feature_kind(df.schema[features_col].dataType)


def line_flags(df, *, doc_col: str, line_col: str, features_col: str, kind: str, feature_size: int,
               raw_vectors: bool = False):
    """Per-line boolean flags, one per rule of ``scoring.rules`` but ``duplicate``, as Spark columns (no UDF).

    ``raw_vectors`` reads a Spark ML vector's stored fields (type, size,
    indices, values), as the worker gets them through Arrow, instead of
    deserializing it with ``vector_to_array``: the JVM's ``SparseVector``
    fails the whole job on an index outside its size, a repeated or unsorted
    index, or indices and values of different lengths. The stored fields cost
    a JSON round trip per line, so ``scan_input`` reads them only when the
    fast scan failed.
    """
    from pyspark.sql import functions as F

    feats = F.col(features_col)
    missing, sparse = feats.isNull(), {}
    if kind == "vector" and raw_vectors:
        vector = stored_vector(feats)
        values, dense = vector["values"], vector["type"] == 1
        size = F.when(dense, F.size(values)).otherwise(F.coalesce(vector["size"], F.lit(-1)))
        sparse = {f: ~dense & c for f, c in rules.sparse_flags_sql(vector["indices"], values, feature_size).items()}
    elif kind == "vector":
        from pyspark.ml.functions import vector_to_array

        # only where there is a vector: Spark 4's vector_to_array fails the job on a null one
        values = F.when(feats.isNotNull(), vector_to_array(feats, "float32"))
        size = F.size(values)
    elif kind == "array":
        values, size = feats, F.size(feats)
    else:
        values = feats["values"]
        has_size = "size" in df.schema[features_col].dataType.fieldNames()
        size = F.coalesce(feats["size"], F.lit(feature_size)) if has_size else F.lit(feature_size)
        # a struct whose indices or values are null is no feature vector at all
        missing = missing | feats["indices"].isNull() | values.isNull()
        sparse = rules.sparse_flags_sql(feats["indices"], values, feature_size)
    # indices are checked against the model's size only where the declared size is the model's (as decoded)
    checks = {"bad_size": size != feature_size, **{f: (size == feature_size) & c for f, c in sparse.items()},
              "nonfinite": rules.nonfinite_sql(values)}
    return df.select(
        *key_columns(df, doc_col=doc_col, line_col=line_col), missing.alias("null_features"),
        *[F.coalesce(~missing & checks.get(f, F.lit(False)), F.lit(False)).alias(f)
          for f in FLAGS if f not in ("null_key", "null_features", "duplicate")])


def key_columns(df, *, doc_col: str, line_col: str) -> list:
    """``_doc``, ``_line`` and the ``null_key`` flag: what every scan reads, features or not."""
    from pyspark.sql import functions as F

    schema = df.schema
    null_key = rules.null_like_sql(F.col(doc_col), schema[doc_col].dataType) | \
        rules.null_like_sql(F.col(line_col), schema[line_col].dataType)
    return [F.col(doc_col).alias("_doc"), F.col(line_col).alias("_line"), null_key.alias("null_key")]


def stored_vector(column):
    """A Spark ML vector column as its stored struct<type, size, indices, values>, read without deserializing
    it (``to_json`` writes a UDT through its SQL type; Spark has no cast from a UDT to its struct)."""
    from pyspark.ml.linalg import VectorUDT
    from pyspark.sql import functions as F
    from pyspark.sql import types as T

    schema = T.StructType([T.StructField("v", VectorUDT().sqlType())])
    return F.from_json(F.to_json(F.struct(column.alias("v"))), schema, {"allowNonNumericNumbers": "true"})["v"]


def scan_input(df, *, doc_col: str, line_col: str, features_col: str, kind: str, feature_size: int,
               before_run: Callable[[], Any] | None = None, check_clustered: bool = False,
               check_order: bool = False, features: bool = True) -> InputReport:
    """One Spark job: totals and, per problem, the number of lines and one example.

    ``features=False`` checks the keys' rules only (``KEY_FLAGS``) and never
    reads the feature column.

    ``check_clustered`` also counts documents whose lines sit in more than one
    of ``df``'s partitions: the claim ``input.clustered_by_doc`` makes, which
    would otherwise score such a document as two sequences.

    ``check_order`` also counts documents whose lines are not one contiguous
    run of rows in the order the input is read (``scattered_documents``). A
    row's position is Spark's ``monotonically_increasing_id`` (partition in
    the upper bits, row number in the lower 33), so a run never crosses a
    partition. When none is scattered, the scoring task can stream the input
    as it is read instead of sorting all of it first (``scoring.sort: auto``).

    ``before_run`` is called once the query is built, just before it runs:
    the driver starts its CPU-bound smoke test there, so that the hundreds
    of py4j calls that build the query do not queue for the GIL behind it
    (the job itself runs in the JVM).

    A Spark ML vector the JVM cannot deserialize fails the fast scan; the
    scan then runs again on the vectors' stored fields (``line_flags``), which
    counts it under its rule. A file Spark cannot read raises
    InputContractError naming it; any other failure JobFailedError.
    """
    keys = dict(doc_col=doc_col, line_col=line_col, features_col=features_col, kind=kind,
                feature_size=feature_size, check_clustered=check_clustered, check_order=check_order,
                features=features)
    try:
        return _scan(df, **keys, before_run=before_run)
    except Exception as e:
        if kind != "vector" or not features or unreadable(df, e):
            raise scan_failure(df, e) from e
        from skol_spark.job.input_errors import java_summary

        log.info("the validation scan failed on a vector the JVM refuses (%s); reading the vectors' stored "
                 "fields instead", java_summary(e))
    try:
        return _scan(df, **keys, raw_vectors=True)
    except Exception as e:
        raise scan_failure(df, e) from e


def unreadable(df, error: Exception) -> bool:
    from skol_spark.job.input_errors import spark_condition

    return spark_condition(error)[0].startswith("FAILED_READ_FILE")


def scan_failure(df, error: Exception) -> Exception:
    """The one-line error for a validation scan Spark could not run."""
    from skol_spark.job.input_errors import java_summary, unreadable_input

    try:
        files = list(df.inputFiles())
    except Exception:
        files = []
    named = unreadable_input(df.sparkSession, error, fmt=None, source="the input", input_files=files)
    return named or JobFailedError(f"the validation scan of the input failed, nothing was written: "
                                   f"{java_summary(error)}. Run with --debug for Spark's traceback")


def _scan(df, *, doc_col: str, line_col: str, features_col: str, kind: str, feature_size: int,
          before_run: Callable[[], Any] | None = None, check_clustered: bool = False, check_order: bool = False,
          raw_vectors: bool = False, features: bool = True) -> InputReport:
    from pyspark.sql import functions as F

    checked = FLAGS if features else KEY_FLAGS
    flags = line_flags(df, doc_col=doc_col, line_col=line_col, features_col=features_col, kind=kind,
                       feature_size=feature_size, raw_vectors=raw_vectors) if features \
        else df.select(*key_columns(df, doc_col=doc_col, line_col=line_col))
    # One shuffle of keys and flags by document serves all three levels (line key, document, total): a
    # cold JVM pays seconds per extra stage, and countDistinct would add an expand and two more shuffles.
    position = F.monotonically_increasing_id() if check_clustered or check_order else F.lit(0).cast("long")
    flags = flags.select("*", position.alias("_row"))
    per_key = flags.repartition("_doc").groupBy("_doc", "_line").agg(
        F.count(F.lit(1)).alias("n"), F.min("_row").alias("row_lo"), F.max("_row").alias("row_hi"),
        *[F.max(F.col(f).cast("int")).alias(f) for f in checked if f != "duplicate"])
    example = F.struct(F.col("_doc").cast("string").alias("doc"), F.col("_line").alias("line"))
    first_row, last_row = F.min("row_lo"), F.max("row_hi")
    per_doc_aggs = [F.sum("n").alias("lines"),
                    (F.shiftright(first_row, 33) != F.shiftright(last_row, 33)).alias("split"),
                    (last_row - first_row + 1 != F.sum("n")).alias("scattered")]
    aggs = [F.coalesce(F.sum("lines"), F.lit(0)).alias("lines"), F.count(F.lit(1)).alias("documents"),
            F.count(F.when(F.col("split"), 1)).alias("split_count"),
            F.count(F.when(F.col("scattered"), 1)).alias("scattered_count"),
            F.first(F.when(F.col("split"), F.col("_doc").cast("string")), ignorenulls=True).alias("split_example")]
    for flag in checked:
        hit = (F.col("n") > 1) if flag == "duplicate" else (F.col(flag) == 1)
        weight = (F.col("n") - 1) if flag == "duplicate" else F.col("n")
        count, first = f"{flag}_count", f"{flag}_example"
        per_doc_aggs += [F.sum(F.when(hit, weight)).alias(count),
                         F.first(F.when(hit, example), ignorenulls=True).alias(first)]
        aggs += [F.coalesce(F.sum(count), F.lit(0)).alias(count), F.first(first, ignorenulls=True).alias(first)]
    query = per_key.groupBy("_doc").agg(*per_doc_aggs).agg(*aggs)
    if before_run is not None:
        before_run()
    row = query.collect()[0]
    bad = {f: (int(row[f"{f}_count"]), _example(row[f"{f}_example"])) for f in checked}
    return InputReport(lines=int(row["lines"]), documents=int(row["documents"]), bad=bad, features_checked=features,
                       scan="spark" if features else "spark: keys (the scoring tasks check the features)",
                       split_documents=(int(row["split_count"]), row["split_example"]) if check_clustered else (0, None),
                       scattered_documents=int(row["scattered_count"]) if check_order else -1)


def refuse_split_documents(report: InputReport, *, doc_col: str) -> None:
    """``input.clustered_by_doc`` is set but the input does not keep each document in one partition."""
    count, example = report.split_documents
    if count:
        raise InputContractError(
            f"input.clustered_by_doc is set, but {count} document(s) have lines in more than one input "
            f"partition (e.g. {doc_col}={example!r}), so they would be scored in pieces; nothing was written. "
            "Unset input.clustered_by_doc (the job then groups documents with a shuffle), or write the input "
            "with each document in one file (e.g. repartition by the document id before writing) and raise "
            "spark.sql.files.maxPartitionBytes above the largest file")


def _example(value) -> Any:
    return None if value is None else {"doc": value["doc"], "line": value["line"]}


def refuse_bad_input(report: InputReport, *, doc_col: str, line_col: str, features_col: str,
                     feature_size: int) -> None:
    """Raise one InputContractError listing every problem with counts, an example and the fix."""
    if report.ok:
        return
    problems = []
    for flag, (count, example) in report.bad.items():
        if count:
            what = rules.describe(flag, doc=doc_col, line=line_col, col=features_col, size=feature_size)
            where = f", e.g. {doc_col}={example['doc']!r} {line_col}={example['line']}" if example else ""
            problems.append(f"{count} line(s) with {what}{where}: {FIXES[flag]}")
    raise InputContractError(
        f"input refused, nothing was written ({report.lines} lines in {report.documents} documents):\n  - "
        + "\n  - ".join(problems)
        + "\nOr set scoring.bad_input: quarantine to set the offending documents aside and score the rest")
