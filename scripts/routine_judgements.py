"""The diagnosis judgements a healthy machine's decisions carry, for the bench fleet.

``schedule``: the routine judgements the scorer's named-defect question makes in each window
of a segment, summed over the fleet's first N machine ids started together (a service start):
the code as it is against the schedule before the machine phase and the k_eff screen (every
due point at window 2^k, judged). ``scorer``: two machines of the fleet (one per shape, 1480
r/min) scored window by window as the service scores them (only alerting windows explained),
once with a card as the bench trains it (no diagnosis baseline: the named-defect alert is
off) and once with the baseline ``pdm-edge train`` writes: the judgements made in the scorer,
at which windows, and their CPU ms (``scorer`` runs on older checkouts too:
``PYTHONPATH=OLD``, cwd OLD). docs/benchmarks.md ("The decision's tail and the routine
judgements") has the figures.

    .venv/bin/python scripts/routine_judgements.py schedule [MACHINES] [WINDOWS]
    .venv/bin/python scripts/routine_judgements.py scorer [SECONDS]
"""

from __future__ import annotations

import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

from pdm.config import load_pipeline
from pdm.diagnosis import BaselineBuilder, DiagnosisEngine
from pdm.diagnosis.verdict import MIN_INDEPENDENT_WINDOWS
from pdm.dsp.features import ChannelSpec
from pdm.processing import FeatureStream
from pdm.scoring.runtime import Model, WindowScorer
from pdm.scoring.train import TrainingSet, train
from pdm.scoring.vector import MODEL_FEATURES, FeatureVectorizer, vector_names
from pdm.sources.base import Chunk
from pdm.tools import bench_run as br


def due_windows(phase: int, screened: bool, windows: int) -> list[int]:
    """The windows of a segment whose routine judgement the named-defect question makes."""
    shape = br.SHAPES[0]
    e = DiagnosisEngine(br.FS, shape.window, shape.hop, [ChannelSpec("x_g", None)], phase=phase)
    out, since = [], 0
    for c in range(1, windows + 1):
        since += 1
        if c == 1 or e._doubling(c) or since >= e.judge_every:
            since = 0
            if not screened or e.average.k_eff(c) >= MIN_INDEPENDENT_WINDOWS:
                out.append(c)
    return out


def schedule(machines: int, windows: int) -> None:
    from pdm.diagnosis import routine_phase

    ids = [m.id for m in br.fleet(machines)]
    for name, phase, screened in (
        ("before", lambda _m: 0, False),
        ("now", routine_phase, True),
    ):
        per = Counter(c for m in ids for c in due_windows(phase(m), screened, windows))
        late = max((v for c, v in per.items() if c >= 32), default=0)
        print(
            f"{name}: {sum(per.values()) / len(ids):.1f} judgements a machine in {windows} "
            f"windows; at most {max(per.values())} machines in one window ({late} from the "
            f"32nd on); busiest windows {per.most_common(4)}"
        )


def _chunks(x: np.ndarray, columns: tuple[str, ...]) -> Any:
    for i in range(0, len(x), 2560):
        yield Chunk(x[i : i + 2560].astype(np.float64), br.FS, i / br.FS, columns)


def scorer(seconds: float) -> None:
    judged: list[float] = []
    judge_state = DiagnosisEngine.judge_state

    def counted(self: DiagnosisEngine, *args: Any) -> Any:
        t = time.process_time()
        try:
            return judge_state(self, *args)
        finally:
            judged.append(time.process_time() - t)

    DiagnosisEngine.judge_state = counted  # type: ignore[method-assign]
    tmp = Path(tempfile.mkdtemp(prefix="routine-judgements-"))
    for shape in br.SHAPES:
        m = br.Machine(0, shape, 1480.0, False)
        for with_baseline in (False, True):
            out = tmp / f"model-{shape.name}-{int(with_baseline)}"
            f = tmp / f"{out.name}.toml"
            f.write_text(br.pipeline_toml(m, out, "http://127.0.0.1:9/unused", "log:"))
            pl = load_pipeline(f)
            cols = tuple(pl.columns)
            x = br.machine_signal(shape, m.rpm, False, 60.0, seed=1)
            frames = [w.features for w in FeatureStream(pl, br.FS).feed(_chunks(x, cols))]
            frames = [fr for fr in frames if fr.valid]
            bb = BaselineBuilder(pl.acquisition.window_samples, pl.columns)
            for fr in frames:
                bb.add(fr, br.FS)
            names = vector_names(pl.columns, frames[0].names, MODEL_FEATURES)
            rows = FeatureVectorizer(names, pl.columns, frames[0].names).matrix(frames)
            ts = TrainingSet(pl, br.FS, tuple(names), [rows], [{"file": "sim", "windows": len(rows)}],
                             bb.result() if with_baseline else None)  # fmt: skip
            train(ts, out, detector="gmm", alerts_per_week=1.0, holdout=0.3, force=True)
            model = Model.load(out, pl, br.FS)
            stream = FeatureStream(pl, br.FS, batch=1)
            sc = WindowScorer(model, pl.columns, stream.extractor.names, explain_all=False)
            judged.clear()
            at, n = [], 0
            y = br.machine_signal(shape, m.rpm, False, seconds, seed=2)
            for ch in _chunks(y, cols):
                for wf in stream.push(ch):
                    k = len(judged)
                    sc.score([wf])
                    n += 1
                    at += [(wf.window.index + 1, round(t * 1e3, 2)) for t in judged[k:]]
            card = "baseline" if with_baseline else "no baseline (as the bench trains)"
            print(f"{shape.name}, card with {card}: {n} healthy windows, {len(at)} judgements "
                  f"in the scorer, {sum(t for _w, t in at):.1f} ms CPU; (window, ms): {at}")  # fmt: skip


if __name__ == "__main__":
    what = sys.argv[1] if len(sys.argv) > 1 else "schedule"
    if what == "schedule":
        schedule(int(sys.argv[2]) if len(sys.argv) > 2 else 160,
                 int(sys.argv[3]) if len(sys.argv) > 3 else 1024)  # fmt: skip
    else:
        scorer(float(sys.argv[2]) if len(sys.argv) > 2 else 100.0)
