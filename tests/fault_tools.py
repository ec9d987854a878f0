"""Tools for the fault-matrix tests (tests/test_faults_*.py; rows in docs/reliability.md).

- ``run_cli``: the real ``skol_spark.cli.main.main`` in this process, on the shared
  SparkSession (``predict`` reuses an active session and does not stop it);
  returns the exit code and what went to stdout/stderr.
- ``run_cli_subprocess``: the CLI in a fresh interpreter (own JVM, own env:
  ``SKOL_FAULT``, ``local[2,2]``, ``TF_USE_LEGACY_KERAS``), always with a timeout.
- ``worker_fault``: set ``SKOL_FAULT`` for the shared session's Python workers
  (``SparkContext.environment`` goes into every new Python function's env,
  and workers are pooled per env, so the fault never leaks into other tests).
- ``Proxy``: a threaded TCP proxy that drops connections mid-transfer or
  throttles the link (toxiproxy is not available here).
- ``make_certs``: a CA, a server certificate for 127.0.0.1 and an unrelated CA.
- ``wide_model``: a model with > 1 MB of weights.

Corpora, job configs and output readers are in ``tests/helpers.py``.
"""

from __future__ import annotations

import contextlib
import io
import os
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from tests.helpers import LABELS, WINDOW

ROOT = Path(__file__).resolve().parent.parent


# ---- running the CLI ------------------------------------------------------------------------------------
@dataclass
class CliResult:
    code: int
    out: str
    err: str
    seconds: float

    @property
    def error_line(self) -> str:
        lines = [x for x in self.err.splitlines() if x.startswith("skol-spark: error:")]
        return lines[-1] if lines else ""

    @property
    def text(self) -> str:
        return self.out + self.err


def run_cli(argv: list[str]) -> CliResult:
    """``skol_spark.cli.main.main(argv)`` in process, capturing stdout/stderr (logging included)."""
    import logging

    from skol_spark.cli import main as cli

    out, err = io.StringIO(), io.StringIO()
    root = logging.getLogger()
    handler = logging.StreamHandler(err)
    root.addHandler(handler)
    started = time.monotonic()
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = cli.main(argv)
    finally:
        root.removeHandler(handler)
    return CliResult(code, out.getvalue(), err.getvalue(), time.monotonic() - started)


# the CLI, then one stdout line saying whether the driver process imported TensorFlow
PROBED_CLI = ("import sys; from skol_spark.cli.main import main; rc = main(sys.argv[1:]); "
              "print('driver imported tensorflow:', 'tensorflow' in sys.modules); sys.exit(rc)")


def run_cli_subprocess(argv: list[str], *, env: dict[str, str] | None = None, timeout: float = 240,
                       background: bool = False, probe_driver: bool = False):
    """The CLI in a new interpreter (new process group). ``background`` returns the Popen; ``probe_driver``
    adds the ``PROBED_CLI`` line."""
    full_env = {k: v for k, v in os.environ.items() if k not in ("SKOL_FAULT", "PYSPARK_GATEWAY_PORT",
                                                               "PYSPARK_GATEWAY_SECRET")}
    full_env.update({"PYTHONPATH": str(ROOT), "TF_CPP_MIN_LOG_LEVEL": "3", "PYSPARK_PYTHON": sys.executable,
                     "PYSPARK_DRIVER_PYTHON": sys.executable})
    full_env.update(env or {})
    cmd = [sys.executable, *(("-c", PROBED_CLI) if probe_driver else ("-m", "skol_spark.cli.main")), *argv]
    proc = subprocess.Popen(cmd, env=full_env, cwd=str(ROOT), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, start_new_session=True)
    if background:
        return proc
    started = time.monotonic()
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        kill_group(proc)
        out, err = proc.communicate()
        raise AssertionError(f"CLI did not finish within {timeout}s: {argv}\n{err[-3000:]}") from None
    return CliResult(proc.returncode, out, err, time.monotonic() - started)


def kill_group(proc: subprocess.Popen) -> None:
    """SIGKILL the process group of a subprocess this module started (driver + its JVM + workers)."""
    import signal

    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)


@contextlib.contextmanager
def worker_fault(spark, spec: str):
    """``SKOL_FAULT=spec`` for Python workers started while inside the block (see module docstring)."""
    env = spark.sparkContext.environment
    env["SKOL_FAULT"] = spec
    try:
        yield
    finally:
        env.pop("SKOL_FAULT", None)


def predict_args(conf: str, *extra: str) -> list[str]:
    return ["predict", "--conf", conf, "--quiet", *extra]


