#!/usr/bin/env bash
# Package skol_spark and submit jobs/batch_predict.py to any Spark master.
#
#   ./spark-submit.sh CONF.yaml [options] [--set section.key=value ...] [-- extra spark-submit args]
#
# Options:
#   --master URL        local[*] (default), spark://host:7077, yarn, k8s://https://...
#   --ship zip|wheel    how skol_spark reaches executors via --py-files (default: zip); wheel builds
#                       the release wheel and ships it as a .zip (Spark imports only .zip/.egg/.py)
#   --venv-archive F    a packed virtualenv (venv-pack/conda-pack .tar.gz) for executors that lack
#                       TensorFlow; shipped with --archives and used as spark.pyspark.python
#   --deploy-mode M     client (default) or cluster
#   --watermark V       score only rows with input.watermark_col >= V
#   --quiet             no progress or summary (for schedulers)
#   -h, --help          this help
# Environment: SPARK_SUBMIT (path to spark-submit; default: the one shipped with pyspark),
#   PYTHON (driver interpreter, and the executors' on local masters; default .venv/bin/python, else
#   python3), PYSPARK_PYTHON (executors' interpreter on a cluster), SKOL_REDIS_URL, SKOL_REDIS_PASSWORD,
#   SKOL_BUILD_DIR (where the zip/wheel is built; default ./build).
# The exit code is the job's (README, "Exit codes").
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"

usage() { sed -n '2,20p' "$0" | sed 's/^# \{0,1\}//'; }

[ $# -ge 1 ] || { usage >&2; exit 2; }
case "$1" in -h|--help) usage; exit 0;; esac
conf="$1"; shift
[ -f "$conf" ] || { echo "spark-submit.sh: config file not found: $conf" >&2; exit 2; }

master="" ship="zip" venv_archive="" deploy_mode="client"
job_args=() extra=()
while [ $# -gt 0 ]; do
  case "$1" in
    --master) master="$2"; shift 2;;
    --ship) ship="$2"; shift 2;;
    --venv-archive) venv_archive="$2"; shift 2;;
    --deploy-mode) deploy_mode="$2"; shift 2;;
    --set|--watermark) job_args+=("$1" "$2"); shift 2;;
    --quiet|--dry-run|--debug) job_args+=("$1"); shift;;
    --) shift; extra+=("$@"); break;;
    -h|--help) usage; exit 0;;
    *) echo "spark-submit.sh: unknown option $1 (see --help)" >&2; exit 2;;
  esac
done

if [ -n "${PYTHON:-}" ]; then py="$PYTHON"
elif [ -x "$here/.venv/bin/python" ]; then py="$here/.venv/bin/python"
else py="$(command -v python3)"; fi

submit="${SPARK_SUBMIT:-}"
if [ -z "$submit" ]; then
  submit="$("$py" -c 'import os, pyspark; print(os.path.join(os.path.dirname(pyspark.__file__), "bin", "spark-submit"))')"
fi

build="${SKOL_BUILD_DIR:-$here/build}"
mkdir -p "$build"
case "$ship" in
  zip)
    pkg="$build/skol_spark.zip"
    # built under a temporary name and renamed: concurrent submits never ship a half-written zip
    (cd "$here" && "$py" - "$pkg.$$" <<'PYEOF'
import pathlib, sys, zipfile
out = pathlib.Path(sys.argv[1])
with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as z:
    for f in sorted(pathlib.Path("skol_spark").rglob("*")):
        if f.is_file() and "__pycache__" not in f.parts:
            z.write(f, f.as_posix())
PYEOF
    ) && mv -f "$pkg.$$" "$pkg";;
  wheel)
    rm -f "$build"/skol_spark-*.whl "$build"/skol_spark-*-whl.zip
    "$py" -m pip wheel --quiet --no-deps --no-build-isolation -w "$build" "$here" >/dev/null
    whl="$(ls "$build"/skol_spark-*.whl | head -n 1)"
    # Spark puts only .zip/.egg/.py entries of --py-files on the executors' sys.path: a .whl is fetched
    # but never importable there (ModuleNotFoundError on a real cluster; local mode hides it, see
    # tests/test_cluster.py). A pure-Python wheel is a zip archive: ship the same bytes as .zip.
    pkg="${whl%.whl}-whl.zip"
    cp "$whl" "$pkg";;
  *) echo "spark-submit.sh: --ship must be zip or wheel" >&2; exit 2;;
esac

args=(--name skol-spark-predict --deploy-mode "$deploy_mode" --py-files "$pkg"
      --conf "spark.sql.execution.arrow.pyspark.enabled=true"
      --conf "spark.python.worker.reuse=true")
[ -n "$master" ] && args+=(--master "$master")
[ -f "$here/conf/spark-defaults.conf" ] && args+=(--properties-file "$here/conf/spark-defaults.conf")
java_opts=""
[ -f "$here/conf/log4j2.properties" ] && java_opts="-Dlog4j.configurationFile=file:$here/conf/log4j2.properties"
[ -n "$java_opts" ] && args+=(--driver-java-options "$java_opts")
if [ -n "$venv_archive" ]; then
  args+=(--archives "$venv_archive#skolenv"
         --conf "spark.pyspark.python=./skolenv/bin/python")
  # spark.pyspark.python outranks PYSPARK_DRIVER_PYTHON: in client mode the driver runs here, outside the archive
  [ "$deploy_mode" = client ] && args+=(--conf "spark.pyspark.driver.python=$py")
else
  case "$master" in
    ""|local*) export PYSPARK_PYTHON="${PYSPARK_PYTHON:-$py}";;
    # On a cluster this machine's interpreter path means nothing to the executors: they use
    # $PYSPARK_PYTHON when you set it, else the cluster's spark.pyspark.python, else python3.
    *) : ;;
  esac
fi
export PYSPARK_DRIVER_PYTHON="${PYSPARK_DRIVER_PYTHON:-$py}"

job_conf="$conf"
if [ "$deploy_mode" = cluster ]; then
  # The driver runs on a cluster node where this path does not exist: ship the file with the job
  # (YARN places --files in the driver's working directory) and pass its name.
  args+=(--files "$conf")
  job_conf="$(basename "$conf")"
fi

# Secrets stay in the environment: nothing secret is passed as Spark conf or arguments.
exec "$submit" "${args[@]}" "${extra[@]}" "$here/jobs/batch_predict.py" --conf "$job_conf" "${job_args[@]}"
