"""Executors' typed errors (``errors.ExecutorError`` / ``from_executor``) and the driver's reading of a failed
Spark job (``job/failures.py``), on error texts shaped like the ones Spark raises."""

from __future__ import annotations

import pytest

from skol_spark import errors
from skol_spark.job.failures import first_line, hint, spark_failure


def spark_error_text(*task_errors: BaseException | str) -> str:
    """A Py4JJavaError's text as a failed ``mapInArrow`` write shows it: a Java stack, then each task
    attempt's Python traceback ending in the exception the task raised."""
    parts = ["An error occurred while calling o123.save.\n"
             "org.apache.spark.SparkException: Job aborted due to stage failure: Task 0 in stage 4.0 failed "
             "4 times, most recent failure: Lost task 0.3 in stage 4.0 (TID 17) (10.0.0.5 executor 1): "
             "org.apache.spark.api.python.PythonException: Traceback (most recent call last):"]
    for error in task_errors:
        line = error if isinstance(error, str) else f"{qualified_name(type(error))}: {error}"
        parts.append('  File "/opt/spark/python/pyspark/worker.py", line 1247, in main\n'
                     '    process()\n'
                     '  File "/work/skol_spark/scoring/partition.py", line 80, in score_partition\n'
                     '    yield from score_table(table, plan, predict).to_batches()\n' + line)
    parts.append("\n\tat org.apache.spark.api.python.BasePythonRunner$ReaderIterator.handlePythonException("
                 "PythonRunner.scala:572)\n\tat org.apache.spark.scheduler.Task.run(Task.scala:141)\n"
                 "Driver stacktrace:\n\tat org.apache.spark.scheduler.DAGScheduler.failJobAndIndependentStages")
    return "\n".join(parts)


def qualified_name(cls: type) -> str:
    """How a Python traceback names an exception class: bare for builtins, else with its module."""
    return cls.__name__ if cls.__module__ == "builtins" else f"{cls.__module__}.{cls.__name__}"


class FakeSparkError(Exception):
    """Stands in for Py4JJavaError: only its text reaches ``from_executor``."""


@pytest.mark.parametrize("cls", [errors.InputContractError, errors.ModelFormatError, errors.UnsafeModelError,
                                 errors.EnvironmentMismatchError, errors.JobFailedError])
def test_executor_error_round_trips_through_a_spark_error(cls):
    message = 'document "d-1" (doc_id): 3 line(s) with NaN\nsecond line, with "quotes" and a \\ backslash'
    text = spark_error_text(errors.ExecutorError(cls(message)))
    back = errors.from_executor(FakeSparkError(text))
    assert type(back) is cls
    assert str(back) == message
    assert back.exit_code == cls.exit_code


def test_the_last_task_attempts_error_wins():
    text = spark_error_text(errors.ExecutorError(errors.ModelFormatError("first attempt")),
                            errors.ExecutorError(errors.InputContractError("last attempt")))
    back = errors.from_executor(FakeSparkError(text))
    assert type(back) is errors.InputContractError and str(back) == "last attempt"


def test_an_error_without_the_tag_is_not_typed():
    assert errors.from_executor(FakeSparkError(spark_error_text(ValueError("boom")))) is None
    assert errors.from_executor(RuntimeError("")) is None


@pytest.mark.parametrize("type_name", ["KeyError", "ExecutorError", "NoSuchError", "EXIT_OK", "__builtins__"])
def test_an_unknown_or_foreign_type_becomes_a_failed_job(type_name):
    text = spark_error_text(errors.EXECUTOR_TAG + '{"type": "%s", "message": "it broke"}' % type_name)
    back = errors.from_executor(FakeSparkError(text))
    assert type(back) is errors.JobFailedError
    assert str(back) == "it broke" and back.exit_code == 30


@pytest.mark.parametrize("payload", [
    "not json at all", '{"type": "InputContractError"', '{"message": "no type"}', '{"type": "ConfigError"}',
    '["InputContractError", "a list"]', "", "null",
])
def test_a_garbled_payload_is_not_typed(payload):
    assert errors.from_executor(FakeSparkError(spark_error_text(errors.EXECUTOR_TAG + payload))) is None


def test_spark_failure_returns_the_typed_error():
    text = spark_error_text(errors.ExecutorError(errors.EnvironmentMismatchError("golden outputs differ")))
    failure = spark_failure(FakeSparkError(text))
    assert type(failure) is errors.EnvironmentMismatchError and failure.exit_code == 15


def test_spark_failure_otherwise_names_the_tasks_error_and_says_nothing_was_published():
    failure = spark_failure(FakeSparkError(spark_error_text(
        "ValueError: could not convert string to float: 'abc'")))
    assert type(failure) is errors.JobFailedError and failure.exit_code == 30
    assert "(ValueError: could not convert string to float: 'abc')" in str(failure)
    assert "nothing was published" in str(failure) and "Earlier output is unchanged" in str(failure)
    assert "Traceback" not in str(failure) and "DAGScheduler" not in str(failure)


def test_hint_skips_sparks_wrappers_and_keeps_the_innermost_error():
    text = spark_error_text("ZeroDivisionError: division by zero", "MemoryError: cannot allocate 2 GiB")
    assert hint(text) == "MemoryError: cannot allocate 2 GiB"
    wrapped_only = "py4j.protocol.Py4JJavaError: An error occurred\norg.apache.spark.SparkException: Job aborted"
    assert hint(wrapped_only) == "py4j.protocol.Py4JJavaError: An error occurred"  # no inner error: first line


def test_hint_and_first_line_are_bounded():
    long = "ValueError: " + "x" * 2000
    assert len(hint(long)) == 600 and hint(long).startswith("ValueError: xxx")
    assert len(first_line("y" * 2000 + "\nsecond")) == 400
    assert first_line("  \n ") == "" and hint("") == ""


def test_hint_names_a_module_qualified_error():
    text = spark_error_text("tensorflow.python.framework.errors_impl.ResourceExhaustedError: OOM when allocating")
    assert hint(text) == "ResourceExhaustedError: OOM when allocating"
