"""The Redis password from a Databricks secret, for compute that cannot pass it in an environment variable.

Classic job clusters put ``{{secrets/<scope>/<key>}}`` into ``SKOL_REDIS_PASSWORD``
(``spark_env_vars``). Serverless jobs have no cluster environment, so the
driver reads the secret itself with Databricks' ``dbutils`` (the
``databricks-sdk`` runtime, present on Databricks compute): the value stays in
the driver's memory, never in the config, Spark conf or the manifest.
"""

from __future__ import annotations

from skol_spark.errors import ConfigError


def databricks_secret(reference: str) -> str:
    """``<scope>/<key>`` -> the secret's value; ConfigError naming what is missing."""
    scope, sep, key = reference.partition("/")
    if not (sep and scope and key):
        raise ConfigError(f"redis.password_secret: expected <scope>/<key>, e.g. skol/redis-password; got "
                          f"{reference!r}")
    try:
        from databricks.sdk.runtime import dbutils
    except ImportError:
        raise ConfigError("redis.password_secret is read with Databricks' dbutils, which this environment lacks; "
                          "outside Databricks set SKOL_REDIS_PASSWORD or redis.password_file instead") from None
    try:
        return dbutils.secrets.get(scope=scope, key=key)
    except Exception as e:  # the SDK's message may echo request details: name the secret, not the payload
        raise ConfigError(f"redis.password_secret {scope}/{key}: cannot read the secret ({type(e).__name__}); "
                          "check that the scope and key exist and the job's identity may READ the scope") from None
