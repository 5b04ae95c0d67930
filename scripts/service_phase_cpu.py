"""CPU per window of the whole paced service, two checkouts side by side.

One rig of the bench (``pdm.tools.bench_run._Rig``: the models, signals, webhook receiver
and Modbus relay, built once), then paced phases of the bench's mixed fleet
(``_Rig.phase(fleet(M), paced=True, seconds=S, warmup=8, faults=True)``, one worker) with
the service started from each checkout in turn (``PYTHONPATH`` set to it for the service
and the sender), alternating A, B, A, B, ... Per phase: the service tree's CPU µs per
window processed (``/proc``, as ``run_sensors_per_core`` reads it), whether it held, the
decision latency from the sensor's clock (p50, p99). Then the medians per checkout.

    .venv/bin/python scripts/service_phase_cpu.py M REPEATS A_CHECKOUT B_CHECKOUT [SECONDS]

(``B_CHECKOUT`` ``-``: one checkout only; a checkout may be a ``PYTHONPATH`` of several
folders, e.g. ``scripts/pool_profile:.`` with ``PDM_PROF_OUT`` set for a CPU profile.)

Run it alone on the machine (the service and the sender take both cores' share).
"""

from __future__ import annotations

import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

from pdm.tools import bench_run as br

_snaps: list[dict[str, tuple[float, float]]] = []
_cpu_s = br._cpu_s


def _threads(pid: int) -> dict[str, tuple[float, float]]:
    """User and system CPU s of the service tree's threads, summed by thread name."""
    tick = os.sysconf("SC_CLK_TCK")
    out: dict[str, tuple[float, float]] = {}
    for p in br._tree(pid):
        for task in Path(f"/proc/{p}/task").glob("*"):
            try:
                name = (task / "comm").read_text().strip()
                f = (task / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            u, s = out.get(name, (0.0, 0.0))
            out[name] = (u + int(f[11]) / tick, s + int(f[12]) / tick)
    return out


def _cpu_and_threads(pid: int) -> float:
    _snaps.append(_threads(pid))
    return _cpu_s(pid)


br._cpu_s = _cpu_and_threads  # the phase reads it at the interval's start and end


def main() -> int:
    if len(sys.argv) < 5:
        print(__doc__)
        return 2
    machines, repeats = int(sys.argv[1]), int(sys.argv[2])
    checkouts = [p for p in sys.argv[3:5] if p != "-"]  # PYTHONPATH values
    seconds = float(sys.argv[5]) if len(sys.argv) > 5 else 15.0
    results: dict[str, list[dict[str, float]]] = {c: [] for c in checkouts}
    with tempfile.TemporaryDirectory() as tmp:
        rig = br._Rig(Path(tmp), quick=False, workers=1)
        try:
            for rep in range(repeats):
                for c in checkouts if rep % 2 == 0 else checkouts[::-1]:
                    os.environ["PYTHONPATH"] = c
                    t = time.strftime("%H:%M:%S", time.gmtime())
                    r = rig.phase(
                        br.fleet(machines), paced=True, seconds=seconds, warmup=8.0, faults=True
                    )
                    cpu = r["service_cores"] / max(r["windows_per_s"], 1e-9) * 1e6
                    a, b = _snaps[-2], _snaps[-1]
                    n = r["windows_per_s"] * seconds / 1e6  # windows in the interval / 1e6
                    per = {
                        k: (round((b[k][0] - a.get(k, (0, 0))[0]) / n),
                            round((b[k][1] - a.get(k, (0, 0))[1]) / n))
                        for k in b
                    }  # fmt: skip
                    per = {k: v for k, v in per.items() if sum(v) > 20}
                    row = {
                        "cpu_us": cpu,
                        "p50": r["e2e_ms_p50"] or float("nan"),
                        "p99": r["e2e_ms_p99"] or float("nan"),
                        "held": float(bool(r.get("held"))),
                    }
                    results[c].append(row)
                    print(
                        f"{t} {c}: {cpu:.0f} us/window, {r['windows_per_s']:.1f} windows/s "
                        f"of {r['windows_per_s_due']:.1f}, cores {r['service_cores']:.3f}, "
                        f"held {r.get('held')}, e2e p50 {row['p50']:.1f} p99 {row['p99']:.1f} ms, "
                        f"load {os.getloadavg()[0]:.1f}; threads (user, sys us/window) {per}",
                        flush=True,
                    )
        finally:
            rig.close()
    for c, rows in results.items():
        med = {k: statistics.median(r[k] for r in rows) for k in ("cpu_us", "p50", "p99")}
        print(
            f"{c}: median {med['cpu_us']:.0f} us/window, p50 {med['p50']:.1f} ms, "
            f"p99 {med['p99']:.1f} ms; runs {[round(r['cpu_us']) for r in rows]}"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
