"""CPU-time profile of a service's pool thread (docs/benchmarks.md, "The service's CPU per
window outside the DSP").

Put this folder first on ``PYTHONPATH`` and set ``PDM_PROF_OUT`` (a file): every Python
process started so imports it, and a service process then runs its pool thread
(``RunnerPool._run``) under ``cProfile`` on ``time.thread_time`` — CPU time, so a thread
waiting for a core is not counted busy, as a sampling profiler counts it on a loaded machine.
The profile kept covers ``PDM_PROF_START`` to ``PDM_PROF_STOP`` seconds (default 15 and 30)
after the thread starts; it is written to ``PDM_PROF_OUT`` with the windows processed
meanwhile in ``PDM_PROF_OUT.windows``. Without ``PDM_PROF_OUT`` this does nothing.
"""

from __future__ import annotations

import os

if os.environ.get("PDM_PROF_OUT"):
    import cProfile
    import time
    from typing import Any

    import pdm.service.runner as runner_mod

    _OUT = os.environ["PDM_PROF_OUT"]
    _START = float(os.environ.get("PDM_PROF_START", "15"))
    _STOP = float(os.environ.get("PDM_PROF_STOP", "30"))
    _run = runner_mod.RunnerPool._run
    _sample = runner_mod.RunnerPool._sample_load
    _state: dict[str, Any] = {}

    def _profiled_run(self: Any) -> None:
        _state["t0"] = time.monotonic()
        _run(self)

    def _sample_and_profile(self: Any, now: float, runners: list[Any]) -> None:
        # Called every half second on the pool thread: the profiler starts and stops there.
        _sample(self, now, runners)
        elapsed = now - _state.get("t0", now)
        if "profile" not in _state and elapsed >= _START:
            _state["profile"] = prof = cProfile.Profile(time.thread_time)
            _state["windows"] = sum(r.stats.windows for r in runners)
            prof.enable()
        elif elapsed >= _STOP and _state.get("profile") is not None:
            prof = _state["profile"]
            prof.disable()
            prof.dump_stats(_OUT)
            with open(_OUT + ".windows", "w") as f:
                f.write(str(sum(r.stats.windows for r in runners) - _state["windows"]))
            _state["profile"] = None

    runner_mod.RunnerPool._run = _profiled_run  # type: ignore[method-assign]
    runner_mod.RunnerPool._sample_load = _sample_and_profile  # type: ignore[method-assign]
