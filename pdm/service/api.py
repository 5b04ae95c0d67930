"""The appliance's control and health API: standard-library HTTP on localhost, JSON in and out.

Endpoints (all answers JSON, except ``/metrics``)::

    GET  /health            200 {"ok": true, ...} or 503 {"ok": false, "reasons": [...]}; never
                            needs a token (a load balancer or systemd probe has none)
    GET  /status            200 [machine status, ...]             (see :func:`machine_status`)
    GET  /status/<machine>  200 {machine status}; 404 unknown machine
    POST /ack/<machine>     body {"by": "name", "comment": "..."} (Content-Type: application/json)
                            200 {"machine": ..., "message": ...}; 400 bad JSON, no/empty "by",
                            "by" over 64 or "comment" over 500 characters, a control character
                            in either, unknown keys; 404 unknown machine; 415 not JSON; 413
                            body > 64 KiB; 411 chunked (no Content-Length). Acknowledging what
                            is already acknowledged, or nothing, writes nothing (200, the
                            message says so).
    GET  /metrics           200 Prometheus text format 0.0.4
    PUT  /models/<machine>/candidate
                            body: a tar.gz of the model bundle (Content-Type: application/gzip;
                            model.onnx, model.json and model.sig when signed; nothing else);
                            202 {"machine", "candidate", "active", ...}: checked, runs in shadow;
                            400 with the one-line reason (not a safe bundle, or it fails its
                            check: nothing written); 404; 408; 411; 413 body > 64 MiB; 415;
                            503 the models directory cannot be written
    POST /models/<machine>/promote   body {"by": "name", "comment": "...", "force": false} as
                            for /ack: 200 {"machine", "message", "active", "previous"}: the
                            shadow candidate installed and scoring; 404 no candidate; 409 the
                            candidate changed since it was checked (or was rejected), or it
                            has scored fewer shadow windows than the service asks
                            (``--promote-min-windows``, default 100) and "force" is not true;
                            403 "force" without a token on the API; 503 as for the upload
    POST /models/<machine>/rollback  body as for promote: 200 as for promote, ``NAME.previous``
                            restored (after its check); 404 no previous model; 409 it fails its
                            check now

Errors are ``{"error": "one line"}``: 401 (token missing or wrong, with
``WWW-Authenticate``), 403 (a foreign ``Host`` on a token-less loopback API),
404 (no such endpoint), 405 (wrong method, with ``Allow``), 500 (the backend
raised: the client gets no traceback; the log gets one line, and the traceback
at debug level). A backend refuses with :class:`APIError` (status and one line),
``KeyError`` (unknown machine: 404) or ``ValueError`` (400).

**Who may call.** One rule: **when a token is set** (``PDM_API_TOKEN`` or
``PDM_API_TOKEN_FILE``), every request but ``GET /health`` must carry
``Authorization: Bearer <token>`` (compared in constant time), whatever the address the
API is bound to — loopback, a LAN address, or a Unix socket (a multi-process service's
workers serve theirs on Unix sockets in a private directory, and the supervisor sends the
token). Without a token the API may only be bound to a loopback address (``127.0.0.1``,
``::1``; ``localhost`` means ``127.0.0.1``) or a Unix socket: anything else refuses to
start (:class:`~pdm.errors.ConfigError`). Without a token the ``Host`` header must name a
loopback address, so a web page in a browser on the appliance cannot reach the API
through DNS rebinding; and ``POST`` needs ``Content-Type: application/json``, which a
cross-site browser form cannot send without a CORS preflight this API never answers (nor
can it send a ``PUT``). A forced promotion (``"force": true``) is accepted only from an
API that has a token: it skips the shadow evidence, so it must come from someone known.

**Robustness.** One request per connection (HTTP/1.0 style, so no idle
keep-alive threads), a socket timeout on every connection, bounded request
bodies (:attr:`ControlAPI.max_body`; :attr:`ControlAPI.max_upload` for a model upload only), at
most :attr:`ControlAPI.max_connections` at once, a request head due within
:attr:`ControlAPI.timeout_s` of connecting, and slow heads pushed out by newcomers
(:mod:`pdm.service.guarded_http`, which says why not an ASGI server). ``stop()`` waits
briefly for requests in flight, then cuts their connections.

The real service implements :class:`ServiceBackend`; this module knows
nothing of engines or stores.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import hmac
import json
import logging
import math
import os
import re
import socket
import stat
import threading
import time
from collections.abc import Callable, Mapping
from http import HTTPStatus
from types import TracebackType
from typing import TYPE_CHECKING, Any, Protocol, Self, TypeVar
from urllib.parse import unquote, urlsplit

from pdm import __version__
from pdm.alarms.state import check_operator_text
from pdm.core.jsonkeys import unique_keys
from pdm.core.net import is_loopback_ip
from pdm.errors import ConfigError
from pdm.secrets import api_token  # also here: the service's callers have always found it here
from pdm.service.guarded_http import BodyReader, GuardedHandler, GuardedHTTPServer, Readable
from pdm.service.metrics import CONTENT_TYPE as METRICS_CONTENT_TYPE

if TYPE_CHECKING:
    from pdm.alarms.state import MachineAlarm
    from pdm.history.writer import WriterStats

__all__ = [
    "DEFAULT_PORT",
    "HISTORY_MAX_OUTAGE_S",
    "HISTORY_MAX_STALL_S",
    "APIError",
    "ControlAPI",
    "Readable",
    "ServiceBackend",
    "api_token",
    "health_report",
    "history_health",
    "machine_status",
]

log = logging.getLogger("pdm.service.api")
_T = TypeVar("_T")

DEFAULT_PORT = 8470
#: ``--api unix:PATH``: the API on a Unix socket (a worker's, for its supervisor).
UNIX_PREFIX = "unix:"
#: Bodies up to this size are read and thrown away before an error answer (a client that is
#: still sending when the server closes may get a connection reset instead of the answer).
_DRAIN_MAX = 1 << 20
_MIN_TOKEN = 16
_TOKEN = re.compile(rf"^[\x21-\x7e]{{{_MIN_TOKEN},}}$")
_ACK_KEYS = {"by", "comment"}


_MODEL_ACTIONS = {
    "promote": "POST",
    "rollback": "POST",
    "candidate": "PUT",
    "teach-in-accept": "POST",
    "teach-in-restart": "POST",
}
_GZIP_TYPES = ("application/gzip", "application/x-gzip")


#: Requests served at once (the open-files budget counts them: pdm/service/limits.py).
DEFAULT_MAX_CONNECTIONS = 32


class APIError(Exception):
    """A refusal the client should see: an HTTP status and one line (raised by a backend)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


