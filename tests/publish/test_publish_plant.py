"""The plant's view, from outside: MQTT, OPC UA and Modbus against the webhooks and ``/status``.

A real ``pdm-edge run`` process (two machines on two worker processes, so the supervisor's
publishers are fed over the workers' sockets) runs the simulator with a growing outer-race
fault, real signed webhooks go to a real receiver (pdm/tools/servers.py), and three real
clients watch from outside: a paho-mqtt subscriber on a real mosquitto, an asyncua client
subscribed to every machine's ``State`` over Basic256Sha256, and a pymodbus client polling
the register map every 50 ms. Then:

* every machine-level transition a webhook carried shows on all three, in the same order,
  within 1 s of the webhook's arrival (each measured at arrival, on this host's clock);
* once the simulator has stopped (the values freeze), every value agrees with ``/status``;
* the heartbeats advance a count a second;
* after ``kill -9`` the broker publishes the last will (``offline``).

The measured delays are printed (``-s`` shows them): docs/integration.md quotes them.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import math
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from servers import free_ports
from test_mqtt import Broker
from test_webhook import SECRET, Receiver

REPO = Path(__file__).resolve().parents[2]
DEMO = REPO / "pipelines" / "demo.toml"
APPLIANCE = "plant-edge-1"
MACHINES = ("demo-pump", "demo-fan")
#: A transition must show on each protocol within this of its webhook, s.
WITHIN_S = 1.0

pytestmark = [pytest.mark.mqtt, pytest.mark.webhook, pytest.mark.slow]


def _pipelines(tmp_path: Path, hook: str) -> list[Path]:
    text = DEMO.read_text().replace(
        'path = "../models/demo-pump"', f'path = "{REPO}/models/demo-pump"'
    )
    text = text.replace(
        "\n[alarms]\n", f'\n[alarms]\nrelay = "log:"\nwebhooks = [{{ url = "{hook}" }}]\n'
    )
    out = []
    for machine in MACHINES:
        p = tmp_path / f"{machine}.toml"
        t = text.replace('id = "demo-pump"', f'id = "{machine}"')
        if machine != "demo-pump":
            t = t.replace('id = "motor_de"', 'id = "fan_de"').replace(
                'name = "Demo pump, simulated"', 'name = "Demo fan"'
            )
        p.write_text(t)
        out.append(p)
    return out


class Watcher:
    """MQTT, OPC UA and Modbus clients recording what they see, with arrival times."""

    def __init__(self, mqtt_port: int, opc_url: str, modbus_port: int, certs: Path) -> None:
        self.lock = threading.Lock()
        self.mqtt_states: list[tuple[float, str, str]] = []
        self.mqtt_events: list[tuple[float, dict[str, Any]]] = []
        self.mqtt_docs: dict[str, dict[str, Any]] = {}
        self.mqtt_status: list[tuple[float, str]] = []
        self.opc_states: list[tuple[float, str, str]] = []
        self.mb_states: list[tuple[float, str, int]] = []
        self.mb_beats: list[tuple[float, int, list[int]]] = []
        self.mb_blocks: dict[str, list[int]] = {}
        self.errors: list[str] = []
        self._stop = threading.Event()
        self.mqtt_port, self.opc_url, self.modbus_port, self.certs = (
            mqtt_port,
            opc_url,
            modbus_port,
            certs,
        )
        from paho.mqtt import client as paho
        from paho.mqtt.enums import CallbackAPIVersion

        self.mqtt = paho.Client(CallbackAPIVersion.VERSION2)
        self.mqtt.on_message = self._on_message
        self.mqtt.on_connect = lambda c, *a: c.subscribe("pdm-edge/#", qos=1)
        self._thread = threading.Thread(target=self._run_loop, name="watcher-loop", daemon=True)
        self.opc_ready = threading.Event()
        self._want_read = threading.Event()
        self._read_done = threading.Event()
        self._read_result: dict[str, dict[str, Any]] = {}

    def _on_message(self, client: Any, userdata: Any, msg: Any) -> None:
        t = time.time()
        parts = msg.topic.split("/")
        with self.lock:
            if parts[-1] == "status" and len(parts) == 3:
                self.mqtt_status.append((t, msg.payload.decode()))
            elif len(parts) == 4 and parts[-1] == "state":
                self.mqtt_states.append((t, parts[2], msg.payload.decode()))
            elif len(parts) == 4 and parts[-1] == "event":
                self.mqtt_events.append((t, json.loads(msg.payload)))
            elif len(parts) == 4 and parts[-1] == "status":
                self.mqtt_docs[parts[2]] = json.loads(msg.payload)

    def start(self) -> Watcher:
        self.mqtt.connect("127.0.0.1", self.mqtt_port)
        self.mqtt.loop_start()
        self._thread.start()
        assert self.opc_ready.wait(60), f"OPC UA client did not connect: {self.errors}"
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(20)
        self.mqtt.disconnect()
        self.mqtt.loop_stop()

    def _run_loop(self) -> None:
        try:
            asyncio.run(self._main())
        except Exception as exc:  # reported by the test, not swallowed
            self.errors.append(f"{type(exc).__name__}: {exc}")
            self.opc_ready.set()

    async def _main(self) -> None:
        from asyncua import Client, ua
        from asyncua.crypto import cert_gen
        from asyncua.crypto.security_policies import SecurityPolicyBasic256Sha256
        from cryptography.x509.oid import ExtendedKeyUsageOID
        from pymodbus.client import AsyncModbusTcpClient

        key, cert = self.certs / "client-key.pem", self.certs / "client-cert.der"
        await cert_gen.setup_self_signed_certificate(
            key, cert, "urn:pdm-edge:test-client", "localhost",
            [ExtendedKeyUsageOID.CLIENT_AUTH], {"commonName": "pdm-edge test client"},
        )  # fmt: skip
        client = Client(self.opc_url)
        await client.set_security(
            SecurityPolicyBasic256Sha256,
            str(cert),
            str(key),
            mode=ua.MessageSecurityMode.SignAndEncrypt,
        )
        watcher = self

        class Handler:
            def datachange_notification(self, node: Any, val: Any, data: Any) -> None:
                machine = node.nodeid.Identifier.split("/")[1]
                with watcher.lock:
                    watcher.opc_states.append((time.time(), machine, val))

        mb = AsyncModbusTcpClient("127.0.0.1", port=self.modbus_port)
        async with client:
            ns = await client.get_namespace_index("urn:pdm-edge")
            folder = await client.nodes.objects.get_child([f"{ns}:Machines"])
            found = sorted([(await n.read_browse_name()).Name for n in await folder.get_children()])
            assert found == sorted(MACHINES), found
            sub = await client.create_subscription(50, Handler())
            await sub.subscribe_data_change(
                [client.get_node(f"ns={ns};s=pdm-edge/{m}/State") for m in MACHINES], queuesize=16
            )
            await mb.connect()
            self.opc_ready.set()
            count: dict[str, int] = {}
            while not self._stop.is_set():
                head = await mb.read_holding_registers(0, count=16, device_id=1)
                regs = await mb.read_input_registers(100, count=32 * len(MACHINES), device_id=1)
                t = time.time()
                if head.isError() or regs.isError():
                    self.errors.append(f"modbus: {head} {regs}")
                else:
                    blocks = {
                        m: regs.registers[32 * k : 32 * k + 32] for k, m in enumerate(MACHINES)
                    }
                    with self.lock:
                        self.mb_blocks = blocks
                        self.mb_beats.append(
                            (t, head.registers[4], [b[12] for b in blocks.values()])
                        )
                        for m, b in blocks.items():
                            # Registers +14..+18: the transitions since the last poll, in order.
                            new = (b[14] - count[m]) & 0xFFFF if m in count else 0
                            if m not in count:
                                self.mb_states.append((t, m, b[0]))
                            assert new <= 4, f"{new} transitions between two polls"
                            for code in reversed(b[15 : 15 + new]):
                                self.mb_states.append((t, m, code))
                            count[m] = b[14]
                if self._want_read.is_set():
                    values = {}
                    for m in MACHINES:
                        names = ["State", "StateCode", "Since", "Reason", "Score", "Diagnosis",
                                 "DiagnosisConfidence", "VelocityRms_mm_s", "IsoZone", "LastWindowTime",
                                 "Acknowledged", "ApplianceFault"]  # fmt: skip
                        nodes = [client.get_node(f"ns={ns};s=pdm-edge/{m}/{n}") for n in names]
                        values[m] = dict(zip(names, await client.read_values(nodes), strict=True))
                        sensor = "motor_de" if m == "demo-pump" else "fan_de"
                        values[m]["sensor"] = await client.get_node(
                            f"ns={ns};s=pdm-edge/{m}/Sensors/{sensor}"
                        ).read_value()
                    self._read_result = values
                    self._want_read.clear()
                    self._read_done.set()
                await asyncio.sleep(0.05)
            mb.close()

    def read_opc(self, timeout: float = 10.0) -> dict[str, dict[str, Any]]:
        """Every machine's OPC UA variables, read by the watcher's client now."""
        self._read_done.clear()
        self._want_read.set()
        assert self._read_done.wait(timeout), f"no OPC UA read: {self.errors}"
        return self._read_result


def _changes(rows: list[tuple[float, str, Any]], machine: str) -> list[tuple[float, Any]]:
    """(time, value) where the machine's value changed, in arrival order."""
    out: list[tuple[float, Any]] = []
    for t, m, v in rows:
        if m == machine and (not out or out[-1][1] != v):
            out.append((t, v))
    return out


