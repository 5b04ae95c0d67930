"""Issue 22, as a measurement: one service round's extraction (``extract_many``) over a fleet
at mixed speeds, the feature extractor of an older checkout against this one's, in one process.

    git worktree add --detach /tmp/pdm-old 305d269
    .venv/bin/python scripts/extract_many_old_new.py /tmp/pdm-old [ROUNDS]

The older ``pdm/dsp/features.py`` is loaded beside this one under another module name; every
module it imports (kernels, envelope, spectrum) is this checkout's, so compare only checkouts
whose other ``pdm/dsp`` files are the same (``git diff OLD -- pdm/dsp`` shows features.py
alone). Three rounds of 8 machines, one (3, 16384) window of bench windows each
(:func:`pdm.tools.bench_dsp.windows` at the machine's speed), 2–6 kHz envelope band and a
1–10 kHz RMS band, bearing 6205 on every channel:

* ``mixed``: 990, 1480, 1780 and 2960 r/min fixed, and the same four searched (±10 %);
* ``fixed4``: the four speeds fixed, two machines each;
* ``same``: eight at 1480 r/min fixed (the case that shared a pass before, too).

Old, new and a bare ``rfft`` of the same (8, 3, 16384) array are timed in turn, ROUNDS rounds
(default 25) of 6 calls each, in CPU time (``time.process_time``: other work on a shared
machine moves it less than wall time); printed are the medians per window and the median of
the per-round old/new ratios.
"""

from __future__ import annotations

import importlib.util
import statistics
import sys
import time
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import scipy.fft as sfft

from pdm.dsp import features as new
from pdm.dsp.bearings import lookup_bearing
from pdm.tools.bench_dsp import windows

FS, N = 25600.0, 16384
SPEEDS = (990.0, 1480.0, 1780.0, 2960.0)
CALLS = 6


def _load_old(checkout: Path) -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "old_features", checkout / "pdm" / "dsp" / "features.py"
    )
    if spec is None or spec.loader is None:
        raise SystemExit(f"no pdm/dsp/features.py in {checkout}")
    mod = importlib.util.module_from_spec(spec)
    sys.modules["old_features"] = mod  # its dataclasses look their module up
    spec.loader.exec_module(mod)
    return mod


def _fleet(mod: ModuleType, kind: str) -> list[Any]:
    chans = [mod.ChannelSpec(f"{a}_g", lookup_bearing("6205")) for a in "xyz"]
    kw: dict[str, Any] = {
        "envelope_band_hz": (2000.0, 6000.0),
        "bands": [("high", 1000.0, 10000.0)],
    }
    if kind == "same":
        return [mod.FeatureExtractor(FS, N, chans, rpm=1480.0, **kw) for _ in range(8)]
    fixed = [mod.FeatureExtractor(FS, N, chans, rpm=r, **kw) for r in SPEEDS]
    if kind == "fixed4":
        return fixed + [mod.FeatureExtractor(FS, N, chans, rpm=r, **kw) for r in SPEEDS]
    searched = [
        mod.FeatureExtractor(FS, N, chans, rpm_range=(0.9 * r, 1.1 * r), **kw) for r in SPEEDS
    ]
    return fixed + searched


def measure(old: ModuleType, kind: str, rounds: int) -> str:
    fleets = {"old": _fleet(old, kind), "new": _fleet(new, kind)}
    rpms = [ex.rpm or 0.5 * sum(ex.rpm_range) for ex in fleets["new"]]
    pool = np.stack([windows(8, rpm=r, seed=j) for j, r in enumerate(rpms)], axis=1)
    mods = {"old": old, "new": new}
    times: dict[str, list[float]] = {"old": [], "new": [], "rfft": []}
    c = 0
    for r in range(rounds + 1):  # the first round warms up
        for name in times:
            t = time.process_time()
            for _ in range(CALLS):
                xs = pool[c % len(pool)]
                c += 1
                if name == "rfft":
                    sfft.rfft(xs, axis=-1)
                else:
                    jobs = [(ex, [xs[j]]) for j, ex in enumerate(fleets[name])]
                    mods[name].extract_many(jobs)
            if r:
                times[name].append((time.process_time() - t) / CALLS / 8 * 1e6)
    med = {k: statistics.median(v) for k, v in times.items()}
    ratio = statistics.median(o / n for o, n in zip(times["old"], times["new"], strict=True))
    return (
        f"{kind:7s} old {med['old']:6.1f}  new {med['new']:6.1f}  rfft {med['rfft']:5.1f} "
        f"µs CPU per window; old/new {ratio:.2f}"
    )


def main() -> None:
    if len(sys.argv) < 2:
        raise SystemExit(__doc__)
    old = _load_old(Path(sys.argv[1]))
    rounds = int(sys.argv[2]) if len(sys.argv) > 2 else 25
    for kind in ("mixed", "fixed4", "same"):
        print(measure(old, kind, rounds), flush=True)


if __name__ == "__main__":
    main()
