"""The Redis the demo publishes into, chosen so that the README's next commands find the model.

``conf/local.yaml`` and ``skol-spark model ...`` read the store at
``$SKOL_REDIS_URL``, else ``redis://127.0.0.1:6379/0``. The demo therefore
publishes there too, in this order:

1. ``$SKOL_REDIS_URL`` when it is set (the user named a store);
2. a Redis already answering on 127.0.0.1:6379 (the machine's own; the demo
   adds only the ``skol:`` keys of the model ``demo``);
3. otherwise a ``redis-server`` that the demo starts on 127.0.0.1:6379 and
   leaves running, with its pid file and log under ``<workdir>/redis/``, so
   that the model outlives the demo. ``skol-spark demo --stop-redis`` stops
   that server (and only that one: the pid must still be a redis-server).

Nothing is written to disk by that server (``--save ''``): after a reboot,
run the demo again.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from skol_spark.errors import ConfigError
from skol_spark.store.embedded import find_redis_server

DEFAULT_HOST, DEFAULT_PORT = "127.0.0.1", 6379  # the default of redis.url and of `skol-spark model`


@dataclass(frozen=True)
class DemoStore:
    """Where the demo publishes: ``url``, and how it came to be chosen (for the console)."""

    url: str
    origin: str  # "SKOL_REDIS_URL", "running" or "started"


def answers_ping(host: str, port: int, *, timeout: float = 0.5) -> bool:
    """True when a Redis answers on ``host:port`` (``NOAUTH`` counts: it is a Redis that needs a password)."""
    try:
        with socket.create_connection((host, port), timeout=timeout) as s:
            s.sendall(b"PING\r\n")
            return s.recv(64).startswith((b"+PONG", b"-NOAUTH"))
    except OSError:
        return False


def pid_file(workdir: Path) -> Path:
    return Path(workdir) / "redis" / "redis.pid"


def choose_store(workdir: Path, *, port: int = DEFAULT_PORT) -> DemoStore:
    """The store the demo publishes into (see the module docstring); starts a server only in case 3."""
    if os.environ.get("SKOL_REDIS_URL"):
        return DemoStore(os.environ["SKOL_REDIS_URL"], "SKOL_REDIS_URL")
    url = f"redis://{DEFAULT_HOST}:{port}/0"
    if answers_ping(DEFAULT_HOST, port):
        return DemoStore(url, "running")
    start_kept_server(Path(workdir), port=port)
    return DemoStore(url, "started")


def start_kept_server(workdir: Path, *, port: int, timeout: float = 10.0) -> int:
    """Start a daemonized redis-server on 127.0.0.1:``port`` that outlives this process; return its pid."""
    folder = workdir / "redis"
    folder.mkdir(parents=True, exist_ok=True)
    pidfile, logfile = pid_file(workdir), folder / "redis.log"
    pidfile.unlink(missing_ok=True)
    args = [find_redis_server(), "--port", str(port), "--bind", DEFAULT_HOST, "--save", "", "--appendonly", "no",
            "--dir", str(folder.resolve()), "--daemonize", "yes", "--pidfile", str(pidfile.resolve()),
            "--logfile", str(logfile.resolve())]
    subprocess.run(args, check=False, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=timeout)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pidfile.exists() and answers_ping(DEFAULT_HOST, port):
            return int(pidfile.read_text().strip())
        time.sleep(0.05)
    raise ConfigError(f"could not start redis-server on {DEFAULT_HOST}:{port} for the demo (see {logfile}); "
                      "is the port taken by something else? Set SKOL_REDIS_URL to a Redis you have")


def _is_redis_server(pid: int) -> bool:
    try:
        return b"redis-server" in Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:  # no such process, or no /proc: ask the process itself
        try:
            os.kill(pid, 0)
        except OSError:
            return False
        return True


def stop_kept_server(workdir: Path, *, timeout: float = 10.0) -> str:
    """Stop the redis-server a demo started and left running; a sentence saying what happened."""
    pidfile = pid_file(workdir)
    if not pidfile.exists():
        return f"no demo redis-server to stop (no {pidfile})"
    pid = int(pidfile.read_text().strip() or 0)
    if pid <= 0 or not _is_redis_server(pid):
        pidfile.unlink(missing_ok=True)
        return f"the demo redis-server (pid {pid}) is no longer running; removed {pidfile}"
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and _is_redis_server(pid):
        time.sleep(0.05)
    pidfile.unlink(missing_ok=True)
    return f"stopped the demo redis-server (pid {pid}); the demo model is gone with it"
