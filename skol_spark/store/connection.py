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
from urllib.parse import urlsplit

from skol_spark.errors import ConfigError, RedisUnavailableError

DEFAULT_URL = "redis://127.0.0.1:6379/0"


@dataclass(frozen=True)
class RedisSettings:
    url: str = DEFAULT_URL
    password_env: str = "SKOL_REDIS_PASSWORD"
    password_file: str = ""
    password_secret: str = ""  # Databricks <scope>/<key> (store.secrets)
    ssl_ca_file: str = ""
    connect_timeout: float = 2.0
    socket_timeout: float = 5.0
    retries: int = 3


def endpoint(url: str) -> str:
    """``host:port`` of a Redis URL, for messages (never the credentials)."""
    parts = urlsplit(url)
    if parts.scheme == "unix":
        return f"unix:{parts.path}"
    try:
        port = str(parts.port or 6379)
    except ValueError:  # a non-numeric port: name what was given, not a traceback
        port = parts.netloc.rsplit(":", 1)[-1]
    return f"{parts.hostname or '127.0.0.1'}:{port}"


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

    scheme = urlsplit(settings.url).scheme
    if scheme not in ("redis", "rediss", "unix"):
        raise ConfigError(f"redis.url: expected redis://, rediss:// or unix://, got {scheme or 'no'} scheme")
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
        client = redis.Redis.from_url(settings.url, **kwargs)
    except ValueError as e:
        raise ConfigError(f"redis.url is not a valid Redis URL ({endpoint(settings.url)}): {type(e).__name__}") from None
    ping(client, settings.url, secrets=(password, urlsplit(settings.url).password))
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
    for secret in (*secrets, os.environ.get("SKOL_REDIS_PASSWORD")):
        if secret:
            text = text.replace(secret, "***")
    return text
