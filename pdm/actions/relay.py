"""The machine-shutdown relay: fail-safe, *energised* means *permissive* (the machine may run).

The alarm logic calls ``set_permissive(False)`` on a trip and on ``appliance_fault``,
``set_permissive(True)`` when running is allowed again, and ``close()`` when the appliance stops,
which drops the relay (de-energise, then release). When the appliance's power, the cable or
the relay module fails, the contact falls open and the machine stops. When the appliance
*process* dies (kill -9, a hang), a Modbus coil keeps its last value: use the relay module's
own communication watchdog (most Modbus I/O modules drop their outputs when no request
arrives for a set time), and the service's watchdog (``pdm-edge run``) for a hung loop.

Three implementations behind one small protocol, :class:`Relay`:

* :class:`ModbusRelay` — a coil of a Modbus TCP relay module or PLC (pymodbus, synchronous).
  Every call writes, reads back and compares; retries are bounded and the *whole* call returns
  within :data:`DEADLINE_S` even when the host is down or blackholed, so that the appliance can
  raise ``appliance_fault`` within 2 s.
* :class:`GpioRelay` — a GPIO line driving a relay board (``gpiod``, libgpiod v2 API).
* :class:`LogRelay` — a dry run for commissioning: a log line, no hardware.

:func:`relay_from_url` builds one from the URL the pipeline file holds (parsed and checked by
:mod:`pdm.relay_url`, below the configuration)::

    modbus://192.168.1.50:502?device=1&coil=0&polarity=normal&timeout=0.4&retries=2
    gpio:///dev/gpiochip0?line=17&active_low=false
    log:

I/O problems never raise: they come back as ``RelayResult(ok=False, detail=...)`` and are logged
once when the relay goes down and once when it answers again (logger ``pdm.actions``).
Only bad parameters raise, as :class:`pdm.errors.ConfigError`.
"""

from __future__ import annotations

import contextlib
import functools
import ipaddress
import logging
import os
import re
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from types import TracebackType
from typing import TYPE_CHECKING, Any, Protocol, Self, runtime_checkable

from pdm.errors import ConfigError
from pdm.relay_url import DEADLINE_S, RelayURL, check_int, check_modbus, parse_relay_url

if TYPE_CHECKING:
    from pymodbus.client import ModbusTcpClient

__all__ = [
    "DEADLINE_S",
    "GpioRelay",
    "LogRelay",
    "ModbusRelay",
    "Relay",
    "RelayResult",
    "relay_from_url",
]

log = logging.getLogger("pdm.actions")

#: Pause between two attempts, s: long enough for a module that just rebooted, short enough to
#: leave the deadline to the attempts.
RETRY_PAUSE_S = 0.05
#: An attempt is not started with less time than this left, s.
_MIN_ATTEMPT_S = 0.05


@dataclass(frozen=True, slots=True)
class RelayResult:
    """What one ``set_permissive`` call achieved.

    Attributes
    ----------
    ok : the output is verified to be in the state asked for
    permissive : the state asked for (True: the machine may run)
    attempts : writes tried (0 when nothing could be tried, e.g. the relay is closed)
    detail : one line; on failure, what failed (connect, timeout, exception code,
        read-back mismatch with the values)
    elapsed_s : wall time of the whole call, s
    """

    ok: bool
    permissive: bool
    attempts: int
    detail: str
    elapsed_s: float


@runtime_checkable
class Relay(Protocol):
    """A relay output whose *energised* state means *permissive*. A context manager.

    ``target`` names the output for messages and the audit trail, e.g.
    ``modbus://127.0.0.1:5020 device 1 coil 0``.
    """

    target: str

    def set_permissive(self, permissive: bool) -> RelayResult:
        """Drive the output (energise when True) and verify it; never raises for I/O problems."""
        ...

    def read_back(self) -> bool | None:
        """The permissive state the output reports now, or None when it cannot be read."""
        ...

    def close(self) -> None:
        """Drop the relay (de-energise), then release the output. Idempotent."""
        ...

    def __enter__(self) -> Self: ...

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None: ...


