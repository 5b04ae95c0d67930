"""The shutdown relay against a real Modbus TCP server, and its failure modes in bounded time.

The ``relay`` tests start a real pymodbus 3.16 ``ModbusTcpServer`` on 127.0.0.1 (a free port) on
its own event loop in a background thread, check the coil in the server's datastore directly, and
stop it by its handle. Failures (refused, blackholed, silent peer, garbage, ignored writes) must
come back as ``ok=False`` well within the 2 s the appliance has to raise ``appliance_fault``.

GPIO cannot be tested on real hardware here: only its clear configuration errors are.
"""

from __future__ import annotations

import contextlib
import importlib.util
import logging
import socket
import sys
import threading
import time
import types
from collections.abc import Iterator
from typing import Any

import pytest
from servers import free_ports

from pdm.actions import relay as relay_mod
from pdm.actions.relay import (
    DEADLINE_S,
    GpioRelay,
    LogRelay,
    ModbusRelay,
    Relay,
    RelayResult,
    relay_from_url,
)
from pdm.errors import ConfigError
from pdm.tools.servers import DEVICE, ModbusServer

HAVE_PYMODBUS = importlib.util.find_spec("pymodbus") is not None
needs_pymodbus = pytest.mark.skipif(not HAVE_PYMODBUS, reason="pymodbus not installed")

#: What the appliance has to raise appliance_fault in; every failing call must return before.
FAULT_BUDGET_S = 2.0


# --------------------------------------------------------------------------------------------
# A real Modbus TCP server, and a few misbehaving peers
# --------------------------------------------------------------------------------------------


# ModbusServer (a real pymodbus server) lives in pdm.tools.servers: pdm-edge soak runs it too.


