"""``skol-spark model ...``: publish, list, show, alias, verify, import-legacy, delete, gc."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

from skol_spark.cli.model_pipeline import add_pipeline_args, verify_pipeline
from skol_spark.errors import ConfigError, ModelFormatError, ModelIntegrityError
from skol_spark.store.pipeline import describe_lines

MAX_CONFIG_BYTES = 64 * 1024 * 1024  # a model's architecture JSON is kilobytes; more is a zip bomb


def add_model_parser(sub) -> None:
    m = sub.add_parser("model", help="manage models in the Redis store",
                       description="Manage model versions in Redis. The password comes from SKOL_REDIS_PASSWORD "
                                   "(or the URL) and is never printed.")
    ms = m.add_subparsers(dest="model_command", required=True, metavar="ACTION")

    def common(p):
        p.add_argument("--redis-url", default=None, help="redis:// or rediss:// URL (default: $SKOL_REDIS_URL, "
                                                         "else redis://127.0.0.1:6379/0)")
        p.add_argument("--ssl-ca-file", default="", help="CA bundle for rediss:// URLs")
        p.add_argument("--prefix", default="skol", help="key prefix of the store (default: skol)")
        p.add_argument("--timeout", type=float, default=5.0, help="socket timeout in seconds (default: 5)")
        return p

    p = common(ms.add_parser("publish", help="publish a .keras/.h5 file as a new version"))
    p.add_argument("name")
    p.add_argument("path", help="model file (.keras or .h5)")
    p.add_argument("--labels", required=True, help="label names in class-index order, comma separated")
    p.add_argument("--window-size", type=int, default=None, help="lines per window (default: the model's input)")
    p.add_argument("--stride", type=int, default=None, help="default prediction stride (default: window size)")
    p.add_argument("--feature-kind", default="any", choices=["dense", "sparse", "vector", "any"])
    p.add_argument("--notes", default="")
    p.add_argument("--alias", action="append", default=[], help="also point this alias at it (repeatable)")
    p.add_argument("--custom-layers-module", action="append", default=[], metavar="MODULE",
                   help="module defining custom layers the model uses (repeatable)")
    p.add_argument("--chunk-size", type=int, default=None, help="weight chunk size in bytes (default 32 MiB)")
    add_pipeline_args(p, publish=True)

    p = common(ms.add_parser("list", help="list models, or the versions and aliases of one model"))
    p.add_argument("name", nargs="?")

    p = common(ms.add_parser("show", help="print a version's manifest"))
    p.add_argument("name")
    p.add_argument("version", nargs="?", default="latest", help="version number or alias (default: latest)")
    p.add_argument("--json", action="store_true", help="print the raw manifest JSON")

    p = common(ms.add_parser("alias", help="point an alias (production, staging, ...) at a version"))
    p.add_argument("name")
    p.add_argument("alias")
    p.add_argument("version")

    p = common(ms.add_parser("verify", help="re-check checksums and rebuild the model (golden outputs)"))
    p.add_argument("name")
    p.add_argument("version", nargs="?", default="latest")
    p.add_argument("--custom-layers-module", action="append", default=[], metavar="MODULE")
    add_pipeline_args(p)

    p = common(ms.add_parser("import-legacy", help="import an original-SKOL tar.gz model (Redis key or file)"))
    p.add_argument("name")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--key", help="Redis key holding the legacy archive")
    src.add_argument("--file", help="local legacy archive (.tar.gz)")
    p.add_argument("--notes", default="")
    p.add_argument("--alias", action="append", default=[])
    p.add_argument("--max-unpacked-bytes", type=int, default=None, metavar="BYTES",
                   help="refuse an archive whose members add up to more (default: 1 GiB); checked from the "
                        "members' declared sizes before anything is written")

    p = common(ms.add_parser("delete", help="delete one version"))
    p.add_argument("name")
    p.add_argument("version")
    p.add_argument("--force", action="store_true", help="delete even if an alias points at it")

    p = common(ms.add_parser(
        "gc", help="list (and with --delete remove) the keys of publishes that never finished",
        description="A publish writes a version's payload keys first and makes the version visible at the end; "
                    "a publish killed in between leaves keys (often tens of MB) that no other command reaches. "
                    "gc lists the unpublished versions with their keys and bytes; those whose publish started "
                    "more than --grace seconds ago are orphans, which --delete removes. Published versions and "
                    "younger publishes (taken to be in progress) are never touched. The age of keys left by "
                    "publishes from before skol_spark recorded it is their idle time in Redis."))
    p.add_argument("name", nargs="?", help="only this model (default: every model under --prefix)")
    p.add_argument("--grace", type=float, default=3600.0, metavar="SECONDS",
                   help="a publish younger than this is in progress, never removed (default: 3600)")
    p.add_argument("--delete", action="store_true", help="remove the orphans (default: only list them)")


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


def _publish(store, args) -> int:
    from skol_spark.model.builder import import_custom_objects
    from skol_spark.model.vetting import check_architecture, check_keras_floor

    path = Path(args.path)
    if not path.is_file():
        raise ConfigError(f"model file not found: {path}")
    # Vet the file's architecture before Keras deserializes it: a Lambda or a foreign module is refused
    # (exit 14) with nothing imported or run, the same rule the store applies on load.
    architecture, compile_objects = read_file_architecture(path)
    check_architecture(architecture, custom_modules=tuple(args.custom_layers_module))
    check_keras_floor()
    import keras

    try:
        model = keras.models.load_model(path, compile=False,
                                        custom_objects=import_custom_objects(args.custom_layers_module))
    except (ValueError, TypeError, OSError) as e:
        raise ModelFormatError(f"cannot load {path}: {str(e).splitlines()[0][:300]}. A Keras 2 .h5 file "
                               "goes through: skol-spark model import-legacy") from None
    labels = [x.strip() for x in args.labels.split(",") if x.strip()]
    version = store.publish(model, args.name, labels=labels, window_size=args.window_size, stride=args.stride,
                            feature_kind=args.feature_kind, notes=args.notes, aliases=args.alias,
                            source={"kind": "publish", "file": path.name},
                            custom_modules=tuple(args.custom_layers_module), compile_objects=compile_objects,
                            feature_pipeline=args.feature_pipeline, pipeline_modules=tuple(args.pipeline_module))
    print(f"published {args.name} v{version}")
    return 0


def read_file_architecture(path: Path) -> tuple[str, list[str]]:
    """The model config JSON of a ``.keras`` zip (``config.json``) or an ``.h5`` file (``model_config``),
    and the names of the losses/metrics it was compiled with (the model is loaded uncompiled, so they
    are read here for the manifest)."""
    import zipfile

    from skol_spark.store.publish_checks import compile_object_names

    try:
        if zipfile.is_zipfile(path):
            with zipfile.ZipFile(path) as archive:
                size = archive.getinfo("config.json").file_size
                if size > MAX_CONFIG_BYTES:  # declared size, checked before it is inflated into memory
                    raise ModelFormatError(f"{path}: config.json declares {size} bytes (more than {MAX_CONFIG_BYTES}); "
                                           "not a Keras model file")
                config = archive.read("config.json").decode()
            return config, compile_object_names(config)
        import h5py

        with h5py.File(path, "r") as h5:
            config, training = h5.attrs.get("model_config"), h5.attrs.get("training_config")
        if config is None:
            raise ModelFormatError(f"{path} holds no model config (weights only?); save the whole model with "
                                   "model.save('model.keras')")
        text = lambda v: v.decode() if isinstance(v, bytes) else str(v)  # noqa: E731
        wrapped = json.dumps({"compile_config": json.loads(text(training))}) if training is not None else "{}"
        return text(config), compile_object_names(wrapped)
    except (KeyError, OSError, zipfile.BadZipFile, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ModelFormatError(f"cannot read {path}: {e}; expected a Keras .keras or .h5 model file") from None


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


ACTIONS = {"publish": _publish, "list": _list, "show": _show, "alias": _alias, "verify": _verify,
           "import-legacy": _import_legacy, "delete": _delete, "gc": _gc}

