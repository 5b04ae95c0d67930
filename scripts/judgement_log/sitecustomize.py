"""A log of every diagnosis judgement and fresh read of a process (docs/benchmarks.md, "How
often an alerting machine is judged").

Put this folder first on ``PYTHONPATH`` and set ``PDM_JUDGEMENT_LOG`` (a path prefix): every
Python process started so appends to ``<prefix>.<pid>`` one line per event, seconds from its
start, and the engine (``id``):

* ``J t engine tick segment windows F|R`` — ``DiagnosisEngine.judge_state``: the engine's
  window, the averages' segment and windows, and whether a fresh read (``F``) or a routine
  one (``R``) asked for it;
* ``F t engine now`` — ``DiagnosisEngine.fresh_at`` (a window at or above alert);
* ``X t engine`` — ``DiagnosisEngine.reset`` (a stream reset).

Without ``PDM_JUDGEMENT_LOG`` this does nothing.
"""

from __future__ import annotations

import os

if os.environ.get("PDM_JUDGEMENT_LOG"):
    import time
    from typing import Any

    import pdm.diagnosis.engine as engine_mod

    _out = open(os.environ["PDM_JUDGEMENT_LOG"] + f".{os.getpid()}", "a", buffering=1)
    _t0 = time.monotonic()
    _fresh: list[int] = []
    _judge = engine_mod.DiagnosisEngine.judge_state
    _fresh_at = engine_mod.DiagnosisEngine.fresh_at
    _reset = engine_mod.DiagnosisEngine.reset

    def _judge_state(self: Any, avg: Any, baseline: Any = None) -> Any:
        kind = "F" if _fresh else "R"
        _out.write(
            f"J {time.monotonic() - _t0:.3f} {id(self)} {self._tick} {avg.segment} "
            f"{avg.count} {kind}\n"
        )
        return _judge(self, avg, baseline)

    def _logged_fresh_at(self: Any, verdict: Any, *, now: bool = False) -> Any:
        _out.write(f"F {time.monotonic() - _t0:.3f} {id(self)} {int(now)}\n")
        _fresh.append(1)
        try:
            return _fresh_at(self, verdict, now=now)
        finally:
            _fresh.pop()

    def _logged_reset(self: Any) -> None:
        _out.write(f"X {time.monotonic() - _t0:.3f} {id(self)}\n")
        _reset(self)

    engine_mod.DiagnosisEngine.judge_state = _judge_state  # type: ignore[method-assign]
    engine_mod.DiagnosisEngine.fresh_at = _logged_fresh_at  # type: ignore[method-assign]
    engine_mod.DiagnosisEngine.reset = _logged_reset  # type: ignore[method-assign]
