"""JIT settings for the local JVMs we start, chosen by how long the run will be.

Why: a cold JVM's compilers compete with TensorFlow for the same cores. On
the benchmark (2 cores) the JIT threads used 15 of a one-shot run's 63
CPU-seconds, 11 of them in C2, mostly compiling start-up code (query
planning, Janino, class initialisation) that never runs hot again. Measured
as same-run A/Bs (``benchmarks/results/ab-c2-thresholds.md``,
``ab-c1-vs-c2-thresholds.md``, ``ab-c2x30-vs-c1.md``):

- ``balanced``: ten times HotSpot's tier-4 (C2) thresholds; 1.09x at 200k
  lines and 1.13x at 50k against JVM defaults, same marginal rate;
- ``quick``: C1 only (``TieredStopAtLevel=1``, no profiling, no C2); a
  further 1.11x at 200k and 1.31x at 50k, but the JVM's per-row work runs
  slower for good (marginal 0.61x of the ceiling against 0.66x), so a long
  run loses what start-up gained: break-even between ~250k and ~650k lines.

Together, as committed, against the commit before them: 1.18x at 200k and
1.34x at 50k, ranges apart (``ab-jvm-jit.md``). ``auto`` therefore picks
``quick`` when the input's Parquet footers count at most ``QUICK_MAX_LINES``
rows and ``balanced`` otherwise (or when the input cannot be counted cheaply:
a table, a remote path, another format).
"""

from __future__ import annotations

import logging
import os
from urllib.parse import urlparse

log = logging.getLogger(__name__)

MODES = ("auto", "quick", "balanced", "default")
OPTIONS = {
    "quick": "-XX:TieredStopAtLevel=1",
    "balanced": ("-XX:Tier4InvocationThreshold=50000 -XX:Tier4MinInvocationThreshold=6000 "
                 "-XX:Tier4CompileThreshold=150000 -XX:Tier4BackEdgeThreshold=400000"),
    "default": "",
}
QUICK_MAX_LINES = 500_000
MAX_FILES = 2_000  # reading more footers than this costs more than guessing


def java_options(mode: str, input_path: str = "", input_format: str = "parquet") -> str:
    """Driver JVM options for ``mode``; ``auto`` without an input to count means ``balanced``."""
    return OPTIONS[resolve(mode, input_path, input_format)]


def resolve(mode: str, input_path: str = "", input_format: str = "parquet") -> str:
    """``auto`` -> ``quick`` or ``balanced`` by the input's row count; other modes are returned as given."""
    if mode != "auto":
        return mode
    rows = parquet_rows(input_path, limit=QUICK_MAX_LINES) if input_format == "parquet" else None
    if rows is None:
        chosen, why = "balanced", "the input's rows cannot be counted from here"
    elif rows > QUICK_MAX_LINES:
        chosen, why = "balanced", f"the input has more than {QUICK_MAX_LINES:,} rows"
    else:
        chosen, why = "quick", f"the input has {rows:,} rows, at most {QUICK_MAX_LINES:,}"
    log.info("JVM JIT: %s (%s)", chosen, why)
    return chosen


def parquet_rows(path: str, *, limit: int) -> int | None:
    """Rows in a local Parquet file or directory, read from the footers; None when not local or unreadable.

    Counting stops once it passes ``limit`` (the answer is then only "more").
    """
    found = parquet_footers(path, limit=limit)
    return None if found is None else found[1]


def parquet_footers(path: str, *, limit: int) -> tuple[list[str], int] | None:
    """(data files read, their rows) of a local Parquet input, from the footers, stopping once the rows pass
    ``limit``; None when the input is not local, has more than ``MAX_FILES`` files, or a footer is unreadable
    (Spark reports bad input properly; these answers only choose how to run)."""
    local = local_path(path)
    if local is None or not os.path.exists(local):
        return None
    files, total = [], 0
    try:
        import pyarrow.parquet as pq

        for file in parquet_files(local):
            if len(files) >= MAX_FILES:
                return None
            files.append(file)
            total += pq.read_metadata(file).num_rows
            if total > limit:
                break
        return files, total
    except Exception as e:
        log.debug("could not read the footers of %s: %s", path, e)
        return None


def local_path(path: str) -> str | None:
    if not path or any(c in path for c in "*?[{"):
        return None
    parsed = urlparse(path)
    if parsed.scheme in ("", "file"):
        return parsed.path if parsed.scheme else path
    return None


def parquet_files(root: str):
    """Data files as Spark lists them: hidden (``.``) and metadata (``_``) entries skipped."""
    if os.path.isfile(root):
        yield root
        return
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith((".", "_")))
        for name in sorted(filenames):
            if not name.startswith((".", "_")):
                yield os.path.join(dirpath, name)


def main(argv: list[str] | None = None) -> int:
    """Print the driver JVM options a job config asks for: ``spark-submit.sh`` on a local master, whose
    JVM starts before any of our code runs. Prints nothing for a config it cannot read: the job
    itself then reports the error, with its exit code."""
    import argparse

    from skol_spark.job.config import load_config
    from skol_spark.errors import SkolError

    parser = argparse.ArgumentParser(prog="python -m skol_spark.local.jvm_jit",
                                     description="Driver JVM JIT options for a job config (job.jvm_jit).")
    parser.add_argument("--conf", required=True, help="the job's YAML config")
    parser.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE")
    args, _ = parser.parse_known_args(argv)  # the job's other options (--quiet, --watermark V) do not matter here
    try:
        config = load_config(args.conf, args.set)
    except (SkolError, OSError):
        return 0
    print(java_options(config.job.jvm_jit, config.input.path, config.input.format))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
