"""A Python worker started, with TensorFlow imported, while the local JVM is still starting.

Why: on a local master the one-shot run's critical path was a chain of
start-ups: the JVM, then (at the first Python task) Spark's Python daemon and
a forked worker, then that worker's ``import tensorflow`` (2-4 s of
single-threaded CPU), then the build. The JVM's start uses about one of two
cores and the driver's Python process waits on it, so the import can run
beside it, in a process of its own, at no cost to anyone.

How: the CLI spawns ``python -m skol_spark.local.worker_prestart SOCKET CLI_PID``
before it starts the JVM. That process listens on a Unix socket in a private (0700)
directory, imports what a scoring worker imports, then waits. The JVM runs
``skol_spark.local.worker_daemon`` as its Python daemon (``spark.python.daemon.module``),
which is Spark's own daemon except that its first worker connection is
handed over (the connected socket, with ``SCM_RIGHTS``, and the daemon's
environment) to this process instead of to a forked child. From there it
speaks Spark's worker protocol exactly as a forked child does (its pid, then
``pyspark.daemon.worker`` for each task while Spark reuses it). Later
workers are forked by the daemon as usual.

Before that, the driver sends it the run's model (``send_model``: plain
data, checksums verified again here), and it builds the model into its
cache while the cold JVM plans the warm-up job (~1 s); the warm-up task then
finds it built and counts that build as its own (``worker_cache.build_ahead``).

Modules imported before the hand-over saw the driver's environment, which
is the one the JVM and its daemon inherit; the daemon's own additions (the
secret, buffer size, reuse flag, task environment) apply from the hand-over.

Why not import TensorFlow in the daemon and fork: ``import keras`` starts
pandas' and pyarrow's threads, and forking a process with threads is what
Spark's daemon is written to avoid. Nothing here forks.

It declines (the daemon forks a worker as usual) when the daemon runs
another Python or another ``PYTHONHASHSEED``. It exits on its own when its
parent dies or when no worker connection came within ``WAIT_SECONDS``; the
CLI kills it when the run ends (``PrestartedWorker.close``).
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time

SOCKET_ENV = "SKOL_SPARK_PRESTART_SOCKET"  # read by skol_spark.local.worker_daemon in the JVM's Python daemon
PRESTARTED_ENV = "SKOL_SPARK_PRESTARTED"  # set in the worker that was pre-started (the run manifest counts them)
DAEMON_MODULE = "skol_spark.local.worker_daemon"
WAIT_SECONDS = 600.0
MAX_SOCKET_PATH = 100  # bytes: AF_UNIX paths hold 107 and a NUL on Linux
HANDOFF_SECONDS = 120.0  # the daemon waits this long for a worker still importing before it forks one


# ---- the driver's side ------------------------------------------------------------------------

class PrestartedWorker:
    """The process the CLI spawned, and what the session it builds needs to use it."""

    def __init__(self, process: subprocess.Popen, directory: str, path: str) -> None:
        self.process, self.directory, self.path = process, directory, path

    @classmethod
    def spawn(cls) -> PrestartedWorker:
        directory = tempfile.mkdtemp(prefix="skol-spark-worker-")  # 0700: only this user can connect
        if len(os.path.join(directory, "w.sock").encode()) > MAX_SOCKET_PATH:  # a long TMPDIR
            os.rmdir(directory)
            directory = tempfile.mkdtemp(prefix="skol-spark-worker-", dir="/tmp")
        path = os.path.join(directory, "w.sock")
        env = dict(os.environ)
        # Spark gives its workers PYTHONHASHSEED (pyspark.context: the driver's, else 0); the seed is fixed
        # when an interpreter starts, so this process must start with the one its worker would get
        env["PYTHONHASHSEED"] = os.environ.get("PYTHONHASHSEED", "0")
        env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
        # stdout to stderr: the CLI's stdout is for its result lines; a worker's prints belong in the log
        process = subprocess.Popen([sys.executable, "-m", __name__, path, str(os.getpid())], env=env,
                                   stdin=subprocess.DEVNULL,
                                   stdout=2)
        os.environ[SOCKET_ENV] = path  # inherited by the JVM, and by its Python daemon
        return cls(process, directory, path)

    @property
    def spark_conf(self) -> dict[str, str]:
        return {"spark.python.daemon.module": DAEMON_MODULE}

    @property
    def pid(self) -> int:
        return self.process.pid

    def close(self) -> None:
        """After the session stopped: the worker is gone with its JVM socket; make sure, and clean up."""
        os.environ.pop(SOCKET_ENV, None)
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait()
        shutil.rmtree(self.directory, ignore_errors=True)


def wanted(setting: str, *, master: str, creates_session: bool, warm_up: bool, spark_conf: dict) -> bool:
    """``job.prestart_worker``: ``auto`` when this process will start a local JVM whose first Python worker
    is the warm-up's (the workers' TensorFlow import is then on the run's critical path), ``never`` to
    turn it off. A daemon module or daemon-less workers chosen in ``spark_conf`` win."""
    from skol_spark.job.session import is_local_master

    if setting != "auto" or not creates_session or not warm_up or not is_local_master(master):
        return False
    if "spark.python.daemon.module" in spark_conf:
        return False
    if str(spark_conf.get("spark.python.use.daemon", "true")).lower() != "true" or os.name != "posix":
        return False
    # the workers' Python must be this one (or it would decline at the hand-over, its import wasted)
    python = spark_conf.get("spark.pyspark.python") or os.environ.get("PYSPARK_PYTHON") or sys.executable
    return os.path.realpath(shutil.which(python) or python) == os.path.realpath(sys.executable)


def send_model(plan, artifact) -> threading.Thread | None:
    """Send the run's model and plan to the pre-started worker, if this process spawned one, so that it
    builds the model while the JVM plans the warm-up job (the warm-up task then finds it built).

    In a background thread: the worker may still be importing TensorFlow. If it was handed to Spark
    already, or is gone, nothing happens and the warm-up task builds the model as usual. Only with a
    known thread count (local masters): TensorFlow's thread pools are fixed by the first build."""
    path = os.environ.get(SOCKET_ENV)
    if not path or not plan.tf_threads:
        return None
    fields = {"name": artifact.name, "version": artifact.version, "architecture": artifact.architecture,
              "manifest": artifact.manifest}
    meta = json.dumps({"plan": dataclasses.asdict(plan), "artifact": fields}).encode()

    def send() -> None:
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as link:
                link.settimeout(HANDOFF_SECONDS)
                _connect(link, path)
                link.sendall(b"M" + struct.pack("!II", len(meta), len(artifact.weights)) + meta)
                link.sendall(artifact.weights)
        except OSError:
            pass

    thread = threading.Thread(target=send, name="skol-prestart-model", daemon=True)
    thread.start()
    return thread


