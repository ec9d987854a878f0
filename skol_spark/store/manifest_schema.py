"""The model manifest's schema: every field that loading, scoring and ``model show`` read, checked once.

A manifest is data that a bad disk, a newer writer or anyone with write access to Redis can change, so
nothing in it is used before it is checked here: a wrong type or an impossible value is a
ModelFormatError naming the field (``manifest field weights.chunks: expected an integer >= 0, got
'many'``), never a Python traceback. Counts and sizes are never trusted to size anything: the chunk
count must fit the byte count, the window size must fit the golden outputs recorded with the version,
and ``ModelStore`` bounds the rest by what Redis holds (the last claimed chunk must exist; chunks are
read in batches against a running total).
"""

from __future__ import annotations

import re
from typing import Any, Callable

from skol_spark.errors import ModelFormatError, ModelIntegrityError
from skol_spark.model.artifact import FORMAT_VERSION, GOLDEN_WINDOWS

FEATURE_KINDS = ("dense", "sparse", "vector", "any")
REQUIRED_FIELDS = ("name", "version", "labels", "window_size", "feature_size", "architecture", "weights")
SHA256 = re.compile(r"[0-9a-f]{64}")


def _int(low: int = 0) -> tuple[str, Callable[[Any], bool]]:
    return f"an integer >= {low}", lambda v: isinstance(v, int) and not isinstance(v, bool) and v >= low


def _str_list(v: Any) -> bool:
    return isinstance(v, list) and all(isinstance(x, str) for x in v)


DIGEST = ("a sha256 hex digest", lambda v: isinstance(v, str) and bool(SHA256.fullmatch(v)))
TEXT = ("a string", lambda v: isinstance(v, str))
OBJECT = ("an object", lambda v: isinstance(v, dict))
PAYLOAD = {"sha256": DIGEST, "bytes": _int(0), "chunks": _int(0)}
# field -> (what it must be, test); ``None`` values of optional fields are allowed
TOP: dict[str, tuple[str, Callable[[Any], bool]]] = {
    "labels": ("a non-empty list of distinct label names",
               lambda v: _str_list(v) and len(v) > 0 and len(set(v)) == len(v) and all(v)),
    "window_size": _int(1),
    "feature_size": _int(1),
    "architecture": OBJECT,
    "weights": OBJECT,
}
OPTIONAL: dict[str, tuple[str, Callable[[Any], bool]]] = {
    "stride": _int(1),
    "feature_kind": (f"one of {', '.join(FEATURE_KINDS)}", lambda v: v in FEATURE_KINDS),
    "variable_length": ("true or false", lambda v: isinstance(v, bool)),
    "notes": TEXT,
    "created_at": TEXT,
    "compile_objects": ("a list of names", _str_list),
    "framework": ("an object of name: version strings",
                  lambda v: isinstance(v, dict) and all(isinstance(x, str) for x in v.values())),
    "source": OBJECT,
    "extras": OBJECT,
    "golden": OBJECT,
}


def check_manifest(manifest: Any, *, name: str, version: int) -> dict[str, Any]:
    """Return ``manifest`` if it is a format-1 manifest of ``name`` v``version`` that loading can trust.

    Format version first (a newer writer may change anything else), then the required fields, the
    identity (a manifest copied from another key would label rows with the wrong version), then types.
    Raises ModelIntegrityError (exit 12) for a wrong identity or a non-object, ModelFormatError (13)
    naming the field otherwise.
    """
    where = f"model {name!r} v{version}"
    if not isinstance(manifest, dict):
        raise ModelIntegrityError(f"{where}: manifest is not a JSON object; republish the model")
    fmt = manifest.get("format_version", 0)
    if not _int(0)[1](fmt):
        raise ModelFormatError(f"{where}: manifest field format_version: expected an integer >= 0, "
                               f"got {_show(fmt)}")
    if fmt > FORMAT_VERSION:
        raise ModelFormatError(
            f"{where} uses manifest format {fmt}, newer than this skol_spark understands "
            f"({FORMAT_VERSION}); upgrade skol_spark on the driver and executors")
    missing = [k for k in REQUIRED_FIELDS if k not in manifest]
    if missing:
        raise ModelFormatError(f"{where}: manifest lacks {', '.join(missing)}; republish the model")
    if manifest.get("name") != name or str(manifest.get("version")) != str(version):
        raise ModelIntegrityError(
            f"{where}: its manifest describes model {_show(manifest.get('name'))} v{_show(manifest.get('version'))}; "
            "the key was overwritten or copied, republish the model")
    _check_fields(manifest, where)
    return manifest


