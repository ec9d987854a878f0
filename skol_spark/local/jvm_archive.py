"""A class-data-sharing (CDS) archive of the classes a scoring run loads, for faster local JVM starts.

Why: every local run starts a cold JVM that loads, parses and verifies
thousands of classes from Spark's jars before and during the first queries;
on 2 cores that is seconds of CPU competing with TensorFlow. A dynamic CDS
archive (JDK 13+) recorded once from the real job on a tiny model and corpus
(embedded Redis, Parquet read, validation scan, shuffle, sort, ``mapInArrow``,
staged write) lets later JVMs map those classes instead, which shortens
both the session's start and the first queries (benchmarks/README.md).

Created only on request (``skol-spark jvm-archive``: ~30 s once, ~200 MB in
the cache directory), used automatically by sessions this package creates on
a local master (``job.jvm_class_archive: auto``; ``never`` does not use it). A
spark-submit or Databricks driver JVM exists before our code runs, so there it
is never used. The file name is keyed by the ``java`` binary and the Spark
version; if the JVM still finds it unusable it ignores it (logging of the
check is turned off), so a stale archive costs nothing but disk.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
from pathlib import Path


QUIET = "-Xlog:cds=off -Xlog:cds+dynamic=off"


def cache_dir() -> Path:
    base = os.environ.get("SKOL_SPARK_CACHE_DIR") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "skol_spark")
    return Path(base)


def java_binary() -> str | None:
    """The ``java`` Spark's launcher runs: ``$JAVA_HOME/bin/java``, else the one on PATH."""
    home = os.environ.get("JAVA_HOME")
    if home and os.access(os.path.join(home, "bin", "java"), os.X_OK):
        return os.path.join(home, "bin", "java")
    return shutil.which("java")


def archive_path() -> Path | None:
    """Where this machine's archive lives (None without java)."""
    import pyspark

    java = java_binary()
    if not java:
        return None
    real = os.path.realpath(java)
    key = hashlib.sha256(f"{real}|{os.stat(real).st_mtime_ns}|{pyspark.__version__}".encode()).hexdigest()[:12]
    return cache_dir() / f"spark-{pyspark.__version__}-{key}.jsa"


def session_java_options(setting: str) -> str:
    """Driver JVM options for a new local session: the archive when it exists and is wanted, else ''."""
    if setting == "never":
        return ""
    path = archive_path()
    if path is None or not path.is_file():
        return ""
    return f"-XX:SharedArchiveFile={path} {QUIET}"


def java_major(java: str) -> int:
    out = subprocess.run([java, "-version"], capture_output=True, text=True, timeout=60)
    m = re.search(r'version "(\d+)(?:\.(\d+))?', out.stderr + out.stdout)
    if not m:
        return 0
    major = int(m.group(1))
    return int(m.group(2) or 0) if major == 1 else major


def remove() -> Path | None:
    path = archive_path()
    if path is not None and path.exists():
        path.unlink()
        return path
    return None