class Peer:
    """A loopback TCP listener that is not a Modbus server.

    ``mode``: ``silent`` accepts (in the kernel) and never answers; ``garbage`` answers every
    connection with an HTTP error and closes, as a web server on the wrong port would;
    ``dribble`` sends one byte of a never-complete frame every 0.2 s (under the relay's 0.4 s
    step timeout, so that every wait sees data); ``blackhole`` has a full accept queue, so that
    further SYNs are dropped and connects hang.
    """

    def __init__(self, mode: str) -> None:
        self.mode = mode
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.bind(("127.0.0.1", 0))
        self.port: int = self.sock.getsockname()[1]
        self._fillers: list[socket.socket] = []
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        if mode == "blackhole":
            self.sock.listen(0)
            self.blackholed = self._fill_queue()
        elif mode == "silent":
            self.sock.listen(8)
        elif mode in ("garbage", "dribble"):
            self.sock.listen(8)
            self.sock.settimeout(0.05)
            target = self._answer if mode == "garbage" else self._dribble
            self._thread = threading.Thread(target=target, name=f"{mode}-peer", daemon=True)
            self._thread.start()
        else:
            raise ValueError(mode)

    def _fill_queue(self) -> bool:
        """Connect until one connect times out; True when connects now hang (Linux does)."""
        for _ in range(8):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.settimeout(0.1)
            self._fillers.append(s)
            try:
                s.connect(("127.0.0.1", self.port))
            except TimeoutError:
                return True
        return False

    def _answer(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            with conn:
                with contextlib.suppress(OSError):
                    conn.recv(256)
                    conn.sendall(b"HTTP/1.1 400 Bad Request\r\nconnection: close\r\n\r\n")

    def _dribble(self) -> None:
        conns: list[socket.socket] = []
        next_byte = time.monotonic()
        try:
            while not self._stop.is_set():
                with contextlib.suppress(TimeoutError):
                    conns.append(self.sock.accept()[0])
                if time.monotonic() >= next_byte:
                    next_byte += 0.2
                    for conn in conns:
                        with contextlib.suppress(OSError):
                            conn.send(b"\x00")
        except OSError:
            return
        finally:
            for conn in conns:
                conn.close()

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(2)
        for s in self._fillers:
            s.close()
        self.sock.close()


# --------------------------------------------------------------------------------------------
# Fixtures
# --------------------------------------------------------------------------------------------


@pytest.fixture(autouse=True)
def no_leaked_threads() -> Iterator[None]:
    """Fail a test that leaves a thread behind (a server loop, a resolver, a peer)."""
    before = set(threading.enumerate())
    yield
    deadline = time.monotonic() + 2.0
    while (extra := set(threading.enumerate()) - before) and time.monotonic() < deadline:
        time.sleep(0.01)
    assert not extra, f"threads left running: {sorted(t.name for t in extra)}"


@pytest.fixture
def server(modbus_server: ModbusServer) -> ModbusServer:
    """The real pymodbus server of ``conftest.modbus_server``."""
    return modbus_server


@pytest.fixture
def stuck_server() -> Iterator[ModbusServer]:
    if not HAVE_PYMODBUS:
        pytest.skip("pymodbus not installed")
    srv = ModbusServer(ignore_writes=True)
    try:
        yield srv.start()
    finally:
        srv.stop()


@pytest.fixture
def peer(request: pytest.FixtureRequest) -> Iterator[Peer]:
    p = Peer(request.param)
    try:
        yield p
    finally:
        p.close()


def relay_for(srv: ModbusServer, **kw: Any) -> ModbusRelay:
    return ModbusRelay("127.0.0.1", port=srv.port, device_id=DEVICE, **kw)


def assert_fails_in_time(result: RelayResult, *words: str) -> None:
    assert not result.ok, result
    assert result.elapsed_s < FAULT_BUDGET_S, result
    assert result.elapsed_s <= DEADLINE_S + 0.05, result
    assert "\n" not in result.detail
    for word in words:
        assert word in result.detail, result.detail


# --------------------------------------------------------------------------------------------
# Modbus: the coil follows, fail-safe
# --------------------------------------------------------------------------------------------


@pytest.mark.relay
def test_permissive_energises_the_coil_and_false_drops_it(server: ModbusServer) -> None:
    with relay_for(server, coil=3) as relay:
        assert relay.target == f"modbus://127.0.0.1:{server.port} device 1 coil 3"
        on = relay.set_permissive(True)
        assert on.ok and on.permissive and on.attempts == 1, on
        assert server.coil(3) is True
        assert server.coil(2) is False  # only the coil asked for
        assert relay.read_back() is True
        off = relay.set_permissive(False)
        assert off.ok and not off.permissive, off
        assert server.coil(3) is False
        assert relay.read_back() is False


@pytest.mark.relay
def test_inverted_polarity_drives_the_coil_the_other_way(server: ModbusServer) -> None:
    with relay_for(server, coil=1, polarity="inverted") as relay:
        assert relay.set_permissive(False).ok
        assert server.coil(1) is True
        assert relay.read_back() is False
        assert relay.set_permissive(True).ok
        assert server.coil(1) is False
        assert relay.read_back() is True
    assert server.coil(1) is True  # closing drops it: not permissive is coil on when inverted


@pytest.mark.relay
def test_close_drops_the_coil_and_later_calls_fail_without_raising(server: ModbusServer) -> None:
    relay = relay_for(server)
    assert relay.set_permissive(True).ok
    assert server.coil(0) is True
    relay.close()
    assert server.coil(0) is False
    relay.close()  # idempotent
    after = relay.set_permissive(True)
    assert not after.ok and "closed" in after.detail and after.attempts == 0
    assert server.coil(0) is False
    assert relay.read_back() is None


@pytest.mark.relay
def test_read_back_reports_what_the_device_holds(server: ModbusServer) -> None:
    with relay_for(server, coil=5) as relay:
        server.set_coil(5, True)  # someone forced the output by hand
        assert relay.read_back() is True
        server.set_coil(5, False)
        assert relay.read_back() is False


@pytest.mark.relay
def test_a_coil_that_ignores_writes_fails_on_read_back(stuck_server: ModbusServer) -> None:
    with relay_for(stuck_server, coil=2) as relay:
        result = relay.set_permissive(True)
        assert_fails_in_time(result, "read-back", "wrote coil 2 = True, read False")
        assert result.attempts == 3  # retries=2: every attempt was made, each verified
        assert relay.set_permissive(False).ok  # the safe state is reachable


@pytest.mark.relay
def test_an_exception_response_is_reported_with_its_code(server: ModbusServer) -> None:
    with relay_for(server, coil=100) as relay:  # the device has 16 coils
        result = relay.set_permissive(True)
    assert_fails_in_time(result, "exception code 2", "illegal address")


@pytest.mark.relay
def test_nobody_listening_fails_fast() -> None:
    (port,) = free_ports(1)
    relay = ModbusRelay("127.0.0.1", port=port)
    result = relay.set_permissive(True)
    assert_fails_in_time(result, "connect", "refused")
    assert result.attempts == 3
    assert relay.read_back() is None


@pytest.mark.relay
@pytest.mark.parametrize("peer", ["blackhole"], indirect=True)
def test_a_blackholed_connect_is_cut_by_the_deadline(peer: Peer) -> None:
    if not peer.blackholed:
        pytest.skip("this kernel accepted every connect: no blackhole to test")
    relay = ModbusRelay("127.0.0.1", port=peer.port, timeout_s=0.4, retries=2)
    result = relay.set_permissive(True)
    assert_fails_in_time(result, "connect", "no answer within 0.40 s")
    assert result.elapsed_s > 1.0  # it did wait for the three connects


@pytest.mark.relay
def test_a_non_routable_address_fails_within_the_budget() -> None:
    relay = ModbusRelay("10.255.255.1", port=502, timeout_s=0.4, retries=2)
    result = relay.set_permissive(True)
    assert_fails_in_time(result)
    if result.elapsed_s < 0.3:
        pytest.skip(f"this network does not blackhole 10.255.255.1 ({result.detail})")


@pytest.mark.relay
@pytest.mark.parametrize("peer", ["silent"], indirect=True)
def test_a_peer_that_never_answers_is_cut_by_the_deadline(peer: Peer) -> None:
    relay = ModbusRelay("127.0.0.1", port=peer.port, timeout_s=0.4, retries=5)
    result = relay.set_permissive(True)
    assert_fails_in_time(result, "write: no response within")
    assert result.attempts < 6  # the deadline, not the retry count, ended it


@pytest.mark.relay
@pytest.mark.parametrize("peer", ["silent"], indirect=True)
def test_a_caller_queued_behind_a_stuck_call_keeps_its_own_deadline(peer: Peer) -> None:
    relay = ModbusRelay("127.0.0.1", port=peer.port)
    first: list[RelayResult] = []
    worker = threading.Thread(target=lambda: first.append(relay.set_permissive(False)))
    worker.start()
    time.sleep(0.1)  # the worker holds the relay, waiting on the silent peer
    second = relay.set_permissive(False)
    worker.join()
    assert_fails_in_time(first[0])
    assert_fails_in_time(second)  # the time spent waiting for the lock counts


@pytest.mark.relay
@pytest.mark.parametrize("peer", ["dribble"], indirect=True)
def test_a_peer_dribbling_bytes_cannot_stretch_the_deadline(peer: Peer) -> None:
    # pymodbus keeps reading while bytes trickle in and checks its own deadline only between
    # reads, so one request can last up to twice its timeout: the relay budgets for that.
    relay = ModbusRelay("127.0.0.1", port=peer.port, timeout_s=0.4, retries=5)
    result = relay.set_permissive(True)
    assert_fails_in_time(result, "write")


@pytest.mark.relay
@pytest.mark.parametrize("peer", ["garbage"], indirect=True)
def test_a_web_server_on_the_port_is_a_failure_not_an_exception(peer: Peer) -> None:
    relay = ModbusRelay("127.0.0.1", port=peer.port)
    result = relay.set_permissive(True)
    assert_fails_in_time(result, "write")


@pytest.mark.relay
def test_reconnects_after_the_server_restarts_and_logs_once_each_way(
    server: ModbusServer, caplog: pytest.LogCaptureFixture
) -> None:
    relay = relay_for(server)
    with caplog.at_level(logging.INFO, logger="pdm.actions"):
        assert relay.set_permissive(True).ok
        server.stop()
        down = [relay.set_permissive(True) for _ in range(3)]
        assert all(not r.ok for r in down)
        assert all(r.elapsed_s < FAULT_BUDGET_S for r in down)
        server.start()  # same port, fresh datastore: coil off
        assert server.coil(0) is False
        back = relay.set_permissive(True)
        relay.close()
    assert back.ok, back
    assert server.coil(0) is False  # closed: dropped
    assert caplog.text.count("relay down") == 1  # not once per call or per retry
    assert caplog.text.count("relay back") == 1


@pytest.mark.relay
def test_a_stale_connection_is_replaced_within_the_same_call(server: ModbusServer) -> None:
    relay = relay_for(server)
    assert relay.set_permissive(True).ok
    server.stop()
    server.start()  # the relay's socket now points at a closed connection
    result = relay.set_permissive(True)
    relay.close()
    assert result.ok and result.attempts == 2, result


@pytest.mark.relay
def test_a_host_name_is_resolved(server: ModbusServer) -> None:
    with ModbusRelay("localhost", port=server.port) as relay:
        assert relay.set_permissive(True).ok
        assert server.coil(0) is True


@pytest.mark.relay
def test_a_hanging_name_lookup_is_cut_by_the_deadline(monkeypatch: pytest.MonkeyPatch) -> None:
    release = threading.Event()

    def hanging_getaddrinfo(*args: object, **kwargs: object) -> list[Any]:
        release.wait(10)
        raise socket.gaierror(socket.EAI_AGAIN, "Temporary failure in name resolution")

    monkeypatch.setattr(relay_mod.socket, "getaddrinfo", hanging_getaddrinfo)
    relay = ModbusRelay("plc.invalid", port=502, timeout_s=0.1)
    try:
        result = relay.set_permissive(True)
        assert_fails_in_time(result, "resolve 'plc.invalid'")
        again = relay.set_permissive(True)  # reuses the lookup in flight, starts no second one
        assert not again.ok
        lookups = [t for t in threading.enumerate() if t.name.startswith("pdm-relay-resolve")]
        assert len(lookups) == 1
    finally:
        release.set()


@pytest.mark.relay
def test_concurrent_callers_are_serialised(server: ModbusServer) -> None:
    results: list[RelayResult] = []
    with relay_for(server) as relay:

        def flip(i: int) -> None:
            results.append(relay.set_permissive(i % 2 == 0))

        threads = [threading.Thread(target=flip, args=(i,)) for i in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert all(r.ok for r in results), results
        assert relay.read_back() is results[-1].permissive  # the last write won, consistently


# --------------------------------------------------------------------------------------------
# Parameters and URLs
# --------------------------------------------------------------------------------------------


@needs_pymodbus
@pytest.mark.parametrize(
    ("kwargs", "named"),
    [
        ({"port": 0}, "port=0"),
        ({"port": 65536}, "port=65536"),
        ({"port": True}, "port=True"),
        ({"coil": -1}, "coil=-1"),
        ({"device_id": 248}, "device_id=248"),
        ({"polarity": "reversed"}, "polarity='reversed'"),
        ({"timeout_s": 0}, "timeout_s=0"),
        ({"timeout_s": 2.0}, "timeout_s=2.0"),
        ({"timeout_s": float("nan")}, "timeout_s=nan"),
        ({"retries": -1}, "retries=-1"),
        ({"host": ""}, "host=''"),
    ],
)
def test_bad_parameters_raise_config_error_naming_the_value(
    kwargs: dict[str, Any], named: str
) -> None:
    args = {"host": "127.0.0.1", **kwargs}
    with pytest.raises(ConfigError, match="ModbusRelay") as err:
        ModbusRelay(**args)
    assert named in str(err.value)
    assert "\n" not in str(err.value)


@needs_pymodbus
def test_modbus_urls_parse() -> None:
    r = relay_from_url("modbus://192.168.1.50")
    assert isinstance(r, ModbusRelay)
    assert (r.host, r.port, r.device_id, r.coil, r.polarity, r.timeout_s, r.retries) == (
        "192.168.1.50",
        502,
        1,
        0,
        "normal",
        0.4,
        2,
    )
    r = relay_from_url(
        "modbus://10.0.0.7:5020?device=3&coil=12&polarity=inverted&timeout=0.25&retries=1"
    )
    assert isinstance(r, ModbusRelay)
    assert (r.port, r.device_id, r.coil, r.polarity, r.timeout_s, r.retries) == (
        5020,
        3,
        12,
        "inverted",
        0.25,
        1,
    )
    assert r.target == "modbus://10.0.0.7:5020 device 3 coil 12 inverted"
    r = relay_from_url("modbus://[::1]:1502/?coil=4")
    assert isinstance(r, ModbusRelay)
    assert r.target == "modbus://[::1]:1502 device 1 coil 4"


def test_log_url_parses() -> None:
    assert isinstance(relay_from_url("log:"), LogRelay)


@needs_pymodbus
@pytest.mark.parametrize(
    ("url", "says"),
    [
        ("", "empty"),
        ("http://plc:502", "unknown scheme 'http'"),
        ("plc:502", "unknown scheme 'plc'"),
        ("modbus://plc?coil=1&relay=2", "unknown parameter 'relay'"),
        ("modbus://plc?coil=-1", "coil='-1' is not a whole number"),
        ("modbus://plc?coil=x", "coil='x'"),
        ("modbus://plc?coil=1&coil=2", "given twice"),
        ("modbus://plc?device=300", "device_id=300"),
        ("modbus://plc?polarity=upside", "polarity='upside'"),
        ("modbus://plc?timeout=soon", "timeout='soon'"),
        ("modbus://plc?timeout=inf", "timeout='inf'"),
        ("modbus://plc?timeout=3", "timeout_s=3.0"),
        ("modbus://plc:99999", "port"),
        ("modbus://plc:abc", "port"),
        ("modbus://:502", "no host"),
        ("modbus://plc/coil/3", "no path"),
        ("modbus://user:pw@plc", "no user"),
        ("modbus://plc?coil", "cannot be parsed"),
        ("gpio://dev/gpiochip0?line=1", "three slashes"),
        ("gpio:///tmp/chip?line=1", "under /dev/"),
        ("gpio:///dev/gpiochip0?line=x", "line='x'"),
        ("gpio:///dev/gpiochip0?pin=17", "unknown parameter 'pin'"),
        ("gpio:///dev/gpiochip0?active_low=maybe", "active_low='maybe'"),
        ("log:extra", "just 'log:'"),
        ("log:?x=1", "just 'log:'"),
    ],
)
def test_bad_urls_raise_one_line_naming_the_url(url: str, says: str) -> None:
    with pytest.raises(ConfigError) as err:
        relay_from_url(url)
    message = str(err.value)
    shown = url.replace(":pw@", ":***@")  # a password in a refused URL is never printed
    assert message.startswith(f"relay URL {shown!r}: "), message
    assert says in message, message
    assert "\n" not in message
    assert ":pw@" not in message


# --------------------------------------------------------------------------------------------
# Dry run, protocol
# --------------------------------------------------------------------------------------------


def test_log_relay_logs_and_keeps_the_state(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="pdm.actions"):
        with LogRelay() as relay:
            assert relay.read_back() is None
            result = relay.set_permissive(True)
            assert result.ok and result.permissive
            assert relay.read_back() is True
        assert relay.read_back() is False  # closing dropped it
    lines = [r.getMessage() for r in caplog.records if r.name == "pdm.actions"]
    assert lines == ["relay (dry run): permissive=True", "relay (dry run): permissive=False"]


@pytest.mark.relay
def test_implementations_satisfy_the_protocol(server: ModbusServer) -> None:
    relays: list[Relay] = [LogRelay(), relay_for(server)]
    for relay in relays:
        assert isinstance(relay, Relay)
        with relay:
            for state in (True, False, True):
                result = relay.set_permissive(state)
                assert result.ok and result.permissive is state, (relay.target, result)
                assert relay.read_back() is state, relay.target


# --------------------------------------------------------------------------------------------
# GPIO: clear errors only (no GPIO hardware here)
# --------------------------------------------------------------------------------------------


def fake_gpiod(v2: bool = True) -> tuple[types.ModuleType, types.ModuleType]:
    """Just enough of a ``gpiod`` module to get past the import; it drives nothing."""
    gpiod = types.ModuleType("gpiod")
    line = types.ModuleType("gpiod.line")
    line.Direction = types.SimpleNamespace(OUTPUT="output")  # type: ignore[attr-defined]
    line.Value = types.SimpleNamespace(ACTIVE=1, INACTIVE=0)  # type: ignore[attr-defined]
    gpiod.line = line  # type: ignore[attr-defined]
    gpiod.__version__ = "2.5.0" if v2 else "1.6.5"  # type: ignore[attr-defined]
    if v2:

        def request_lines(*args: object, **kwargs: object) -> None:
            raise AssertionError("must not be reached: the chip does not exist")

        gpiod.request_lines = request_lines  # type: ignore[attr-defined]
    return gpiod, line


def test_gpio_without_gpiod_says_how_to_install_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "gpiod", None)  # import fails as if not installed
    with pytest.raises(ConfigError, match=r"gpiod package .* not installed: pip install") as err:
        GpioRelay("/dev/gpiochip0", line=17)
    assert "\n" not in str(err.value)
    with pytest.raises(ConfigError, match=r"^relay URL 'gpio:///dev/gpiochip0\?line=17': .*gpiod"):
        relay_from_url("gpio:///dev/gpiochip0?line=17")


def test_gpio_with_the_v1_bindings_says_so(monkeypatch: pytest.MonkeyPatch) -> None:
    gpiod, line = fake_gpiod(v2=False)
    monkeypatch.setitem(sys.modules, "gpiod", gpiod)
    monkeypatch.setitem(sys.modules, "gpiod.line", line)
    with pytest.raises(ConfigError, match=r"1\.6\.5 has the v1 API; pip install 'gpiod>=2'"):
        GpioRelay("/dev/gpiochip0")


def test_gpio_with_a_missing_chip_says_which(monkeypatch: pytest.MonkeyPatch) -> None:
    gpiod, line = fake_gpiod()
    monkeypatch.setitem(sys.modules, "gpiod", gpiod)
    monkeypatch.setitem(sys.modules, "gpiod.line", line)
    with pytest.raises(ConfigError, match=r"chip /dev/gpiochip97 does not exist: check") as err:
        GpioRelay("/dev/gpiochip97", line=4)
    assert "\n" not in str(err.value)


def test_gpio_rejects_a_bad_line() -> None:
    with pytest.raises(ConfigError, match="line=-1"):
        GpioRelay("/dev/gpiochip0", line=-1)
