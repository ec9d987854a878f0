"""The exception tree and the exit codes the CLI maps it to.

Every error a user can cause or fix is a ``SkolError`` whose message says what
failed, names the key / column / document involved, and says how to fix it.
The CLI maps each class to one documented exit code (README, "Exit codes"), so
schedulers can tell a bad config from a missing model from bad input.
"""

from __future__ import annotations


class SkolError(Exception):
    """Base class: a failure with an actionable message and a stable exit code."""

    exit_code = 1


class ConfigError(SkolError):
    """The job config or the command line is invalid (names the field)."""

    exit_code = 2


class DependencyError(SkolError):
    """The Python environment cannot run the job safely (e.g. keras < 3.15)."""

    exit_code = 3


class LocalResourceError(SkolError):
    """This machine lacks what the command needs (disk space in the temp directory); names where and how much."""

    exit_code = 4


class ModelStoreError(SkolError):
    """Base for errors raised while talking to the model store."""

    exit_code = 10


class RedisUnavailableError(ModelStoreError):
    """Redis could not be reached, timed out, or refused the credentials."""

    exit_code = 10


class ModelNotFoundError(ModelStoreError):
    """The model, version or alias does not exist in the store."""

    exit_code = 11


class ModelIntegrityError(ModelStoreError):
    """A stored artifact is incomplete or does not match its checksums."""

    exit_code = 12


class ModelFormatError(ModelStoreError):
    """An artifact cannot be rebuilt: newer format, unknown layer, bad metadata."""

    exit_code = 13


class UnsafeModelError(ModelFormatError):
    """An artifact asks for code execution (Lambda bytecode, arbitrary module, unsafe archive)."""

    exit_code = 14


class EnvironmentMismatchError(ModelStoreError):
    """The rebuilt model does not reproduce the golden outputs recorded at publish."""

    exit_code = 15


class InputContractError(SkolError):
    """The input table breaks the data contract (names column, document and fix)."""

    exit_code = 20


class JobFailedError(SkolError):
    """The Spark job failed at run time; earlier output is left as it was."""

    exit_code = 30


class JobTimeoutError(JobFailedError):
    """The job ran longer than ``job.timeout_seconds`` and was cancelled."""

    exit_code = 31


class OutputLockedError(JobFailedError):
    """Another run holds the output's lock (two runs of the same batch)."""

    exit_code = 32


class NothingToDo(SkolError):
    """Incremental mode found no unscored documents (not a failure)."""

    exit_code = 99


EXIT_OK = 0
EXIT_UNEXPECTED = 1


# Executors' errors reach the driver as the text of Spark's own exception (the Python traceback). A SkolError
# raised on an executor is carried in it as one tagged JSON line, so the driver gets back its class (and
# exit code) from the payload instead of guessing from the wording.
EXECUTOR_TAG = "skol-spark-executor-error: "


class ExecutorError(RuntimeError):
    """A SkolError raised in a Spark task, serialised for the driver (``from_executor`` rebuilds it)."""

    def __init__(self, error: SkolError) -> None:
        import json

        super().__init__(EXECUTOR_TAG + json.dumps({"type": type(error).__name__, "message": str(error)}))


def from_executor(spark_error: BaseException) -> SkolError | None:
    """The SkolError an executor raised inside ``spark_error`` (the last one, if retries raised several),
    or None when the task failed for another reason."""
    import json

    text = str(spark_error)
    at = text.rfind(EXECUTOR_TAG)
    if at < 0:
        return None
    try:
        payload, _ = json.JSONDecoder().raw_decode(text, at + len(EXECUTOR_TAG))
        cls = globals().get(str(payload["type"]))
        message = str(payload["message"])
    except (ValueError, KeyError, TypeError):
        return None
    if not (isinstance(cls, type) and issubclass(cls, SkolError)):
        cls = JobFailedError
    return cls(message)
