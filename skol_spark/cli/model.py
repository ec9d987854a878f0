"""``skol-spark model ...``: publish, list, show, alias, verify, import-legacy, delete, gc.

Each action is one function of ``(store, args) -> exit code`` in ``ACTIONS``;
``model_command`` opens the store once and closes it after. The parser is in
``cli.model_parser``; publishing a file, the one action with checks of its
own, is in ``cli.model_publish``.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

from skol_spark.cli.model_pipeline import verify_pipeline
from skol_spark.cli.model_publish import publish_file
from skol_spark.errors import ConfigError, ModelFormatError, ModelIntegrityError
from skol_spark.store.pipeline import describe_lines


def _store(args, chunk_size: int | None = None):
    from skol_spark.job.model_loading import open_store
    from skol_spark.store.connection import RedisSettings

    url = store_url(args)
    settings = RedisSettings(url=url, ssl_ca_file=args.ssl_ca_file, socket_timeout=args.timeout)
    return open_store(settings, prefix=args.prefix, chunk_size=chunk_size)


def store_url(args) -> str:
    """The store's URL: ``--redis-url``, else ``$SKOL_REDIS_URL``, else the local default."""
    return args.redis_url or os.environ.get("SKOL_REDIS_URL") or "redis://127.0.0.1:6379/0"


def model_command(args) -> int:
    action = args.model_command
    store = _store(args, getattr(args, "chunk_size", None))
    try:
        return ACTIONS[action](store, args)
    finally:
        store.client.close()


def _list(store, args) -> int:
    if not args.name:
        names = store.models()
        if not names:  # say so, on stderr: stdout stays one line per model for scripts
            from skol_spark.job.config import redact_url

            print(f"no models in the store at {redact_url(store_url(args))} (prefix {args.prefix})", file=sys.stderr)
        for name in names:
            versions = store.versions(name)
            print(f"{name}\t{len(versions)} version(s)\tlatest v{versions[-1] if versions else '-'}")
        return 0
    versions = store.versions(args.name)
    if not versions:
        store.resolve(args.name, "latest")  # raises ModelNotFoundError naming the models that exist
    aliases = store.aliases(args.name)
    for version in versions:
        names = ",".join(sorted(a for a, v in aliases.items() if v == version))
        try:
            manifest = store.manifest(args.name, version)
        except (ModelFormatError, ModelIntegrityError) as e:  # still list it: the admin is here to clean up
            print(f"v{version}\tunreadable: {e}\t-\t{names}")
            continue
        params = manifest["weights"].get("parameters")
        print(f"v{version}\t{manifest.get('created_at', '-')}\t{'-' if params is None else f'{params:,}'} params"
              f"\t{names}")
    return 0


def _show(store, args) -> int:
    manifest = store.manifest(args.name, args.version)
    if args.json:
        print(json.dumps(manifest, indent=2, sort_keys=True))
        return 0
    aliases = sorted(a for a, v in store.aliases(args.name).items() if v == manifest["version"])
    rows = [
        ("model", f"{manifest['name']} v{manifest['version']}" + (f" ({', '.join(aliases)})" if aliases else "")),
        ("created", manifest.get("created_at", "-")),
        ("labels", ", ".join(manifest["labels"])),
        ("window / stride", f"{manifest['window_size']} / {manifest.get('stride') or manifest['window_size']}"),
        ("features", f"{manifest['feature_size']} ({manifest.get('feature_kind', 'any')})"),
        ("parameters", f"{manifest['weights'].get('parameters', 0):,}"),
        ("weights", f"{manifest['weights']['bytes']:,} bytes in {manifest['weights']['chunks']} chunk(s), "
                    f"sha256 {manifest['weights']['sha256']}"),
        ("architecture", f"sha256 {manifest['architecture']['sha256']}"),
        ("trained with", ", ".join(manifest.get("compile_objects", [])) or "-"),
        ("frameworks", ", ".join(f"{k} {v}" for k, v in sorted(manifest.get("framework", {}).items()))),
        ("source", manifest.get("source", {}).get("kind", "-")),
        *describe_lines(manifest),
        ("extras", ", ".join(manifest.get("extras", {})) or "-"),
        ("notes", manifest.get("notes") or "-"),
    ]
    width = max(len(k) for k, _ in rows)
    for key, value in rows:
        print(f"{key.ljust(width)}  {value}")
    return 0


def _alias(store, args) -> int:
    version = store.set_alias(args.name, args.alias, args.version)
    print(f"{args.name}: {args.alias} -> v{version}")
    return 0


def _verify(store, args) -> int:
    from skol_spark.model.builder import build_predictor, configure_tensorflow

    artifact = store.load(args.name, args.version)  # checksums verified here
    configure_tensorflow(os.cpu_count() or 1)
    build_predictor(artifact, custom_modules=tuple(args.custom_layers_module), where="verify")
    print(f"{args.name} v{artifact.version}: checksums ok, model rebuilt, golden outputs match")
    verify_pipeline(store, artifact, tuple(args.pipeline_module))
    return 0


def _import_legacy(store, args) -> int:
    from skol_spark.store.legacy import import_legacy, read_archive_from_redis

    if args.key:
        data = read_archive_from_redis(store.client, args.key)
    else:
        path = Path(args.file)
        if not path.is_file():
            raise ConfigError(f"legacy archive not found: {path}")
        data = path.read_bytes()
    limit = {"max_bytes": args.max_unpacked_bytes} if args.max_unpacked_bytes else {}
    version = import_legacy(store, data, args.name, notes=args.notes, **limit)
    for alias in args.alias:
        store.set_alias(args.name, alias, version)
    print(f"imported {args.name} v{version}")
    return 0


def _delete(store, args) -> int:
    version = store.resolve(args.name, args.version)
    store.delete(args.name, version, force=args.force)
    print(f"deleted {args.name} v{version}")
    return 0


def _gc(store, args) -> int:
    from skol_spark.store.gc import find_unpublished, remove_orphan
    from skol_spark.store.names import validate_name

    if args.grace < 0:
        raise ConfigError(f"--grace {args.grace:g}: must be >= 0 seconds")
    if args.name:
        validate_name(args.name)
    found = find_unpublished(store, args.name)
    orphans = [u for u in found if u.is_orphan(args.grace)]
    for u in found:
        age = "age unknown" if u.age is None else f"started {u.age:.0f} s ago"
        state = "orphan" if u in orphans else "kept: in progress (younger than --grace) or age unknown"
        if u in orphans and args.delete:
            state = "removed" if remove_orphan(store, u) else "kept: published meanwhile"
        print(f"{u.name} v{u.version}\t{len(u.keys)} key(s)\t{u.bytes:,} bytes\t{age}\t{state}")
    total = sum(u.bytes for u in orphans)
    hint = "" if args.delete or not orphans else "; remove them with --delete"
    print(f"{len(orphans)} orphaned version(s), {total:,} bytes{hint}")
    return 0


ACTIONS = {"publish": publish_file, "list": _list, "show": _show, "alias": _alias, "verify": _verify,
           "import-legacy": _import_legacy, "delete": _delete, "gc": _gc}

