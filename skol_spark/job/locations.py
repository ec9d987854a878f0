"""Every location a run reads or writes, resolved once and checked before anything is written.

A run reads its input and writes its output (with a staging directory and a
lock beside it), its run manifests and reports, and, by policy, quarantined
lines. When two of those locations overlap, a run destroys its own data:
``overwrite`` onto the input deletes the input, ``append`` into it mixes
scored rows into the next run's input, and an output nested inside the input
is read back as input by every later run. So before Redis, TensorFlow or any
Spark job, every location is

- qualified the way Hadoop will use it (scheme, authority, absolute path,
  ``..`` and trailing slashes normalised, the ``file:`` prefix added) and,
  on a local disk, with symlinks resolved, so that no spelling hides an
  overlap;
- checked for names Hadoop cannot handle: a ``:`` in a file or directory
  name is read as a URI scheme when Hadoop derives a sibling from it (the
  lock's checksum file), so a run would publish and then fail;
- checked against every other location: the input against every written
  location, written locations against each other. Overlap = the same
  directory, or one inside the other.

A new written location (e.g. an annotated-documents directory) is one more
entry in ``written_locations``; the rules need no change.
"""

from __future__ import annotations

import os
import posixpath
import re
from dataclasses import dataclass

from skol_spark.errors import ConfigError, JobFailedError
from skol_spark.job.config import JobConfig
from skol_spark.job.hadoop_fs import first_line

GLOB_CHARACTERS = "*?[]{}\\"


@dataclass(frozen=True)
class Location:
    """One configured location: ``key`` names the setting, ``given`` is as written; ``root`` (``file:`` or
    ``scheme://authority``) and ``path`` (absolute, normalised) are filled in by ``check_locations``."""

    key: str
    given: str
    writes: bool
    root: str = ""
    path: str = ""

    @property
    def uri(self) -> str:
        return self.root + self.path


def written_locations(config: JobConfig) -> list[tuple[str, str]]:
    """``(setting, path)`` of every directory the run writes into (output tables have no path here)."""
    from skol_spark.job.manifest import manifest_root

    out, scoring = config.output, config.scoring
    found = [("output.path", out.path)]
    found.append(("output.manifest_path" if out.manifest_path else "run manifests (beside output.path)",
                  manifest_root(config) if (out.manifest_path or out.path) else ""))
    if scoring.bad_input == "quarantine":
        found.append(("scoring.quarantine_path", scoring.quarantine_path))
    found.append(("output.annotated_path", getattr(out, "annotated_path", "")))
    return [(key, path) for key, path in found if path]


def check_locations(spark, config: JobConfig) -> list[Location]:
    """Qualify the input and every written location and refuse a bad one; -> the qualified locations.

    Raises ConfigError (exit 2) naming both paths of an overlap, or the path
    Hadoop cannot handle, or a file standing where a directory will be written.
    Writes nothing.
    """
    from skol_spark.job.services import is_connect, services_for
    from skol_spark.job.sink import check_mode

    services = services_for(spark)
    qualify = _qualified_here if is_connect(spark) else (lambda loc: _qualified(spark, loc))
    wanted = [Location(key, path, True) for key, path in written_locations(config)]
    for loc in wanted:
        refuse_unsupported_name(loc)
    if config.input.path and not config.input.table:
        wanted.insert(0, Location("input.path", config.input.path, False))
    located = [qualify(loc) for loc in wanted]
    refuse_overlaps(located)
    for loc in located:
        if loc.writes:
            try:
                refuse_file_in_the_way(services.fs(loc.uri), loc, config.output.mode)
            except ConfigError:
                raise
            except Exception as e:  # Py4JJavaError: the file system is unreachable or refuses us
                raise JobFailedError(f"cannot inspect {loc.key} {loc.given}: {first_line(e)}. Nothing was "
                                     "written; check that the location is reachable and readable") from None
    if config.output.path:
        check_mode(services.fs(config.output.path), config.output.path, config.output.mode)
    return located


def refuse_unsupported_name(loc: Location) -> None:
    """A written path whose names Hadoop cannot turn into siblings/children, or that Spark would glob."""
    body = loc.given
    if re.match(r"^[A-Za-z][A-Za-z0-9+.-]*:/", body):  # scheme:/path, scheme://authority/path (host:8020)
        from urllib.parse import urlsplit

        body = urlsplit(body).path
    if ":" in body:
        name = next(part for part in body.split("/") if ":" in part)
        raise ConfigError(
            f"{loc.key} {loc.given}: the name {name!r} contains ':', which Hadoop reads as a URI scheme when it "
            "names the files it writes beside it (checksums, the lock); the run would publish and then fail. "
            f"Use a name without ':', e.g. {name.replace(':', '')!r}")
    bad = sorted({c for c in body if c in GLOB_CHARACTERS})
    if bad:
        raise ConfigError(f"{loc.key} {loc.given}: contains {''.join(bad)!r}, which Spark reads as a glob pattern "
                          "when it reads the written rows back; use a plain directory name")


