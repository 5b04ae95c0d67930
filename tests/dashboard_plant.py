"""A plant of several machines for the dashboard tests: one in each state, data arriving now.

Written through the project's own stores (a real SQLite history and a real alarm state
store, as the service writes them), not mocked: pipelines are copies of
``pipelines/demo.toml`` with other ids and names; :class:`Plant` keeps writing feature and
score rows for the running machines once a second (as a service would), so their tiles stay
fresh for as long as a test looks at them.

=====================  ======================================================================
machine                state
=====================  ======================================================================
``bfp-1``               TRIP since 7 min, unacknowledged, outer-race defect
``cwp-2``               DANGER since 20 min, acknowledged by M. Keller
``fan-3``               ALERT since 3 min
``cmp-4``               OK
``cnv-5``               TRIP, but its data stopped 2 h ago (stale: the last known state)
``agi-7``               OK with a sensor fault on its only sensor
``mix-6``               a pipeline that never had data
=====================  ======================================================================
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

import numpy as np

from pdm.alarms.state import Ack, MachineAlarm
from pdm.history.records import Event, FeatureRows, ScoreRows, StateChange
from pdm.history.sqlite import SqliteStore
from pdm.supervision.store import AlarmStore

REPO = Path(__file__).resolve().parents[1]
NS = 1_000_000_000
MIN = 60 * NS

#: id → (name, state, since, ack by, fresh, sensor fault)
MACHINES: dict[str, tuple[str, str, int, str | None, bool, bool]] = {
    "bfp-1": ("Boiler feed pump 1", "trip", 7 * MIN, None, True, False),
    "cwp-2": ("Cooling water pump 2", "danger", 20 * MIN, "M. Keller", True, False),
    "fan-3": ("ID fan 3", "alert", 3 * MIN, None, True, False),
    "cmp-4": ("Air compressor 4", "ok", 0, None, True, False),
    "cnv-5": ("Conveyor drive 5", "trip", 150 * MIN, None, False, False),
    "agi-7": ("Agitator 7", "ok", 0, None, True, True),
}
NEVER = {"mix-6": "Mixer 6"}
REASONS = {
    "trip": "anomaly score 4.36e+03 ≥ trip threshold 10, corroborated by diagnosis "
    "bearing_outer_race (confidence 1.00) (5 of the last 8 windows)",
    "danger": "anomaly score 2.2 ≥ danger threshold 1.5 (5 of the last 8 windows)",
    "alert": "velocity 4.61 mm/s in ISO zone C (5 of the last 8 windows)",
}


def write_pipelines(folder: Path) -> Path:
    """Copies of the demo pipeline, one per machine (the model path made absolute)."""
    folder.mkdir(parents=True, exist_ok=True)
    text = (REPO / "pipelines" / "demo.toml").read_text()
    text = text.replace('path = "../models/demo-pump"', f'path = "{REPO / "models" / "demo-pump"}"')
    for mid, name in {**{m: v[0] for m, v in MACHINES.items()}, **NEVER}.items():
        body = text.replace('id = "demo-pump"', f'id = "{mid}"').replace(
            'name = "Demo pump, simulated"', f'name = "{name}"'
        )
        (folder / f"{mid}.toml").write_text(body)
    return folder


def _rows(mid: str, t_ns: int, window: int, state: str) -> list[object]:
    vel = {"ok": 1.9, "alert": 4.6, "danger": 3.2, "trip": 2.3}[state]
    score = {"ok": 0.4, "alert": 0.8, "danger": 2.2, "trip": 4360.0}[state]
    names = ("rms_g", "velocity_rms_mm_s", "env_bpfo_g")
    chans = ("x_g", "y_g")
    values = np.array([[0.05, vel, 0.09 if state == "trip" else 0.001]] * 2)
    zone = "C" if vel > 2.8 else "B"
    return [
        FeatureRows(
            mid,
            np.array([t_ns, t_ns], dtype=np.int64),
            np.array([window, window], dtype=np.int64),
            ("motor_de", "motor_de"),
            chans,
            names,
            values,
            (zone, zone),
            np.array([True, True]),
        ),
        ScoreRows(
            mid,
            "bcd1cdf65bfc",
            np.array([t_ns], dtype=np.int64),
            np.array([window], dtype=np.int64),
            np.array([score]),
            ("danger" if score >= 1.5 else "ok",),
            ("bearing_outer_race" if state == "trip" else "",),
            ("",),
        ),
    ]


class Plant:
    """The plant's data directory and pipelines; :meth:`start` keeps the running machines'
    data coming once a second until :meth:`stop`."""

    def __init__(self, root: Path) -> None:
        self.data_dir = root / "data"
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.pipelines = write_pipelines(root / "pipelines")
        self.db = self.data_dir / "history.db"
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._window = 1000
        now = time.time_ns()
        recs: list[object] = []
        with AlarmStore(self.data_dir / "alarms.db") as alarms:
            for mid, (_name, state, ago, ack_by, fresh, fault) in MACHINES.items():
                since = now - ago
                last = now if fresh else now - 120 * MIN
                recs += _rows(mid, min(since, last) - 10 * NS, 1, "ok")
                recs += _rows(mid, last, 2, state)
                if state != "ok":
                    recs.append(StateChange(mid, since, "ok", state, REASONS[state], score=3.0))
                ack = None
                if ack_by:
                    t_ack = since + 2 * MIN
                    ack = Ack(ack_by, t_ack, "bearing temperature checked, running to the stop")
                    recs.append(
                        Event(
                            mid,
                            t_ack,
                            "acknowledge",
                            "info",
                            f"acknowledged by {ack_by}: {state} acknowledged by {ack_by}; it "
                            "ends when the machine has been clear for 25 windows",
                            detail=ack.comment,
                        )
                    )
                if fault:
                    recs.append(
                        StateChange(
                            mid,
                            now - 2 * MIN,
                            "ok",
                            "sensor_fault",
                            "flat signal",
                            sensor="motor_de",
                        )
                    )
                alarms.save(
                    mid,
                    MachineAlarm(
                        state,
                        since if state != "ok" else 0,
                        (),
                        0,
                        ack,
                        {},
                        {},
                        REASONS.get(state, ""),
                    ),
                    off_windows=25,
                    now=True,
                )
        with SqliteStore(self.db) as store:
            store.write(recs)  # type: ignore[arg-type]

    def _run(self) -> None:
        with SqliteStore(self.db) as store:
            while not self._stop.wait(1.0):
                self._window += 1
                now = time.time_ns()
                recs: list[object] = []
                for mid, (_n, state, _a, _b, fresh, _f) in MACHINES.items():
                    if fresh:
                        recs += _rows(mid, now, self._window, state)
                store.write(recs)  # type: ignore[arg-type]

    def escalate(self, mid: str, state: str) -> None:
        """``mid`` goes to ``state`` now, as the service would record it: the transition in
        history, the new state in the alarm state store."""
        now = time.time_ns()
        old = MACHINES[mid][1]
        reason = REASONS[state]
        with SqliteStore(self.db) as store:
            store.write([StateChange(mid, now, old, state, reason, score=2.2)])
        with AlarmStore(self.data_dir / "alarms.db") as alarms:
            alarms.save(
                mid,
                MachineAlarm(state, now, (), 0, None, {}, {}, reason),
                off_windows=25,
                now=True,
            )

    def start(self) -> Plant:
        self._thread = threading.Thread(target=self._run, name="plant", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)
