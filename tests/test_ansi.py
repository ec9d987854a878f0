"""ANSI SQL mode (Spark 4's default, always on in Databricks serverless): the job tests run with it.

The classic session fixture sets it explicitly, so a spark-defaults.conf or a
future default cannot turn it off unnoticed; tests/test_connect.py runs the
job on a Connect server started with it.
"""

from __future__ import annotations

import pytest


def test_the_test_session_runs_with_ansi_mode_on(spark):
    assert spark.conf.get("spark.sql.ansi.enabled") == "true"
    # the behaviour itself, not only the flag: an out-of-range index fails instead of giving null
    with pytest.raises(Exception, match="INVALID_ARRAY_INDEX_IN_ELEMENT_AT"):
        spark.sql("SELECT element_at(array(1, 2), 5)").collect()