class _ContextManager:
    """``with relay:`` closes (drops) the relay on the way out."""

    def close(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


class _HealthLog:
    """Log once when the relay goes down and once when it comes back, not once per call."""

    def __init__(self, target: str) -> None:
        self._target = target
        self._healthy: bool | None = None

    def record(self, result: RelayResult) -> RelayResult:
        if result.ok:
            if self._healthy is False:
                log.info("%s: relay back: %s", self._target, result.detail)
            self._healthy = True
        else:
            if self._healthy is not False:
                # the detail starts with the target and says what was asked
                log.warning("relay down: %s", result.detail)
            self._healthy = False
        return result


def _one_line(text: object) -> str:
    return " ".join(str(text).split())


_PYMODBUS_PREFIX = re.compile(r"^Modbus Error: \[[^\]]*\]\s*")


def _pymodbus_text(exc: BaseException) -> str:
    """A pymodbus exception's message without its ``Modbus Error: [Kind]`` prefix, one line."""
    return _PYMODBUS_PREFIX.sub("", _one_line(exc))


# --------------------------------------------------------------------------------------------
# Modbus TCP
# --------------------------------------------------------------------------------------------


class _Failure(Exception):
    """One attempt failed; the message is the one-line reason that ends up in ``detail``."""


class _Resolver:
    """Host name → address, bounded in time.

    The OS resolver (``getaddrinfo``) has no timeout of its own and can block for many seconds
    when DNS is down, which would hold the fail-safe path past its deadline. The lookup runs in a
    daemon thread; at most one is in flight, and a later call picks up its answer.
    """

    def __init__(self, host: str, port: int) -> None:
        self._host = host
        self._port = port
        try:
            self._literal: str | None = str(ipaddress.ip_address(host))
        except ValueError:
            self._literal = None
        self._pending: tuple[threading.Event, list[str | OSError]] | None = None

    def resolve(self, timeout_s: float) -> str:
        if self._literal is not None:
            return self._literal
        if self._pending is None:
            done = threading.Event()
            box: list[str | OSError] = []
            host, port = self._host, self._port

            def lookup() -> None:
                try:
                    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
                    box.append(str(infos[0][4][0]))
                except OSError as exc:
                    box.append(exc)
                except Exception as exc:  # an odd resolver error must still release the waiter
                    box.append(OSError(str(exc)))
                finally:
                    done.set()

            threading.Thread(target=lookup, name=f"pdm-relay-resolve {host}", daemon=True).start()
            self._pending = (done, box)
        done, box = self._pending
        if not done.wait(max(timeout_s, 0.0)):
            raise _Failure(f"resolve {self._host!r}: no answer within {timeout_s:.2f} s")
        self._pending = None
        answer = box[0] if box else OSError("no address")
        if isinstance(answer, OSError):
            raise _Failure(f"resolve {self._host!r}: {answer.strerror or answer}")
        return answer


def _set_client_timeout(client: ModbusTcpClient, timeout_s: float) -> None:
    # pymodbus 3.16 keeps two copies of CommParams: the client's (used by recv's select) and the
    # transaction manager's (used for the response deadline). Both bound one request.
    client.comm_params.timeout_connect = timeout_s
    client.transaction.comm_params.timeout_connect = timeout_s


class ModbusRelay(_ContextManager):
    """One coil of a Modbus TCP device (relay module, PLC) as the shutdown relay.

    Parameters
    ----------
    host : IP address or host name of the Modbus TCP server
    port : TCP port, 1–65535
    device_id : Modbus unit/device id, 0–247 (many TCP modules ignore it; gateways need it)
    coil : coil address, 0-based as on the wire (a manual's "coil 1" is often address 0)
    polarity : ``normal`` (permissive → coil on) or ``inverted`` (permissive → coil off, for a
        module whose output contact is normally closed)
    timeout_s : bound of each step (connect, one request), s, 0 < timeout_s ≤ :data:`DEADLINE_S`
    retries : further attempts after a failed one, 0–10; the deadline still bounds the call

    Each ``set_permissive`` writes the coil, reads it back and compares: a mismatch is a failure.
    On any failure the connection is dropped and the next attempt (or the next call) reconnects.
    The whole call returns within :data:`DEADLINE_S`. The constructor does no I/O. Thread-safe.

    pymodbus (3.16) is imported here, not at module import, so that a dry-run or GPIO appliance
    does not need it.
    """

    def __init__(
        self,
        host: str,
        port: int = 502,
        device_id: int = 1,
        coil: int = 0,
        polarity: str = "normal",
        timeout_s: float = 0.4,
        retries: int = 2,
    ) -> None:
        who = "ModbusRelay"
        self.host = host
        self.port, self.device_id, self.coil, self.timeout_s, self.retries = check_modbus(
            host, port, device_id, coil, polarity, timeout_s, retries
        )
        self.polarity = polarity
        try:
            from pymodbus.client import ModbusTcpClient  # noqa: F401
        except ImportError as exc:
            raise ConfigError(
                f"{who}: the pymodbus package is not installed: pip install 'pymodbus==3.16.*'"
            ) from exc

        shown = f"[{host}]" if ":" in host else host
        suffix = " inverted" if polarity == "inverted" else ""
        self.target = (
            f"modbus://{shown}:{self.port} device {self.device_id} coil {self.coil}{suffix}"
        )
        self._lock = threading.Lock()
        self._client: ModbusTcpClient | None = None
        self._resolver = _Resolver(host, self.port)
        self._health = _HealthLog(self.target)
        self._closed = False

    def __repr__(self) -> str:
        return f"ModbusRelay({self.target!r})"

    # -- public ------------------------------------------------------------------------------

    def set_permissive(self, permissive: bool) -> RelayResult:
        """Write the coil for ``permissive``, read it back, compare; bounded by :data:`DEADLINE_S`.

        The bound includes waiting for a concurrent call to finish: a caller that cannot get the
        relay in time gets ``ok=False`` ("busy") rather than waiting past its deadline.
        """
        permissive = bool(permissive)
        start = time.monotonic()
        deadline = start + DEADLINE_S
        if not self._lock.acquire(timeout=DEADLINE_S - _MIN_ATTEMPT_S):
            detail = f"{self.target}: busy: another call held the relay for {DEADLINE_S} s"
            return RelayResult(False, permissive, 0, detail, time.monotonic() - start)
        try:
            if self._closed:
                detail = f"{self.target}: relay is closed"
                return RelayResult(False, permissive, 0, detail, time.monotonic() - start)
            return self._health.record(self._apply(permissive, start, deadline))
        finally:
            self._lock.release()

    def read_back(self) -> bool | None:
        """The permissive state the coil reports (polarity applied), None when it cannot be read.

        Bounded by :data:`DEADLINE_S` like :meth:`set_permissive`.
        """
        deadline = time.monotonic() + DEADLINE_S
        if not self._lock.acquire(timeout=DEADLINE_S - _MIN_ATTEMPT_S):
            return None
        try:
            if self._closed:
                return None
            for attempt in range(self.retries + 1):
                if attempt and not self._pause(deadline):
                    break
                if deadline - time.monotonic() < _MIN_ATTEMPT_S:
                    break
                try:
                    coil = self._read(self._connection(deadline), deadline)
                except _Failure as exc:
                    log.debug("%s: read-back failed: %s", self.target, exc)
                    self._disconnect()
                    continue
                return coil != (self.polarity == "inverted")
            return None
        finally:
            self._lock.release()

    def close(self) -> None:
        """Drop the relay (coil to not-permissive), then close the connection. Idempotent.

        Waits for a call in progress (so that it cannot re-energise the relay after the drop):
        up to twice :data:`DEADLINE_S` in all.
        """
        with self._lock:
            if self._closed:
                return
            try:
                start = time.monotonic()
                result = self._health.record(self._apply(False, start, start + DEADLINE_S))
                if result.ok:
                    log.info("%s: relay dropped (appliance stopping)", self.target)
            finally:
                self._disconnect()
                self._closed = True

    # -- internals (called with the lock held) -----------------------------------------------

    def _apply(self, permissive: bool, start: float, deadline: float) -> RelayResult:
        want = permissive != (self.polarity == "inverted")
        attempts = 0
        failure = "no attempt fitted in the deadline"
        while attempts <= self.retries:
            if attempts and not self._pause(deadline):
                break
            if deadline - time.monotonic() < _MIN_ATTEMPT_S:
                break
            attempts += 1
            try:
                client = self._connection(deadline)
                self._request(
                    "write",
                    client,
                    deadline,
                    functools.partial(client.write_coil, self.coil, want, device_id=self.device_id),
                )
                got = self._read(client, deadline)
            except _Failure as exc:
                failure = str(exc)
                self._disconnect()
                continue
            if got == want:
                elapsed = time.monotonic() - start
                detail = (
                    f"coil {self.coil} = {want} (permissive={permissive}) verified by read-back"
                    f" after {attempts} attempt{'s' if attempts > 1 else ''}"
                )
                return RelayResult(True, permissive, attempts, detail, elapsed)
            failure = f"read-back mismatch: wrote coil {self.coil} = {want}, read {got}"
        elapsed = time.monotonic() - start
        detail = _one_line(
            f"{self.target}: permissive={permissive} not applied after {attempts} "
            f"attempt{'s' if attempts != 1 else ''} in {elapsed:.2f} s: {failure}"
        )
        return RelayResult(False, permissive, attempts, detail, elapsed)

    def _pause(self, deadline: float) -> bool:
        """Sleep between attempts; False when no attempt would fit after it."""
        if deadline - time.monotonic() < RETRY_PAUSE_S + _MIN_ATTEMPT_S:
            return False
        time.sleep(RETRY_PAUSE_S)
        return True

    def _step_timeout(self, deadline: float, what: str, share: float = 1.0) -> float:
        remaining = deadline - time.monotonic()
        if remaining <= 0.0:
            raise _Failure(f"{what}: deadline of {DEADLINE_S} s reached")
        return min(self.timeout_s, remaining * share)

    def _connection(self, deadline: float) -> ModbusTcpClient:
        if self._client is not None:
            return self._client
        from pymodbus.client import ModbusTcpClient

        address = self._resolver.resolve(self._step_timeout(deadline, "resolve"))
        timeout_s = self._step_timeout(deadline, "connect")
        # Our own connect rather than ModbusTcpClient.connect(): it reports *why* (refused, no
        # route, timeout) where pymodbus only returns False, and it takes the bounded timeout.
        try:
            sock = socket.create_connection((address, self.port), timeout=timeout_s)
        except TimeoutError as exc:
            raise _Failure(
                f"connect to {address}:{self.port}: no answer within {timeout_s:.2f} s"
            ) from exc
        except OSError as exc:
            raise _Failure(f"connect to {address}:{self.port}: {exc.strerror or exc}") from exc
        # retries=0: one request, one wait; the retry loop above decides what happens next.
        client = ModbusTcpClient(address, port=self.port, timeout=timeout_s, retries=0)
        client.socket = sock
        self._client = client
        return client

    def _read(self, client: ModbusTcpClient, deadline: float) -> bool:
        response = self._request(
            "read",
            client,
            deadline,
            lambda: client.read_coils(self.coil, count=1, device_id=self.device_id),
        )
        bits = getattr(response, "bits", None)
        if not bits:
            raise _Failure(f"read: response without coil values ({_one_line(response)})")
        return bool(bits[0])

    def _request(
        self, what: str, client: ModbusTcpClient, deadline: float, call: Callable[[], Any]
    ) -> Any:
        from pymodbus.constants import ExcCodes
        from pymodbus.exceptions import ConnectionException, ModbusException, ModbusIOException

        # pymodbus checks its response deadline only between reads, and each read may wait the
        # full timeout: while bytes trickle in, a request can last up to twice its timeout.
        # Half the time left keeps even that inside the deadline.
        timeout_s = self._step_timeout(deadline, what, share=0.5)
        _set_client_timeout(client, timeout_s)
        try:
            response = call()
        except ConnectionException as exc:
            raise _Failure(f"{what}: connection lost ({_pymodbus_text(exc)})") from exc
        except ModbusIOException as exc:
            if "No response" in str(exc):
                raise _Failure(f"{what}: no response within {timeout_s:.2f} s") from exc
            raise _Failure(f"{what}: {_pymodbus_text(exc)}") from exc
        except ModbusException as exc:
            raise _Failure(f"{what}: {_pymodbus_text(exc)}") from exc
        except OSError as exc:
            raise _Failure(f"{what}: {exc.strerror or exc}") from exc
        except Exception as exc:
            # A fail-safe path must report, not crash the engine: whatever pymodbus raises on a
            # peer speaking another protocol becomes a failed attempt, with its traceback at debug.
            log.debug("%s: unexpected error from pymodbus", self.target, exc_info=True)
            raise _Failure(f"{what}: unexpected {type(exc).__name__}: {_one_line(exc)}") from exc
        if response is None:
            raise _Failure(f"{what}: no response")
        if response.isError():
            code = getattr(response, "exception_code", None)
            names: dict[object, str] = {c.value: c.name.lower().replace("_", " ") for c in ExcCodes}
            name = names.get(code, "unknown")
            raise _Failure(f"{what}: device answered with exception code {code} ({name})")
        return response

    def _disconnect(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            with contextlib.suppress(Exception):
                client.close()


# --------------------------------------------------------------------------------------------
# GPIO (libgpiod v2)
# --------------------------------------------------------------------------------------------


class GpioRelay(_ContextManager):
    """A GPIO line driving a relay board, through the ``gpiod`` package (libgpiod v2 API).

    Parameters
    ----------
    chip : GPIO chip device, e.g. ``/dev/gpiochip0`` (``gpiodetect`` lists them)
    line : line offset on that chip (on a Raspberry Pi, the BCM number: 17 = header pin 11)
    active_low : True when the board energises its relay on a *low* line

    Claiming the line drives it de-energised: the machine is not permitted to run until the
    appliance says so. Every ``set_permissive`` sets the line and reads it back (``get_value``).
    The constructor raises :class:`ConfigError` when ``gpiod`` is missing or the chip does not
    exist, saying how to fix it.
    """

    def __init__(
        self, chip: str = "/dev/gpiochip0", line: int = 17, active_low: bool = False
    ) -> None:
        who = f"GpioRelay({chip} line {line})"
        self.chip = str(chip)
        self.line = check_int("line", line, 0, 1023, who)
        self.active_low = bool(active_low)
        self.target = f"gpio://{self.chip}?line={self.line}" + (
            "&active_low=true" if active_low else ""
        )
        try:
            import gpiod
            from gpiod.line import Direction, Value
        except ImportError as exc:
            raise ConfigError(
                f"{who}: the gpiod package (libgpiod v2 bindings) is not installed: pip install 'gpiod>=2'"
            ) from exc
        if not hasattr(gpiod, "request_lines"):
            raise ConfigError(
                f"{who}: the installed gpiod {getattr(gpiod, '__version__', '?')} has the v1 API; "
                "pip install 'gpiod>=2'"
            )
        if not os.path.exists(self.chip):
            raise ConfigError(
                f"{who}: GPIO chip {self.chip} does not exist: check the chip path "
                "(ls /dev/gpiochip*, or gpiodetect) and that the device is passed into the container"
            )
        self._active = Value.ACTIVE
        self._inactive = Value.INACTIVE
        try:
            self._request: Any = gpiod.request_lines(
                self.chip,
                consumer="pdm-edge relay",
                config={
                    self.line: gpiod.LineSettings(
                        direction=Direction.OUTPUT,
                        output_value=Value.INACTIVE,
                        active_low=self.active_low,
                    )
                },
            )
        except (OSError, ValueError) as exc:
            reason = getattr(exc, "strerror", None) or exc
            raise ConfigError(
                f"{who}: cannot claim the line: {reason}: check permissions on {self.chip} "
                "(gpio group) and that no other program holds it (gpioinfo)"
            ) from exc
        self._lock = threading.Lock()
        self._health = _HealthLog(self.target)
        self._closed = False

    def __repr__(self) -> str:
        return f"GpioRelay({self.target!r})"

    def set_permissive(self, permissive: bool) -> RelayResult:
        """Set the line (active = energised = permissive) and read it back."""
        permissive = bool(permissive)
        with self._lock:
            if self._closed:
                return RelayResult(False, permissive, 0, f"{self.target}: relay is closed", 0.0)
            return self._health.record(self._apply(permissive))

    def read_back(self) -> bool | None:
        """True when the line is active (energised), None when it cannot be read."""
        with self._lock:
            if self._closed:
                return None
            try:
                return bool(self._request.get_value(self.line) == self._active)
            except (OSError, ValueError):
                return None

    def close(self) -> None:
        """Drive the line inactive, then release it. Idempotent."""
        with self._lock:
            if self._closed:
                return
            try:
                self._health.record(self._apply(False))
            finally:
                self._closed = True
                with contextlib.suppress(Exception):
                    self._request.release()

    def _apply(self, permissive: bool) -> RelayResult:
        start = time.monotonic()
        want = self._active if permissive else self._inactive
        try:
            self._request.set_value(self.line, want)
            got = self._request.get_value(self.line)
        except (OSError, ValueError) as exc:
            detail = _one_line(f"{self.target}: set/get line failed: {exc}")
            return RelayResult(False, permissive, 1, detail, time.monotonic() - start)
        elapsed = time.monotonic() - start
        if got != want:
            detail = f"{self.target}: read-back mismatch: set {want}, read {got}"
            return RelayResult(False, permissive, 1, detail, elapsed)
        detail = f"line {self.line} = {want} (permissive={permissive}) verified by read-back"
        return RelayResult(True, permissive, 1, detail, elapsed)


# --------------------------------------------------------------------------------------------
# Dry run
# --------------------------------------------------------------------------------------------


class LogRelay(_ContextManager):
    """Dry run for commissioning: logs ``relay (dry run): permissive=...`` on ``pdm.actions``.

    Keeps the state (``read_back`` returns it; None before the first call) and is ok until
    closed; after :meth:`close`, like the real relays, it refuses (``ok=False``) and keeps the
    dropped state, so a dry run's log never shows the machine permitted after the stop.
    """

    target = "log:"

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._state: bool | None = None
        self._closed = False

    def __repr__(self) -> str:
        return "LogRelay()"

    def set_permissive(self, permissive: bool) -> RelayResult:
        """Log the state asked for and keep it (refused once closed)."""
        permissive = bool(permissive)
        with self._lock:
            if self._closed:
                return RelayResult(False, permissive, 0, f"{self.target} relay is closed", 0.0)
            return self._apply(permissive)

    def read_back(self) -> bool | None:
        """The last state asked for, None before the first call."""
        with self._lock:
            return self._state

    def close(self) -> None:
        """Drop (log permissive=False) once."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            self._apply(False)

    def _apply(self, permissive: bool) -> RelayResult:  # with the lock held
        self._state = permissive
        log.info("relay (dry run): permissive=%s", permissive)
        return RelayResult(True, permissive, 1, f"dry run: permissive={permissive} logged", 0.0)


# --------------------------------------------------------------------------------------------
# From the pipeline file
# --------------------------------------------------------------------------------------------


def relay_from_url(url: str | RelayURL) -> Relay:
    """Build the relay a pipeline file names: a URL parsed by :func:`pdm.relay_url.parse_relay_url`
    (or its text, parsed here).

    ``modbus://HOST[:PORT]?device=1&coil=0&polarity=normal&timeout=0.4&retries=2`` (every
    parameter optional, defaults as shown, port 502), ``gpio:///dev/gpiochip0?line=17&active_low=false``,
    ``log:``. An unknown scheme or parameter, or a bad value, raises :class:`ConfigError` with one
    line naming the URL; so does a GPIO chip that cannot be claimed.

    >>> relay_from_url("modbus://10.0.0.5:5020?coil=3").target
    'modbus://10.0.0.5:5020 device 1 coil 3'
    >>> relay_from_url("log:").target
    'log:'
    """
    if not isinstance(url, RelayURL):
        url = parse_relay_url(url)
    try:
        if url.scheme == "modbus":
            return ModbusRelay(
                url.host,
                port=url.port,
                device_id=url.device_id,
                coil=url.coil,
                polarity=url.polarity,
                timeout_s=url.timeout_s,
                retries=url.retries,
            )
        if url.scheme == "gpio":
            return GpioRelay(url.chip, line=url.line, active_low=url.active_low)
        return LogRelay()
    except ConfigError as exc:
        raise ConfigError(f"relay URL {url.text!r}: {exc}") from exc