# ---- models ---------------------------------------------------------------------------------------------
def wide_model(features: int = 300, units: int = 1000, window: int = WINDOW, seed: int = 0):
    """A model with > 1 MB of weights (for chunking, slow links), cheap to build and run."""
    import keras

    keras.utils.set_random_seed(seed)
    inp = keras.Input((window, features))
    x = keras.layers.TimeDistributed(keras.layers.Dense(units, activation="relu"))(inp)
    out = keras.layers.TimeDistributed(keras.layers.Dense(len(LABELS), activation="softmax"))(x)
    return keras.Model(inp, out)


# ---- a TCP proxy for link faults ------------------------------------------------------------------------
@dataclass
class Proxy:
    """Forward 127.0.0.1:<port> to ``upstream``.

    ``drop_after``: close a connection once that many server->client bytes have
    passed, for the first ``drop_connections`` connections (``None`` = all).
    ``bytes_per_second``: throttle server->client traffic. ``delay``: extra
    seconds before each server->client chunk once ``delay_after`` bytes have passed
    (so the handshake and PING can go through before the link stalls).
    """

    upstream: tuple[str, int]
    drop_after: int | None = None
    drop_connections: int | None = 1
    bytes_per_second: float | None = None
    delay: float = 0.0
    delay_after: int = 0
    connections: int = 0
    dropped: int = 0
    _server: socket.socket | None = field(default=None, repr=False)
    _stop: threading.Event = field(default_factory=threading.Event, repr=False)

    @property
    def port(self) -> int:
        return self._server.getsockname()[1]

    def url(self, db: int = 0) -> str:
        return f"redis://127.0.0.1:{self.port}/{db}"

    def __enter__(self) -> "Proxy":
        self._server = socket.socket()
        self._server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._server.bind(("127.0.0.1", 0))
        self._server.listen(16)
        self._server.settimeout(0.2)
        threading.Thread(target=self._accept, daemon=True).start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._server.close()

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                client, _ = self._server.accept()
            except (socket.timeout, OSError):
                continue
            self.connections += 1
            drop = self.drop_after is not None and (self.drop_connections is None
                                                    or self.connections <= self.drop_connections)
            upstream = socket.create_connection(self.upstream)
            threading.Thread(target=self._pipe, args=(client, upstream, None, False), daemon=True).start()
            threading.Thread(target=self._pipe, args=(upstream, client, self.drop_after if drop else None, True),
                             daemon=True).start()

    def _pipe(self, src: socket.socket, dst: socket.socket, limit: int | None, downstream: bool) -> None:
        sent = 0
        try:
            while not self._stop.is_set():
                data = src.recv(16384)
                if not data:
                    break
                if downstream and self.delay and sent >= self.delay_after:
                    time.sleep(self.delay)
                if limit is not None and sent + len(data) > limit:
                    dst.sendall(data[:max(0, limit - sent)])
                    self.dropped += 1
                    break
                for start in range(0, len(data), 4096):
                    piece = data[start:start + 4096]
                    dst.sendall(piece)
                    if downstream and self.bytes_per_second:
                        time.sleep(len(piece) / self.bytes_per_second)
                sent += len(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)
                with contextlib.suppress(OSError):
                    s.close()


# ---- TLS -----------------------------------------------------------------------------------------------
def make_certs(directory: Path) -> dict[str, str]:
    """CA + server cert (SAN 127.0.0.1, localhost) + an unrelated CA, made with openssl."""
    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)

    def run(*args: str) -> None:
        subprocess.run(["openssl", *args], cwd=d, check=True, capture_output=True, timeout=60)

    for ca in ("ca", "other-ca"):
        run("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", f"/CN=skol test {ca}",
            "-keyout", f"{ca}.key", "-out", f"{ca}.crt")
    run("req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=127.0.0.1", "-keyout", "server.key",
        "-out", "server.csr")
    (d / "san.ext").write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    run("x509", "-req", "-in", "server.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial",
        "-days", "2", "-extfile", "san.ext", "-out", "server.crt")
    return {name: str(d / f"{name}") for name in ("ca.crt", "other-ca.crt", "server.crt", "server.key")}


def start_tls_redis(certs: dict[str, str]):
    """redis-server with only a TLS port; returns (process, port)."""
    from skol_spark.store.embedded import find_redis_server, free_port

    port = free_port()
    workdir = Path(certs["ca.crt"]).parent
    proc = subprocess.Popen([find_redis_server(), "--port", "0", "--tls-port", str(port), "--bind", "127.0.0.1",
                             "--tls-cert-file", certs["server.crt"], "--tls-key-file", certs["server.key"],
                             "--tls-ca-cert-file", certs["ca.crt"], "--tls-auth-clients", "no",
                             "--save", "", "--appendonly", "no", "--dir", str(workdir)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return proc, port
        except OSError:
            if proc.poll() is not None:
                raise RuntimeError(f"TLS redis-server exited with {proc.returncode}") from None
            time.sleep(0.05)
    proc.kill()
    raise RuntimeError("TLS redis-server did not start")
