"""Test stand-in for the original project's ``skol_classifier.preprocessing.SuffixTransformer``:
a Python UDF stage saved with Spark ML's default params writer, so its metadata names this class."""

from __future__ import annotations

from pyspark import keyword_only
from pyspark.ml import Transformer
from pyspark.ml.param.shared import HasInputCol, HasOutputCol
from pyspark.ml.util import DefaultParamsReadable, DefaultParamsWritable


def last_chars(tokens):
    out = []
    for token in tokens:
        out += [token[-2:], token[-3:], token[-4:]]
    return out


class SuffixTransformer(Transformer, HasInputCol, HasOutputCol, DefaultParamsReadable, DefaultParamsWritable):
    @keyword_only
    def __init__(self, inputCol="words", outputCol="suffixes"):
        super().__init__()
        self._setDefault(inputCol="words", outputCol="suffixes")
        self._set(**self._input_kwargs)

    def _transform(self, dataset):
        from pyspark.sql import functions as F
        from pyspark.sql import types as T

        udf = F.udf(last_chars, T.ArrayType(T.StringType()))
        return dataset.withColumn(self.getOutputCol(), udf(F.col(self.getInputCol())))
