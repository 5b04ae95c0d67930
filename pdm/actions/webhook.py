"""Webhooks: alarm events POSTed to a receiver, signed, in order, through a durable outbox.

**Request.** One ``POST`` per :class:`~pdm.core.events.AlarmEvent` to the
configured URL, with the body in one of three formats (:data:`FORMATS`):

- ``json``: ``json.dumps(event.payload(), separators=(",", ":"), sort_keys=True)``,
  schema ``pdm-edge.alarm/1`` (non-finite numbers, which JSON cannot carry, become ``null``);
- ``slack``: ``{"text": "[ALARM] pump-1/de: ok → danger: <reason> (score 1.73)"}``, one
  line, a Slack incoming-webhook message (``&``, ``<``, ``>`` escaped as Slack asks);
- ``teams``: an Office 365 connector ``MessageCard`` (``@type``, ``@context``,
  ``summary``, ``themeColor`` by severity, ``title``, ``text``, ``sections[0].facts``).

and these headers on every format::

    Content-Type:    application/json
    User-Agent:      pdm-edge/<version>
    X-PDM-Event-Id:  <event id>            (stable: the receiver's idempotency key)
    X-PDM-Timestamp: <unix seconds, int>   (of this attempt, not of the event)
    X-PDM-Signature: sha256=<hex HMAC-SHA256(secret, f"{timestamp}.".encode() + body)>

A receiver checks a request with :func:`verify` (constant-time compare; a
timestamp more than ``max_age_s`` from its clock fails, which stops replays of
captured requests). The event id header is not covered by the signature; in
the ``json`` format the body carries it too (``event_id``).

**Delivery** (:class:`WebhookSender`): one background thread takes events from
the :class:`~pdm.actions.outbox.Outbox` strictly in order — a failing event
blocks those behind it, so a receiver never sees a ``back to ok`` before the
``danger`` it ends. 2xx: delivered. 408, 425, 429, 5xx, connection errors and
timeouts: tried again after an exponential back-off with jitter between
``backoff_min_s`` and ``backoff_max_s`` (a ``Retry-After`` in seconds or as an
HTTP date is honoured, capped at ``backoff_max_s``). 401, 403, 404 and 405 are
retried too: they say the receiver's configuration is wrong (a rotated secret,
a moved endpoint), which someone fixes — the alarms must arrive then, as
history rows do. Any other 4xx (400, 413, 422…): the receiver refuses that payload for good — the event moves to the outbox's
``rejected`` table with the status and a body excerpt, the status is logged
once, and delivery moves on (a receiver that refuses one payload forever must
not block every later alarm). Redirects are not followed and are retried: a
3xx means the URL is wrong, and dropping alarms over a fixable setting would
be worse than holding them. The sender logs once when the receiver goes down
and once when it comes back, never per retry.

Delivery is at-least-once: an event leaves the outbox only after a 2xx, so a
crash between the receiver's answer and that bookkeeping sends it once more
on restart. Receivers deduplicate on ``X-PDM-Event-Id``.
"""

from __future__ import annotations

import email.utils
import hashlib
import hmac
import json
import logging
import math
import random
import socket
import ssl
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import urlsplit

import httpx

from pdm import __version__
from pdm.core.net import is_loopback
from pdm.errors import ConfigError, PdmError
from pdm.secrets import redact_url, secret_bytes

# Type-only: receivers import this module for `verify`, and the event module pulls in the whole
# DSP stack (numpy, scipy: ~0.4 s). The sender only calls methods on the objects it is given.
if TYPE_CHECKING:
    from pdm.actions.outbox import Outbox
    from pdm.core.events import AlarmEvent

__all__ = [
    "FORMATS",
    "HEADER_EVENT_ID",
    "HEADER_SIGNATURE",
    "HEADER_TIMESTAMP",
    "USER_AGENT",
    "WebhookSender",
    "WebhookSettings",
    "render_body",
    "sign",
    "signed_headers",
    "summary_line",
    "verify",
    "webhook_secret",
]

