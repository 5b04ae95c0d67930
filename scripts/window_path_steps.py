"""The window path's sub-steps on thread CPU, and what a routine judgement costs.

Runs ``scripts/pool_path_cpu.py`` (the service's pool path in process: the bench's mixed
fleet, frames decoded, offered and taken in ``RunnerPool._round``) with named functions
wrapped in ``time.thread_time`` timers, and prints each one's calls and µs a call after the
script's own line (warm-up windows included: the calls, not the windows, are the unit).
``--judgements``: the averages every judgement of the run was made on
(``DiagnosisEngine.judge_state``'s arguments) are kept and judged again, 7 passes over all
of them, and the median µs a judgement printed — the same averages whichever checkout's
rules judge them, so two checkouts compare like for like. docs/benchmarks.md ("Where the
window path's "score" stage goes") has the figures.

    cd <checkout> && PYTHONPATH=<checkout> .venv/bin/python <this file> \
        MACHINES FRAMES [RIG_DIR] [--judgements] [--wrap module:qualname ...]

A function imported by name into another module is wrapped where it is called from
(``pdm.supervision.engine:step``, not ``pdm.alarms.state:step``).
"""

from __future__ import annotations

import importlib
import os
import statistics
import sys
import time
from collections.abc import Callable
from typing import Any

# What the score and alarms stages spend, by default.
WRAPPED = (
    "pdm.scoring.runtime:WindowScorer.score",
    "pdm.scoring.runtime:Model.score",
    "pdm.scoring.vector:FeatureVectorizer.vector",
    "pdm.scoring.quiet:QuietScreen.__call__",
    "pdm.processing:WindowFeatures.named_bearing_defect",
    "pdm.diagnosis.engine:DiagnosisEngine.drain",
    "pdm.diagnosis.average:SpectrumAverage.add",
    "pdm.diagnosis.engine:DiagnosisEngine.judge_state",
    "pdm.supervision.engine:AlarmEngine.process",
    "pdm.supervision.engine:check_windows",
    "pdm.supervision.engine:window_result",
    "pdm.supervision.engine:step",
    "pdm.supervision.store:AlarmStore.save",
    "pdm.history.recorder:Recorder.records",
)

spent: dict[str, float] = {}
calls: dict[str, int] = {}


def wrap(spec: str) -> None:
    """Time ``module:qualname`` (a function or a method) wherever it is looked up from."""
    module, qual = spec.split(":")
    owner: Any = importlib.import_module(module)
    *path, name = qual.split(".")
    for part in path:
        owner = getattr(owner, part)
    inner: Callable[..., Any] = getattr(owner, name)

    def timed(*args: Any, **kwargs: Any) -> Any:
        t = time.thread_time()
        try:
            return inner(*args, **kwargs)
        finally:
            spent[qual] = spent.get(qual, 0.0) + time.thread_time() - t
            calls[qual] = calls.get(qual, 0) + 1

    setattr(owner, name, timed)


def main() -> None:
    args = sys.argv[1:]
    judgements = "--judgements" in args
    specs = [a for i, a in enumerate(args) if i and args[i - 1] == "--wrap"]
    rest = [a for i, a in enumerate(args) if a not in ("--judgements", "--wrap") and a not in specs]
    import pdm.diagnosis.engine as engine_mod

    judge = engine_mod.DiagnosisEngine.judge_state
    kept: list[tuple[Any, Any, Any]] = []
    if judgements:

        def keep(self: Any, avg: Any, baseline: Any = None) -> Any:
            kept.append((self, avg, baseline))
            return judge(self, avg, baseline)

        engine_mod.DiagnosisEngine.judge_state = keep  # type: ignore[method-assign]
    for spec in specs or WRAPPED:
        wrap(spec)
    import pool_path_cpu  # scripts/ is this file's folder: first on sys.path

    sys.argv = ["pool_path_cpu.py", *rest]
    pool_path_cpu.main()
    for qual in spent:
        print(f"{qual}: {calls[qual]} calls, {spent[qual] / calls[qual] * 1e6:.1f} µs a call")
    if kept:
        passes = []
        for _ in range(7):
            t = time.thread_time()
            for engine, avg, baseline in kept:
                judge(engine, avg, baseline)
            passes.append((time.thread_time() - t) / len(kept))
        print(
            f"judgements {len(kept)} (at windows {sorted({a.count for _e, a, _b in kept})} "
            f"of their segments): judged again, {statistics.median(passes) * 1e6:.0f} µs a "
            f"judgement (median of 7 passes: {[round(p * 1e6) for p in passes]})"
        )


if __name__ == "__main__":
    main()
    os._exit(0)  # (the runners' webhook threads and the writer need no orderly stop here)
