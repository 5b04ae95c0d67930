"""Issue 22, as a measurement: the extraction's fixed cost per pass against its cost per
window, on the service fleet's own machines, for the small passes the service makes.

    cd <checkout> && PYTHONPATH=<checkout> .venv/bin/python scripts/extract_pass_cost.py [REPS]
    ... scripts/extract_pass_cost.py --old OLD_CHECKOUT [REPS]  # old and new, in turn
    ... scripts/extract_pass_cost.py --profile [PASSES]    # cProfile of 1-window passes
    ... scripts/extract_pass_cost.py --dump FILE.npz       # every array of a set of passes
    ... scripts/extract_pass_cost.py --compare A.npz B.npz # byte for byte

The machines are the bench's mixed fleet (:func:`pdm.tools.bench_run.fleet`: two tri-axial
sensors at a fixed speed, ``fixed``; one searched ±10 %, ``searched``), each built from the
pipeline file the service loads (:func:`~pdm.tools.bench_run.pipeline_toml`,
:func:`pdm.processing.build_extractor`) and fed its own simulated signal
(:func:`~pdm.tools.bench_run.machine_signal`, faults included). A pass of ``k`` windows is
one :func:`pdm.dsp.features.extract_many` of the first ``k`` machines of one shape, one
window each — what a service round holding ``k`` windows of that shape gives it (``k = 1``
is the paced service's usual round). Each pass is timed in this thread's CPU time
(``time.thread_time``), REPS times (default 60) in turn with the other sizes; printed are
the medians per pass and per window, and per shape a least-squares line
``cost(k) = fixed + k · per_window`` (over k = 1, 2, 4: a service round holds at most four),
and the 1-window pass warm: the fourth of four back to back (the others' code and data have
left the caches when a pass follows passes of other sizes, as in a service, where the scoring,
alarms and history of other machines run between two passes).

``--old`` loads an older checkout's ``pdm/dsp`` extraction modules (kernels, spectrum,
envelope, features) beside this one's under the package name ``old_dsp`` (their
``pdm.dsp`` imports of each other rewritten; bearings, iso and windows are this checkout's),
builds each machine's extractor with both, and times old and new passes in turn, pass by
pass, so that the shared machine's noise falls on both alike.

``--profile`` runs 1-window passes of each shape under cProfile with ``thread_time`` as its
clock and prints the Python-level calls by their own time. ``--dump`` writes every array a
set of passes hands out (features, stats, spectrum, envelope parts, speed, band) — the
fleet's passes of 1, 2, 4 and 8 windows, a batch of one machine, a window with a NaN, the
automatic band, an unknown speed, two passes in a row — for ``--compare`` against another
checkout's dump.
"""

from __future__ import annotations

import cProfile
import importlib.abc
import importlib.machinery
import importlib.util
import io
import pstats
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

import pdm.processing
from pdm.config import load_pipeline
from pdm.dsp import features as new_features
from pdm.dsp.bearings import lookup_bearing
from pdm.dsp.features import ChannelSpec, FeatureExtractor, FeatureFrame, extract_many
from pdm.processing import build_extractor
from pdm.tools import bench_run as br

SIZES = (1, 2, 4, 8)
MACHINES = 16  # the fleet's first: 8 of each shape, at each of the four speeds twice
OLD_MODULES = ("kernels", "spectrum", "envelope", "features")


