"""A real Spark Connect server for the tests: its own JVM (``local[2]``), as on Databricks the client and
the Spark service are separate processes.

PySpark's in-process local server (``remote("local[2]")``) cannot start in a
process that already has a classic SparkContext (the suite's ``spark``
fixture), so the server runs beside pytest and clients connect to
``sc://127.0.0.1:<port>``. Its Python workers import skol_spark from this
checkout (``PYTHONPATH``), as a cluster's would from the installed wheel.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from skol_spark.store.embedded import free_port

ROOT = Path(__file__).resolve().parent.parent
SERVER_CLASS = "org.apache.spark.sql.connect.service.SparkConnectServer"
CONNECT_ENV = ("SPARK_REMOTE", "SPARK_CONNECT_MODE_ENABLED", "SPARK_LOCAL_REMOTE")


@dataclass
class ConnectServer:
    process: subprocess.Popen
    port: int
    log: Path

    @property
    def url(self) -> str:
        return f"sc://127.0.0.1:{self.port}"

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=10)


def start_connect_server(workdir: Path, *, conf: dict[str, str] | None = None, timeout: float = 120) -> ConnectServer:
    import pyspark

    port = free_port()
    settings = {"spark.connect.grpc.binding.port": str(port), "spark.connect.grpc.binding.address": "127.0.0.1",
                "spark.ui.enabled": "false", "spark.ui.showConsoleProgress": "false",
                "spark.sql.shuffle.partitions": "4", "spark.sql.warehouse.dir": str(workdir / "warehouse"),
                "spark.sql.ansi.enabled": "true", **(conf or {})}
    args = [os.path.join(os.path.dirname(pyspark.__file__), "bin", "spark-submit"), "--master", "local[2]",
            "--class", SERVER_CLASS, "--name", "skol-spark-connect-tests"]
    for key, value in settings.items():
        args += ["--conf", f"{key}={value}"]
    args.append("spark-internal")
    env = {k: v for k, v in os.environ.items() if k not in CONNECT_ENV and not k.startswith("PYSPARK_GATEWAY")}
    env.update(PYSPARK_PYTHON=sys.executable, PYTHONPATH=os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")]),
               TF_CPP_MIN_LOG_LEVEL="3", SPARK_HOME=os.path.dirname(pyspark.__file__))
    log = workdir / "connect-server.log"
    with open(log, "wb") as out:
        process = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT, env=env, cwd=workdir)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the Spark Connect server exited with {process.returncode}: {log.read_text()[-2000:]}")
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return ConnectServer(process, port, log)
        time.sleep(0.5)
    process.kill()
    raise RuntimeError(f"the Spark Connect server did not listen on {port} within {timeout}s: "
                       f"{log.read_text()[-2000:]}")
