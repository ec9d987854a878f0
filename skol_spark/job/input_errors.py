"""Input that Spark cannot read, as one clear line: which file, what is wrong with it, the fix.

Spark reports an unreadable file with an error condition (``FAILED_READ_FILE.*``,
message parameter ``path``) on the Java exception behind a ``Py4JJavaError``;
the condition is read here, never the message text. Whether a file Spark
could not read as Parquet is Parquet at all is settled by its first bytes
(Parquet files begin with ``PAR1``), not by Spark's wording.
"""

from __future__ import annotations

from skol_spark.errors import InputContractError

PARQUET_MAGIC = b"PAR1"


def spark_condition(error: BaseException) -> tuple[str, dict]:
    """``(condition, message parameters)`` of a Spark error or of the first cause that has one; ``("", {})``
    when none has. Works on PySpark's captured exceptions and on ``Py4JJavaError`` alike."""
    if hasattr(error, "getCondition"):
        try:
            return error.getCondition() or "", dict(error.getMessageParameters() or {})
        except Exception:  # a captured exception without a condition
            pass
    java = getattr(error, "java_exception", None)
    for _ in range(20):  # a cause chain is short; never loop on a cyclic one
        if java is None:
            break
        try:
            condition = java.getCondition()
            if condition:
                return str(condition), dict(java.getMessageParameters())
        except Exception:  # not a SparkThrowable: look at its cause
            pass
        try:
            java = java.getCause()
        except Exception:
            break
    return "", {}


def java_summary(error: BaseException) -> str:
    """The first line of the Java exception's message (not py4j's "An error occurred while calling o96.load")."""
    java = getattr(error, "java_exception", None)
    text = ""
    if java is not None:
        try:
            text = str(java.getMessage() or java.toString())
        except Exception:
            text = ""
    text = text or str(error)
    lines = [x for x in text.strip().splitlines() if x.strip()]
    return lines[0][:400] if lines else type(error).__name__


def unreadable_input(spark, error: BaseException, *, fmt: str | None, source: str,
                     input_files: list[str] = ()) -> InputContractError | None:
    """The InputContractError for a file Spark failed to read (``FAILED_READ_FILE``), else None.

    ``fmt``: the configured ``input.format``; None where unknown, and then the
    file was read as Parquet if Spark could not read its footer, or if another
    of ``input_files`` (the input's files) is Parquet."""
    condition, params = spark_condition(error)
    if not condition.startswith("FAILED_READ_FILE"):
        return None
    path = params.get("path") or source
    head = first_bytes(spark, path)
    read_as_parquet = fmt == "parquet" or (fmt is None and (
        condition.endswith("CANNOT_READ_FILE_FOOTER") or any(
            (first_bytes(spark, f) or b"").startswith(PARQUET_MAGIC) for f in input_files[:3] if f != path)))
    if head is not None and head.startswith(PARQUET_MAGIC):
        what = "a corrupt or truncated Parquet file"
    elif head is not None and read_as_parquet:
        return InputContractError(
            f"input file {path} is not a Parquet file (it begins with {head!r}; Parquet files begin with "
            f"{PARQUET_MAGIC!r}), but it was read as Parquet (input.format: {fmt or 'parquet'}); nothing was "
            "written. Set input.format to the file's format (e.g. csv, json), convert it to Parquet, or move "
            "it out of the input directory")
    else:
        what = "a file Spark could not read"
    return InputContractError(
        f"input file {path} is {what} ({condition}); nothing was written. Rewrite the file from its source, or "
        "move it out of the input")


def first_bytes(spark, path: str, count: int = 8) -> bytes | None:
    """The first ``count`` bytes of a file, through Hadoop's filesystem (any scheme); None if unreadable."""
    from skol_spark.job.sink import HadoopFS

    try:
        fs = HadoopFS(spark, path)
        stream = fs.fs.open(fs.path(path))
        try:
            data = bytearray()
            for _ in range(count):
                byte = stream.read()
                if byte < 0:
                    break
                data.append(byte)
            return bytes(data)
        finally:
            stream.close()
    except Exception:  # only a better message is lost
        return None
