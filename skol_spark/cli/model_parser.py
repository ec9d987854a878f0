"""The argument parser of ``skol-spark model ...``: one small function per action.

Every action talks to the store, so each gets the same connection options
(``_action``); what an action adds of its own is in its ``_*_args`` function,
next to nothing else, so a new option lands in one obvious place. The
actions themselves are in ``cli.model``.
"""

from __future__ import annotations

from skol_spark.cli.model_pipeline import add_pipeline_args

GC_DESCRIPTION = (
    "A publish writes a version's payload keys first and makes the version visible at the end; "
    "a publish killed in between leaves keys (often tens of MB) that no other command reaches. "
    "gc lists the unpublished versions with their keys and bytes; those whose publish started "
    "more than --grace seconds ago are orphans, which --delete removes. Published versions and "
    "younger publishes (taken to be in progress) are never touched. The age of keys left by "
    "publishes from before skol_spark recorded it is their idle time in Redis.")


def add_model_parser(sub) -> None:
    m = sub.add_parser("model", help="manage models in the Redis store",
                       description="Manage model versions in Redis. The password comes from SKOL_REDIS_PASSWORD "
                                   "(or the URL) and is never printed.")
    ms = m.add_subparsers(dest="model_command", required=True, metavar="ACTION")
    _publish_args(_action(ms, "publish", help="publish a .keras/.h5 file as a new version"))
    _action(ms, "list", help="list models, or the versions and aliases of one model").add_argument("name", nargs="?")
    _show_args(_action(ms, "show", help="print a version's manifest"))
    _alias_args(_action(ms, "alias", help="point an alias (production, staging, ...) at a version"))
    _verify_args(_action(ms, "verify", help="re-check checksums and rebuild the model (golden outputs)"))
    _import_legacy_args(_action(ms, "import-legacy",
                                help="import an original-SKOL tar.gz model (Redis key or file)"))
    _delete_args(_action(ms, "delete", help="delete one version"))
    _gc_args(_action(ms, "gc", help="list (and with --delete remove) the keys of publishes that never finished",
                     description=GC_DESCRIPTION))


def _action(actions, name: str, **kwargs):
    """The subparser of one action, with the store's connection options every action shares."""
    p = actions.add_parser(name, **kwargs)
    p.add_argument("--redis-url", default=None, help="redis:// or rediss:// URL (default: $SKOL_REDIS_URL, "
                                                     "else redis://127.0.0.1:6379/0)")
    p.add_argument("--ssl-ca-file", default="", help="CA bundle for rediss:// URLs")
    p.add_argument("--prefix", default="skol", help="key prefix of the store (default: skol)")
    p.add_argument("--timeout", type=float, default=5.0, help="socket timeout in seconds (default: 5)")
    return p


def _publish_args(p) -> None:
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


def _show_args(p) -> None:
    p.add_argument("name")
    p.add_argument("version", nargs="?", default="latest", help="version number or alias (default: latest)")
    p.add_argument("--json", action="store_true", help="print the raw manifest JSON")


def _alias_args(p) -> None:
    p.add_argument("name")
    p.add_argument("alias")
    p.add_argument("version")


def _verify_args(p) -> None:
    p.add_argument("name")
    p.add_argument("version", nargs="?", default="latest")
    p.add_argument("--custom-layers-module", action="append", default=[], metavar="MODULE")
    add_pipeline_args(p)


def _import_legacy_args(p) -> None:
    p.add_argument("name")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--key", help="Redis key holding the legacy archive")
    src.add_argument("--file", help="local legacy archive (.tar.gz)")
    p.add_argument("--notes", default="")
    p.add_argument("--alias", action="append", default=[])
    p.add_argument("--max-unpacked-bytes", type=int, default=None, metavar="BYTES",
                   help="refuse an archive whose members add up to more (default: 1 GiB); checked from the "
                        "members' declared sizes before anything is written")


def _delete_args(p) -> None:
    p.add_argument("name")
    p.add_argument("version")
    p.add_argument("--force", action="store_true", help="delete even if an alias points at it")


def _gc_args(p) -> None:
    p.add_argument("name", nargs="?", help="only this model (default: every model under --prefix)")
    p.add_argument("--grace", type=float, default=3600.0, metavar="SECONDS",
                   help="a publish younger than this is in progress, never removed (default: 3600)")
    p.add_argument("--delete", action="store_true", help="remove the orphans (default: only list them)")
