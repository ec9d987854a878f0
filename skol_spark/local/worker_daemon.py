"""Spark's Python daemon, whose first worker is the one the CLI pre-started (``worker_prestart``).

Spark runs this module as its daemon when ``spark.python.daemon.module``
names it. It is ``pyspark.daemon.manager`` unchanged (its socket, its kill
commands on stdin, its shutdown), with one difference: for the first worker
connection it accepts, instead of forking a child that would import
TensorFlow from scratch, it hands the connection to the pre-started worker
named by ``SKOL_SPARK_PRESTART_SOCKET``, which has imported it already.

The manager forks right after it accepts a connection and, in the parent,
only tests the pid for zero and closes its copy of the socket. So the
first ``os.fork`` call is answered with the pre-started worker's pid, without
forking; if that worker is not there or declines, it is a real fork, as is
every later one. Both patches are removed after that first call.
"""

from __future__ import annotations

import os
import socket

from skol_spark.local.worker_prestart import SOCKET_ENV, hand_over


def install_handoff(path: str) -> None:
    accepted: list[socket.socket] = []
    real_accept, real_fork = socket.socket.accept, os.fork

    def accept(self):
        conn, address = real_accept(self)
        accepted.append(conn)
        return conn, address

    def fork() -> int:
        socket.socket.accept, os.fork = real_accept, real_fork  # once: later workers fork as usual
        pid = hand_over(accepted[-1], path) if accepted else 0
        return pid or real_fork()

    socket.socket.accept, os.fork = accept, fork


def main() -> None:
    from pyspark import daemon

    path = os.environ.pop(SOCKET_ENV, "")
    if path:
        install_handoff(path)
    daemon.manager()


if __name__ == "__main__":
    main()