# ---- the daemon's side (skol_spark.local.worker_daemon) --------------------------------------------

def hand_over(conn: socket.socket, path: str, timeout: float = HANDOFF_SECONDS) -> int:
    """Give a worker connection accepted by Spark's daemon to the pre-started worker; its pid, or 0 if it
    declined or is not there (the daemon then forks a worker as usual)."""
    payload = json.dumps({"env": dict(os.environ), "argv": sys.argv,
                          "executable": os.path.realpath(sys.executable)}).encode()
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as link:
            link.settimeout(timeout)
            _connect(link, path)
            socket.send_fds(link, [b"W" + struct.pack("!I", len(payload))], [conn.fileno()])
            link.sendall(payload)
            reply = _read_exactly(link, 5)
    except OSError as e:
        print(f"skol-spark: the pre-started Python worker was not used ({e.__class__.__name__}: {e}); "
              "forking one", file=sys.stderr)
        return 0
    accepted, pid = struct.unpack("!?I", reply)
    return pid if accepted else 0


def _connect(link: socket.socket, path: str, bind_seconds: float = 10.0) -> None:
    """Connect; while the directory exists but the socket does not, the process is still starting."""
    deadline = time.monotonic() + bind_seconds
    while True:
        try:
            return link.connect(path)
        except FileNotFoundError:
            if not os.path.isdir(os.path.dirname(path)) or time.monotonic() > deadline:
                raise
            time.sleep(0.02)


def _read_exactly(link: socket.socket, n: int) -> bytes:
    data = bytearray()
    while len(data) < n:
        chunk = link.recv(min(n - len(data), 1 << 20))
        if not chunk:
            raise ConnectionError("the connection closed early")
        data += chunk
    return bytes(data)


# ---- the pre-started process -----------------------------------------------------------------

def serve(path: str, parent: int, wait_seconds: float = WAIT_SECONDS) -> int:
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(path)  # before the imports: a daemon that comes early waits in the backlog, not on ENOENT
    listener.listen(1)
    _import_worker_modules()
    from skol_spark.scoring import faults

    faults.maybe_inject("prestart", 0)  # tests: SKOL_FAULT=crash:partition=prestart
    listener.settimeout(1.0)
    deadline = time.monotonic() + wait_seconds
    while time.monotonic() < deadline and os.getppid() == parent:
        try:
            link, _ = listener.accept()
        except socket.timeout:
            continue
        link.settimeout(HANDOFF_SECONDS)
        try:
            first, fds, _, _ = socket.recv_fds(link, 5, 1)
            first += _read_exactly(link, 5 - len(first))
        except OSError:  # a client that went away: keep waiting for Spark's
            link.close()
            continue
        if first[:1] == b"M":  # the driver's model, ahead of the warm-up task
            with link:
                _build_ahead(link, first[1:])
            continue
        listener.close()  # Spark's worker connection (b"W"): from now on this process is a Spark worker
        return _become_worker(link, first[1:], fds)
    return 0  # never needed: the run ended, or it did not use Spark's daemon


