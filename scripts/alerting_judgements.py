"""How often the paced service judges its machines' diagnoses, alerting or not.

Runs the bench's paced phase (``pdm.tools.bench_run``: the mixed fleet of MACHINES, faults
injected, 8 s warm-up and 25 s measured, one worker) with ``scripts/judgement_log`` on
``PYTHONPATH``, then reads the service's log: per 15-s interval the judgements (asked by a
fresh read or a routine one) and the fresh reads (windows at or above alert), and per
machine that read a fresh diagnosis the windows (engine ticks) its judgements were made at.
docs/benchmarks.md ("How often an alerting machine is judged") has the figures.

    cd <checkout> && PYTHONPATH=<checkout> .venv/bin/python scripts/alerting_judgements.py [MACHINES]
"""

from __future__ import annotations

import collections
import os
import sys
import tempfile
from pathlib import Path


def main() -> None:
    machines = int(sys.argv[1]) if len(sys.argv) > 1 else 32
    here = Path(__file__).resolve().parent
    tmp = Path(tempfile.mkdtemp(prefix="judgements-"))
    logs_dir = Path(tempfile.mkdtemp(prefix="judgement-log-"))
    prefix = str(logs_dir / "log")
    os.environ["PDM_JUDGEMENT_LOG"] = prefix
    os.environ["PYTHONPATH"] = os.pathsep.join(
        [str(here / "judgement_log"), os.environ.get("PYTHONPATH", "")]
    )
    from pdm.tools import bench_run as br

    rig = br._Rig(tmp, quick=False, workers=1)
    try:
        rig.phase(br.fleet(machines), paced=True, seconds=25, warmup=8, faults=True)
    finally:
        rig.close()
    logs = [p for p in logs_dir.glob("log.*") if p.stat().st_size]
    # The service's process is the one that judged.
    ev = [line.split() for line in max(logs, key=lambda p: p.stat().st_size).open()]
    end = max(float(e[1]) for e in ev)
    for a in range(10, int(end) - 14, 5):
        b = a + 15
        js = [e for e in ev if e[0] == "J" and a <= float(e[1]) < b]
        fs = [e for e in ev if e[0] == "F" and a <= float(e[1]) < b]
        jf = sum(e[6] == "F" for e in js)
        print(
            f"{a:3d}-{b:3d} s: judgements {len(js):3d} (fresh {jf:3d}, routine {len(js) - jf:3d}),"
            f" fresh reads {len(fs):3d} (first of a run {sum(e[3] == '1' for e in fs):3d})"
        )
    reads = collections.Counter(e[2] for e in ev if e[0] == "F")
    print("resets", sum(e[0] == "X" for e in ev))
    for k, engine in enumerate(dict.fromkeys(e[2] for e in ev if e[0] in "JF")):
        made = [
            (int(e[3]), int(e[4]), int(e[5]), e[6]) for e in ev if e[0] == "J" and e[2] == engine
        ]
        print(
            f"engine {k:2d}: fresh reads {reads[engine]:3d}, judgements (tick, segment, windows, by)",
            made,
        )


if __name__ == "__main__":
    main()
