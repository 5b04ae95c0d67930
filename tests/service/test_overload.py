"""Graceful overload, judged from outside (issue 17 item 1; docs/service.md, "Overload").

The real service (``pdm-edge run --workers 1``, a subprocess) is fed by DAQs over TCP (the
soak's :class:`~pdm.tools.soak.Sensor`: a frame of 0.1 s every 0.1 s on the sensor's own
clock) and drives a real Modbus coil per machine (pymodbus). To overload it
deterministically on a shared 2-core machine, the service process spins a stated wall
time in each decided window (``BURN_S``: a stand-in for a slower computer or a heavier
pipeline — there is no other way to make 4 machines cost what ~1.5x a machine's capacity
costs without hundreds of senders; everything else is the real service). Skipped windows
(shedding levels 4-6) and parked machines (level 7) spin nothing, as they compute nothing.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from pdm.tools.soak import CHANNELS, FS, Sensor

REPO = Path(__file__).resolve().parents[2]
DEMO = REPO / "pipelines" / "demo.toml"

pytestmark = [pytest.mark.relay, pytest.mark.slow]

#: The service, with each decided window of the machines named in PDM_TEST_BURN (JSON
#: {machine: seconds}) spinning that long on the processing thread first.
BOOT = """
import json, os, sys, time
from pdm.service import runner
burn = json.loads(os.environ["PDM_TEST_BURN"])
real = runner.MachineRunner._window
def slow(self, wf, *args, **kwargs):
    end = time.perf_counter() + burn.get(self.machine, 0.0)
    while time.perf_counter() < end:
        pass
    return real(self, wf, *args, **kwargs)
runner.MachineRunner._window = slow
from pdm.cli import main
sys.exit(main(sys.argv[1:]))
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _pipeline(tmp: Path, i: int, relay_port: int) -> Path:
    text = DEMO.read_text()
    for old, new in (
        ('id = "demo-pump"', f'id = "ov-m{i}"'),
        ('id = "motor_de"', f'id = "ov-m{i}-de"'),
        ('path = "../models/demo-pump"', f'path = "{REPO}/models/demo-pump"'),
    ):
        assert old in text
        text = text.replace(old, new, 1)
    relay = f'relay = "modbus://127.0.0.1:{relay_port}?coil={i}&timeout=0.4&retries=1"\n'
    path = tmp / f"ov-m{i}.toml"
    path.write_text(text.replace("\n[alarms]\n", "\n[alarms]\n" + relay, 1))
    return path


def _signal(seconds: float, seed: int, fault: bool) -> np.ndarray:
    """Simulated vibration (the soak's): slight unbalance, plus an outer-race fault."""
    import dataclasses

    from pdm.sources.simulator import FaultSpec, SimSpec, Simulator

    faults = [FaultSpec("unbalance", 0.05)] + ([FaultSpec("bpfo", 0.5)] if fault else [])
    spec = dataclasses.replace(
        SimSpec(), fs=FS, duration_s=seconds, rpm=1480.0, channels=CHANNELS,
        faults=tuple(faults), start_time=0.0, seed=seed,
    )  # fmt: skip
    data = np.concatenate([c.data for c in Simulator(spec).chunks()])
    return np.ascontiguousarray(data, dtype=np.float32)


def _get(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=5) as r:
        body = r.read().decode()
    return json.loads(body) if body[:1] in "[{" else body


