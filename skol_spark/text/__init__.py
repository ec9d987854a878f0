"""Raw text to feature vectors: the model's fitted Spark ML feature pipeline, read without trusting it.

``saved`` parses a saved ``PipelineModel`` directory with plain Python (JSON
metadata, Parquet data) and refuses stage classes that are not allowed before
anything is imported; ``rebuild`` turns the parsed stages into Spark ML
transformers built with public constructors, so the whole pipeline travels
inside the query plan and executors need no files; ``suffix`` is skol_spark's
own token-suffix stage (the original project's ``SuffixTransformer``).
"""
