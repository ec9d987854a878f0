"""Build a Redis client from a URL with explicit timeouts and a bounded retry.

redis-py's defaults let a GET to a frozen server hang for about a minute; an
unattended nightly job must fail in seconds and say where it tried to go.
The password comes from the environment or a file, never from Spark conf or
the command line, and never appears in a message.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlsplit

from skol_spark.errors import ConfigError, RedisUnavailableError

DEFAULT_URL = "redis://127.0.0.1:6379/0"
# Query parameters redis-py reads from a URL that hold no secret. Every other one is masked: redis-py passes
# any unknown query parameter on to the connection as a keyword (``password``, ``username``, ``ssl_password``,
# and whatever a later version adds), so an allow-list is the only list that stays right.
PUBLIC_QUERY_OPTIONS = frozenset({
    "db", "socket_timeout", "socket_connect_timeout", "socket_read_size", "socket_keepalive", "retry_on_timeout",
    "retry_on_error", "max_connections", "health_check_interval", "ssl_check_hostname", "ssl_validate_ocsp",
    "ssl_validate_ocsp_stapled", "ssl_include_verify_flags", "ssl_exclude_verify_flags", "ssl_min_version",
    "timeout", "protocol", "legacy_responses", "ssl_cert_reqs", "client_name", "decode_responses", "encoding",
})


@dataclass(frozen=True)
class RedisSettings:
    """Where the model store lives and how to reach it: the job config's ``redis`` section, and what the
    ``model`` commands build from their flags. ``url`` may be ``embedded`` (a local redis-server started
    for the run); empty means ``$SKOL_REDIS_URL``, else ``DEFAULT_URL`` (``resolved_url``)."""

    url: str = ""
    password_env: str = "SKOL_REDIS_PASSWORD"
    password_file: str = ""
    password_secret: str = ""  # Databricks <scope>/<key> (store.secrets)
    ssl_ca_file: str = ""
    connect_timeout: float = 2.0
    socket_timeout: float = 5.0
    retries: int = 3
    prefix: str = "skol"


def resolved_url(settings: RedisSettings) -> str:
    return settings.url or os.environ.get("SKOL_REDIS_URL") or DEFAULT_URL


def endpoint(url: str) -> str:
    """``host:port`` of a Redis URL, for messages (never the credentials)."""
    parts = urlsplit(url)
    if parts.scheme == "unix":
        return f"unix:{parts.path}"
    try:
        port = str(parts.port or 6379)
        host = parts.hostname or "127.0.0.1"
    except ValueError:  # a bad port (e.g. a password with an unescaped '/'): never echo what was given
        return "<invalid host:port in redis.url>"
    return f"{host}:{port}"


def redact_url(url: str) -> str:
    """A Redis URL fit for logs, manifests and messages: every credential redis-py would use is ``***``.

    ``redis://alice:pw@host:6379/0?password=pw&db=1`` -> ``redis://alice:***@host:6379/0?password=***&db=1``.
    A user-info part without a colon is masked whole (the old ``redis://password@host`` convention);
    query values not in ``PUBLIC_QUERY_OPTIONS`` and any fragment are masked. The split is on the LAST '@'
    before the path, so an unescaped '@' or '/' inside a password is masked, not echoed.
    """
    scheme, sep, rest = url.partition("://")
    if not sep:
        return url if not any(c in url for c in "@?#") else "***"
    rest, hash_, fragment = rest.partition("#")
    userinfo, at, rest = rest.rpartition("@")
    location, question, query = rest.partition("?")
    if at:
        user, colon, _ = userinfo.partition(":")
        location = (f"{user}:***@" if colon else "***@") + location
    if question:
        pairs = [part.partition("=") for part in query.split("&")]
        query = "&".join(name + eq + (value if not eq or unquote(name) in PUBLIC_QUERY_OPTIONS else "***")
                         for name, eq, value in pairs)
    return f"{scheme}://{location}{question}{query}" + ("#***" if hash_ else "")


def url_secrets(url: str) -> tuple[str, ...]:
    """The secret values a URL carries (the user-info password, the query values ``redact_url`` masks), as
    written and percent-decoded, for scrubbing error texts that may echo them (``describe``)."""
    rest = url.partition("://")[2].partition("#")[0]
    userinfo, at, rest = rest.rpartition("@")
    query = rest.partition("?")[2]
    found = [userinfo.partition(":")[2] if ":" in userinfo else userinfo] if at else []
    found += [value for name, _, value in (pair.partition("=") for pair in query.split("&"))
              if unquote(name) not in PUBLIC_QUERY_OPTIONS]
    found += [unquote(value) for value in found]
    return tuple(sorted({value for value in found if value}, key=len, reverse=True))


def read_password(settings: RedisSettings) -> str | None:
    if settings.password_secret:
        from skol_spark.store.secrets import databricks_secret

        return databricks_secret(settings.password_secret)
    if settings.password_file:
        path = Path(settings.password_file)
        try:
            return path.read_text().strip()
        except OSError as e:
            raise ConfigError(f"redis.password_file: cannot read {path}: {e.strerror}") from None
    value = os.environ.get(settings.password_env) if settings.password_env else None
    return value or None


def connect(settings: RedisSettings):
    """Return a connected ``redis.Redis``; raise RedisUnavailableError within the timeouts.

    The first PING happens here so an unreachable or misconfigured server is
    reported before any other work starts.
    """
    import redis
    from redis.backoff import ExponentialBackoff
    from redis.retry import Retry

    url = resolved_url(settings)
    scheme = urlsplit(url).scheme
    if scheme not in ("redis", "rediss", "unix"):
        raise ConfigError(f"redis.url: expected redis://, rediss:// or unix://, got {redact_url(url)!r}")
    kwargs: dict = dict(
        socket_connect_timeout=settings.connect_timeout,
        socket_timeout=settings.socket_timeout,
        retry=Retry(ExponentialBackoff(cap=1.0, base=0.1), settings.retries),
        retry_on_error=[redis.exceptions.ConnectionError, redis.exceptions.TimeoutError],
        health_check_interval=0,
    )
    password = read_password(settings)
    if password:
        kwargs["password"] = password
    if scheme == "rediss" and settings.ssl_ca_file:
        kwargs["ssl_ca_certs"] = settings.ssl_ca_file
    try:
        client = redis.Redis.from_url(url, **kwargs)
    except ValueError as e:
        raise ConfigError(f"redis.url is not a valid Redis URL ({endpoint(url)}): {type(e).__name__}") from None
    ping(client, url, secrets=(password or "", *url_secrets(url)))
    return client


def ping(client, url: str, *, secrets=()) -> None:
    import redis

    where = endpoint(url)
    try:
        client.ping()
    except redis.exceptions.AuthenticationError:
        raise RedisUnavailableError(
            f"Redis at {where} rejected the credentials: check the user in the URL and the password "
            "in SKOL_REDIS_PASSWORD (or redis.password_file)") from None
    except redis.exceptions.ResponseError as e:
        raise RedisUnavailableError(f"Redis at {where} refused PING: {describe(e, secrets)}") from None
    except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError, OSError) as e:
        raise RedisUnavailableError(
            f"cannot reach Redis at {where}: {describe(e, secrets)}. Is the server running and the URL right "
            "(redis.url / SKOL_REDIS_URL)? For TLS use rediss:// with redis.ssl_ca_file") from None


def describe(error: BaseException, secrets=()) -> str:
    """An error's text with the passwords in use (env, file or URL) replaced by ``***``."""
    text = f"{type(error).__name__}: {str(error).rstrip('.')}"
    for secret in sorted((s for s in (*secrets, os.environ.get("SKOL_REDIS_PASSWORD")) if s), key=len, reverse=True):
        text = text.replace(secret, "***")
    return text