log = logging.getLogger("pdm.actions")

Format = Literal["json", "slack", "teams"]
#: The body formats a webhook can send.
FORMATS: tuple[Format, ...] = ("json", "slack", "teams")
USER_AGENT = f"pdm-edge/{__version__}"
HEADER_EVENT_ID = "X-PDM-Event-Id"
HEADER_TIMESTAMP = "X-PDM-Timestamp"
HEADER_SIGNATURE = "X-PDM-Signature"

#: on_result(event_id, outcome, attempt, detail); outcome is ``ok``, ``retrying`` or ``rejected``.
ResultCallback = Callable[[str, str, int, str], None]

# Statuses worth trying again: the receiver (or a proxy in front of it) is busy or broken,
# not refusing this payload.
# 408/425/429: try later. 401/403/404/405: the receiver's configuration (a rotated secret,
# a moved endpoint) — someone will fix it, and the alarms must still arrive then.
_RETRY_4XX = frozenset({401, 403, 404, 405, 408, 425, 429})
# How much of a refusing receiver's answer is kept with the rejected event (bytes).
_EXCERPT_BYTES = 300
# A whole attempt (connect, TLS, the request, the answer's headers and excerpt) is cut at this
# many times ``timeout_s``: httpx's timeouts are per read, so a receiver trickling a byte
# within each would hold the sender (and every alarm behind the head event) for as long as
# it likes, and no outage would ever be reported.
_DEADLINE_TIMEOUTS = 3.0
_TEAMS_COLOR = {"alarm": "D32F2F", "warning": "F9A825", "info": "2E7D32"}

_warned_lock = threading.Lock()
_warned_plain_http: set[str] = set()


