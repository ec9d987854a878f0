"""The model store: immutable, checksummed model versions in Redis.

Key layout (``<p>`` is the prefix, ``skol`` by default)::

    <p>:models                               set of model names
    <p>:model:<name>:next                    version counter (INCR)
    <p>:model:<name>:versions                sorted set of published versions
    <p>:model:<name>:aliases                 hash alias -> version (latest, production, ...)
    <p>:model:<name>:pending                 hash version -> server time its publish started (until published)
    <p>:model:<name>:v<N>:manifest           JSON manifest (written last: publishing it publishes the version)
    <p>:model:<name>:v<N>:architecture       model.to_json() (compile config included as trained)
    <p>:model:<name>:v<N>:weights:<i>        chunks of an .npz of get_weights()
    <p>:model:<name>:v<N>:extra:<key>:<i>    chunks of extra files (e.g. a legacy feature pipeline)

A version becomes visible in one MULTI/EXEC that writes its manifest, adds it
to ``versions`` and moves ``latest``; payloads are written before, under keys
nobody reads until then, so a reader never sees half a version. A publish
killed in between leaves them behind, marked in ``pending``: ``store.gc``
(``skol-spark model gc``) finds and removes them once older than a grace
period; a publish whose marker gc removed refuses to commit. Loading reads
only (GET, MGET, HGET, HGETALL, ZSCORE, ZRANGE, SMEMBERS): the scoring job runs with a
read-only ACL user.

``ModelStore`` is the one interface callers use; the parts with a job of their
own live beside it: ``names`` (what a name, alias or version reference may be),
``chunks`` (payloads as chunk keys, read back bounded), ``publish_checks`` (the
checks and the manifest before a write) and ``publishing`` (the two-step write).
"""

from __future__ import annotations

import json
import logging
import re
from typing import Any, Iterable, Mapping, Sequence

from skol_spark.model.artifact import ModelArtifact, encode_weights, sha256
from skol_spark.errors import (ConfigError, ModelIntegrityError, ModelNotFoundError, ModelStoreError,
                               RedisUnavailableError)
from skol_spark.store.chunks import read_chunks
from skol_spark.store.manifest_schema import check_manifest
from skol_spark.store.names import parse_version, stored_version, validate_alias, validate_name
from skol_spark.store.publish_checks import check_publishable, version_manifest
from skol_spark.store.publishing import with_pipeline, write_version

log = logging.getLogger(__name__)

DEFAULT_CHUNK_SIZE = 32 * 1024 * 1024


