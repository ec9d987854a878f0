"""The text-input and annotated-output config keys: refused combinations name the keys (no Spark)."""

from __future__ import annotations

import pytest

from skol_spark.errors import ConfigError
from skol_spark.job.config import config_from_dict

OUT = {"path": "/data/out", "annotated_path": "/data/annotated"}


def test_text_keys_parse():
    config = config_from_dict({"input": {"document_text_col": "body"}, "model": {"pipeline_modules": "a.b, c"},
                               "output": {**OUT, "annotated_format": "json"}})
    assert config.input.document_text_col == "body" and config.model.pipeline_modules == ("a.b", "c")
    assert config.output.annotated_path == "/data/annotated" and config.output.annotated_format == "json"


@pytest.mark.parametrize("raw, words", [
    ({"input": {"text_col": "t", "document_text_col": "b"}}, "set one"),
    ({"output": OUT}, "needs text input"),
    ({"input": {"text_col": "t", "passthrough": ["ingest_date"]}, "output": OUT}, "add text to input.passthrough"),
    ({"input": {"text_col": "t"}, "output": {**OUT, "annotated_path": "/data/out/"}}, "must differ"),
    ({"input": {"text_col": "t"}, "output": {**OUT, "format": "delta"}}, "file format"),
    ({"input": {"text_col": "t"}, "output": {**OUT, "annotated_format": "csv"}}, "annotated_format"),
])
def test_text_config_refusals_name_the_keys(raw, words):
    with pytest.raises(ConfigError, match=words):
        config_from_dict(raw)