# -- settings ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, repr=False)
class WebhookSettings:
    """Where and how to send alarm events. Immutable; build once from config.

    Parameters
    ----------
    url : the receiver, ``http://`` or ``https://`` (plain http to a non-loopback host is
        allowed, with a warning once, for receivers on a closed plant network)
    secret : the HMAC key (from :func:`webhook_secret`, never from the pipeline file);
        hidden from ``repr``
    format : ``json``, ``slack`` or ``teams`` (see the module docstring)
    timeout_s : connect, read, write and pool timeout of one request, s; a whole attempt is
        cut at 3 × ``timeout_s`` however its bytes trickle
    backoff_min_s, backoff_max_s : bounds of the retry back-off, s
    verify_tls : must stay True: TLS certificates are always verified; trust a private
        CA with ``ca_file`` instead
    ca_file : PEM bundle of the CA(s) to trust instead of the system's, or None
    name : this webhook's name in logs and audit records
    """

    url: str
    secret: bytes
    format: Format = "json"
    timeout_s: float = 5.0
    backoff_min_s: float = 1.0
    backoff_max_s: float = 300.0
    verify_tls: bool = True
    ca_file: str | None = None
    name: str = "webhook"

    def __post_init__(self) -> None:
        where = f"webhook {self.name!r}"
        parts = urlsplit(self.url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ConfigError(
                f"{where}: url must be http:// or https:// with a host, got scheme "
                f"{parts.scheme!r} and host {parts.hostname!r}"
            )
        try:
            parts.port  # noqa: B018 -- raises ValueError on a bad port
        except ValueError as exc:  # (its text quotes the port: maybe part of a password)
            raise ConfigError(f"{where}: url has a bad port") from exc
        if "@" in parts.netloc:
            raise ConfigError(
                f"{where}: url {redact_url(self.url)!r}: no user or password in the URL (they "
                "would be sent as Basic auth, and pipeline files are world-readable); the "
                "receiver checks the HMAC signature instead"
            )
        if not isinstance(self.secret, bytes) or not self.secret:
            raise ConfigError(f"{where}: secret must be non-empty bytes")
        if self.format not in FORMATS:
            raise ConfigError(f"{where}: format={self.format!r} must be one of {FORMATS}")
        for key in ("timeout_s", "backoff_min_s", "backoff_max_s"):
            value = getattr(self, key)
            if not (isinstance(value, int | float) and math.isfinite(value) and value > 0):
                raise ConfigError(f"{where}: {key}={value!r} must be a number > 0")
        if self.backoff_max_s < self.backoff_min_s:
            raise ConfigError(
                f"{where}: backoff_max_s={self.backoff_max_s} must be >= "
                f"backoff_min_s={self.backoff_min_s}"
            )
        if self.verify_tls is not True:
            raise ConfigError(
                f"{where}: verify_tls=False is not supported; to trust a private CA set ca_file"
            )
        if self.ca_file is not None and not Path(self.ca_file).is_file():
            raise ConfigError(f"{where}: ca_file={self.ca_file!r} is not a readable file")

    @property
    def safe_url(self) -> str:
        """The URL without path, query or credentials: fit for logs (a Slack URL's path is a secret)."""
        parts = urlsplit(self.url)
        port = f":{parts.port}" if parts.port else ""
        return f"{parts.scheme}://{parts.hostname}{port}"

    def __repr__(self) -> str:
        return (
            f"WebhookSettings(name={self.name!r}, url={self.safe_url + '/…'!r}, "
            f"format={self.format!r}, timeout_s={self.timeout_s}, "
            f"backoff_min_s={self.backoff_min_s}, backoff_max_s={self.backoff_max_s}, "
            f"ca_file={self.ca_file!r}, secret=<hidden>)"
        )


def webhook_secret(env: str = "PDM_WEBHOOK_SECRET") -> bytes:
    """The HMAC key from the environment variable ``env`` or the file named by ``{env}_FILE``.

    A file's trailing newline is dropped (``echo key > file``). Raises :class:`ConfigError`
    (one line) when neither is set, both are, or the file is unreadable or empty.
    """
    data = secret_bytes(env, "webhook secret")
    if data is None:
        raise ConfigError(f"webhook secret missing: set {env}, or {env}_FILE to a file holding it")
    return data


# -- signing ----------------------------------------------------------------------------------


def sign(secret: bytes, timestamp: int, body: bytes) -> str:
    """``sha256=<hex HMAC-SHA256(secret, f"{timestamp}.".encode() + body)>``."""
    mac = hmac.new(secret, f"{int(timestamp)}.".encode() + body, hashlib.sha256)
    return f"sha256={mac.hexdigest()}"


def signed_headers(secret: bytes, event_id: str, body: bytes, timestamp: int) -> dict[str, str]:
    """Every header of one delivery attempt (see the module docstring)."""
    return {
        "Content-Type": "application/json",
        "User-Agent": USER_AGENT,
        HEADER_EVENT_ID: event_id,
        HEADER_TIMESTAMP: str(int(timestamp)),
        HEADER_SIGNATURE: sign(secret, timestamp, body),
    }


def _header(headers: Mapping[str, str], name: str) -> str | None:
    value = headers.get(name)
    if value is not None:
        return value
    lower = name.lower()
    for key, v in headers.items():
        if key.lower() == lower:
            return v
    return None


def verify(
    secret: bytes,
    headers: Mapping[str, str],
    body: bytes,
    *,
    max_age_s: float = 300.0,
    now: float | None = None,
) -> bool:
    """Whether a request carries a valid, fresh signature (for receivers and tests).

    ``headers`` is looked up case-insensitively. False when the timestamp or signature
    header is missing or malformed, when the timestamp is more than ``max_age_s`` seconds
    from ``now`` (default: the clock) in either direction, or when the signature differs
    (compared in constant time).
    """
    ts_text = _header(headers, HEADER_TIMESTAMP)
    given = _header(headers, HEADER_SIGNATURE)
    if ts_text is None or given is None:
        return False
    text = ts_text.strip()
    # Seconds since 1970 in at most 12 ASCII digits: int() takes '٣' and 4000 digits, and a
    # 400-digit stamp made ``now - ts`` an OverflowError out of a receiver's handler.
    if not (len(text) <= 12 and text.isascii() and text.isdigit()):
        return False
    ts = int(text)
    now = time.time() if now is None else now
    if abs(now - ts) > max_age_s:
        return False
    expected = sign(secret, ts, body).encode()
    return hmac.compare_digest(expected, given.strip().encode("ascii", "replace"))


# -- bodies -----------------------------------------------------------------------------------


def _finite(obj: Any) -> Any:
    """Non-finite floats as None: JSON has no NaN, and receivers choke on the literal."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_finite(v) for v in obj]
    return obj


def _dumps(doc: Any, *, sort_keys: bool = False) -> bytes:
    return json.dumps(
        _finite(doc), separators=(",", ":"), sort_keys=sort_keys, allow_nan=False
    ).encode()


def _where(event: AlarmEvent) -> str:
    return f"{event.machine}/{event.sensor}" if event.sensor else event.machine


def _score(event: AlarmEvent) -> str:
    s = event.score
    return "n/a" if s is None or not math.isfinite(s) else f"{s:.2f}"


def summary_line(event: AlarmEvent) -> str:
    """``[ALARM] pump-1/de: ok → danger: <reason> (score 1.73)``, on one line."""
    reason = " ".join(event.reason.split())
    return (
        f"[{event.severity.upper()}] {_where(event)}: {event.old} → {event.new}: {reason} "
        f"(score {_score(event)})"
    )


def render_body(event: AlarmEvent, fmt: Format = "json") -> bytes:
    """The request body of ``event`` in format ``fmt`` (UTF-8 JSON; see the module docstring)."""
    if fmt == "json":
        return _dumps(event.payload(), sort_keys=True)
    if fmt == "slack":
        text = summary_line(event)
        text = text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
        return _dumps({"text": text})
    if fmt == "teams":
        payload = event.payload()
        facts = [
            ("Machine", event.machine),
            ("Sensor", event.sensor or "—"),
            ("Transition", f"{event.old} → {event.new}"),
            ("Severity", event.severity),
            ("Score", _score(event)),
            ("Diagnosis", event.diagnosis or "—"),
            ("Window time", payload["window_time"]),
            ("Appliance", event.appliance),
            ("Event id", event.id),
        ]
        card = {
            "@type": "MessageCard",
            "@context": "http://schema.org/extensions",
            "summary": summary_line(event),
            "themeColor": _TEAMS_COLOR.get(event.severity, _TEAMS_COLOR["alarm"]),
            "title": f"[{event.severity.upper()}] {_where(event)}: {event.old} → {event.new}",
            "text": " ".join(event.reason.split()),
            "sections": [{"facts": [{"name": n, "value": str(v)} for n, v in facts]}],
        }
        return _dumps(card)
    raise ConfigError(f"webhook format={fmt!r} must be one of {FORMATS}")


# -- delivery ---------------------------------------------------------------------------------


def _parse_retry_after(value: str | None) -> float | None:
    """``Retry-After`` as seconds from now (delta-seconds or an HTTP date), or None."""
    if not value:
        return None
    try:
        seconds = float(value.strip())
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            return None
        seconds = when.timestamp() - time.time()
    return max(seconds, 0.0) if math.isfinite(seconds) else None


class _Deadline:
    """One attempt's whole deadline: when the connection is made (httpcore's trace event,
    in the sender thread), a timer is armed that shuts the socket down at ``seconds`` after
    the attempt began, which ends a read or write blocked on it at once (close alone would
    not wake it). ``cancel`` when the attempt is over, however it ended."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self._end = time.monotonic() + seconds
        self._lock = threading.Lock()
        self._timer: threading.Timer | None = None
        self._done = False
        self.cut = False

    def trace(self, name: str, info: Mapping[str, Any]) -> None:
        if name != "connection.connect_tcp.complete":
            return
        stream = info.get("return_value")
        sock = stream.get_extra_info("socket") if stream is not None else None
        if not isinstance(sock, socket.socket):
            return
        with self._lock:
            if self._done:
                return
            left = max(0.0, self._end - time.monotonic())
            self._timer = threading.Timer(left, self._cut, (sock,))
            self._timer.daemon = True
            self._timer.start()

    def _cut(self, sock: socket.socket) -> None:
        with self._lock:
            if self._done:
                return
            self.cut = True
        try:
            sock.shutdown(socket.SHUT_RDWR)
        except OSError:  # already closed: the attempt ended as the timer fired
            pass

    def cancel(self) -> None:
        with self._lock:
            self._done = True
            timer = self._timer
        if timer is not None:
            timer.cancel()

    def detail(self) -> str:
        return (
            f"timed out: the whole attempt took over {self.seconds:g} s "
            "(a receiver trickling its answer)"
        )