def _import_worker_modules() -> None:
    """What a scoring worker imports before its first batch, TensorFlow as a worker imports it."""
    import pyarrow  # noqa: F401
    import pyspark.daemon  # noqa: F401
    import pyspark.worker  # noqa: F401

    from skol_spark import scoring  # noqa: F401  (the functions Spark unpickles)
    from skol_spark.local import warmup  # noqa: F401
    from skol_spark.model.builder import PLOTTING_MODULES, unavailable

    with unavailable(PLOTTING_MODULES):
        import keras  # noqa: F401  (imports TensorFlow; its thread pools are sized later, at the build)


def _build_ahead(link: socket.socket, header: bytes) -> None:
    """Build the run's model into this process's cache (``send_model``), as the warm-up task would."""
    from skol_spark.model import cache as worker_cache
    from skol_spark.model.artifact import ModelArtifact
    from skol_spark.scoring.partition import ScoringPlan, predictor_builder, predictor_key

    try:
        meta_size, weights_size = struct.unpack("!II", header + _read_exactly(link, 8 - len(header)))
        meta = json.loads(_read_exactly(link, meta_size))
        artifact = ModelArtifact(weights=_read_exactly(link, weights_size), **meta["artifact"])
        plan = ScoringPlan(**{k: tuple(v) if isinstance(v, list) else v for k, v in meta["plan"].items()})
        artifact.verify()
        worker_cache.build_ahead(predictor_key(plan, artifact), predictor_builder(plan, artifact))
    except Exception as e:  # the warm-up task builds it again and reports the error as usual
        print(f"skol-spark: the pre-started worker could not build the model ahead ({e.__class__.__name__}: "
              f"{e}); the warm-up task builds it", file=sys.stderr)


def _become_worker(link: socket.socket, header: bytes, fds: list[int]) -> int:
    """Take the JVM's connection from the daemon and serve it as Spark's forked child would."""
    if not fds:
        return 1
    handed = json.loads(_read_exactly(link, struct.unpack("!I", header)[0]))
    env = handed["env"]
    reason = ""
    if handed["executable"] != os.path.realpath(sys.executable):
        reason = f"the daemon runs {handed['executable']}"
    elif env.get("PYTHONHASHSEED", "0") != os.environ.get("PYTHONHASHSEED"):
        reason = "the daemon has another PYTHONHASHSEED"
    if reason:
        print(f"skol-spark: the pre-started Python worker declined ({reason}); the daemon forks one",
              file=sys.stderr)
        os.close(fds[0])
        link.sendall(struct.pack("!?I", False, 0))
        return 0
    # the worker's environment is the daemon's (the JVM's secret, buffer size, reuse, task env vars)
    os.environ.clear()
    os.environ.update(env)
    os.environ[PRESTARTED_ENV] = "1"
    sys.argv = list(handed["argv"])  # pyspark.daemon.worker reads the worker module from argv[1]
    for entry in reversed(env.get("PYTHONPATH", "").split(os.pathsep)):
        if entry and entry not in sys.path:
            sys.path.insert(0, entry)
    sock = socket.socket(fileno=fds[0])
    link.sendall(struct.pack("!?I", True, os.getpid()))
    link.close()
    return _serve_spark(sock)


def _serve_spark(sock: socket.socket) -> int:
    """``pyspark.daemon``'s child loop (Spark's contract with a daemon worker): the pid, then tasks while
    Spark reuses the worker."""
    import gc

    from pyspark.daemon import worker
    from pyspark.serializers import write_int
    from pyspark.util import enable_faulthandler

    with enable_faulthandler():
        devnull = os.open(os.devnull, os.O_RDONLY)
        os.dup2(devnull, 0)  # as a forked child: native code must not read the CLI's stdin
        os.close(devnull)
        outfile = sock.makefile(mode="wb")
        write_int(os.getpid(), outfile)
        outfile.flush()
        outfile.close()
        authenticated = os.environ.get("PYTHON_UNIX_DOMAIN_ENABLED", "false").lower() == "true"
        reuse = os.environ.get("SPARK_REUSE_WORKER")
        while True:
            code = worker(sock, authenticated)
            if code == 0:
                authenticated = True
            if not reuse or code:
                try:
                    while sock.recv(1024):  # wait for Spark to close the connection
                        pass
                except Exception:
                    pass
                return code
            gc.collect()


if __name__ == "__main__":
    code = serve(sys.argv[1], int(sys.argv[2]))
    sys.stdout.flush()
    os._exit(code)  # as Spark's workers: no interpreter teardown of TensorFlow's threads
