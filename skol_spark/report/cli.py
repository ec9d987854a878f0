"""The arguments of ``skol-spark report``, apart from the report's code.

The CLI builds every subcommand's parser on each start (``--help`` included),
so this module imports nothing heavy: pandas, pyarrow and matplotlib load only
when a report is drawn (``skol_spark.report.build.run_report``).
"""

from __future__ import annotations

import argparse

REPORT_DESCRIPTION = ("Rebuild a run's report (HTML + PNG charts) from its output, without rescoring; "
                      "optionally compare it with another run. Given a run manifest, only that run's rows "
                      "are read (its run_id=<id> directory); if a later run replaced them, the command "
                      "refuses with exit 2 rather than report the later rows under the old run's name.")


def add_report_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """The arguments of ``skol-spark report``: one definition for the CLI's subcommand and ``report_main``."""
    parser.add_argument("source", metavar="RUN_MANIFEST_OR_OUTPUT",
                        help="the run manifest JSON (that run's rows), or the output dataset directory (all of it)")
    parser.add_argument("--out", metavar="DIR", help="report directory (default: the manifest's report_dir, "
                        "else <name>_report next to the source)")
    parser.add_argument("--compare", metavar="OTHER", help="another run (manifest or output) to compare with: "
                        "it is run A, the baseline; SOURCE is run B")
    parser.add_argument("--labels", metavar="A,B,C", help="the model's labels in index order (default: the "
                        "manifest's model.labels, else recovered from the output's prediction/label pairs)")
    parser.add_argument("--title", help="report title (default: from the run id)")
    return parser
