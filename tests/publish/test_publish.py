"""pdm/publish, piece by piece: snapshots, signed commands, the feed's wire format, the hub's
ordering and bounds, and each publisher against a real peer — the Modbus map read by a
pymodbus client, MQTT out through a real mosquitto, the OPC UA server read and called by
asyncua's own client. The whole service from outside is tests/publish/test_publish_plant.py."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
import socket
import struct
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
from servers import free_ports

from pdm.core.events import AlarmEvent
from pdm.errors import ConfigError
from pdm.publish import hub as hub_mod
from pdm.publish.commands import CommandRefused, CommandVerifier, sign
from pdm.publish.config import load_service_config, with_flags
from pdm.publish.feed import MAX_MESSAGE_BYTES, StateFeed, decode, encode
from pdm.publish.hub import PublishHub
from pdm.publish.model import MachineInfo, Snapshot, TransitionEvent

WAIT_S = 15.0
PUMP = MachineInfo("pump-01", "Pump 1", ("de", "fe"))
FAN = MachineInfo("fan-02", "Fan 2", ("a",))


def wait_for(cond: Callable[[], Any], what: str, timeout: float = WAIT_S) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = cond()
        if got:
            return got
        time.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")


def snap(machine: str = "pump-01", state: str = "ok", **kw: Any) -> Snapshot:
    d = {"id": machine, "state": state, "sensors": ["de", "fe"], **kw}
    return Snapshot.from_status("edge-1", d)


def event(
    machine: str = "pump-01", old: str = "ok", new: str = "alert", t_ns: int = 1, sensor: str = ""
) -> TransitionEvent:
    ev = AlarmEvent("edge-1", machine, sensor, old, new, f"{old} to {new}", t_ns, t_ns, score=1.5)
    return TransitionEvent.from_payload(ev.payload())


# -- snapshots ------------------------------------------------------------------------------------


def test_a_snapshot_reads_wrong_types_as_absent_and_derives_the_codes() -> None:
    s = Snapshot.from_status(
        "edge-1",
        {
            "id": "pump-01", "state": "bogus", "score": "1.5", "velocity_rms_mm_s": float("nan"),
            "iso_zone": "E", "sensors": ["de", 3, "fe"], "sensor_faults": {"fe": "flatline"},
            "acknowledged": {"by": "M. Keller", "at": "2026-01-01T00:00:00Z", "comment": "ok"},
            "diagnosis": "bearing_outer_race", "diagnosis_confidence": 1.7, "thresholds": {"alert": 1, "x": "y"},
        },
    )  # fmt: skip
    assert (s.state, s.state_code) == ("unknown", 4)
    assert s.score is None and s.velocity_rms_mm_s is None and s.iso_zone is None
    assert s.sensors == ("de", "fe") and s.sensor_fault_bits == 0b10
    assert s.diagnosis_confidence == 1.0 and s.diagnosis_code == 1
    assert s.thresholds == {"alert": 1.0} and s.acknowledged
    doc = s.document()
    assert doc["schema"] == "pdm-edge.state/1" and doc["sensors"] == {
        "de": "ok",
        "fe": "sensor_fault",
    }
    json.dumps(doc, allow_nan=False)  # JSON as it is (no NaN sneaks in)
    with pytest.raises(ValueError, match="machine id"):
        Snapshot.from_status("edge-1", {"state": "ok"})
    with pytest.raises(ValueError, match=r"pdm-edge\.alarm/1"):
        TransitionEvent.from_payload({"schema": "x", "machine": "m"})


# -- signed commands ------------------------------------------------------------------------------

KEY = b"0123456789abcdef0123456789abcdef"


@pytest.mark.parametrize(
    ("payload", "why"),
    [
        (b"{", "not a UTF-8 JSON object"),
        (b"[]", "not a JSON object"),
        (json.dumps({"by": "a", "comment": "", "ts": 1000, "nonce": "n0000001"}).encode(), "missing sig"),
        (json.dumps({"by": "a", "comment": "", "ts": 1000, "nonce": "n0000001", "sig": "0" * 64, "x": 1}).encode(), "unknown 'x'"),
        (json.dumps({"by": "a", "comment": "", "ts": 1000.5, "nonce": "n0000001", "sig": "0" * 64}).encode(), "integer"),
        (json.dumps({"by": "a", "comment": "", "ts": 1000, "nonce": "short", "sig": "0" * 64}).encode(), "nonce must be"),
        (json.dumps({"by": "a", "comment": "", "ts": 1000, "nonce": "n0000001", "sig": "0" * 64}).encode(), "bad signature"),
        (sign(KEY, "edge-1", "pump-01", by="a", comment="", ts=900, nonce="n0000001"), "from the appliance's clock"),
        (sign(KEY, "edge-2", "pump-01", by="a", comment="", ts=1000, nonce="n0000001"), "bad signature"),
        (sign(b"another key of 32 bytes at least!!", "edge-1", "pump-01", by="a", comment="", ts=1000, nonce="n0000001"), "bad signature"),
        (b" " * 5000, "at most 4096"),
    ],
)  # fmt: skip
def test_a_command_is_refused_unless_signed_fresh_and_new(payload: bytes, why: str) -> None:
    v = CommandVerifier(KEY, "edge-1")
    with pytest.raises(CommandRefused, match=why):
        v.check("pump-01", payload, now=1000.0)


def test_a_nonce_is_refused_again_until_it_expires_and_short_keys_are_refused() -> None:
    v = CommandVerifier(KEY, "edge-1", window_s=60)
    body = sign(KEY, "edge-1", "pump-01", by="a", comment="c", ts=1000, nonce="n0000001")
    assert v.check("pump-01", body, now=1000.0) == ("a", "c", "n0000001")
    with pytest.raises(CommandRefused, match="already used"):
        v.check("pump-01", body, now=1030.0)
    with pytest.raises(ValueError, match="at least 32"):
        CommandVerifier(b"short", "edge-1")


# -- the feed's wire format and thread ------------------------------------------------------------


def test_messages_stay_under_the_bound_and_keep_their_order() -> None:
    entries = [{"id": f"m{i}", "state": "ok", "reason": "x" * 900} for i in range(300)]
    pairs = [
        ({"id": "m0", "state": "alert"}, {"event_id": "e1"}),
        ({"id": "m0", "state": "danger"}, {"event_id": "e2"}),
    ]
    huge = {"id": "big", "reason": "y" * (MAX_MESSAGE_BYTES + 10)}
    msgs = encode(pairs, [*entries, huge])
    assert len(msgs) > 1 and all(len(m) <= MAX_MESSAGE_BYTES for m in msgs)
    got_pairs, got_states = [], []
    for m in msgs:
        p, s = decode(m)
        got_pairs += p
        got_states += s
    assert got_pairs == pairs and got_states == entries  # the oversize entry is left out
    for bad in (b"pub\n[1]", b"ready", b'pub\n{"states": 3}'):
        with pytest.raises(ValueError):
            decode(bad)


def test_the_feed_sends_each_transition_with_the_state_it_left_at_once() -> None:
    sent: list[tuple[list[Any], list[Any]]] = []
    got = threading.Event()

    def status_of(machine: str, alarm: Any) -> dict[str, Any]:
        if machine == "gone":
            raise KeyError(machine)
        return {"id": machine, "state": alarm or "now", "windows": 7}

    def send(pairs: list[Any], states: list[Any]) -> None:
        sent.append((pairs, states))
        if pairs:
            got.set()

    feed = StateFeed(["pump-01"], status_of, send, interval_s=3600).start()
    try:
        wait_for(lambda: sent, "the first periodic send")  # at start: every machine
        t0 = time.monotonic()
        feed.transition(AlarmEvent("edge-1", "pump-01", "", "ok", "alert", "r", 1, 1), "alert")
        assert time.monotonic() - t0 < 0.01  # the processing thread never waits
        assert got.wait(WAIT_S)
    finally:
        feed.close()
    pairs = next(p for p, _ in sent if p)
    assert pairs[0][0] == {"id": "pump-01", "state": "alert"}  # trimmed to the snapshot's keys
    assert pairs[0][1]["new_state"] == "alert" and pairs[0][1]["schema"] == "pdm-edge.alarm/1"
    assert sent[0][1] == [{"id": "pump-01", "state": "now"}]


# -- the hub --------------------------------------------------------------------------------------


class Recorder:
    name = "recorder"

    def __init__(self, fail: bool = False) -> None:
        self.calls: list[tuple[str, Any]] = []
        self.fail = fail
        self.started: list[MachineInfo] = []

    def start(self, machines: Any) -> None:
        self.started = list(machines)

    def publish_state(self, s: Snapshot) -> None:
        if self.fail:
            raise RuntimeError("broken publisher")
        self.calls.append(("state", (s.machine, s.state)))

    def publish_transition(self, e: TransitionEvent) -> None:
        self.calls.append(("event", (e.machine, e.new)))

    def tick(self, heartbeat: int, fresh: Any) -> None:
        self.calls.append(("tick", dict(fresh)))

    def close(self) -> None:
        self.calls.append(("close", None))


def test_the_hub_hands_each_transition_after_its_state_and_drops_older_periodic_states() -> None:
    rec, broken = Recorder(), Recorder(fail=True)
    hub = PublishHub([broken, rec], [PUMP, FAN], tick_s=3600)
    # Offered before the thread runs: an old periodic state, then two quick transitions.
    hub.offer(states=[snap(state="ok"), snap("fan-02", "ok"), snap("fan-02", "alert")])
    hub.offer(
        [
            (snap(state="alert"), event(new="alert")),
            (snap(state="danger"), event(old="alert", new="danger", t_ns=2)),
        ],
        [snap(state="danger")],
    )
    hub.start()
    try:
        wait_for(lambda: len([c for c in rec.calls if c[0] != "tick"]) >= 5, "the deliveries")
    finally:
        hub.close()
    calls = [c for c in rec.calls if c[0] in ("state", "event")]
    assert calls == [
        ("state", ("pump-01", "alert")),
        ("event", ("pump-01", "alert")),
        ("state", ("pump-01", "danger")),
        ("event", ("pump-01", "danger")),
        ("state", ("fan-02", "alert")),  # the newest of the fan's periodic states only
        ("state", ("pump-01", "danger")),
    ]
    assert rec.calls[-1] == ("close", None) and [m.id for m in rec.started] == ["pump-01", "fan-02"]
    assert hub.latest("pump-01") is not None and hub.latest("pump-01").state == "danger"  # type: ignore[union-attr]


def test_the_hub_bounds_waiting_transitions_and_counts_what_it_dropped(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(hub_mod, "MAX_TRANSITIONS", 3)
    rec = Recorder()
    hub = PublishHub([rec], [PUMP], tick_s=3600)
    hub.offer([(snap(state="alert"), event(new="alert", t_ns=i)) for i in range(5)])
    assert hub.transitions_dropped == 2
    hub.start()
    hub.close()
    assert len([c for c in rec.calls if c[0] == "event"]) == 3


def test_a_machine_without_snapshots_goes_stale_and_comes_back() -> None:
    rec = Recorder()
    hub = PublishHub([rec], [PUMP, FAN], tick_s=0.05, stale_s=0.3)
    hub.start()
    try:
        hub.offer(states=[snap()])
        wait_for(
            lambda: any(c == ("tick", {"pump-01": True, "fan-02": False}) for c in rec.calls),
            "fresh pump",
        )
        wait_for(
            lambda: rec.calls[-1] == ("tick", {"pump-01": False, "fan-02": False}), "stale pump"
        )
    finally:
        hub.close()


# -- service config -------------------------------------------------------------------------------


def test_the_service_config_reads_publish_and_flags_replace_its_urls(tmp_path: Path) -> None:
    p = tmp_path / "service.toml"
    p.write_text(
        'schema_version = 1\n[publish.mqtt]\nurl = "mqtts://edge@mosquitto:8883/plant-a"\n'
        'homeassistant = true\n[publish.modbus]\nlisten = "0.0.0.0:5020"\n'
    )
    cfg = load_service_config(p)
    t = with_flags(cfg, publish="mqtt://127.0.0.1:1883", opcua="opc.tcp://0.0.0.0:4840")
    assert t.mqtt is not None and t.mqtt.url == "mqtt://127.0.0.1:1883" and t.mqtt.homeassistant
    assert t.opcua is not None and t.modbus is not None and t.modbus.listen == "0.0.0.0:5020"
    p.write_text('schema_version = 1\n[publish.mqtt]\nurl = "mqtt://h/p"\nqso = 1\n')
    with pytest.raises(ConfigError, match=r"service.toml:4: publish.mqtt.qso: unknown key"):
        load_service_config(p)
    p.write_text('schema_version = 1\n[publish.mqtt]\nurl = "mqtt://h/a/+"\n')
    with pytest.raises(ConfigError, match=r"service.toml:3: publish.mqtt.url: .*wildcards"):
        load_service_config(p)
    for flags, why in (
        ({"publish": "http://h"}, "--publish"),
        ({"publish": "mqtt://u:pw@h"}, "password"),
        ({"opcua": "opc.tcp://h"}, "--opcua"),
        ({"opcua": "opc.tcp://h:4840?x=1"}, "--opcua"),
        # Red team: taken, and the password printed in the start line and the endpoint.
        ({"opcua": "opc.tcp://ana:pw@h:4840"}, r"'opc.tcp://ana:\*\*\*@h:4840': .* no user"),
        ({"modbus": "h"}, "--modbus-server"),
    ):
        with pytest.raises(ConfigError, match=why):
            with_flags(None, **flags)


def test_check_shows_what_run_would_publish_and_refuses_unreadable_secrets(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """``pdm-edge check`` takes run's publish options (here deploy/fleet's service config) and
    says, without a secret, what each publisher would do; a secret or TLS file that run could
    not read is one line and exit 2, before anything else is printed."""
    from pdm.cli import main

    repo = Path(__file__).resolve().parents[2]
    pw = tmp_path / "pw"
    pw.write_text("s3cret-broker-password\n")
    monkeypatch.setenv("PDM_APPLIANCE_ID", "edge-a")
    monkeypatch.setenv("PDM_PUBLISH_MQTT_PASSWORD_FILE", str(pw))
    argv = ["check", str(repo / "pipelines" / "demo.toml"), "--config",
            str(repo / "deploy" / "fleet" / "service.toml")]  # fmt: skip
    assert main([*argv, "--publish", "mqtt://edge-a@mosquitto:1883/pdm-edge"]) == 0
    out = capsys.readouterr().out
    lines = [ln for ln in out.splitlines() if ln.startswith("  - ") and "    " in ln[4:14]]
    assert [ln.split()[1] for ln in lines] == ["mqtt", "opcua", "modbus"], out
    mqtt, opcua, modbus = lines
    assert "pdm-edge/edge-a/<machine>/" in mqtt and "a password" in mqtt and "no TLS" in mqtt
    assert "Home Assistant discovery on" in mqtt and "signed commands off" in mqtt
    assert "anonymous read-only" in opcua and "nothing writable" in opcua
    assert "0.0.0.0:5020: read-only register map, 1 machine block(s)" in modbus
    assert "s3cret" not in out

    pw.unlink()
    assert main(argv) == 2
    got = capsys.readouterr()
    assert got.out == "" and got.err.count("\n") == 1, got
    assert "password_file: No such file" in got.err
    monkeypatch.delenv("PDM_PUBLISH_MQTT_PASSWORD_FILE")
    assert main([*argv, "--publish", "mqtts://edge-a@mosquitto/pdm-edge"]) == 0  # system CAs
    ca = tmp_path / "ca.pem"
    ca.write_text("not a certificate")
    cfg = tmp_path / "service.toml"
    cfg.write_text(f'schema_version = 1\n[publish.mqtt]\nurl = "mqtts://b/p"\nca_file = "{ca}"\n')
    capsys.readouterr()
    assert main(["check", str(repo / "pipelines" / "demo.toml"), "--config", str(cfg)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("pdm-edge: error: [publish.mqtt] TLS files") and err.count("\n") == 1


# -- Modbus ---------------------------------------------------------------------------------------


@pytest.fixture
def modbus_map() -> Iterator[Any]:
    from pdm.publish.modbus import ModbusPublisher

    p = ModbusPublisher("127.0.0.1", 0)
    p.start([PUMP, FAN])
    try:
        yield p
    finally:
        p.close()


def _modbus(port: int, fn: Callable[[Any], Any]) -> Any:
    from pymodbus.client import AsyncModbusTcpClient

    async def run() -> Any:
        c = AsyncModbusTcpClient("127.0.0.1", port=port)
        await c.connect()
        try:
            return await fn(c)
        finally:
            c.close()

    return asyncio.run(run())


@pytest.mark.relay
def test_the_register_map_serves_the_snapshot_and_refuses_writes(modbus_map: Any) -> None:
    s = snap(
        state="danger", score=2.346, velocity_rms_mm_s=4.2, iso_zone="C", sensor_faults={"fe": "flatline"},
        diagnosis="bearing_outer_race", diagnosis_confidence=0.82,
        last_window="2026-01-01T00:00:01.500Z", since="2026-01-01T00:00:00Z",
        acknowledged={"by": "M. Keller", "at": "2026-01-01T00:00:01Z", "comment": ""},
    )  # fmt: skip
    modbus_map.publish_state(s)
    modbus_map.publish_transition(event(new="alert"))
    modbus_map.publish_transition(event(old="alert", new="danger", t_ns=2))
    modbus_map.publish_transition(event(old="ok", new="sensor_fault", sensor="fe", t_ns=3))
    modbus_map.tick(70000, {"pump-01": True})

    async def reads(c: Any) -> Any:
        head = await c.read_holding_registers(0, count=16, device_id=1)
        pump = await c.read_input_registers(100, count=32, device_id=7)  # any unit id
        fan = await c.read_holding_registers(132, count=32, device_id=1)
        out = [head.registers, pump.registers, fan.registers]
        for call in (
            c.write_register(100, 1, device_id=1),
            c.write_registers(100, [1, 2], device_id=1),
            c.write_coil(0, True, device_id=1),
            c.read_coils(0, count=1, device_id=1),
            c.read_discrete_inputs(0, count=1, device_id=1),
            c.read_holding_registers(164, count=1, device_id=1),  # past the last machine
        ):
            r = await call
            out.append((r.isError(), getattr(r, "exception_code", None)))
        return out

    head, pump, fan, *refused = _modbus(modbus_map.port, reads)
    assert head[:6] == [1, 2, 100, 32, 70000 & 0xFFFF, 1]  # fan stale
    assert pump[0] == 2 and pump[1] == 0b00111  # latched, acknowledged, a sensor fault
    assert pump[2:8] == [235, 420, 3, 0b10, 1, 82]
    assert (pump[8] << 16 | pump[9], pump[10] << 16 | pump[11]) == (1767225601, 1767225600)
    assert pump[12:19] == [1, 2, 2, 2, 1, 0, 0]  # heartbeat, sensors, 2 transitions: danger, alert
    assert fan[0] == 4 and fan[1] & 16 and fan[2] == 65535 and fan[3] == 65535
    assert refused == [(True, 1)] * 5 + [(True, 2)]
    assert modbus_map.refused >= 5


def _read_request(tid: int = 1, protocol: int = 0) -> bytes:
    """A raw Modbus TCP request: read holding registers 0..1 of unit 1."""
    return struct.pack(">HHHBBHH", tid, protocol, 6, 1, 3, 0, 2)


def _closed_by_server(socks: list[socket.socket]) -> list[bool]:
    """Which of ``socks`` the server has closed (the rest still open, waiting)."""
    closed = []
    for s in socks:
        s.settimeout(0.05)
        try:
            closed.append(s.recv(1) == b"")
        except TimeoutError:
            closed.append(False)
        except ConnectionResetError:
            closed.append(True)
    return closed


def _flood(
    host: str, port: int, n: int, *, ask: bool = False, sources: Sequence[str] = ("127.0.0.1",)
) -> list[bool]:
    """Open ``n`` TCP connections one after another (each sending a read first when
    ``ask``; from each of ``sources`` in turn), hold them, and say which the server closed."""
    held = []
    for i in range(n):
        s = socket.create_connection((host, port), 5, source_address=(sources[i % len(sources)], 0))
        if ask:
            s.sendall(_read_request())
            s.settimeout(0.5)
            with contextlib.suppress(OSError):
                s.recv(64)  # the answer (or the close of one turned away)
        held.append(s)
    try:
        time.sleep(0.5)  # the extra ones are closed as soon as the server sees them
        return _closed_by_server(held)
    finally:
        for s in held:
            s.close()
        time.sleep(0.3)  # the server sees them go


@pytest.mark.relay
def test_one_address_holds_at_most_its_share_of_the_register_map(modbus_map: Any) -> None:
    """A client opening connections that poll in a loop from one address holds PER_PEER of
    them: each one more pushes out that address's connection quiet longest (a PLC that
    reconnects after a cable fault gets in at once), and the map still answers."""
    from pdm.publish.slots import PER_PEER

    closed = _flood("127.0.0.1", modbus_map.port, 40, ask=True)
    assert closed == [True] * (40 - PER_PEER) + [False] * PER_PEER
    assert modbus_map.turned_away == 0 and modbus_map.pushed_out_by == {"per_peer": 40 - PER_PEER}

    async def read(c: Any) -> Any:
        return (await c.read_holding_registers(0, count=2, device_id=1)).registers

    assert _modbus(modbus_map.port, read) == [1, 2]


@pytest.mark.relay
def test_the_register_map_turns_away_connections_past_its_bound(modbus_map: Any) -> None:
    """MAX_CONNECTIONS clients that poll, each from an address of its own, are served; one
    more from yet another address is closed at once (a swap between equals would let 33
    addresses push the plant's client out in turn)."""
    from pdm.publish.modbus import MAX_CONNECTIONS

    sources = [f"127.0.0.{10 + i}" for i in range(MAX_CONNECTIONS + 1)]
    closed = _flood("127.0.0.1", modbus_map.port, MAX_CONNECTIONS + 1, ask=True, sources=sources)
    assert closed == [False] * MAX_CONNECTIONS + [True]
    assert modbus_map.turned_away == 1 and modbus_map.pushed_out == 0


@pytest.mark.relay
def test_clients_that_poll_from_a_few_addresses_cannot_keep_the_plc_out(modbus_map: Any) -> None:
    """Red team, round two: connections that poll count as busy, so 32 of them (from four
    addresses, eight each) held every slot and the PLC was turned away. A newcomer now
    pushes out the quietest connection of the address holding the most slots, when that is
    at least two more than its own address holds."""
    from pdm.publish.modbus import MAX_CONNECTIONS
    from pdm.publish.slots import PER_PEER

    sources = [f"127.0.0.{2 + i}" for i in range(MAX_CONNECTIONS // PER_PEER)]
    held = []
    try:
        for i in range(MAX_CONNECTIONS):
            s = socket.create_connection(
                ("127.0.0.1", modbus_map.port), 5, source_address=(sources[i % len(sources)], 0)
            )
            s.sendall(_read_request())
            s.settimeout(5)
            assert s.recv(64), "each poller is answered"
            held.append(s)

        async def read(c: Any) -> Any:
            return (await c.read_holding_registers(0, count=2, device_id=1)).registers

        assert _modbus(modbus_map.port, read) == [1, 2]  # the PLC, from 127.0.0.1
        assert sum(_closed_by_server(held)) == 1
    finally:
        for s in held:
            s.close()
    assert modbus_map.turned_away == 0 and modbus_map.pushed_out_by == {"fair_share": 1}


@pytest.mark.relay
def test_idle_connections_cannot_hold_the_register_map_shut(modbus_map: Any) -> None:
    """Red team: 32 connections that never asked anything held every slot for as long as
    they stayed open, and the PLC was turned away. A newcomer now pushes out the connection
    quiet longest, when it has asked nothing for QUIET_S or nothing at all."""
    from pdm.publish.slots import PER_PEER

    idle = [socket.create_connection(("127.0.0.1", modbus_map.port), 5) for _ in range(40)]
    try:
        time.sleep(0.5)

        async def read(c: Any) -> Any:
            return (await c.read_holding_registers(0, count=2, device_id=1)).registers

        assert _modbus(modbus_map.port, read) == [1, 2]  # the PLC gets in, and an answer
    finally:
        for s in idle:
            s.close()
    assert modbus_map.turned_away == 0
    # (from one address: past PER_PEER each newcomer pushes out that address's quietest)
    assert modbus_map.pushed_out == 40 + 1 - PER_PEER


@pytest.mark.relay
def test_protocol_errors_from_a_client_are_one_log_line_a_minute(
    modbus_map: Any, caplog: pytest.LogCaptureFixture
) -> None:
    """Red team: each request with a bad protocol id logged pymodbus's error with the last
    20 frames appended (3 lines a request, 903 lines for 300): any client could flood the
    service's log. Now one line a minute per kind of error, the frames left out."""
    caplog.set_level(logging.INFO)
    bad = [socket.create_connection(("127.0.0.1", modbus_map.port), 5) for _ in range(20)]
    try:
        for k, s in enumerate(bad):
            s.sendall(_read_request(protocol=100 + k))  # never answered

        async def read(c: Any) -> Any:
            return (await c.read_holding_registers(0, count=2, device_id=1)).registers

        assert _modbus(modbus_map.port, read) == [1, 2]
    finally:
        for s in bad:
            s.close()

    def lines() -> list[str]:
        return [r.getMessage() for r in caplog.records if r.name.startswith("pymodbus")]

    deadline = time.monotonic() + 5
    while not lines() and time.monotonic() < deadline:
        time.sleep(0.05)
    (line,) = lines()  # the first error; the rest held back
    assert re.fullmatch(r"pymodbus: Invalid Modbus protocol id: 1\d\d", line), line


# -- MQTT -----------------------------------------------------------------------------------------


class Subscriber:
    def __init__(self, port: int, topic: str = "#") -> None:
        from paho.mqtt import client as paho
        from paho.mqtt.enums import CallbackAPIVersion

        self.msgs: list[tuple[str, bytes, bool]] = []
        self.lock = threading.Lock()
        self.client = paho.Client(CallbackAPIVersion.VERSION2)
        self.client.on_message = self._on
        self.client.on_connect = lambda c, *a: c.subscribe(topic, qos=1)
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()

    def _on(self, c: Any, u: Any, m: Any) -> None:
        with self.lock:
            self.msgs.append((m.topic, bytes(m.payload), bool(m.retain)))

    def last(self, topic: str) -> bytes | None:
        with self.lock:
            got = [p for t, p, _ in self.msgs if t == topic]
        return got[-1] if got else None

    def publish(self, topic: str, payload: bytes) -> None:
        self.client.publish(topic, payload, qos=1).wait_for_publish(WAIT_S)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def _mqtt(mosquitto: Any, **kw: Any) -> Any:
    from pdm.publish.mqtt import MqttPublisher, MqttSettings, parse_publish_url

    user, ack = kw.pop("user", None), kw.pop("ack", None)
    url = parse_publish_url(f"mqtt://{user + '@' if user else ''}127.0.0.1:{mosquitto.port}/plant")
    return MqttPublisher(MqttSettings(url, **kw), "edge-1", acknowledge=ack)


@pytest.mark.mqtt
def test_mqtt_publishes_the_retained_tree_events_and_discovery_and_again_after_a_broker_restart(
    mosquitto: Any,
) -> None:
    pub = _mqtt(mosquitto, homeassistant=True, value_interval_s=0.01)
    pub.start([PUMP, FAN])
    sub = Subscriber(mosquitto.port)
    try:
        wait_for(lambda: pub.connected, "the publisher's connection")
        wait_for(lambda: sub.last("plant/edge-1/status"), "the subscription (the retained birth)")
        pub.publish_state(
            snap(
                state="danger", score=2.5, diagnosis="bearing_outer_race", sensor_faults={"fe": "x"}
            )
        )
        pub.publish_transition(event(old="alert", new="danger"))
        b = "plant/edge-1/pump-01"
        wait_for(lambda: sub.last(f"{b}/event"), "the event")
        pub.tick(1, {})  # numbers not yet due when the state came are sent by a tick
        wait_for(lambda: sub.last(f"{b}/score") == b"2.5", "the score")
        assert sub.last("plant/edge-1/status") == b"online"
        assert sub.last(f"{b}/state") == b"danger"
        assert sub.last(f"{b}/sensor/fe") == b"sensor_fault" and sub.last(f"{b}/sensor/de") == b"ok"
        doc = json.loads(sub.last(f"{b}/status") or b"{}")
        assert doc["state"] == "danger" and doc["appliance_id"] == "edge-1"
        ev = json.loads(sub.last(f"{b}/event") or b"{}")
        assert ev["schema"] == "pdm-edge.alarm/1" and ev["new_state"] == "danger"
        info = json.loads(sub.last("plant/edge-1/info") or b"{}")
        assert [m["id"] for m in info["machines"]] == ["pump-01", "fan-02"]
        configs = [(t, json.loads(p)) for t, p, _ in sub.msgs if t.startswith("homeassistant/")]
        ids = [c["unique_id"] for _, c in configs]
        assert len(ids) == len(set(ids)) >= 2 * 6 + 3
        assert all(c["availability_topic"] == "plant/edge-1/status" for _, c in configs)
        # The broker restarts and forgets every retained message: the publisher sends them again.
        mosquitto.stop()
        mosquitto.start()
        sub.close()

        def retained_again() -> bool:
            probe = Subscriber(mosquitto.port)
            try:
                wait_for(lambda: probe.last(f"{b}/state"), "a state", timeout=2)
                return probe.msgs[0][2] and probe.last(f"{b}/state") == b"danger"
            except AssertionError:
                return False
            finally:
                probe.close()

        wait_for(retained_again, "the retained state after the restart", timeout=40)
        sub = Subscriber(mosquitto.port)
    finally:
        sub.close()
        pub.close()


def _recording_ack() -> tuple[list[tuple[str, str, str]], Callable[[str, str, str], str]]:
    """An acknowledge callback that records its calls, and the list it records them in."""
    acks: list[tuple[str, str, str]] = []

    def ack(machine: str, by: str, comment: str) -> str:
        acks.append((machine, by, comment))
        return f"{machine}: acknowledged"

    return acks, ack


def _commanded(
    mosquitto: Any, ack: Callable[[str, str, str], str], topic: str
) -> tuple[Any, Subscriber]:
    """A started publisher taking signed commands, connected and subscribed, and a
    subscriber to ``topic``."""
    pub = _mqtt(mosquitto, user="edge", password=b"pw", commands=True, command_key=KEY, ack=ack)
    pub.start([PUMP])
    sub = Subscriber(mosquitto.port, topic)
    wait_for(lambda: pub.connected, "the connection")
    time.sleep(0.3)  # the publisher's subscription
    return pub, sub


@pytest.mark.mqtt
def test_mqtt_commands_are_carried_out_only_when_signed_and_need_broker_credentials(
    mosquitto: Any,
) -> None:
    acks, ack = _recording_ack()
    with pytest.raises(ConfigError, match="user and password"):
        _mqtt(mosquitto, commands=True, command_key=KEY, ack=ack)
    with pytest.raises(ConfigError, match="command_key_file"):
        _mqtt(mosquitto, user="edge", password=b"pw", commands=True, ack=ack)
    pub, sub = _commanded(mosquitto, ack, "plant/edge-1/pump-01/cmd/result")
    try:
        good = sign(
            KEY,
            "edge-1",
            "pump-01",
            by="M. Keller",
            comment="checked",
            ts=int(time.time()),
            nonce="nonce-0001",
        )
        sub.publish("plant/edge-1/pump-01/cmd/ack", good)
        wait_for(lambda: len(sub.msgs) == 1, "the first result")
        sub.publish("plant/edge-1/pump-01/cmd/ack", good)  # the same again: a replay
        bad = sign(
            b"x" * 32,
            "edge-1",
            "pump-01",
            by="Mallory",
            comment="",
            ts=int(time.time()),
            nonce="nonce-0002",
        )
        sub.publish("plant/edge-1/pump-01/cmd/ack", bad)
        wait_for(lambda: len(sub.msgs) == 3, "three results")
    finally:
        sub.close()
        pub.close()
    results = [json.loads(p) for _, p, _ in sub.msgs]
    assert acks == [("pump-01", "M. Keller", "checked")]
    assert [r["ok"] for r in results] == [True, False, False]
    assert "already used" in results[1]["message"] and "bad signature" in results[2]["message"]


@pytest.mark.mqtt
def test_a_command_with_an_absurd_timestamp_is_refused_and_commands_go_on(mosquitto: Any) -> None:
    """Red team: a command whose ts was an integer of 400 digits raised OverflowError out of
    paho's on_message, which ended the publisher's network thread: no state, event or
    command result went out after it. It is now refused like any bad command."""
    acks, ack = _recording_ack()
    pub, sub = _commanded(mosquitto, ack, "plant/edge-1/pump-01/#")
    try:
        huge = b'{"by": "a", "comment": "", "ts": 1' + b"0" * 400
        huge += b', "nonce": "nonce-0001", "sig": "' + b"0" * 64 + b'"}'
        sub.publish("plant/edge-1/pump-01/cmd/ack", huge)
        good = sign(
            KEY, "edge-1", "pump-01", by="ana", comment="", ts=int(time.time()), nonce="nonce-0002"
        )
        sub.publish("plant/edge-1/pump-01/cmd/ack", good)
        topic = "plant/edge-1/pump-01/cmd/result"
        wait_for(lambda: sum(t == topic for t, _, _ in sub.msgs) == 2, "two results")
        pub.publish_state(snap(state="alert"))
        wait_for(lambda: sub.last("plant/edge-1/pump-01/state") == b"alert", "the next state")
    finally:
        sub.close()
        pub.close()
    results = [json.loads(p) for t, p, _ in sub.msgs if t.endswith("/cmd/result")]
    assert [r["ok"] for r in results] == [False, True]
    assert "ts" in results[0]["message"] and acks == [("pump-01", "ana", "")]


# -- OPC UA ---------------------------------------------------------------------------------------


@pytest.fixture
def opcua(tmp_path: Path) -> Iterator[tuple[Any, list[tuple[str, str, str]]]]:
    from pdm.operators import set_pin
    from pdm.publish.opcua import OpcUaPublisher, OpcUaSettings

    set_pin(tmp_path, "alice", "246810")
    acks: list[tuple[str, str, str]] = []

    def ack(machine: str, by: str, comment: str) -> str:
        acks.append((machine, by, comment))
        return f"{machine}: acknowledged by {by}"

    (port,) = free_ports(1)
    p = OpcUaPublisher(
        OpcUaSettings(f"opc.tcp://127.0.0.1:{port}", tmp_path), "edge-1", acknowledge=ack
    )
    p.start([PUMP])
    try:
        yield p, acks
    finally:
        p.close()


async def _client(p: Any, tmp_path: Path, user: str | None = None, password: str = "") -> Any:
    from asyncua import Client, ua
    from asyncua.crypto import cert_gen
    from asyncua.crypto.security_policies import SecurityPolicyBasic256Sha256
    from cryptography.x509.oid import ExtendedKeyUsageOID

    key, cert = tmp_path / "ck.pem", tmp_path / "cc.der"
    await cert_gen.setup_self_signed_certificate(
        key, cert, "urn:test", "localhost", [ExtendedKeyUsageOID.CLIENT_AUTH], {"commonName": "t"}
    )
    c = Client(p.settings.url)
    await c.set_security(
        SecurityPolicyBasic256Sha256,
        str(cert),
        str(key),
        mode=ua.MessageSecurityMode.SignAndEncrypt,
    )
    if user:
        c.set_user(user)
        c.set_password(password)
    return c


def test_opcua_serves_stable_node_ids_read_only_and_acknowledge_to_operators(
    opcua: Any, tmp_path: Path
) -> None:
    from asyncua import ua
    from asyncua.ua.uaerrors import BadUserAccessDenied

    p, acks = opcua
    p.publish_state(
        snap(
            state="danger",
            score=2.5,
            velocity_rms_mm_s=3.25,
            iso_zone="B",
            sensor_faults={"fe": "x"},
            reason="why",
        )
    )
    p.tick(9, {"pump-01": True})
    key_mode = (tmp_path / "opcua" / "server-key.pem").stat().st_mode & 0o777
    cert_bytes = (tmp_path / "opcua" / "server-cert.der").read_bytes()

    async def run() -> dict[str, Any]:
        out: dict[str, Any] = {}
        anon = await _client(p, tmp_path)
        async with anon:
            ns = await anon.get_namespace_index("urn:pdm-edge")
            await asyncio.sleep(0.3)
            node = anon.get_node(f"ns={ns};s=pdm-edge/pump-01/State")
            out["browse"] = await (
                await anon.nodes.objects.get_child(
                    [f"{ns}:Machines", f"{ns}:pump-01", f"{ns}:State"]
                )
            ).read_value()
            out["values"] = {n: await anon.get_node(f"ns={ns};s=pdm-edge/pump-01/{n}").read_value()
                             for n in ("State", "StateCode", "Score", "VelocityRms_mm_s", "IsoZone", "Reason", "Heartbeat")}  # fmt: skip
            out["sensor"] = await anon.get_node(
                f"ns={ns};s=pdm-edge/pump-01/Sensors/fe"
            ).read_value()
            obj = anon.get_node(f"ns={ns};s=pdm-edge/pump-01")
            for what, call in (
                ("anon call", obj.call_method(f"{ns}:Acknowledge", "x", "y")),
                ("anon write", node.write_value("ok")),
            ):
                try:
                    await call
                    out[what] = "done"
                except BadUserAccessDenied:
                    out[what] = "denied"
        wrong = await _client(p, tmp_path, "alice", "000000")
        try:
            await wrong.connect()
            out["wrong password"] = "connected"
            await wrong.disconnect()
        except ua.UaError as exc:
            out["wrong password"] = type(exc).__name__
        op = await _client(p, tmp_path, "alice", "246810")
        async with op:
            obj = op.get_node(f"ns={ns};s=pdm-edge/pump-01")
            out["ack"] = await obj.call_method(f"{ns}:Acknowledge", "M. Keller", "bearing checked")
            # An operator may acknowledge, and nothing else: no write, no change of the
            # address space (the server answers each with BadUserAccessDenied).
            state = op.get_node(f"ns={ns};s=pdm-edge/pump-01/State")
            for what, attempt in (
                ("op write", state.write_value("ok")),
                ("op add", obj.add_variable(ns, "Injected", 1.0)),
                ("op delete", op.delete_nodes([state])),
            ):
                try:
                    await attempt
                    out[what] = "done"
                except BadUserAccessDenied:
                    out[what] = "denied"
            out["after"] = await state.read_value()
            # Part 9: the condition's own Acknowledge, by the logged-in operator.
            cond = op.get_node(f"ns={ns};s=pdm-edge/pump-01/Vibration")
            await cond.call_method(
                ua.NodeId(ua.ObjectIds.AcknowledgeableConditionType_Acknowledge),
                b"",
                ua.LocalizedText("from the alarm list"),
            )
        return out

    out = asyncio.run(run())
    assert out["browse"] == "danger"
    assert out["values"] == {"State": "danger", "StateCode": 2, "Score": 2.5, "VelocityRms_mm_s": 3.25,
                             "IsoZone": "B", "Reason": "why", "Heartbeat": 1}  # fmt: skip
    assert out["sensor"] == "sensor_fault"
    assert (out["anon call"], out["anon write"]) == ("denied", "denied")
    assert (out["op write"], out["op add"], out["op delete"]) == ("denied",) * 3
    assert out["after"] == "danger"
    assert out["wrong password"] != "connected"
    assert out["ack"] == "pump-01: acknowledged by M. Keller"
    assert acks == [
        ("pump-01", "M. Keller", "bearing checked [OPC UA user alice]"),
        ("pump-01", "alice", "from the alarm list [OPC UA]"),
    ]
    assert key_mode == 0o600
    p.close()  # a second start keeps the certificate
    from pdm.publish.opcua import OpcUaPublisher

    p2 = OpcUaPublisher(p.settings, "edge-1")
    p2.start([PUMP])
    p2.close()
    assert (tmp_path / "opcua" / "server-cert.der").read_bytes() == cert_bytes


def test_opcua_idle_connections_cannot_hold_the_server_shut(opcua: Any, tmp_path: Path) -> None:
    """At most MAX_CONNECTIONS are open at once. Red team: 40 connections that never opened a
    session held the server shut (a real client timed out) for the 30 s of asyncua's
    activation watchdog, again with each new wave. A newcomer now pushes out the oldest
    connection without an activated session: a client with a session keeps its slot, and a
    real client gets in while the idle ones are still open."""
    from pdm.publish.opcua import parse_opcua_url
    from pdm.publish.slots import PER_PEER

    p, _ = opcua
    host, port = parse_opcua_url(p.settings.url)

    async def read(c: Any) -> Any:
        ns = await c.get_namespace_index("urn:pdm-edge")
        return await c.get_node(f"ns={ns};s=pdm-edge/ApplianceId").read_value()

    async def scenario() -> tuple[Any, ...]:
        first = await _client(p, tmp_path)
        async with first:  # a session, then 40 idle connections
            idle = [socket.create_connection((host, port), 5) for _ in range(40)]
            try:
                await asyncio.sleep(0.5)
                newcomer = await _client(p, tmp_path)
                async with newcomer:
                    got = await read(newcomer), await read(first)
                closed = _closed_by_server(idle)
            finally:
                for sock in idle:
                    sock.close()
        return (*got, closed)

    newcomer_read, first_read, closed = asyncio.run(scenario())
    assert newcomer_read == first_read == "edge-1"
    # all from one address: the session, 7 idle, then each newcomer pushes out that
    # address's oldest idle (a session that has asked something is quieter than none)
    assert closed == [True] * (40 + 2 - PER_PEER) + [False] * (PER_PEER - 2)


def test_opcua_sessions_that_activate_and_sit_cannot_keep_the_plant_client_out(
    opcua: Any, tmp_path: Path
) -> None:
    """Red team, round two: 40 clients that activate a session and then sit (asyncua's Client,
    from one address) held every slot, and the plant's client was refused. One address now
    holds at most PER_PEER slots, a newcomer from it pushing out its quietest: the plant's
    client gets in and reads, the sitting sessions keep PER_PEER - 1 slots between them."""
    from pdm.publish.opcua import MAX_CONNECTIONS
    from pdm.publish.slots import PER_PEER

    p, _ = opcua

    async def read(c: Any) -> Any:
        ns = await c.get_namespace_index("urn:pdm-edge")
        return await c.get_node(f"ns={ns};s=pdm-edge/ApplianceId").read_value()

    async def scenario() -> tuple[Any, int]:
        sitting = []
        try:
            for _ in range(MAX_CONNECTIONS + 8):
                c = await _client(p, tmp_path)
                with contextlib.suppress(Exception):  # pushed out by the next one: fine
                    await asyncio.wait_for(c.connect(), 20)
                    sitting.append(c)
            plant = await _client(p, tmp_path)
            async with plant:
                got = await read(plant)
            return got, len(p._server.bserver.clients)
        finally:
            for c in sitting:
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(c.disconnect(), 5)

    got, held = asyncio.run(scenario())
    assert got == "edge-1"
    assert held <= PER_PEER


def test_opcua_reports_each_machine_as_an_alarm_condition_to_server_event_subscribers(
    opcua: Any, tmp_path: Path
) -> None:
    from asyncua import ua

    p, _ = opcua
    got: list[Any] = []

    class Handler:
        def event_notification(self, ev: Any) -> None:
            got.append(ev)

    async def run() -> None:
        c = await _client(p, tmp_path)
        async with c:
            sub = await c.create_subscription(50, Handler())
            await sub.subscribe_events(c.nodes.server, ua.ObjectIds.AlarmConditionType)
            await asyncio.sleep(0.3)
            # As the hub hands them: each transition after its state (none is merged away).
            p.publish_state(snap(state="alert", reason="score 1.4"))
            p.publish_transition(event(new="alert"))
            p.publish_state(snap(state="trip", reason="bpfo"))
            p.publish_transition(event(old="alert", new="trip", t_ns=2))
            p.publish_state(
                snap(
                    state="trip",
                    reason="bpfo",
                    acknowledged={"by": "M. Keller", "at": "x", "comment": ""},
                )
            )
            deadline = time.monotonic() + WAIT_S
            while len(got) < 3 and time.monotonic() < deadline:
                await asyncio.sleep(0.05)

    asyncio.run(run())
    fields = [
        (e.Severity, getattr(e, "ActiveState/Id"), getattr(e, "AckedState/Id"), e.Retain)
        for e in got[:3]
    ]
    assert fields == [(400, True, True, True), (900, True, False, True), (900, True, True, True)]
    assert all(e.SourceName == "pump-01" and "pump-01" in e.Message.Text for e in got[:3])


# -- the engine's listeners and /status's readings -------------------------------------------------


def test_listeners_get_every_transition_after_the_state_says_so(tmp_path: Path) -> None:
    """The feed reads the alarm state the transition left, on the thread that made it: a
    listener must see the new state, for every kind of transition (a window's, a silent
    source's, an acknowledgement's, the service's own appliance fault)."""
    from test_alarm_engine import Sink, _engine, _pipeline, _run

    pl = _pipeline("log:")
    engine = _engine(pl, tmp_path, Sink())
    seen: list[tuple[str, str, str, str, bool]] = []

    def listener(ev: AlarmEvent) -> None:
        st = engine.state
        assert st is not None
        now = (
            st.sensor_faults.get(ev.sensor) and "sensor_fault"
            if ev.sensor not in ("", "appliance")
            else st.state
        )
        seen.append(
            (ev.sensor, ev.old, ev.new, str(now), ev.sensor != "appliance" and now == ev.new)
        )

    engine.listeners.append(listener)
    engine.listeners.append(lambda ev: 1 / 0)  # a broken listener never stops the alarms
    try:
        _run(engine, pl, "outer_race.csv.gz", Sink())
        engine.source_silent(["motor_de"], "silent")
        engine.acknowledge("M. Keller", "checked")
        engine.force_safe(True, "stalled", source="watchdog")
    finally:
        engine.close(timeout=0.1)
    machine = [s for s in seen if s[0] == ""]
    assert [s[2] for s in machine][:2] == ["danger", "trip"]
    assert ("motor_de", "ok", "sensor_fault", "sensor_fault", True) in seen
    assert ("appliance", "ok", "appliance_fault") in [s[:3] for s in seen]
    assert all(ok for sensor, *_, ok in seen if sensor != "appliance")


def test_status_readings_are_the_newest_windows_highest_velocity_and_its_zone() -> None:
    import numpy as np

    from pdm.config import load_pipeline
    from pdm.dsp.iso import iso_zone
    from pdm.service.app import _window_readings

    pl = load_pipeline(Path(__file__).resolve().parents[2] / "pipelines" / "demo.toml")
    names = ("rms_g", "velocity_rms_mm_s")

    class Runner:
        pipeline = pl
        features = type("F", (), {"extractor": type("E", (), {"names": names})()})()
        last_values = np.array([[0.1, 2.0], [0.2, 4.6], [0.3, np.nan]])
        last_confidence = 0.8

    got = _window_readings(Runner())  # type: ignore[arg-type]
    assert got == {
        "velocity_rms_mm_s": 4.6,
        "iso_zone": iso_zone(4.6, group=pl.machine.iso_group, foundation=pl.machine.foundation),
        "diagnosis_confidence": 0.8,
        "sensors": ["motor_de"],
    }
    assert got["iso_zone"] == "D"  # group 2 rigid: C/D at 4.5 mm/s
    Runner.last_values = None
    assert _window_readings(Runner())["velocity_rms_mm_s"] is None  # type: ignore[arg-type]
