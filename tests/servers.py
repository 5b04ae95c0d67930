"""Real database servers for tests: InfluxDB 1.x and VictoriaMetrics on free loopback ports.

Each server runs as a child process with its data and its log in a directory the caller owns
(normally pytest's ``tmp_path``), listens on 127.0.0.1 only, and is stopped by its handle
(SIGTERM, then SIGKILL after a timeout). ``restart()`` keeps the port and the data, for outage
tests. The binaries come from ``scripts/setup-test-servers.sh``; ``find_influxd()`` and
``find_victoria()`` return ``None`` when they are absent so that fixtures can skip.

Standard library only (urllib): the checks do not depend on the InfluxDB client under test.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import shutil
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from types import TracebackType
from typing import Any, ClassVar, Self

REPO = Path(__file__).resolve().parents[1]
SETUP_SCRIPT = "scripts/setup-test-servers.sh"
VICTORIA_CACHED = REPO / ".cache" / "test-servers" / "victoria-metrics"

START_TIMEOUT_S = 20.0
STOP_TIMEOUT_S = 10.0
HTTP_TIMEOUT_S = 10.0

# Loopback requests must never go through an http_proxy from the environment.
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


class ServerError(RuntimeError):
    """A test server did not start, or answered an HTTP request with an error."""


def find_influxd() -> str | None:
    """Path of ``influxd`` (Debian package ``influxdb``, 1.x) on PATH, or None."""
    return shutil.which("influxd")


def find_victoria() -> str | None:
    """Path of the VictoriaMetrics single-node binary, or None."""
    if os.access(VICTORIA_CACHED, os.X_OK):
        return str(VICTORIA_CACHED)
    return shutil.which("victoria-metrics")


def free_ports(n: int = 1) -> list[int]:
    """``n`` distinct TCP ports that were free on 127.0.0.1 a moment ago.

    All sockets stay bound until every port is picked, so the ports differ. The server binds them
    a little later; if another process takes one in between, ``start()`` retries on new ports.
    """
    with contextlib.ExitStack() as stack:
        ports = []
        for _ in range(n):
            s = stack.enter_context(socket.socket(socket.AF_INET, socket.SOCK_STREAM))
            s.bind(("127.0.0.1", 0))
            ports.append(s.getsockname()[1])
        return ports


# prctl is looked up here, not in the forked child: loading a library between fork and exec can
# deadlock when the test process has other threads.
try:
    _prctl = ctypes.CDLL(None, use_errno=True).prctl
except (AttributeError, OSError):  # not Linux
    _prctl = None
_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    """In the child before exec: get SIGTERM when the test process dies (Linux only).

    A safety net: if pytest is killed hard, no fixture teardown runs, and without this the server
    would keep running. (The signal follows the *thread* that started the server: start servers
    from pytest's main thread, as fixtures do, not from a short-lived worker thread.)
    """
    if _prctl is not None:
        _prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


def http(
    method: str,
    url: str,
    *,
    params: dict[str, str] | None = None,
    data: bytes | str | None = None,
    timeout: float = HTTP_TIMEOUT_S,
) -> tuple[int, bytes]:
    """One HTTP request; returns (status, body) for any status, raises OSError when unreachable."""
    if params:
        url = f"{url}?{urllib.parse.urlencode(params)}"
    body = data.encode() if isinstance(data, str) else data
    req = urllib.request.Request(url, data=body, method=method)
    try:
        with _OPENER.open(req, timeout=timeout) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as e:  # 4xx/5xx still carry a useful body
        with e:
            return e.code, e.read()


class _Server:
    """A server process with a data dir, a log file and an HTTP readiness probe."""

    name: ClassVar[str]
    ready_path: ClassVar[str]  # GET this ...
    ready_status: ClassVar[int]  # ... until it answers this status

    def __init__(self, binary: str | Path, data_dir: Path) -> None:
        self.binary = str(binary)
        self.data_dir = Path(data_dir)
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.log_path = self.data_dir / f"{self.name}.log"
        self.port = 0  # chosen by the first start(), kept by restart()
        self._proc: subprocess.Popen[bytes] | None = None

    # -- subclass hooks -----------------------------------------------------------------------

    def _pick_ports(self) -> None:
        """Choose the listening port(s) for the first start."""
        (self.port,) = free_ports(1)

    def _command(self) -> list[str]:
        raise NotImplementedError

    def _env(self) -> dict[str, str]:
        return dict(os.environ)

    # -- lifecycle ----------------------------------------------------------------------------

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    def start(self, timeout: float = START_TIMEOUT_S) -> Self:
        """Start the process and wait until it is ready; no-op when already running."""
        if self.running():
            return self
        first = self.port == 0
        # A port that was free when picked may be taken before the server binds it: on the first
        # start, pick new ports and try again. A restart must keep its port (clients know it).
        for attempt in range(3 if first else 1):
            if first:
                self._pick_ports()
            try:
                self._spawn_and_wait(timeout)
                return self
            except ServerError:
                if (
                    attempt == 2
                    or not first
                    or "address already in use" not in self.log_tail().lower()
                ):
                    raise
        raise AssertionError("unreachable")

    def _spawn_and_wait(self, timeout: float) -> None:
        with self.log_path.open("ab") as log:
            log.write(f"---- {time.strftime('%H:%M:%S')} start {self._command()}\n".encode())
            log.flush()
            self._proc = subprocess.Popen(
                self._command(),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=self.data_dir,
                env=self._env(),
                preexec_fn=_die_with_parent,
            )
        deadline = time.monotonic() + timeout
        while True:
            if self._proc.poll() is not None:
                code = self._proc.returncode
                self._proc = None
                raise ServerError(
                    f"{self.name} exited with status {code} while starting{self._log_for_error()}"
                )
            if self._probe():
                return
            if time.monotonic() > deadline:
                self.stop()
                raise ServerError(
                    f"{self.name} not ready at {self.url}{self.ready_path} after {timeout:g} s{self._log_for_error()}"
                )
            time.sleep(0.02)

    def stop(self, timeout: float = STOP_TIMEOUT_S) -> None:
        """SIGTERM, wait up to ``timeout`` s, then SIGKILL. Idempotent."""
        proc, self._proc = self._proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()

    def restart(self, downtime: float = 0.0, timeout: float = START_TIMEOUT_S) -> Self:
        """Stop, stay down ``downtime`` s, start again on the same port with the same data."""
        self.stop()
        if downtime > 0:
            time.sleep(downtime)
        return self.start(timeout)

    def running(self) -> bool:
        """The process exists (it may not be answering yet)."""
        return self._proc is not None and self._proc.poll() is None

    def alive(self) -> bool:
        """The process runs and answers its readiness probe."""
        return self.running() and self._probe()

    def _probe(self) -> bool:
        try:
            status, _ = http("GET", self.url + self.ready_path, timeout=1.0)
        except OSError:
            return False
        return status == self.ready_status

    def log_tail(self, lines: int = 30) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def _log_for_error(self) -> str:
        return f"\n--- last lines of {self.log_path}:\n{self.log_tail()}"

    def _check(self, method: str, path: str, ok: tuple[int, ...], **kw: Any) -> bytes:
        """HTTP request to this server; ServerError unless the status is in ``ok``."""
        status, body = http(method, self.url + path, **kw)
        if status not in ok:
            raise ServerError(f"{method} {path} -> {status}: {body[:500].decode(errors='replace')}")
        return body

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        state = "running" if self.running() else "stopped"
        return f"<{type(self).__name__} {self.url} {state} pid={self.pid} data={self.data_dir}>"


class Influx1Server(_Server):
    """``influxd`` 1.x (Debian's 1.6.7) with a generated config; HTTP API on ``url``.

    Meta, data and WAL live under ``data_dir``; the RPC (backup) port is bound on loopback at a
    second free port; usage reporting, the ``_internal`` monitor store and the HTTP/query logs are
    off. ``INFLUXDB_*`` environment variables (which would override the file) are not passed on.
    Answers /ping ~0.05 s after starting; SIGTERM takes ~5 ms (measured after a 20k-point write).
    """

    name = "influxd"
    ready_path = "/ping"
    ready_status = 204

    def __init__(self, data_dir: Path, binary: str | Path | None = None) -> None:
        binary = binary or find_influxd()
        if binary is None:
            raise ServerError(f"influxd not found on PATH (run {SETUP_SCRIPT})")
        super().__init__(binary, data_dir)
        self.rpc_port = 0
        self.config_path = self.data_dir / "influxdb.conf"

    def _pick_ports(self) -> None:
        self.port, self.rpc_port = free_ports(2)
        d = self.data_dir
        self.config_path.write_text(
            f"""\
reporting-disabled = true
bind-address = "127.0.0.1:{self.rpc_port}"

[meta]
  dir = "{d / "meta"}"

[data]
  dir = "{d / "data"}"
  wal-dir = "{d / "wal"}"
  query-log-enabled = false

[http]
  bind-address = "127.0.0.1:{self.port}"
  log-enabled = false

[monitor]
  store-enabled = false
"""
        )

    def _command(self) -> list[str]:
        return [self.binary, "run", "-config", str(self.config_path)]

    def _env(self) -> dict[str, str]:
        # influxd lets INFLUXDB_<SECTION>_<KEY> variables override the config file.
        return {k: v for k, v in os.environ.items() if not k.startswith("INFLUXDB_")}

    def query(self, q: str, db: str | None = None, **params: str) -> dict[str, Any]:
        """GET /query; the parsed JSON ({"results": [...]}). Errors in a result are not raised."""
        p = {"q": q, **params}
        if db is not None:
            p["db"] = db
        result: dict[str, Any] = json.loads(self._check("GET", "/query", (200,), params=p))
        return result

    def create_database(self, name: str) -> None:
        """POST /query CREATE DATABASE (idempotent in InfluxDB)."""
        self._check("POST", "/query", (200,), params={"q": f'CREATE DATABASE "{name}"'})

    def write(self, db: str, lines: str | list[str], precision: str = "ns") -> None:
        """POST /write line protocol into ``db`` (which must exist)."""
        body = lines if isinstance(lines, str) else "\n".join(lines)
        self._check("POST", "/write", (204,), params={"db": db, "precision": precision}, data=body)


class VictoriaServer(_Server):
    """VictoriaMetrics single node; speaks InfluxDB line protocol on /write and /api/v2/write.

    Observed with 1.112.0 (tests/test_servers.py checks the main points):

    * measurement ``m`` with field ``f`` becomes the metric ``m_f`` (``__name__``), one series per
      field (a field named ``value`` gives ``m_value``); tags become labels;
    * v1 ``/write?db=mydb`` adds the label ``db="mydb"``; v2 ``/api/v2/write?org=o&bucket=b``
      adds no label (influxdb-client's write API works against it);
    * string fields are stored as 0, booleans as 1/0, integers as floats;
    * timestamps are kept to the millisecond (nanoseconds are truncated);
    * new points reach /api/v1/export only after a flush (~10 s by itself): call
      ``force_flush()`` first. Export without ``end`` also misses points stamped within the
      last second or in the future, so ``export()`` passes an ``end`` a day ahead.

    Started with ``-retentionPeriod=100y`` (with the default 1 month, points with old fixed
    timestamps are dropped with only a warning in the log), ``-search.latencyOffset=0s``
    (recent points are queryable at once), ``-search.disableCache`` and
    ``-dedup.minScrapeInterval=1ms``. Starts in ~0.05 s; SIGTERM takes ~0.03 s.
    """

    name = "victoria-metrics"
    ready_path = "/health"
    ready_status = 200

    def __init__(self, data_dir: Path, binary: str | Path | None = None) -> None:
        binary = binary or find_victoria()
        if binary is None:
            raise ServerError(
                f"victoria-metrics not found in {VICTORIA_CACHED} or on PATH (run {SETUP_SCRIPT})"
            )
        super().__init__(binary, data_dir)

    def _command(self) -> list[str]:
        return [
            self.binary,
            f"-httpListenAddr=127.0.0.1:{self.port}",
            f"-storageDataPath={self.data_dir / 'storage'}",
            "-retentionPeriod=100y",
            "-search.latencyOffset=0s",
            "-search.disableCache",
            "-dedup.minScrapeInterval=1ms",
            "-loggerOutput=stderr",
        ]

    def write(self, lines: str | list[str], precision: str = "ns") -> None:
        """POST /write line protocol (InfluxDB v1 style)."""
        body = lines if isinstance(lines, str) else "\n".join(lines)
        self._check("POST", "/write", (204,), params={"precision": precision}, data=body)

    def force_flush(self) -> None:
        """Make everything ingested so far visible to queries and exports."""
        self._check("GET", "/internal/force_flush", (200,))

    def export(
        self, match: str = '{__name__=~".+"}', end: float | None = None
    ) -> list[dict[str, Any]]:
        """/api/v1/export: one dict per series, ``{"metric": {"__name__": ..., labels...},
        "values": [...], "timestamps": [ms, ...]}``. Call ``force_flush()`` first.

        ``end`` (Unix seconds) defaults to a day from now: VictoriaMetrics' own default leaves
        out points stamped within the last second.
        """
        end = time.time() + 86400 if end is None else end
        params = {"match[]": match, "end": f"{end:.3f}"}
        body = self._check("GET", "/api/v1/export", (200,), params=params)
        return [json.loads(line) for line in body.splitlines() if line.strip()]