class _OldDsp(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Imports ``old_dsp.<module>`` from an older checkout's ``pdm/dsp/<module>.py``, its
    imports of :data:`OLD_MODULES` pointed at ``old_dsp`` (compiled from the source: the
    checkout's own bytecode is neither read nor written)."""

    def __init__(self, checkout: Path) -> None:
        self.folder = checkout / "pdm" / "dsp"

    def find_spec(self, name: str, path: Any = None, target: Any = None) -> Any:
        if not name.startswith("old_dsp.") or name[8:] not in OLD_MODULES:
            return None
        origin = str(self.folder / f"{name[8:]}.py")
        return importlib.machinery.ModuleSpec(name, self, origin=origin)

    def create_module(self, spec: Any) -> None:
        return None

    def exec_module(self, module: Any) -> None:
        src = Path(module.__spec__.origin).read_text()
        for mod in OLD_MODULES:
            src = src.replace(f"from pdm.dsp.{mod} import", f"from old_dsp.{mod} import")
        module.__file__ = module.__spec__.origin
        exec(compile(src, module.__file__, "exec"), module.__dict__)


def load_old(checkout: Path) -> Any:
    """The older checkout's ``features`` module (see the module doc)."""
    pkg = importlib.util.module_from_spec(importlib.machinery.ModuleSpec("old_dsp", None))
    pkg.__path__ = []
    sys.modules["old_dsp"] = pkg
    sys.meta_path.insert(0, _OldDsp(checkout))
    import old_dsp.features  # type: ignore[import-not-found]

    return old_dsp.features


def fleet_extractors(mod: Any = None) -> dict[str, list[tuple[FeatureExtractor, np.ndarray]]]:
    """Per shape (``fixed``, ``searched``), its machines' extractors and signals, in fleet
    order; the extractors of features module ``mod`` (default: this checkout's)."""
    if mod is not None:  # build_extractor with the other module's classes
        saved = pdm.processing.FeatureExtractor, pdm.processing.ChannelSpec
        pdm.processing.FeatureExtractor, pdm.processing.ChannelSpec = (
            mod.FeatureExtractor,
            mod.ChannelSpec,
        )
        try:
            return fleet_extractors()
        finally:
            pdm.processing.FeatureExtractor, pdm.processing.ChannelSpec = saved
    out: dict[str, list[tuple[FeatureExtractor, np.ndarray]]] = {"fixed": [], "searched": []}
    cache: dict[tuple[str, float, bool], np.ndarray] = {}
    with tempfile.TemporaryDirectory(prefix="pass-cost-") as tmp_s:
        tmp = Path(tmp_s)
        for m in br.fleet(MACHINES):
            path = tmp / f"{m.id}.toml"
            path.write_text(br.pipeline_toml(m, tmp / "no-model", "http://127.0.0.1:9/", "log://"))
            ex = build_extractor(load_pipeline(path), br.FS)
            key = (m.shape.name, m.rpm, m.faulty)
            if key not in cache:
                cache[key] = br.machine_signal(m.shape, m.rpm, m.faulty, 2.0, 2)
            name = "searched" if m.shape.speed_searched else "fixed"
            out[name].append((ex, cache[key]))
    return out


def window(signal: np.ndarray, n: int, j: int) -> np.ndarray:
    """Window ``j`` (hops of ``n/2``) of a (samples, channels) signal: (channels, n) float32."""
    start = (j * (n // 2)) % (signal.shape[0] - n)
    return np.ascontiguousarray(signal[start : start + n].T)


def passes(machines: list[tuple[FeatureExtractor, np.ndarray]], k: int, j: int) -> list[Any]:
    """The jobs of a pass of ``k`` windows: the first ``k`` machines, window ``j`` each."""
    return [(ex, [window(sig, ex.n, j + i)]) for i, (ex, sig) in enumerate(machines[:k])]


def measure(reps: int, old: Any = None) -> None:
    mods = {"new": new_features} if old is None else {"old": old, "new": new_features}
    fleets = {name: fleet_extractors(None if name == "new" else m) for name, m in mods.items()}
    for shape in ("fixed", "searched"):
        jobs = {
            (name, k): [passes(fleets[name][shape], k, j) for j in range(4)]
            for name in mods
            for k in SIZES
        }
        for key, jb in jobs.items():  # warm: plans, kernels, caches
            mods[key[0]].extract_many(jb[0])
        times: dict[tuple[str, int], list[float]] = {key: [] for key in jobs}
        for r in range(reps):
            for key, jb in jobs.items():
                run = mods[key[0]].extract_many
                t = time.thread_time()
                run(jb[r % 4])
                times[key].append(time.thread_time() - t)
        # The same 1-window pass back to back, its code and data warm: what the cold
        # caches of a pass among other work cost is the difference.
        warm: dict[str, list[float]] = {name: [] for name in mods}
        for r in range(reps):
            for name in mods:
                jb = jobs[(name, 1)][r % 4]
                for i in range(4):
                    t = time.thread_time()
                    mods[name].extract_many(jb)
                    if i == 3:
                        warm[name].append(time.thread_time() - t)
        ch = len(fleets["new"][shape][0][0].channels)
        print(f"{shape} ({ch} channels a window, {reps} reps, thread CPU µs, median):")
        for name in mods:
            med = {k: statistics.median(times[(name, k)]) * 1e6 for k in SIZES}
            per_window, fixed = np.polyfit([1.0, 2.0, 4.0], [med[1], med[2], med[4]], 1)
            cells = "  ".join(f"k={k} {med[k]:7.1f} ({med[k] / k:5.1f}/w)" for k in SIZES)
            print(f"  {name}: {cells}")
            print(
                f"  {name}: fit k=1..4: fixed {fixed:6.1f} per pass + {per_window:6.1f} per window;"
                f" k=1 warm (4th of 4 back to back) {statistics.median(warm[name]) * 1e6:6.1f}"
            )
        if old is not None:
            ratios = "  ".join(
                f"k={k} "
                + f"{statistics.median(o / n for o, n in zip(times[('old', k)], times[('new', k)], strict=True)):.3f}"
                for k in SIZES
            )
            print(f"  old/new per pass (median of the pass-by-pass ratios): {ratios}", flush=True)


def profile(n_passes: int) -> None:
    fl = fleet_extractors()
    for shape, machines in fl.items():
        jobs = [passes(machines, 1, j) for j in range(4)]
        for jb in jobs:
            extract_many(jb)
        prof = cProfile.Profile(time.thread_time)
        prof.enable()
        for i in range(n_passes):
            extract_many(jobs[i % 4])
        prof.disable()
        s = io.StringIO()
        st = pstats.Stats(prof, stream=s)
        st.sort_stats("tottime").print_stats(int(__import__("os").environ.get("TOP", "25")))
        total = st.total_tt  # type: ignore[attr-defined]
        print(f"== {shape}: {n_passes} passes of 1 window, {total / n_passes * 1e6:.1f} µs each")
        print(s.getvalue())


def _arrays(tag: str, frames: list[FeatureFrame], into: dict[str, np.ndarray]) -> None:
    for w, f in enumerate(frames):
        p = f"{tag}/{w}/"
        into[p + "values"] = np.array(f.values)
        into[p + "stats"] = np.array(f.stats)
        into[p + "spectrum"] = np.array(f.spectrum)
        into[p + "env_parts"] = np.array(f.env_parts)
        into[p + "scalars"] = np.array(
            [f.shaft_speed_rpm, *f.envelope_band_hz, *f.envelope_band_key, float(f.valid)]
        )


def dump(path: str) -> None:
    fl = fleet_extractors()
    out: dict[str, np.ndarray] = {}
    kept: list[tuple[str, list[FeatureFrame]]] = []  # all frames, read after every pass ran
    for shape, machines in fl.items():
        for k in SIZES:
            for j in (0, 3):
                for i, frames in enumerate(extract_many(passes(machines, k, j))):
                    kept.append((f"{shape}/k{k}/j{j}/m{i}", frames))
        ex, sig = machines[1]
        kept.append((f"{shape}/batch3", ex.extract_batch([window(sig, ex.n, j) for j in range(3)])))
        bad = window(sig, ex.n, 5)
        bad[1, 100] = np.nan
        kept.append((f"{shape}/nan", ex.extract_windows([window(sig, ex.n, 4), bad])))
        mixed = [(machines[i][0], [window(machines[i][1], ex.n, 6)]) for i in (0, 1, 0)]
        for i, frames in enumerate(extract_many(mixed)):
            kept.append((f"{shape}/repeat/m{i}", frames))
    sig = fl["searched"][0][1]
    chans = [ChannelSpec(f"c{a}", lookup_bearing("6310")) for a in "xyz"]
    auto = FeatureExtractor(br.FS, 16384, chans, rpm_range=(891.0, 1089.0))
    kept.append(("auto", auto.extract_batch([window(sig, 16384, j) for j in range(2)])))
    unknown = FeatureExtractor(br.FS, 16384, chans[:1] * 3, envelope_band_hz=(1500.0, 5000.0))
    kept.append(("unknown", unknown.extract_batch([window(sig, 16384, j) for j in range(2)])))
    for tag, frames in kept:
        _arrays(tag, frames, out)
    np.savez(path, **out)
    print(f"{path}: {len(out)} arrays")


def compare(a: str, b: str) -> None:
    x, y = np.load(a), np.load(b)
    if sorted(x.files) != sorted(y.files):
        raise SystemExit(f"different arrays: {sorted(set(x.files) ^ set(y.files))[:10]}")
    bad = [
        k
        for k in x.files
        if x[k].dtype != y[k].dtype or x[k].shape != y[k].shape or x[k].tobytes() != y[k].tobytes()
    ]
    print(f"{len(x.files)} arrays, {len(bad)} differ" + (f": {bad[:10]}" if bad else ""))
    if bad:
        raise SystemExit(1)


def main() -> None:
    args = sys.argv[1:]
    if args[:1] == ["--profile"]:
        profile(int(args[1]) if len(args) > 1 else 400)
    elif args[:1] == ["--dump"] and len(args) == 2:
        dump(args[1])
    elif args[:1] == ["--compare"] and len(args) == 3:
        compare(args[1], args[2])
    elif args[:1] == ["--old"] and len(args) in (2, 3):
        measure(int(args[2]) if len(args) > 2 else 60, load_old(Path(args[1])))
    elif not args or args[0].isdigit():
        measure(int(args[0]) if args else 60)
    else:
        raise SystemExit(__doc__)


if __name__ == "__main__":
    main()
