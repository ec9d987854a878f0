"""A failed Spark job as the SkolError the user acts on.

A task that raised a SkolError sent it as a tagged payload
(``errors.ExecutorError``): the driver gets its class and exit code back
from that, never from the wording of a message. Anything else is a failed
job (exit 30) whose message keeps the task's last error line as a hint.
"""

from __future__ import annotations

import re

from skol_spark import errors

_ERROR_LINE = re.compile(r"^\s*(?:\w+\.)*(\w+(?:Error|Exception)): (.+)$", re.M)  # a module prefix dropped
_SPARK_WRAPPERS = ("Py4JJavaError", "PythonException", "SparkException")


def spark_failure(error: BaseException) -> errors.SkolError:
    """``error`` from a Spark action -> the SkolError a task raised, or a ``JobFailedError``."""
    typed = errors.from_executor(error)
    if typed is not None:
        return typed
    return errors.JobFailedError(f"the Spark job failed, nothing was published ({hint(str(error))}). Earlier "
                                 "output is unchanged; see the Spark logs for the executor traceback")


def hint(text: str) -> str:
    """The innermost ``SomeError: message`` line of a Spark error, else its first line (at most 600 chars)."""
    lines = [m for m in _ERROR_LINE.finditer(text) if m.group(1) not in _SPARK_WRAPPERS]
    if lines:
        return f"{lines[-1].group(1)}: {lines[-1].group(2).strip()}"[:600]
    return first_line(text)[:600]


def first_line(text: str) -> str:
    return text.strip().splitlines()[0][:400] if text.strip() else ""