# -- the service side ----------------------------------------------------------------------------


class ServiceBackend(Protocol):
    """What the control API asks of the service. Called from the API's request threads,
    concurrently: implementations must be thread-safe and should answer in milliseconds
    (the model updates excepted: they load and check a model, and copy files)."""

    def status(self) -> list[dict[str, Any]]:
        """One dict per machine (see :func:`machine_status` for the keys); ``id`` is required."""
        ...

    def health(self) -> dict[str, Any]:
        """``{"ok": bool, "reasons": [...], ...}`` (see :func:`health_report`)."""
        ...

    def acknowledge(self, machine: str, by: str, comment: str) -> str:
        """Acknowledge the machine's latched alarm; returns the one-line result.

        Raises ``KeyError`` for an unknown machine and ``ValueError`` for an empty ``by``.
        """
        ...

    def metrics(self) -> str:
        """The Prometheus text exposition (``ServiceMetrics.render()``)."""
        ...

    def promote(
        self, machine: str, by: str, comment: str = "", force: bool = False
    ) -> dict[str, Any]:
        """Make the machine's candidate (running in shadow) its live model; ``force``: even
        with too little shadow evidence (recorded).

        Raises ``KeyError`` (unknown machine), ``ValueError`` (empty ``by``) and
        :class:`APIError` (404 no candidate, 409 it changed since it was checked or has too
        little shadow evidence).
        """
        ...

    def rollback(self, machine: str, by: str, comment: str = "") -> dict[str, Any]:
        """Restore the machine's previous model. Raises as :meth:`promote` does."""
        ...

    def teach_in(self, machine: str, decision: str, by: str, comment: str = "") -> dict[str, Any]:
        """An operator's decision (``accept`` or ``restart``) on the machine's teach-in.

        Raises ``KeyError`` (unknown machine), ``ValueError`` (the one-line reason it cannot be
        taken) and :class:`APIError` (409: not in teach-in).
        """
        ...

    def upload_candidate(self, machine: str, body: Readable) -> dict[str, Any]:
        """Take a candidate bundle (a tar.gz stream; read what is needed, not more) and run it
        in shadow. Raises ``KeyError`` (unknown machine) and ``ValueError`` (the one-line reason
        it was refused)."""
        ...