CODES = {"ok": 0, "alert": 1, "danger": 2, "trip": 3, "unknown": 4}


def _wait(
    cond: Callable[[], Any], what: str, proc: subprocess.Popen[bytes], log: Path, timeout: float
) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, f"service exited: {log.read_text()[-3000:]}"
        got = cond()
        if got:
            return got
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}: {log.read_text()[-3000:]}")


def test_every_transition_shows_on_mqtt_opcua_and_modbus_within_a_second_of_its_webhook(
    tmp_path: Path, mosquitto: Broker
) -> None:
    rx = Receiver(tmp_path).start()
    api, opc, mb, listen = free_ports(4)
    log = tmp_path / "service.log"
    env = {**os.environ, "PDM_WEBHOOK_SECRET": SECRET.decode(), "PDM_APPLIANCE_ID": APPLIANCE}
    cmd = [
        sys.executable, "-m", "pdm.cli", "run", *map(str, _pipelines(tmp_path, rx.url)),
        "--workers", "2", "--data-dir", str(tmp_path / "data"), "--api", f"127.0.0.1:{api}",
        # The growing fault: outer race from 3 s, growing for 24 s; the simulator stops at 40 s
        # and the (never used) stream input keeps the service up with every value frozen.
        "--simulate", "--fault", "bpfo:0.5@3+24", "--duration", "40",
        "--listen", f"127.0.0.1:{listen}", "--silence-s", "100000",
        "--publish", f"mqtt://127.0.0.1:{mosquitto.port}", "--opcua", f"opc.tcp://127.0.0.1:{opc}",
        "--modbus-server", f"127.0.0.1:{mb}",
    ]  # fmt: skip
    proc = subprocess.Popen(cmd, stdout=log.open("w"), stderr=subprocess.STDOUT, cwd=REPO, env=env)
    watcher: Watcher | None = None
    try:

        def status() -> Any:
            try:
                return httpx.get(f"http://127.0.0.1:{api}/status", timeout=2).json()
            except (httpx.TransportError, ValueError):
                return None

        _wait(status, "the control API", proc, log, 60)
        watcher = Watcher(mosquitto.port, f"opc.tcp://127.0.0.1:{opc}", mb, tmp_path).start()
        # The whole growing fault, then the frozen values.
        _wait(
            lambda: (s := status()) and all(m["state"] == "trip" for m in s),
            "both trips",
            proc,
            log,
            90,
        )
        _wait(
            lambda: (s := status()) and all(m["lag_s"] and m["lag_s"] > 3 for m in s),
            "the simulator's end",
            proc,
            log,
            60,
        )

        # Lag alone also grows when a loaded machine falls behind while the simulator still
        # runs: wait until no machine's window counter moves, as the soak does.
        def counts() -> dict[str, int]:
            return {m["id"]: m["windows"] for m in status() or []}

        before = counts()
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            time.sleep(1.5)
            after = counts()
            if after and after == before:
                break
            before = after
        time.sleep(2.5)  # a full feed interval and value interval after the last window

        hooks = [json.loads(r["body"]) | {"_t": r["t"]} for r in rx.requests()]
        assert all(r["valid"] for r in rx.requests())
        delays: dict[str, list[float]] = {"mqtt": [], "opcua": [], "modbus": []}
        with watcher.lock:
            mqtt_states, opc_states, mb_states = (
                list(watcher.mqtt_states),
                list(watcher.opc_states),
                list(watcher.mb_states),
            )
            events = list(watcher.mqtt_events)
        assert not watcher.errors, watcher.errors
        for machine in MACHINES:
            seq = [h for h in hooks if h["machine"] == machine and h["sensor"] is None]
            assert [h["new_state"] for h in seq][-1] == "trip", seq
            assert len(seq) >= 2, seq  # it grew through at least one level before the trip
            seen = {
                "mqtt": _changes(mqtt_states, machine),
                "opcua": _changes(opc_states, machine),
                "modbus": [
                    (t, next(k for k, c in CODES.items() if c == v))
                    for t, v in _changes(mb_states, machine)
                ],
            }
            for proto, changes in seen.items():
                states = [v for _, v in changes]
                # The webhooks' transitions, in order, after the state it started in.
                assert states[-len(seq) :] == [h["new_state"] for h in seq], (
                    proto,
                    machine,
                    changes,
                    seq,
                )
                for (t, _), h in zip(changes[-len(seq) :], seq, strict=True):
                    delays[proto].append(t - h["_t"])
                    assert abs(t - h["_t"]) <= WITHIN_S, (
                        proto,
                        machine,
                        h["new_state"],
                        t - h["_t"],
                    )
            # MQTT's events are the webhooks' payloads.
            got = [e for _, e in events if e["machine"] == machine and e["sensor"] is None]
            assert [e["event_id"] for e in got] == [h["event_id"] for h in seq]
            assert got[-1] == {k: v for k, v in seq[-1].items() if k != "_t"}
        print("\ntransition delay vs the webhook's arrival, s (negative: before it):")
        for proto, ds in delays.items():
            print(f"  {proto:7s} n={len(ds)} median {sorted(ds)[len(ds) // 2]:+.3f} "
                  f"min {min(ds):+.3f} max {max(ds):+.3f}")  # fmt: skip

        # Frozen values: every protocol agrees with /status.
        now = {m["id"]: m for m in status()}
        opcv = watcher.read_opc()
        with watcher.lock:
            docs, blocks = dict(watcher.mqtt_docs), dict(watcher.mb_blocks)
        for machine in MACHINES:
            st, doc, o, b = now[machine], docs[machine], opcv[machine], blocks[machine]
            assert st["last_window"] == doc["last_window"]
            for key in ("state", "since", "reason", "score", "diagnosis", "diagnosis_confidence",
                        "velocity_rms_mm_s", "iso_zone", "sensor_faults"):  # fmt: skip
                assert doc[key] == st[key], (machine, key, doc[key], st[key])
            assert doc["appliance_id"] == APPLIANCE
            assert (o["State"], o["StateCode"], o["Reason"]) == (
                st["state"],
                CODES[st["state"]],
                st["reason"],
            )
            assert o["Score"] == st["score"] and o["VelocityRms_mm_s"] == st["velocity_rms_mm_s"]
            assert o["Diagnosis"] == st["diagnosis"] and o["IsoZone"] == st["iso_zone"]
            assert o["DiagnosisConfidence"] == st["diagnosis_confidence"]
            assert o["LastWindowTime"] == dt.datetime.fromisoformat(st["last_window"])
            assert o["Since"] == dt.datetime.fromisoformat(st["since"])
            assert o["sensor"] == ("sensor_fault" if st["sensor_faults"] else "ok")
            assert b[0] == CODES[st["state"]]
            assert b[2] == min(65534, round(st["score"] * 100))
            assert b[3] == round(st["velocity_rms_mm_s"] * 100)
            assert b[4] == " ABCD".index(st["iso_zone"])
            assert b[1] & 1 == 1  # latched (trip)
            last = dt.datetime.fromisoformat(st["last_window"]).timestamp()
            assert (b[8] << 16) | b[9] == math.floor(last)

        # Heartbeats: the appliance's and each machine's move once a second.
        with watcher.lock:
            beats = list(watcher.mb_beats)
        t0, h0, m0 = beats[0]
        t1, h1, m1 = beats[-1]
        assert abs((h1 - h0) - (t1 - t0)) <= 2.0, (h0, h1, t1 - t0)
        assert all(abs((b - a) - (t1 - t0)) <= 2.0 for a, b in zip(m0, m1, strict=True)), (m0, m1)

        # The last will: killed, the appliance is "offline" on the broker.
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
        deadline = time.monotonic() + 5 * 30  # up to 1.5 keep-alives of 30 s, plus slack
        while time.monotonic() < deadline:
            with watcher.lock:
                if watcher.mqtt_status and watcher.mqtt_status[-1][1] == "offline":
                    break
            time.sleep(0.1)
        with watcher.lock:
            assert watcher.mqtt_status[-1][1] == "offline", watcher.mqtt_status
    finally:
        if watcher is not None:
            watcher.stop()
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
        rx.stop()
        assert "Traceback" not in log.read_text(), log.read_text()[-3000:]