class ModelStore:
    """Publish, list, alias and load model versions. The driver is the only client."""

    def __init__(self, client, *, prefix: str = "skol", chunk_size: int = DEFAULT_CHUNK_SIZE, where: str = "") -> None:
        if chunk_size < 1:
            raise ValueError("chunk_size must be positive")
        self.client = client
        self.prefix = prefix
        self.chunk_size = chunk_size
        self.where = where or "Redis"

    # ---- keys -------------------------------------------------------------
    def _key(self, name: str, *parts: object) -> str:
        return ":".join([self.prefix, "model", name, *map(str, parts)])

    def _vkey(self, name: str, version: int, *parts: object) -> str:
        return self._key(name, f"v{version}", *parts)

    # ---- reading ----------------------------------------------------------
    def models(self) -> list[str]:
        return sorted(m.decode() for m in self._call(self.client.smembers, f"{self.prefix}:models"))

    def versions(self, name: str) -> list[int]:
        key = self._key(name, "versions")
        return [stored_version(v, key) for v in self._call(self.client.zrange, key, 0, -1)]

    def aliases(self, name: str) -> dict[str, int]:
        raw = self._call(self.client.hgetall, self._key(name, "aliases"))
        return {k.decode(): stored_version(v, f"{self._key(name, 'aliases')}[{k.decode()}]") for k, v in raw.items()}

    def resolve(self, name: str, ref: str | int) -> int:
        """A version number or alias -> an existing version number."""
        text = str(ref).strip()
        parsed = parse_version(text)
        if parsed is not None:
            version = parsed
        else:
            value = self._call(self.client.hget, self._key(name, "aliases"), text)
            if value is None:
                known = sorted(self.aliases(name))
                if not known and not self.versions(name):
                    raise ModelNotFoundError(self._no_model(name))
                raise ModelNotFoundError(
                    f"model {name!r} has no alias {text!r} (aliases: {', '.join(known) or 'none'}); "
                    f"set one with: skol-spark model alias {name} {text} VERSION")
            version = stored_version(value, f"{self._key(name, 'aliases')}[{text}]")
        if self._call(self.client.zscore, self._key(name, "versions"), version) is None:
            numbers = self.versions(name)
            if not numbers:
                raise ModelNotFoundError(self._no_model(name))
            raise ModelNotFoundError(f"model {name!r} has no version {version} (versions: "
                                     f"{', '.join(map(str, numbers))}); see skol-spark model list {name}")
        return version

    def _no_model(self, name: str) -> str:
        others = self.models()
        return (f"model {name!r} not found in {self.where} under prefix {self.prefix!r} "
                f"(models there: {', '.join(others) or 'none'}); publish it with skol-spark model publish")

    def manifest(self, name: str, ref: str | int) -> dict[str, Any]:
        version = self.resolve(name, ref)
        raw = self._call(self.client.get, self._vkey(name, version, "manifest"))
        if raw is None:
            raise ModelIntegrityError(f"model {name!r} version {version} is listed but its manifest key "
                                      f"{self._vkey(name, version, 'manifest')} is missing; republish it")
        try:
            manifest = json.loads(raw)
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise ModelIntegrityError(f"model {name!r} v{version}: manifest {self._vkey(name, version, 'manifest')} "
                                      f"is not valid JSON ({e}); the key was overwritten or corrupted, republish "
                                      "the model") from None
        return check_manifest(manifest, name=name, version=version)

    def load(self, name: str, ref: str | int = "production") -> ModelArtifact:
        """Resolve, read and verify one version. Everything read belongs to that version."""
        manifest = self.manifest(name, ref)
        version = int(manifest["version"])
        arch_key = self._vkey(name, version, "architecture")
        weights = read_chunks(self, name, version, "weights", manifest["weights"])
        architecture = self._call(self.client.get, arch_key)
        if architecture is None:
            raise ModelIntegrityError(f"model {name!r} v{version}: architecture key {arch_key} is missing "
                                      "(deleted or evicted); republish the model")
        artifact = ModelArtifact(name=name, version=version, architecture=architecture.decode(),
                                 weights=weights, manifest=manifest)
        artifact.verify()
        log.info("loaded model %s v%d (weights sha256 %s…, %d bytes)", name, version,
                 manifest["weights"]["sha256"][:12], len(weights))
        return artifact

    def load_extra(self, name: str, ref: str | int, extra: str) -> bytes:
        manifest = self.manifest(name, ref)
        meta = manifest.get("extras", {}).get(extra)
        if meta is None:
            raise ModelNotFoundError(f"model {name!r} v{manifest['version']} has no extra {extra!r}")
        data = read_chunks(self, name, int(manifest["version"]), f"extra:{extra}", meta)
        if sha256(data) != meta["sha256"]:
            raise ModelIntegrityError(f"model {name!r} v{manifest['version']}: extra {extra!r} checksum mismatch")
        return data

    # ---- writing ----------------------------------------------------------
    def publish(self, model, name: str, *, labels: Sequence[str], window_size: int | None = None,
                stride: int | None = None, feature_kind: str = "any", notes: str = "",
                aliases: Iterable[str] = (), extras: Mapping[str, bytes] | None = None,
                source: Mapping[str, Any] | None = None, golden_seed: int = 20240521,
                custom_modules: Sequence[str] = (), allow_unsafe: bool = False,
                compile_objects: Sequence[str] | None = None, feature_pipeline: str | bytes | None = None,
                pipeline_modules: Sequence[str] = ()) -> int:
        """Publish an in-memory ``keras.Model`` as a new immutable version; returns its number.

        The architecture is vetted as loading will vet it (``model.vetting.check_architecture``):
        a ``Lambda`` is refused (UnsafeModelError) unless ``allow_unsafe``, a custom layer needs
        its module in ``custom_modules``. Refusing here beats a version nobody can load.
        ``compile_objects`` (loss/metric names, for the record) defaults to those in the model's
        compile config. ``feature_pipeline`` (a saved PipelineModel directory, or one packed as an import
        finds it) is stored with the version; its stage classes must be allowed (``pipeline_modules``)
        and its output size must equal the model's feature size (``skol_spark.store.pipeline``).
        """
        from skol_spark.model.vetting import check_architecture

        # every check before anything is written: a refusal must not leave a half-published version
        for each in (name, *(extras or {})):
            validate_name(each)
        aliases = list(aliases)
        for alias in aliases:
            validate_alias(alias)
        labels = [str(x) for x in labels]
        shape = check_publishable(model, labels, window_size, stride, feature_kind)
        extras, pipeline_summary = with_pipeline(extras, feature_pipeline, shape[2], pipeline_modules)
        architecture = model.to_json()
        check_architecture(architecture, custom_modules=custom_modules, allow_unsafe=allow_unsafe)
        weights = encode_weights(model.get_weights())
        manifest = version_manifest(model, name, labels, shape, architecture, weights, feature_kind=feature_kind,
                                    notes=notes, golden_seed=golden_seed, compile_objects=compile_objects,
                                    source=source)
        if pipeline_summary:
            manifest["feature_pipeline"] = pipeline_summary
        return write_version(self, name, manifest, architecture, weights, extras, aliases)

    def set_alias(self, name: str, alias: str, ref: str | int) -> int:
        """Point ``alias`` at a version (one HSET: atomic for every reader)."""
        validate_alias(alias)
        version = self.resolve(name, ref)
        self._call(self.client.hset, self._key(name, "aliases"), alias, version)
        return version

    def delete(self, name: str, version: int, *, force: bool = False) -> None:
        """Remove one version. Refuses while an alias (other than ``latest``) points at it."""
        version = self.resolve(name, version)
        pointing = sorted(a for a, v in self.aliases(name).items() if v == version and a != "latest")
        if pointing and not force:
            # a refusal to act, not a store failure: exit 2 (usage), not 10 (Redis unreachable)
            raise ConfigError(f"model {name!r} v{version} is aliased as {', '.join(pointing)}; move the "
                              "alias first or pass --force")
        # The keys are found by pattern, not from the manifest: a corrupt or newer-format manifest must
        # not make its version undeletable. Glob characters (say, in the prefix) are escaped.
        pattern = re.sub(r"([*?\[\]\\])", r"\\\1", self._vkey(name, version)) + ":*"
        keys = sorted(self._call(lambda: list(self.client.scan_iter(match=pattern, count=1000))))
        self._call(self._delete_keys, name, version, pointing, keys)

    def _delete_keys(self, name: str, version: int, pointing: Sequence[str], keys: Sequence[str]) -> None:
        """One transaction: no reader ever resolves ``latest`` to the version being removed.

        WATCH on the versions and aliases makes a concurrent publish or alias move retry it.
        """
        import redis

        versions_key, aliases_key = self._key(name, "versions"), self._key(name, "aliases")
        with self.client.pipeline(transaction=True) as pipe:
            while True:
                try:
                    pipe.watch(versions_key, aliases_key)
                    remaining = [int(v) for v in pipe.zrange(versions_key, 0, -1) if int(v) != version]
                    latest = pipe.hget(aliases_key, "latest")
                    pipe.multi()
                    pipe.zrem(versions_key, str(version))
                    for alias in pointing:
                        pipe.hdel(aliases_key, alias)
                    if latest is not None and int(latest) == version:
                        if remaining:
                            pipe.hset(aliases_key, "latest", max(remaining))
                        else:
                            pipe.hdel(aliases_key, "latest")
                    if not remaining:
                        pipe.srem(f"{self.prefix}:models", name)
                    if keys:
                        pipe.delete(*keys)
                    pipe.execute()
                    return
                except redis.WatchError:
                    continue

    def _call(self, fn, *args):
        """Run one Redis call, mapping transport errors to actionable store errors."""
        import redis

        try:
            return fn(*args)
        except redis.exceptions.NoPermissionError as e:
            raise RedisUnavailableError(f"Redis at {self.where} denied a command (NOPERM): {e}. The scoring job "
                                        "needs read commands on the store's keys; publishing needs write "
                                        "commands (see docs/operations.md, Redis ACL)") from None
        except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError) as e:
            raise RedisUnavailableError(f"lost Redis at {self.where} ({type(e).__name__}: {e}); retried and gave up. "
                                        "Check the server and redis.socket_timeout") from None
        except redis.exceptions.ResponseError as e:
            raise ModelStoreError(f"Redis at {self.where} refused a command: {e}") from None
