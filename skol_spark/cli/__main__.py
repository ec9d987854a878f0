"""``python -m skol_spark.cli.main``."""

import sys

from skol_spark.cli.main import main

sys.exit(main())
