"""The token-suffix stage: for every token in order, its last 2, 3 and 4 characters.

The original project's ``skol_classifier.preprocessing.SuffixTransformer`` did
this with a Python UDF (``[w[-2:], w[-3:], w[-4:]]`` per token, so a short
token repeats itself). This one computes the same array with Spark SQL
expressions, so it runs in the JVM on the executors with no Python worker and
nothing to import there: ``substring(w, -n, n)`` clamps at the start of the
string exactly as the Python slice does (``"ab"`` -> ``"ab"``, ``"a"`` -> ``"a"``).
It is saved and loaded under skol_spark's own class name.
"""

from __future__ import annotations

from pyspark import keyword_only
from pyspark.ml import Transformer
from pyspark.ml.param.shared import HasInputCol, HasOutputCol
from pyspark.ml.util import DefaultParamsReadable, DefaultParamsWritable

SUFFIX_LENGTHS = (2, 3, 4)


def suffixes(words: list[str]) -> list[str]:
    """The reference behaviour in plain Python: ``[w[-2:], w[-3:], w[-4:]]`` for every word, in order."""
    return [w[-n:] for w in words for n in SUFFIX_LENGTHS]


class SuffixTransformer(Transformer, HasInputCol, HasOutputCol, DefaultParamsReadable, DefaultParamsWritable):
    """``array<string>`` column -> ``array<string>`` of suffixes (``suffixes`` above, as a JVM expression)."""

    @keyword_only
    def __init__(self, *, inputCol: str = "words", outputCol: str = "suffixes") -> None:
        super().__init__()
        self._setDefault(inputCol="words", outputCol="suffixes")
        self._set(**self._input_kwargs)

    @keyword_only
    def setParams(self, *, inputCol: str = "words", outputCol: str = "suffixes") -> "SuffixTransformer":
        return self._set(**self._input_kwargs)

    def _transform(self, dataset):
        from pyspark.sql import functions as F

        def per_word(word):
            return F.array(*[F.substring(word, -n, n) for n in SUFFIX_LENGTHS])

        return dataset.withColumn(self.getOutputCol(), F.flatten(F.transform(F.col(self.getInputCol()), per_word)))
