"""Names and version references in the store: one rule for what may be called what.

Model, alias and extra names become parts of Redis keys, so they are held to
a small alphabet here, before anything is written. A reference given by a
user (``7``, ``v7``, ``production``) is a version number or an alias; an alias
that reads as a number is refused, so the two can never be confused. Values
read back from Redis are checked with the same rule, so a hand-edited key
fails naming itself instead of as a bare ``ValueError``.
"""

from __future__ import annotations

import re

from skol_spark.errors import ConfigError, ModelIntegrityError


def validate_name(name: str) -> None:
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.\-]{0,127}", name or ""):
        raise ConfigError(f"invalid name {name!r}: use letters, digits, '.', '_' or '-' (max 128)")


def validate_alias(alias: str) -> None:
    validate_name(alias)
    if parse_version(alias) is not None:
        raise ConfigError(f"alias {alias!r} must not be a number (it would read as a version)")


def parse_version(ref: str | int) -> int | None:
    """``7``, ``"7"`` or ``"v7"`` (as ``model list`` prints it) -> 7; anything else -> None (an alias)."""
    text = str(ref).strip()
    if text[:1] in ("v", "V") and text[1:].isascii() and text[1:].isdigit():
        text = text[1:]
    return int(text) if text.isascii() and text.isdigit() else None


def stored_version(raw: bytes | str, key: str) -> int:
    """A version number read from Redis (``versions`` member, alias value); ModelIntegrityError naming the
    key when someone wrote something else there."""
    version = parse_version(raw.decode(errors="replace") if isinstance(raw, bytes) else raw)
    if version is None:
        raise ModelIntegrityError(f"{key} holds {raw[:40]!r}, not a version number; the key was overwritten: "
                                  "point the alias at a version again (skol-spark model alias) or republish")
    return version
