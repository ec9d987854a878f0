"""skol_spark: score every line of every document with a Keras sequence model, on Spark.

Importing the package does no work: TensorFlow, Spark and Redis are imported
only by the functions that need them.
"""

from skol_spark._version import __version__

__all__ = ["__version__"]