class _Rig:
    """``machines`` pipelines, their DAQs, the service; coils watched every 0.05 s."""

    def __init__(self, tmp: Path, modbus: Any, machines: int, burn: dict[str, float]) -> None:
        self.modbus = modbus
        self.ids = [f"ov-m{i}" for i in range(machines)]
        pipelines = [_pipeline(tmp, i, modbus.port) for i in range(machines)]
        self.stream, api = _free_port(), _free_port()
        self.api = f"http://127.0.0.1:{api}"
        self.db = tmp / "history.db"
        env = {**os.environ, "PDM_TEST_BURN": json.dumps(burn)}
        cmd = [
            sys.executable, "-c", BOOT, "run", *map(str, pipelines),
            "--listen", f"127.0.0.1:{self.stream}", "--api", f"127.0.0.1:{api}",
            "--store", f"sqlite:///{self.db}", "--data-dir", str(tmp / "data"), "--workers", "1",
        ]  # fmt: skip
        self.log = tmp / "service.log"
        with open(self.log, "wb") as out:
            self.proc = subprocess.Popen(
                cmd, stdout=out, stderr=subprocess.STDOUT, cwd=tmp, env=env, start_new_session=True
            )
        deadline = time.monotonic() + 120
        while True:
            assert self.proc.poll() is None, self.log.read_text()[-3000:]
            with contextlib.suppress(OSError, ValueError):
                if len(_get(self.api + "/status")) == machines:
                    break
            assert time.monotonic() < deadline, "the service did not start"
            time.sleep(0.3)
        healthy, faulty = _signal(20.0, 1, False), _signal(20.0, 2, True)
        self.sensors = [Sensor(f"{m}-de", self.stream, healthy, faulty) for m in self.ids]
        #: per coil: energised once, then seen dropped (and when, monotonic)
        self.energised = [False] * machines
        self.dropped: list[float | None] = [None] * machines
        self._stop = threading.Event()
        self._watch = threading.Thread(target=self._watch_coils, daemon=True)

    def start(self) -> _Rig:
        self._watch.start()
        for s in self.sensors:
            s.start()
        return self

    def _watch_coils(self) -> None:
        while not self._stop.wait(0.05):
            coils = self.modbus.coils()
            for i in range(len(self.ids)):
                if coils[i]:
                    self.energised[i] = True
                elif self.energised[i] and self.dropped[i] is None:
                    self.dropped[i] = time.monotonic()

    def status(self) -> dict[str, dict[str, Any]]:
        return {m["id"]: m for m in _get(self.api + "/status")}

    def metrics(self) -> dict[str, float]:
        out = {}
        for line in str(_get(self.api + "/metrics")).splitlines():
            if line and line[0] != "#":
                name, value = line.rsplit(" ", 1)
                # every series carries the appliance's id (docs/integration.md); read without it
                name = re.sub(r'appliance="[^"]*",?', "", name).replace("{}", "")
                out[name] = float(value)
        return out

    def stop(self) -> None:
        for s in self.sensors:
            s.stopping.set()
        self._stop.set()
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()


def _wait(cond: Any, timeout_s: float, what: str, rig: _Rig) -> None:
    deadline = time.monotonic() + timeout_s
    while not cond():
        assert time.monotonic() < deadline, f"{what}; service log:\n{rig.log.read_text()[-4000:]}"
        time.sleep(0.2)


def test_at_one_and_a_half_times_its_capacity_it_sheds_and_no_healthy_relay_drops(
    tmp_path: Path, modbus_server: Any
) -> None:
    """4 demo machines (50 windows/s) at 30 ms a window: 1.5 s of work a second. The
    worker sheds up to deciding one window in two or four — every sample still decided —
    the shedding shows in /status, /metrics and history, no healthy machine's relay drops
    or faults, and the machine that develops a fault still trips."""
    rig = _Rig(tmp_path, modbus_server, 4, dict.fromkeys([f"ov-m{i}" for i in range(4)], 0.03))
    try:
        rig.start()
        _wait(lambda: all(rig.energised), 60, "every relay energised", rig)
        top, lag, delay = 0, 0.0, 0.0

        def watch(cond: Any) -> Any:
            def check() -> bool:
                nonlocal top, lag, delay
                st = rig.status()
                for m in st.values():
                    top = max(top, m["shedding"]["level"])
                    lag = max(lag, m["lag_s"] or 0.0)
                    delay = max(delay, m["shedding"]["delay_s"] or 0.0)
                return bool(cond())

            return check

        _wait(watch(lambda: top >= 4), 60, "the worker sheds windows (level >= 4)", rig)
        rig.sensors[0].fault = True  # machine 0 develops an outer-race fault
        t_fault = time.monotonic()
        _wait(watch(lambda: rig.dropped[0] is not None), 90, "the faulty machine trips", rig)
        assert rig.dropped[0] is not None
        took = rig.dropped[0] - t_fault
        time.sleep(2.0)
        final = rig.status()
        # every machine's data decided within the stated time (--max-lag-s, 10 s) of its
        # samples' time: the DAQs' data waiting in TCP counts too (lag_s is by signal time)
        assert lag < 10.0 and delay < 10.0, (lag, delay)
        print(
            f"overload 1.5x: top level {top}, oldest wait {delay:.2f} s, lag {lag:.2f} s, "
            f"fault to trip {took:.1f} s, windows decided/shed "
            + ", ".join(
                f"{final[m]['windows']}/{final[m]['shedding']['shed']['windows']}" for m in rig.ids
            )
        )
        metrics = rig.metrics()
        assert metrics["pdm_shedding_level"] >= 4, final["ov-m1"]["shedding"]
        assert metrics['pdm_shed_total{what="windows"}'] > 0
        assert metrics["pdm_machines_parked"] == 0
        for m in rig.ids:  # each machine skipped its share, none starved
            assert final[m]["shedding"]["shed"]["windows"] > 0, final[m]
            assert final[m]["windows"] > 0
        assert final["ov-m0"]["state"] == "trip", final["ov-m0"]
        for m in rig.ids:
            assert not final[m]["appliance_fault"], final[m]
            assert final[m]["samples_dropped"] == 0, final[m]
        assert rig.dropped[1:] == [None, None, None]  # no healthy relay ever dropped
        assert modbus_server.coils()[:4] == [False, True, True, True]
    finally:
        rig.stop()
    from pdm.history import open_store, parse_store_url

    with open_store(parse_store_url(f"sqlite:///{rig.db}")) as store:
        log = store.log(kinds=("events",), limit=5000)
    shedding = [e for e in log if getattr(e, "type", "") == "shedding"]
    assert shedding and any("level 4 windows_1_in_4" in e.message for e in shedding)
    assert not [e for e in log if getattr(e, "type", "") == "backlog_dropped"]


