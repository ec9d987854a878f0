"""skol_spark: batch scoring of Keras sequence models on Apache Spark, models kept in Redis."""

from pathlib import Path

from setuptools import find_packages, setup

here = Path(__file__).parent
version = {}
requirements = [line.strip() for line in (here / "requirements.txt").read_text().splitlines()
                if line.strip() and not line.startswith("#")]
exec((here / "skol_spark" / "_version.py").read_text(), version)

setup(
    name="skol_spark",
    version=version["__version__"],
    description="Batch scoring with Keras sequence models on Apache Spark, models versioned in Redis",
    long_description=(here / "README.md").read_text() if (here / "README.md").exists() else "",
    long_description_content_type="text/markdown",
    packages=find_packages(include=["skol_spark", "skol_spark.*"]),
    package_data={"skol_spark": ["py.typed"]},
    python_requires=">=3.10",
    # pyspark is an extra: on Databricks, Dataproc, EMR the cluster provides Spark, and installing a
    # PyPI pyspark over it breaks the runtime. Local use: pip install 'skol_spark[spark]'.
    install_requires=[r for r in requirements if not r.startswith("pyspark")],
    extras_require={"spark": [r for r in requirements if r.startswith("pyspark")],
                    "report": [r for r in requirements if r.startswith("matplotlib")]},
    # skol-spark-job: the same CLI for Databricks wheel tasks, which ignore a returned exit code (cli.job_entry)
    entry_points={"console_scripts": ["skol-spark=skol_spark.cli.main:main", "skol-spark-job=skol_spark.cli.main:job_entry"]},
)
