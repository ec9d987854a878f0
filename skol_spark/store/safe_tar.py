"""Unpack an untrusted tar (a legacy model archive) without letting it write outside, or more than, it may.

Every member is vetted before the first byte is written (paths, links, devices, member count, declared
sizes against a cap and against the disk's free space); members then pass tarfile's ``data`` filter
and are streamed out with a running total. A full disk is reported as a full disk (LocalResourceError,
exit 4), never as an unreadable archive.
"""

from __future__ import annotations

import errno
import gzip
import io
import re
import shutil
import tarfile
import zlib
from pathlib import Path, PurePosixPath

from skol_spark.errors import LocalResourceError, ModelFormatError, UnsafeModelError

MAX_MEMBERS = 10_000
MAX_TOTAL_BYTES = 1024**3  # an original SKOL archive (h5 + feature pipeline) holds tens of MB
COPY_BLOCK = 1024 * 1024
DISK_FULL = (errno.ENOSPC, errno.EDQUOT)
FILTER_ERROR = getattr(tarfile, "FilterError", ())  # Python >= 3.10.12 / 3.11.4


def safe_extract(archive_bytes: bytes, dest: Path, *, max_members: int = MAX_MEMBERS,
                 max_bytes: int = MAX_TOTAL_BYTES) -> None:
    """Extract a tar (gzip'd or plain) into ``dest``, refusing it whole if any member is unsafe.

    Every member is checked before the first byte is written: absolute paths,
    ``..`` components, paths resolving outside ``dest``, symlinks, hardlinks,
    devices, FIFOs, more than ``max_members`` members, or more than
    ``max_bytes`` of declared file data raise UnsafeModelError naming the member
    and the reason; declared data larger than the free space of ``dest``'s disk
    raises LocalResourceError (exit 4). Members then pass tarfile's ``data``
    filter and are streamed out with a running total held to ``max_bytes``; a
    disk that fills up anyway is reported as full, not as an unreadable archive.
    """
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    root = dest.resolve()
    try:
        with tarfile.open(fileobj=io.BytesIO(archive_bytes), mode="r:*") as tar:
            members = _checked_members(tar, root, max_members, max_bytes)
            declared = sum(m.size for m in members if m.isreg())
            free = shutil.disk_usage(root).free
            if declared > free:
                raise LocalResourceError(_disk_full_text(root, f"the archive expands to {declared} bytes and "
                                                               f"{free} are free"))
            written = 0
            for member in members:
                written = _extract_member(tar, member, root, written, max_bytes)
    except FILTER_ERROR as e:
        raise UnsafeModelError(f"legacy archive refused by tarfile's data filter: {e}") from None
    except OSError as e:
        if e.errno in DISK_FULL:
            raise LocalResourceError(_disk_full_text(root, "it filled up while extracting")) from None
        raise _unreadable(e) from None
    except (tarfile.TarError, EOFError, zlib.error) as e:
        raise _unreadable(e) from None


def _unreadable(e: BaseException) -> ModelFormatError:
    return ModelFormatError(f"legacy archive is not a readable tar/tar.gz ({type(e).__name__}: {e}); "
                            "export it again from the original project")


def _disk_full_text(root: Path, detail: str) -> str:
    return (f"not enough disk space to unpack the legacy archive in {root.parent} ({detail}); free space "
            "there or point TMPDIR at a larger disk")


def _extract_member(tar: tarfile.TarFile, member: tarfile.TarInfo, root: Path, written: int, max_bytes: int) -> int:
    """Write one vetted member under ``root``; returns the running total of bytes written."""
    if hasattr(tarfile, "data_filter"):  # Python >= 3.11.4: the standard library's own rules as well
        member = tarfile.data_filter(member, str(root))
    target = root / member.name
    if member.isdir():
        target.mkdir(parents=True, exist_ok=True)
        return written
    target.parent.mkdir(parents=True, exist_ok=True)
    source = tar.extractfile(member)
    assert source is not None  # a regular file (links and devices were refused)
    with source, target.open("wb") as out:
        while block := source.read(COPY_BLOCK):
            written += len(block)
            if written > max_bytes:
                raise UnsafeModelError(f"legacy archive expands to more than {max_bytes} bytes (at member "
                                       f"{member.name!r}); refused")
            out.write(block)
    return written


def _checked_members(tar: tarfile.TarFile, root: Path, max_members: int, max_bytes: int) -> list[tarfile.TarInfo]:
    members: list[tarfile.TarInfo] = []
    total = 0
    for member in tar:  # lazy: a bomb is stopped at the limit, not after it is read
        members.append(member)
        if len(members) > max_members:
            raise UnsafeModelError(f"legacy archive has more than {max_members} members; refused "
                                   "(a model archive has a few dozen)")
        reason = _unsafe_reason(member, root)
        if reason:
            raise UnsafeModelError(f"legacy archive member {member.name!r} refused: {reason}. Nothing was "
                                   "extracted; the archive is corrupt or malicious: re-export it from a trusted copy")
        total += member.size if member.isreg() else 0
        if total > max_bytes:
            raise UnsafeModelError(f"legacy archive expands to more than {max_bytes} bytes (at member "
                                   f"{member.name!r}); refused")
    return members


def _unsafe_reason(member: tarfile.TarInfo, root: Path) -> str:
    name = member.name
    if not name or "\x00" in name:
        return "empty or NUL in its name"
    if name.startswith(("/", "\\")) or re.match(r"[A-Za-z]:", name):
        return "absolute path"
    if ".." in re.split(r"[\\/]", name):
        return "'..' path component"
    if member.issym():
        return f"symbolic link (to {member.linkname!r})"
    if member.islnk():
        return f"hard link (to {member.linkname!r})"
    if member.ischr() or member.isblk():
        return "device file"
    if member.isfifo():
        return "FIFO"
    if not (member.isreg() or member.isdir()):
        return f"unsupported member type {member.type!r}"
    if not (root / name).resolve().is_relative_to(root):
        return "resolves outside the extraction directory"
    return ""


def pack_directory(directory: Path) -> bytes:
    """A directory -> reproducible tar.gz bytes (sorted members, zeroed times and owners)."""
    buffer = io.BytesIO()
    with gzip.GzipFile(fileobj=buffer, mode="wb", mtime=0) as gz, tarfile.open(fileobj=gz, mode="w") as tar:
        for path in [directory, *sorted(directory.rglob("*"))]:
            info = tar.gettarinfo(str(path), arcname=str(PurePosixPath(directory.name, path.relative_to(directory))))
            info.mtime, info.uid, info.gid, info.uname, info.gname = 0, 0, 0, "", ""
            info.mode = 0o755 if info.isdir() else 0o644
            if info.isreg():
                with path.open("rb") as f:
                    tar.addfile(info, f)
            else:
                tar.addfile(info)
    return buffer.getvalue()


# ---- publishing -----------------------------------------------------------