def _iso_ns(t_ns: int) -> str:
    return dt.datetime.fromtimestamp(t_ns / 1e9, tz=dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def machine_status(
    machine: str,
    name: str,
    alarm: MachineAlarm,
    *,
    score: float | None = None,
    thresholds: Mapping[str, float] | None = None,
    diagnosis: str | None = None,
    appliance_fault: str = "",
    model_version: str | None = None,
    last_window_ns: int | None = None,
    now_ns: int | None = None,
) -> dict[str, Any]:
    """The status of one machine as ``GET /status`` shows it.

    Parameters
    ----------
    alarm : the engine's current state
    score : the newest window's anomaly score (None: not scored)
    thresholds : the model's thresholds (``alert``, ``danger``, maybe ``trip``)
    appliance_fault : why the appliance is faulty ('' when it is not)
    last_window_ns : end of the newest processed window, ns since the epoch
    now_ns : the clock (``time.time_ns()`` when None), for ``lag_s``

    Returns keys ``id``, ``name``, ``state``, ``since`` (ISO 8601 UTC, None if
    never changed), ``reason``, ``acknowledged`` (``{"by", "at", "comment"}`` or
    None), ``score``, ``thresholds``, ``diagnosis``, ``sensor_faults`` (sensor →
    reason), ``appliance_fault``, ``model_version``, ``last_window`` (ISO 8601
    UTC or None) and ``lag_s`` (s behind real time, None before the first window).
    """
    now_ns = time.time_ns() if now_ns is None else now_ns
    ack = alarm.ack
    return {
        "id": machine,
        "name": name,
        "state": alarm.state,
        "since": _iso_ns(alarm.since_ns) if alarm.since_ns else None,
        "reason": alarm.reason,
        "acknowledged": (
            {"by": ack.by, "at": _iso_ns(ack.t_ns), "comment": ack.comment} if ack else None
        ),
        "score": score,
        "thresholds": dict(thresholds or {}),
        "diagnosis": diagnosis,
        "sensor_faults": dict(alarm.sensor_faults),
        "appliance_fault": appliance_fault,
        "model_version": model_version,
        "last_window": _iso_ns(last_window_ns) if last_window_ns is not None else None,
        "lag_s": (now_ns - last_window_ns) / 1e9 if last_window_ns is not None else None,
    }


def health_report(checks: Mapping[str, tuple[bool, str]]) -> dict[str, Any]:
    """``{"ok", "reasons", "checks"}`` from named checks ``name → (ok, detail)``.

    ``reasons`` lists ``"name: detail"`` of the failing checks; ``ok`` is True when none fail.
    """
    reasons = [f"{name}: {detail}" for name, (ok, detail) in checks.items() if not ok]
    return {
        "ok": not reasons,
        "reasons": reasons,
        "checks": {name: {"ok": ok, "detail": detail} for name, (ok, detail) in checks.items()},
    }


#: /health: the history store may be down this long, s, before the check fails (the spool
#: keeps every row meanwhile, within its bound; an outage this long needs someone).
HISTORY_MAX_OUTAGE_S = 300.0
#: /health: rows may wait this long, s, with none delivered or rejected, the store up,
#: before the check fails (a writer that is stuck: a flush is due every second).
HISTORY_MAX_STALL_S = 60.0


def history_health(
    stats: WriterStats,
    max_spool_rows: int,
    *,
    max_outage_s: float = HISTORY_MAX_OUTAGE_S,
    max_stall_s: float = HISTORY_MAX_STALL_S,
) -> tuple[bool, str]:
    """The history check. Healthy while the store is up and rows move, or while it is down
    for less than ``max_outage_s`` with the spool below ``max_spool_rows`` (the outage is
    being ridden out). Unhealthy once rows are dropped, the outage lasts longer, the spool
    is full, or rows have waited ``max_stall_s`` with the store up and none delivered."""
    rejected = f"; {stats.rows_rejected} row(s) rejected" if stats.rows_rejected else ""
    if stats.rows_dropped:
        return False, f"{stats.rows_dropped} row(s) dropped by the spool (disk full or failing)"
    if stats.store_up:
        if stats.stalled_s > max_stall_s:
            return False, (
                f"stuck: no row delivered for {stats.stalled_s:.0f} s (limit {max_stall_s:g} s) "
                f"while {stats.queue_rows + stats.spool_rows} wait{rejected}"
            )
        return True, f"store up; {stats.spool_rows} row(s) spooled{rejected}"
    if stats.spool_rows >= max_spool_rows:
        return False, (
            f"store down and the spool holds {stats.spool_rows} row(s) (≥ {max_spool_rows})"
        )
    if stats.down_s > max_outage_s:
        return False, (
            f"store down for {stats.down_s:.0f} s (limit {max_outage_s:g} s); "
            f"{stats.spool_rows} row(s) spooled{rejected}"
        )
    return True, (
        f"store down for {stats.down_s:.0f} s; spooling ({stats.spool_rows} of "
        f"{max_spool_rows} row(s)){rejected}"
    )


# -- helpers -------------------------------------------------------------------------------------


def _bare_host(host: str) -> str:
    return host[1:-1] if host.startswith("[") and host.endswith("]") else host


def _host_header_is_loopback(value: str) -> bool:
    value = value.strip()
    if value.startswith("["):
        name = value[1 : value.find("]")] if "]" in value else value
    elif value.count(":") == 1:
        name = value.rsplit(":", 1)[0]
    else:
        name = value
    return name.lower() in ("localhost", "localhost.") or is_loopback_ip(name)


def _jsonable(obj: Any) -> Any:
    """Plain JSON values: non-finite floats become null (JSON has no NaN), numpy scalars and
    arrays become numbers and lists, datetimes ISO strings. Anything else is a bug (TypeError)."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if obj is None or isinstance(obj, str | int | bool):
        return obj
    if isinstance(obj, Mapping):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple | set | frozenset):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, dt.datetime | dt.date):
        return obj.isoformat()
    tolist = getattr(obj, "tolist", None)  # numpy scalars and arrays
    if callable(tolist):
        return _jsonable(tolist())
    raise TypeError(f"cannot send a {type(obj).__name__} as JSON")


def _json_bytes(obj: Any) -> bytes:
    return (json.dumps(_jsonable(obj), ensure_ascii=False) + "\n").encode("utf-8")


def _digest(token: bytes) -> bytes:
    # Hashing first makes the comparison's time independent of the length of either side.
    return hashlib.sha256(token).digest()


# -- the server ----------------------------------------------------------------------------------


class _Server(GuardedHTTPServer):
    """The guarded server, with the API its handlers answer for."""

    def __init__(self, address: tuple[str, int] | str, api: ControlAPI, family: int) -> None:
        self.api = api
        super().__init__(
            address,
            _Handler,
            family,
            max_connections=api.max_connections,
            timeout_s=api.timeout_s,
            name="control API",
            thread_name="pdm-api-request",
        )


class _Handler(GuardedHandler):
    server: _Server
    # One request per connection: no keep-alive connection holds a thread between requests.
    protocol_version = "HTTP/1.0"

    def setup(self) -> None:
        super().setup()
        self._replied = False
        self._unread = 0  # request body bytes not read yet

    def version_string(self) -> str:
        return f"pdm-edge/{__version__}"

    def address_string(self) -> str:
        addr = self.client_address
        return str(addr[0]) if isinstance(addr, tuple) and addr else "unix socket"

    def log_message(self, format: str, *args: Any) -> None:
        level = logging.INFO if self.server.api.access_log else logging.DEBUG
        log.log(level, "control API: %s %s", self.address_string(), format % args)

    def log_error(self, format: str, *args: Any) -> None:
        log.debug("control API: %s %s", self.address_string(), format % args)

    # -- answers -----------------------------------------------------------------------------
    def _send(
        self,
        status: int,
        body: bytes,
        content_type: str,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        self._drain()
        self._replied = True
        try:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Cache-Control", "no-store")
            self.send_header("X-Content-Type-Options", "nosniff")
            for k, v in (headers or {}).items():
                self.send_header(k, v)
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)
        except ConnectionError:
            # The client left before its answer. Not an appliance error: logged at ERROR,
            # anyone who can connect (no token needed to be answered 401) wrote a log line
            # per connection, without limit.
            self.close_connection = True
            log.debug("control API: %s left before its answer", self.address_string())

    def _json(self, status: int, obj: Any, headers: Mapping[str, str] | None = None) -> None:
        self._send(status, _json_bytes(obj), "application/json", headers)

    def _error(self, status: int, message: str, headers: Mapping[str, str] | None = None) -> None:
        self._json(status, {"error": message}, headers)

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        # http.server's own refusals (bad request line, 414, 431, 501): JSON like the rest.
        self.log_error("code %d, message %s", code, message)
        self.close_connection = True
        try:
            phrase = HTTPStatus(code).phrase
        except ValueError:
            phrase = "error"
        self._error(code, message or phrase)

    def _drain(self) -> None:
        """Read and discard an unread request body (bounded), so that closing the connection
        does not reset it before the client has read the answer."""
        left, self._unread = self._unread, 0
        if not 0 < left <= _DRAIN_MAX:
            return
        try:
            while left > 0:
                chunk = self.rfile.read(min(left, 65536))
                if not chunk:
                    break
                left -= len(chunk)
        except OSError:
            pass

    # -- requests ----------------------------------------------------------------------------
    def _on_request(self) -> None:
        """http.server calls ``do_`` + the request's method: ``self.command`` is that method."""
        self._handle(self.command)

    do_GET = do_HEAD = do_POST = do_PUT = do_PATCH = do_DELETE = _on_request

    def _handle(self, method: str) -> None:
        api = self.server.api
        self.head_received()
        try:
            self._unread = self._content_length()
            if self._unread < 0:
                self._unread = 0
                self._error(400, "bad Content-Length")
                return
            path = urlsplit(self.path).path
            if api.token_digest is None and not _host_header_is_loopback(
                self.headers.get("Host", "127.0.0.1")
            ):
                self._error(403, "this API answers only to loopback Host names without a token")
                return
            if not (method in ("GET", "HEAD") and path == "/health") and not self._authorized():
                return
            route, machine = self._route(path)
            if route is None:
                self._error(404, f"no such endpoint: {path}")
                return
            allowed = (
                ("POST",)
                if route in ("ack", "promote", "rollback", "teach-in-accept", "teach-in-restart")
                else ("PUT",)
                if route == "candidate"
                else ("GET", "HEAD")
            )
            if method not in allowed:
                self._error(405, f"{method} not allowed here", {"Allow": ", ".join(allowed)})
                return
            if route == "health":
                self._health()
            elif route == "status":
                self._status(machine)
            elif route == "metrics":
                body = api.backend.metrics().encode("utf-8", "replace")
                self._send(200, body, METRICS_CONTENT_TYPE)
            elif route == "candidate":
                self._upload(machine or "")
            elif route in ("promote", "rollback", "teach-in-accept", "teach-in-restart"):
                self._model_action(route, machine or "")
            else:
                self._ack(machine or "")
        except Exception as exc:
            log.error(
                "control API: %s %s failed: %s: %s",
                method,
                self.path[:200],
                type(exc).__name__,
                str(exc)[:300].replace("\n", " "),
            )
            log.debug("control API: traceback", exc_info=True)
            if not self._replied:
                try:
                    self._error(500, "internal error (the appliance log says more)")
                except OSError:
                    pass

    def _content_length(self) -> int:
        """The declared body length; -1 when it cannot be parsed, or when the request
        declares it twice with different values (which one a proxy in front used is
        unknown: RFC 9112 section 6.3 says reject)."""
        given = {v.strip() for v in self.headers.get_all("Content-Length") or []}
        if not given:
            return 0
        raw = given.pop()
        if given:
            self.close_connection = True
            return -1
        return int(raw) if raw.isdigit() and raw.isascii() else -1

    @staticmethod
    def _route(path: str) -> tuple[str | None, str | None]:
        if path in ("/health", "/status", "/metrics"):
            return path[1:], None
        for prefix, route in (("/status/", "status"), ("/ack/", "ack")):
            if path.startswith(prefix):
                machine = unquote(path[len(prefix) :])
                if machine and "/" not in machine:
                    return route, machine
        if path.startswith("/models/"):
            quoted, _, action = path[len("/models/") :].rpartition("/")
            machine = unquote(quoted)
            if action in _MODEL_ACTIONS and machine and "/" not in machine:
                return action, machine
        return None, None

    def _authorized(self) -> bool:
        api = self.server.api
        if api.token_digest is None:
            return True
        given = self.headers.get("Authorization", "")
        scheme, _, credential = given.strip().partition(" ")
        # http.client decodes header bytes as latin-1: encoding back gives the bytes sent.
        sent = credential.strip().encode("latin-1", "replace")
        if scheme.lower() == "bearer" and hmac.compare_digest(_digest(sent), api.token_digest):
            return True
        api._auth_refused(self.address_string())
        challenge = 'Bearer realm="pdm-edge"'
        if given:
            challenge += ', error="invalid_token"'
        self._error(401, "a valid bearer token is required", {"WWW-Authenticate": challenge})
        return False

    def _health(self) -> None:
        try:
            health = self.server.api.backend.health()
            ok = health.get("ok") is True
        except Exception as exc:
            log.error("control API: the health check raised %s: %s", type(exc).__name__, exc)
            log.debug("control API: traceback", exc_info=True)
            health, ok = {"ok": False, "reasons": ["the health check itself failed"]}, False
        self._json(200 if ok else 503, health)

    def _status(self, machine: str | None) -> None:
        machines = self.server.api.backend.status()
        if machine is None:
            self._json(200, machines)
            return
        for m in machines:
            if m.get("id") == machine:
                self._json(200, m)
                return
        known = [m.get("id") for m in machines]
        self._json(404, {"error": f"unknown machine {machine!r}", "known": known})

    def _json_body(self, who: str, *, force_ok: bool = False) -> tuple[str, str, bool] | None:
        """``by``, ``comment`` (checked: :func:`check_operator_text`) and ``force`` of a JSON
        body ``{"by": ..., "comment": ...[, "force": ...]}``; None when the error answer has
        been sent. ``who`` says what "by" names ("who acknowledges")."""
        api = self.server.api
        ctype = self.headers.get("Content-Type", "").split(";")[0].strip().lower()
        if self.headers.get("Transfer-Encoding"):
            self.close_connection = True
            self._error(411, "send the body with a Content-Length (not chunked)")
            return None
        if self._unread > api.max_body:
            self.close_connection = True
            self._error(413, f"the body may have at most {api.max_body} bytes")
            return None
        if ctype != "application/json":
            self._error(415, "send the body as Content-Type: application/json")
            return None
        n, self._unread = self._unread, 0
        raw = self.rfile.read(n) if n else b""
        if len(raw) < n:
            self.close_connection = True
            self._error(400, "the body ended early")
            return None
        try:
            body = json.loads(raw, object_pairs_hook=unique_keys)
        except (ValueError, UnicodeDecodeError) as exc:
            self._error(400, f"the body is not JSON: {exc}")
            return None
        except RecursionError:  # '[' x 30000 fits in 64 KiB and overflows json's C stack guard
            self._error(400, "the body is not JSON this API takes: nested too deep")
            return None
        if not isinstance(body, dict):
            self._error(400, 'the body must be a JSON object {"by": ..., "comment": ...}')
            return None
        keys = _ACK_KEYS | ({"force"} if force_ok else set())
        unknown = sorted(set(body) - keys)
        if unknown:
            self._error(400, f"unknown key(s) {unknown}: only {', '.join(sorted(keys))}")
            return None
        by, comment, force = body.get("by"), body.get("comment", ""), body.get("force", False)
        if not isinstance(by, str):
            self._error(400, f"'by' ({who}, a string) is required")
            return None
        if not isinstance(comment, str):
            self._error(400, "'comment' must be a string")
            return None
        if not isinstance(force, bool):
            self._error(400, "'force' must be true or false")
            return None
        try:
            by, comment = check_operator_text(by, comment)
        except ValueError as exc:
            self._error(400, str(exc))
            return None
        if force and api.token_digest is None:
            self._error(
                403, "'force' needs an API with a token (PDM_API_TOKEN): who forces is known"
            )
            return None
        return by, comment, force

    def _decide(self, machine: str, decide: Callable[[], _T]) -> _T | None:
        """An operator's decision on ``machine``, or None when it is refused (answered here:
        404 an unknown machine, the backend's :class:`APIError`, 400 a bad value)."""
        try:
            return decide()
        except KeyError:
            self._json(404, {"error": f"unknown machine {machine!r}"})
        except APIError as exc:
            self._error(exc.status, exc.message)
        except ValueError as exc:
            self._error(400, str(exc))
        return None

    def _log_decision(self, machine: str, done: str, by: str, message: str) -> None:
        log.info(
            "control API: %s %s by %r from %s: %s",
            machine,
            done,
            by.strip(),
            self.address_string(),
            message,
        )

    def _ack(self, machine: str) -> None:
        api = self.server.api
        got = self._json_body("who acknowledges")
        if got is None:
            return
        by, comment, _ = got
        message = self._decide(machine, lambda: api.backend.acknowledge(machine, by, comment))
        if message is None:
            return
        self._log_decision(machine, "acknowledged", by, message)
        self._json(200, {"machine": machine, "message": message})

    def _model_action(self, action: str, machine: str) -> None:
        """``POST /models/<machine>/promote``, ``…/rollback``, ``…/teach-in-accept``,
        ``…/teach-in-restart``."""
        api = self.server.api
        who = {"promote": "promotes", "rollback": "rolls back"}.get(action, "decides")
        got = self._json_body(f"who {who}", force_ok=action == "promote")
        if got is None:
            return
        by, comment, force = got
        backend = api.backend

        def decide() -> dict[str, Any]:
            if action.startswith("teach-in-"):
                return backend.teach_in(machine, action.removeprefix("teach-in-"), by, comment)
            if action == "promote":
                return backend.promote(machine, by, comment, force=force)
            return backend.rollback(machine, by, comment)

        result = self._decide(machine, decide)
        if result is None:
            return
        done = {"promote": "promoted", "rollback": "rolled back"}.get(action, action)
        self._log_decision(machine, done, by, result.get("message", ""))
        self._json(200, result)

    def _upload(self, machine: str) -> None:
        """``PUT /models/<machine>/candidate``: a tar.gz bundle, streamed to the backend."""
        api = self.server.api
        ctype = self.headers.get("Content-Type", "").split(";")[0].strip().lower()
        if self.headers.get("Transfer-Encoding") or "Content-Length" not in self.headers:
            self.close_connection = True
            self._error(411, "send the body with a Content-Length (not chunked)")
            return
        if self._unread > api.max_upload:
            self.close_connection = True
            self._error(413, f"the body may have at most {api.max_upload} bytes")
            return
        if ctype not in _GZIP_TYPES:
            self._error(415, "send the bundle as Content-Type: application/gzip (a tar.gz)")
            return
        body = BodyReader(self.rfile, self._unread)
        self._unread = 0
        try:
            try:
                result = api.backend.upload_candidate(machine, body)
            finally:
                # Read what the backend left (bounded by max_upload), so the client that is
                # still sending gets the answer rather than a reset connection.
                body.drain()
        except KeyError:
            self._json(404, {"error": f"unknown machine {machine!r}"})
            return
        except APIError as exc:
            self._error(exc.status, exc.message)
            return
        except ValueError as exc:
            self._error(400, str(exc).strip().splitlines()[0] if str(exc).strip() else "refused")
            return
        except TimeoutError:
            self.close_connection = True
            self._error(408, f"the body did not arrive within {api.timeout_s:g} s")
            return
        if body.short:
            self.close_connection = True
            self._error(400, "the body ended early")
            return
        log.info(
            "control API: %s: candidate %s uploaded from %s; it runs in shadow",
            machine,
            result.get("candidate"),
            self.address_string(),
        )
        self._json(202, result)


# -- the API object ------------------------------------------------------------------------------


class ControlAPI:
    """The control and health API of one service, served from a background thread.

    Parameters
    ----------
    backend : the service (:class:`ServiceBackend`)
    host : address to listen on; a non-loopback one requires ``token``. ``unix:PATH``: a
        Unix socket at PATH (mode 0600; its directory should be private), ``port`` unused
    port : TCP port; 0 picks a free one (read :attr:`port` after construction)
    token : bearer token (:func:`api_token`), at least 16 printable ASCII characters
    timeout_s : socket timeout of each connection, s
    max_body : largest request body accepted, bytes (larger: 413)
    max_upload : largest model upload (``PUT /models/<machine>/candidate``) accepted, bytes
    max_connections : requests served at once; more connections are closed at once
    access_log : log every request at INFO (otherwise at DEBUG)

    The socket is bound here (so :attr:`port` is known and a busy port fails at once, as
    :class:`ConfigError`); :meth:`start` serves; :meth:`stop` (or leaving the ``with``
    block) stops and closes.
    """

    def __init__(
        self,
        backend: ServiceBackend,
        host: str = "127.0.0.1",
        port: int = DEFAULT_PORT,
        token: str | None = None,
        *,
        timeout_s: float = 10.0,
        max_body: int = 64 * 1024,
        max_upload: int = 64 * 1024 * 1024,
        max_connections: int = DEFAULT_MAX_CONNECTIONS,
        access_log: bool = False,
    ) -> None:
        if not 0 <= port <= 65535:
            raise ConfigError(f"control API: {port=} must be in 0..65535")
        if not timeout_s > 0:
            raise ConfigError(f"control API: {timeout_s=} must be > 0")
        if max_body < 0 or max_upload < 0 or max_connections < 1:
            raise ConfigError(
                f"control API: {max_body=} and {max_upload=} must be ≥ 0, {max_connections=} ≥ 1"
            )
        host = _bare_host(host.strip())
        if host.lower() == "localhost":
            host = "127.0.0.1"  # by definition, not by asking a resolver that may say otherwise
        unix = host[len(UNIX_PREFIX) :] if host.startswith(UNIX_PREFIX) else None
        if token is not None and not _TOKEN.match(token):
            raise ConfigError(
                f"control API: the token must be at least {_MIN_TOKEN} printable ASCII "
                "characters without spaces (e.g. `openssl rand -hex 32`)"
            )
        if token is None and unix is None and not is_loopback_ip(host):
            raise ConfigError(
                f"control API: listening on {host or 'every address'!r} (not a loopback "
                "address) needs a token: set PDM_API_TOKEN or PDM_API_TOKEN_FILE, or listen "
                "on 127.0.0.1"
            )
        self.backend = backend
        self.host = host
        self.timeout_s = float(timeout_s)
        self.max_body = int(max_body)
        self.max_upload = int(max_upload)
        self.max_connections = int(max_connections)
        self.access_log = access_log
        #: SHA-256 of the token (the token itself is not kept), or None: no token needed.
        self.token_digest: bytes | None = _digest(token.encode()) if token is not None else None
        self._refused_lock = threading.Lock()
        self._refused = 0
        self._refused_logged_at = -math.inf
        self.unix_path = unix
        try:
            if unix is not None:
                if os.path.exists(unix) and stat.S_ISSOCK(os.lstat(unix).st_mode):
                    os.unlink(unix)  # a socket left by a killed process
                old_mask = os.umask(0o177)  # the socket is created 0600
                try:
                    self._server = _Server(unix, self, socket.AF_UNIX)
                finally:
                    os.umask(old_mask)
            else:
                family = socket.AF_INET6 if ":" in host else socket.AF_INET
                self._server = _Server((host, port), self, family)
        except OSError as exc:
            where = host if unix is not None else self._hostport(host, port)
            raise ConfigError(
                f"control API: cannot listen on {where}: {exc.strerror or exc}"
            ) from exc
        self.port: int = 0 if unix is not None else int(self._server.server_address[1])
        self._thread: threading.Thread | None = None
        self._closed = False

    @staticmethod
    def _hostport(host: str, port: int) -> str:
        return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"

    @property
    def url(self) -> str:
        """``http://host:port`` (for a wildcard bind, the host as given); ``unix:PATH``."""
        if self.unix_path is not None:
            return self.host
        return f"http://{self._hostport(self.host, self.port)}"

    def start(self) -> Self:
        """Serve from a background thread (``pdm-api``)."""
        if self._closed:
            raise RuntimeError("control API: stopped; make a new one")
        if self._thread is not None:
            raise RuntimeError("control API: already started")
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.1},
            name="pdm-api",
            daemon=True,
        )
        self._thread.start()
        log.info(
            "control API on %s (%s)",
            self.url,
            "bearer token required"
            if self.token_digest
            else ("Unix socket" if self.unix_path else "loopback") + ", no token",
        )
        return self

    def stop(self, timeout: float = 2.0) -> None:
        """Stop serving, finish or cut the requests in flight (≤ ``timeout`` s), close. Idempotent."""
        if self._closed:
            return
        self._closed = True
        if self._thread is not None:
            self._server.shutdown()  # returns once serve_forever has left its loop
        left = self._server.finish_requests(timeout)
        if left:
            log.warning("control API: %d request thread(s) still running after stop", left)
        self._server.server_close()
        if self.unix_path is not None:
            with contextlib.suppress(OSError):
                os.unlink(self.unix_path)
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def _auth_refused(self, client: str) -> None:
        """Count a refused request; log at most once a minute (a scanner is no log storm)."""
        with self._refused_lock:
            self._refused += 1
            now = time.monotonic()
            if now - self._refused_logged_at < 60.0:
                return
            n, self._refused, self._refused_logged_at = self._refused, 0, now
        log.warning(
            "control API: %d request(s) refused for a missing or wrong token (latest from %s)",
            n,
            client,
        )