def _check_fields(manifest: dict[str, Any], where: str) -> None:
    for field, (what, ok) in TOP.items():
        _expect(ok(manifest[field]), where, field, what, manifest[field])
    for field, (what, ok) in OPTIONAL.items():
        value = manifest.get(field)
        _expect(value is None or ok(value), where, field, what, value)
    stride = manifest.get("stride")
    _expect(stride is None or stride <= manifest["window_size"], where, "stride",
            f"at most window_size ({manifest['window_size']})", stride)
    _check_payload(manifest["architecture"], where, "architecture", {"sha256": DIGEST, "bytes": _int(0)})
    weights = manifest["weights"]
    _check_payload(weights, where, "weights", {**PAYLOAD, "arrays": _int(0), "parameters": _int(0)},
                   optional=("arrays", "parameters"))
    for key, meta in (manifest.get("extras") or {}).items():
        _expect(isinstance(meta, dict), where, f"extras.{key}", "an object", meta)
        _check_payload(meta, where, f"extras.{key}", PAYLOAD)
    if manifest.get("golden"):
        _check_golden(manifest, where)


def _check_payload(meta: dict[str, Any], where: str, part: str, fields: dict, optional: tuple[str, ...] = ()) -> None:
    for field, (what, ok) in fields.items():
        if field in optional and meta.get(field) is None:
            continue
        _expect(field in meta and ok(meta[field]), where, f"{part}.{field}", what, meta.get(field))
    if "chunks" in fields:  # every chunk holds at least one byte: the byte count bounds the chunk count
        chunks, size = meta["chunks"], meta["bytes"]
        _expect(chunks <= size and (chunks > 0) == (size > 0), where, f"{part}.chunks",
                f"between 1 and {part}.bytes ({size}), or 0 for an empty payload", chunks)


def _check_golden(manifest: dict[str, Any], where: str) -> None:
    """The recorded outputs are ``[3][window_size][labels]`` numbers: the window size is bounded by data
    the manifest really holds, before anything allocates ``window_size``-sized probe windows, and the
    label count must match the classes recorded (the message names both shapes)."""
    golden = manifest["golden"]
    _expect(_int(0)[1](golden.get("seed")), where, "golden.seed", "an integer >= 0", golden.get("seed"))
    outputs, window = golden.get("outputs"), manifest["window_size"]
    classes = len(manifest["labels"])
    ok = isinstance(outputs, list) and len(outputs) == GOLDEN_WINDOWS and all(
        isinstance(w, list) and len(w) == window and all(
            isinstance(row, list) and len(row) == classes
            and all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in row) for row in w)
        for w in outputs)
    _expect(ok, where, "golden.outputs", f"numbers shaped [{GOLDEN_WINDOWS}][window_size={window}][labels={classes}] "
            f"(found {_outline(outputs)})", outputs)


def _outline(value: Any) -> str:
    """The nested list lengths along the first elements, e.g. ``[3][8][3]``."""
    dims = ""
    while isinstance(value, list) and len(dims) < 40:
        dims += f"[{len(value)}]"
        value = value[0] if value else None
    return dims or type(value).__name__


def _expect(ok: bool, where: str, field: str, what: str, value: Any) -> None:
    if not ok:
        raise ModelFormatError(f"{where}: manifest field {field}: expected {what}, got {_show(value)}. The manifest "
                               "is corrupt or was edited: republish the model, or remove this version with "
                               "skol-spark model delete")


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."
