"""The ``skol-spark`` command line."""