def test_far_past_what_shedding_can_absorb_a_few_machines_are_parked_never_all(
    tmp_path: Path, modbus_server: Any
) -> None:
    """4 machines at 120 ms a window: 6 s of work a second, 1.5 s even deciding one window
    in four. The worker parks machines a step at a time (level 7) — their relays dropped,
    named in /status, /health, /metrics and history — until the rest fit; the machines it
    serves keep their relays and are decided within the stated time."""
    rig = _Rig(tmp_path, modbus_server, 4, dict.fromkeys([f"ov-m{i}" for i in range(4)], 0.12))
    try:
        rig.start()
        _wait(lambda: all(rig.energised), 60, "every relay energised", rig)

        def parked() -> set[str]:
            return {m for m, st in rig.status().items() if "parked" in st["appliance_fault"]}

        _wait(lambda: len(parked()) >= 1, 60, "machines parked", rig)
        time.sleep(12.0)  # settled: the parking has stopped (or come back a step)
        now = parked()
        st = rig.status()
        metrics = rig.metrics()
        health = json.loads(_health(rig))
    finally:
        rig.stop()
    print(
        f"overload 6x: parked {sorted(now)}; served: "
        + ", ".join(f"{m} lag {st[m]['lag_s']:.2f} s" for m in rig.ids if m not in now)
    )
    assert 1 <= len(now) <= 3, now  # never all: one machine is always served
    served = [i for i, m in enumerate(rig.ids) if m not in now]
    for i in served:
        assert rig.dropped[i] is None, rig.ids[i]  # a served machine's relay never dropped
        assert st[rig.ids[i]]["lag_s"] < 10.0 and st[rig.ids[i]]["samples_dropped"] == 0
    assert metrics["pdm_shedding_level"] == 7 and metrics["pdm_machines_parked"] == len(now)
    assert health["checks"]["shedding"]["ok"] and "machines_parked" in str(health["checks"])
    assert all(not health["checks"][m]["ok"] for m in now)  # a parked machine's check fails
    from pdm.history import open_store, parse_store_url

    with open_store(parse_store_url(f"sqlite:///{rig.db}")) as store:
        log = store.log(kinds=("events", "states"), limit=5000)
    parking = [e for e in log if getattr(e, "type", "") == "shedding" and "parked" in e.message]
    assert parking and max(json.loads(e.detail)["parked"] for e in parking) >= len(now)
    faults = {getattr(r, "machine", "") for r in log if getattr(r, "new", "") == "appliance_fault"}
    assert faults and faults <= set(rig.ids) and len(faults) < 4


def _health(rig: _Rig) -> str:
    try:
        with urllib.request.urlopen(rig.api + "/health", timeout=5) as r:
            return str(r.read().decode())
    except urllib.error.HTTPError as e:  # 503: a parked machine's check fails
        return str(e.read().decode())
