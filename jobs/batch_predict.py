"""What spark-submit runs: ``spark-submit jobs/batch_predict.py --conf conf/local.yaml [--set k=v ...]``.

A thin launcher: all logic lives in ``skol_spark`` (shipped with --py-files).
"""

import sys

from skol_spark.cli.main import main

if __name__ == "__main__":
    sys.exit(main(["predict", *sys.argv[1:]]))