@dataclass(slots=True)
class _Answer:
    outcome: Literal["ok", "retry", "reject"]
    status: int  # 0: no HTTP answer
    detail: str
    retry_after: float | None = None


class WebhookSender:
    """Delivers the events of an :class:`~pdm.actions.outbox.Outbox` to one webhook, in order.

    Parameters
    ----------
    settings : the webhook
    outbox : the durable queue (owned by the caller, who closes it after :meth:`close`)
    on_result : called from the sender thread after each attempt with
        ``(event_id, outcome, attempt, detail)``; outcome ``ok``, ``retrying`` or
        ``rejected``, attempt 1-based and counted across restarts. The caller turns these
        into audit records; it must not block for long.
    transport : an httpx transport for unit tests (``httpx.MockTransport``); None: the network

    Use as a context manager (``start`` on enter, ``close`` on exit), or call
    :meth:`start` and :meth:`close`.
    """

    def __init__(
        self,
        settings: WebhookSettings,
        outbox: Outbox,
        *,
        on_result: ResultCallback | None = None,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.settings = settings
        self.outbox = outbox
        self._on_result = on_result
        s = settings
        self._label = f"webhook {s.name!r} ({s.safe_url})"
        verify_tls: ssl.SSLContext | bool = True
        if s.ca_file is not None:
            try:
                verify_tls = ssl.create_default_context(cafile=s.ca_file)
            except (OSError, ssl.SSLError) as exc:
                raise ConfigError(f"webhook {s.name!r}: ca_file={s.ca_file!r}: {exc}") from exc
        parts = urlsplit(s.url)
        host = parts.hostname or ""  # lower case; a name under .localhost stays on this machine too
        if parts.scheme == "http" and not (is_loopback(host) or host.endswith(".localhost")):
            with _warned_lock:
                first = s.safe_url not in _warned_plain_http
                _warned_plain_http.add(s.safe_url)
            if first:
                log.warning(
                    "%s: plain http to a non-loopback host: alarms cross the network "
                    "unencrypted (the signature still detects tampering); prefer https",
                    self._label,
                )
        self._http = httpx.Client(
            timeout=httpx.Timeout(s.timeout_s),
            verify=verify_tls,
            follow_redirects=False,
            # No connection kept between attempts: each attempt connects, which is where its
            # whole-attempt deadline takes hold of the socket (_Deadline). Alarm events are
            # few; a connection each costs nothing that matters.
            limits=httpx.Limits(max_connections=1, max_keepalive_connections=0),
            transport=transport,
        )
        self._rng = random.Random()
        self._cond = threading.Condition()
        self._wake = False
        self._stop = False
        self._closed = False
        self._thread: threading.Thread | None = None
        # Receiver state, for logging each change once.
        self._up = True
        self._down_since = 0.0
        self._rejected_statuses: set[int] = set()
        self._disk_trouble = False
        self._callback_failed = False
        # The back-off deadline of the head event, on the monotonic clock: the wall-clock
        # next_attempt_at in the outbox is only read once per event (after a restart), so a
        # clock step cannot park the queue.
        self._deadline_for = ""
        self._deadline = 0.0

    # -- public -------------------------------------------------------------------------------
    def enqueue(self, event: AlarmEvent) -> bool:
        """Store ``event`` durably (on disk when this returns), then wake the sender.

        Returns False when its id was already waiting, delivered or rejected (stored once).
        Raises :class:`~pdm.actions.outbox.OutboxError` when the disk refuses.
        """
        added = self.outbox.enqueue(event)
        with self._cond:
            self._wake = True
            self._cond.notify_all()
        return added

    def start(self) -> WebhookSender:
        """Start the sender thread (once); events already in the outbox go first."""
        with self._cond:
            if self._closed:
                raise RuntimeError(f"{self._label}: sender is closed")
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, name=f"pdm-webhook-{self.settings.name}", daemon=True
                )
                self._thread.start()
        return self

    def pending(self) -> int:
        """Events waiting in the outbox (including one being sent)."""
        return len(self.outbox)

    def drain(self, timeout: float) -> bool:
        """Wait up to ``timeout`` s until the outbox is empty; True if it is."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while len(self.outbox) > 0:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._cond.wait(remaining)
        return True

    def close(self, timeout: float = 10.0) -> None:
        """Stop the thread; waits up to ``timeout`` s for a request in flight.

        Undelivered events stay in the outbox for the next start.
        """
        with self._cond:
            self._stop = True
            self._closed = True
            self._cond.notify_all()
            thread = self._thread
        if thread is None:
            self._http.close()
            return
        thread.join(timeout)
        if thread.is_alive():
            # It finishes its request, sees the stop flag and closes the client itself.
            log.warning("%s: a request still in flight after %g s at close", self._label, timeout)

    def __enter__(self) -> WebhookSender:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- the thread ---------------------------------------------------------------------------
    def _run(self) -> None:
        try:
            while not self._stopped():
                try:
                    self._step()
                    self._disk_trouble = False
                except PdmError as exc:  # the outbox's disk
                    if not self._disk_trouble:
                        self._disk_trouble = True
                        log.error("%s: %s; retrying", self._label, exc)
                    self._sleep(self.settings.backoff_max_s)
                except Exception:  # a bug: keep the thread (and later alarms) alive
                    log.exception("%s: unexpected error in the sender", self._label)
                    self._sleep(self.settings.backoff_max_s)
        finally:
            self._http.close()

    def _stopped(self) -> bool:
        with self._cond:
            return self._stop

    def _sleep(self, seconds: float) -> None:
        """Wait ``seconds`` or until closed (an enqueue does not shorten it)."""
        deadline = time.monotonic() + seconds
        with self._cond:
            while not self._stop:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return
                self._cond.wait(remaining)

    def _step(self) -> None:
        entry = self.outbox.head()
        if entry is None:
            with self._cond:
                self._cond.notify_all()  # drain() waiters
                while not self._wake and not self._stop:
                    self._cond.wait()
                self._wake = False
            return
        event = entry.event
        if self._deadline_for != event.id:
            self._deadline_for = event.id
            wait = min(max(entry.next_attempt_at - time.time(), 0.0), self.settings.backoff_max_s)
            self._deadline = time.monotonic() + wait
        if self._deadline > time.monotonic():
            self._sleep(self._deadline - time.monotonic())
            return
        attempt = entry.attempts + 1
        answer = self._post(event)
        if answer.outcome == "ok":
            self.outbox.mark_delivered(event.id, answer.status)
            self._came_up()
            self._report(event.id, "ok", attempt, answer.detail)
        elif answer.outcome == "reject":
            self.outbox.reject(event.id, answer.status, answer.detail)
            if answer.status:
                self._came_up()  # it answered: up, just refusing this payload
            if answer.status not in self._rejected_statuses:
                self._rejected_statuses.add(answer.status)
                log.error(
                    "%s: receiver refused event %s for good (%s); kept in the outbox's "
                    "rejected table, delivering the next ones (further %s refusals: no log)",
                    self._label,
                    event.id,
                    answer.detail,
                    answer.status or "unrenderable",
                )
            self._report(event.id, "rejected", attempt, answer.detail)
        else:
            delay = self._backoff(attempt, answer.retry_after)
            self.outbox.mark_failed(event.id, answer.detail, time.time() + delay)
            self._deadline_for, self._deadline = event.id, time.monotonic() + delay
            self._went_down(answer.detail)
            self._report(
                event.id, "retrying", attempt, f"{answer.detail}; next attempt in {delay:.2f} s"
            )
        with self._cond:
            self._cond.notify_all()

    def _post(self, event: AlarmEvent) -> _Answer:
        s = self.settings
        try:
            body = render_body(event, s.format)
        except (ValueError, TypeError) as exc:  # a field JSON cannot carry: would never succeed
            return _Answer("reject", 0, f"cannot render the {s.format} body: {exc}")
        headers = signed_headers(s.secret, event.id, body, int(time.time()))
        deadline = _Deadline(_DEADLINE_TIMEOUTS * s.timeout_s)
        try:
            with self._http.stream(
                "POST", s.url, content=body, headers=headers, extensions={"trace": deadline.trace}
            ) as resp:
                status = resp.status_code
                # A bounded read: enough for the audit detail, and a short answer read to the
                # end leaves the connection reusable. A huge answer is cut off, not buffered.
                excerpt = b""
                for chunk in resp.iter_bytes():
                    excerpt += chunk
                    if len(excerpt) >= _EXCERPT_BYTES:
                        break
                retry_after = resp.headers.get("Retry-After")
        except httpx.TimeoutException as exc:
            return _Answer("retry", 0, f"timed out after {s.timeout_s:g} s ({type(exc).__name__})")
        except httpx.HTTPError as exc:
            if deadline.cut:
                return _Answer("retry", 0, deadline.detail())
            return _Answer("retry", 0, f"{type(exc).__name__}: {exc}")
        finally:
            deadline.cancel()
        if deadline.cut:  # the answer was complete, but past the deadline: not trusted
            return _Answer("retry", 0, deadline.detail())
        text = " ".join(excerpt[:_EXCERPT_BYTES].decode("utf-8", "replace").split())
        if 200 <= status < 300:
            return _Answer("ok", status, f"HTTP {status}")
        detail = f"HTTP {status}" + (f": {text}" if text else "")
        if status in _RETRY_4XX or status >= 500:
            return _Answer("retry", status, detail, _parse_retry_after(retry_after))
        if 400 <= status < 500:
            return _Answer("reject", status, detail)
        hint = " (redirects are not followed: check the URL)" if 300 <= status < 400 else ""
        return _Answer("retry", status, detail + hint)

    def _backoff(self, attempt: int, retry_after: float | None) -> float:
        """Seconds before the next attempt: ``Retry-After`` if given, else exponential with jitter.

        Always within [backoff_min_s, backoff_max_s]; the jitter ("equal jitter": a random
        point in the upper half of the step) keeps many appliances from retrying in step.
        """
        lo, hi = self.settings.backoff_min_s, self.settings.backoff_max_s
        if retry_after is not None:
            return min(max(retry_after, lo), hi)
        step = min(hi, lo * 2.0 ** min(attempt - 1, 60))
        return min(max(lo, self._rng.uniform(step / 2, step)), hi)

    def _went_down(self, detail: str) -> None:
        if self._up:
            self._up = False
            self._down_since = time.monotonic()
            log.warning(
                "%s: receiver unavailable (%s); %d event(s) held in the outbox, retrying "
                "with back-off up to %g s",
                self._label,
                detail,
                self.pending(),
                self.settings.backoff_max_s,
            )

    def _came_up(self) -> None:
        if not self._up:
            self._up = True
            log.warning(
                "%s: receiver back after %.1f s; delivering %d waiting event(s)",
                self._label,
                time.monotonic() - self._down_since,
                self.pending(),
            )

    def _report(self, event_id: str, outcome: str, attempt: int, detail: str) -> None:
        if self._on_result is None:
            return
        try:
            self._on_result(event_id, outcome, attempt, detail)
        except Exception:
            if not self._callback_failed:
                self._callback_failed = True
                log.exception("%s: on_result callback failed (logged once)", self._label)