def refuse_overlaps(located: list[Location]) -> None:
    for i, a in enumerate(located):
        for b in located[i + 1:]:
            if not (a.writes or b.writes) or a.root != b.root:
                continue
            relation = _relation(a.path, b.path)
            if relation:
                raise ConfigError(
                    f"{a.key} {a.given} and {b.key} {b.given} {relation} ({a.uri} and {b.uri} once resolved): "
                    f"a run would {_harm(a, b)}. Choose separate, non-nested locations; nothing was written")


def refuse_file_in_the_way(fs, loc: Location, mode: str) -> None:
    """A written directory that is an existing file, or whose parent chain meets a file, fails late
    (after scoring, leaving staging behind): refuse it now. ``overwrite`` may replace a file at the output."""
    status = fs.status(loc.uri)
    if status is not None and not status.isDirectory():
        if loc.key == "output.path" and mode == "overwrite":
            return
        raise ConfigError(f"{loc.key} {loc.given} is an existing file, not a directory: a run writes a directory "
                          f"there. Choose another path{' or output.mode=overwrite' if loc.key == 'output.path' else ''}")
    parent = posixpath.dirname(loc.path)
    while parent and parent != "/":
        status = fs.status(loc.root + parent)
        if status is not None:
            if not status.isDirectory():
                raise ConfigError(f"{loc.key} {loc.given}: {parent} is a file, so no directory can be created "
                                  "below it; choose another path")
            return
        parent = posixpath.dirname(parent)


def _qualified(spark, loc: Location) -> Location:
    """``loc`` with ``uri``: Hadoop's qualified form, symlinks resolved on a local disk."""
    jvm = spark.sparkContext._jvm
    given = _glob_free_prefix(loc.given) if not loc.writes else loc.given
    try:
        path = jvm.org.apache.hadoop.fs.Path(given)
        qualified = path.getFileSystem(spark.sparkContext._jsc.hadoopConfiguration()).makeQualified(path)
        uri = qualified.toUri()
    except Exception as e:  # Py4JJavaError: an unknown scheme, an unparsable URI
        raise ConfigError(f"{loc.key} {loc.given}: not a path Hadoop can use ({first_line(e)})") from None
    scheme, authority, path_part = uri.getScheme(), uri.getAuthority(), uri.getPath() or "/"
    if scheme == "file":
        return Location(loc.key, loc.given, loc.writes, "file:", os.path.realpath(path_part))
    return Location(loc.key, loc.given, loc.writes, f"{scheme}://{authority or ''}", posixpath.normpath(path_part))


def _qualified_here(loc: Location) -> Location:
    """``_qualified`` without a JVM (Spark Connect): the driver's own file system for scheme-less and
    ``file:`` paths (the only ones a Connect run writes), other schemes as written."""
    from urllib.parse import urlsplit

    given = _glob_free_prefix(loc.given) if not loc.writes else loc.given
    parts = urlsplit(given)
    if parts.scheme in ("", "file"):
        return Location(loc.key, loc.given, loc.writes, "file:", os.path.realpath(parts.path or given))
    return Location(loc.key, loc.given, loc.writes, f"{parts.scheme}://{parts.netloc}",
                    posixpath.normpath(parts.path or "/"))


def _glob_free_prefix(path: str) -> str:
    """An input may be a glob (``/data/in/*.parquet``): its location is the directory before the pattern."""
    parts = path.split("/")
    for i, part in enumerate(parts):
        if any(c in part for c in "*?[]{}"):
            return "/".join(parts[:i]) or "/"
    return path


def _relation(a: str, b: str) -> str:
    a, b = a.rstrip("/") or "/", b.rstrip("/") or "/"
    if a == b:
        return "are the same location"
    if b.startswith(a.rstrip("/") + "/"):
        return "overlap: the second is inside the first"
    if a.startswith(b.rstrip("/") + "/"):
        return "overlap: the first is inside the second"
    return ""


def _harm(a: Location, b: Location) -> str:
    if "input.path" in (a.key, b.key):
        return "write into (or, with output.mode=overwrite, delete) its own input, or read its output back as input"
    return "write one result into the other (an overwrite would delete it)"
