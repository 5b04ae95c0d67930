"""The CWRU tables of docs/diagnosis.md §9: reproduce them with

    .venv/bin/python scripts/cwru_diagnosis_figures.py [CWRU_DIR]

(CWRU_DIR defaults to /work/shared/datasets/cwru; read its README.) Nothing here chooses a
threshold: the recordings are only measured.

1. ``pdm-edge diagnose`` (the window it chooses) on every recording, three ways: the pipeline
   ``pipelines/cwru_drive_end.toml`` (drive end 6205, fan end 6203, two sensors arbitrated)
   with its fixed 2–5 kHz band and with ``band_hz = "auto"``, and the quick flags
   ``--nominal-rpm 1797 --bearing 6205`` (every column read as a 6205, all at one location,
   the automatic band).
2. The segment diagnosis as ``score`` and the service see it: every window's ``diagnosis``
   (the engine's over the recent windows) with the pipeline's windows, the share of windows
   that name the right fault, say ``bearing_uncertain``, say ``unknown`` or name a wrong one.
"""

from __future__ import annotations

import collections
import sys
from pathlib import Path

from pdm.config import Pipeline, load_pipeline, pipeline_from_flags
from pdm.diagnose import diagnose_files
from pdm.processing import FeatureStream, open_recording

STEMS = {
    "de12k": ["normal_0hp_part1of2_from48k", "IR007_0hp", "OR007at6_0hp", "B007_0hp"],
    "de48k": ["normal_0hp_part1of2", "IR007_0hp", "OR007at6_0hp", "B007_0hp"],
}
TRUTH = {"normal": "", "IR007": "bearing_inner_race", "OR007at6": "bearing_outer_race",
         "B007": "bearing_ball"}  # fmt: skip


def short_name(stem: str) -> str:
    return stem.split("_")[0]


def outcome(stem: str, label: str) -> str:
    """right / uncertain / unknown / wrong, as docs/diagnosis.md counts them."""
    truth = TRUTH[short_name(stem)]
    if not truth:  # healthy: right unless a fault is named
        return "right" if label == "unknown" else "wrong"
    if label == truth:
        return "right"
    if label in ("bearing_uncertain", "unknown"):
        return label.removeprefix("bearing_")
    return "wrong"


def short(label: str) -> str:
    return label.replace("bearing_", "").replace("_race", " race")


def pipeline(band: str, window: int | None = None, overlap: float | None = None) -> Pipeline:
    d = load_pipeline("pipelines/cwru_drive_end.toml").model_dump()
    if band == "auto":
        d["envelope"]["band_hz"] = "auto"
    if window:
        d["acquisition"]["window_samples"] = window
    if overlap:
        d["acquisition"]["overlap"] = overlap
    return Pipeline.model_validate(d)


def diagnose_table(folder: Path) -> None:
    ways = {
        "pipeline, 2–5 kHz": pipeline("fixed"),
        "pipeline, auto": pipeline("auto"),
        "quick flags": pipeline_from_flags(nominal_rpm=1797.0, bearing="6205"),
    }
    print("| rate | recording | run | window | DE_g | FE_g | BA_g | machine | outcome |")
    print("|---|---|---|---|---|---|---|---|---|")
    tally: dict[str, collections.Counter[str]] = collections.defaultdict(collections.Counter)
    for rate, stems in STEMS.items():
        for stem in stems:
            for way, pl in ways.items():
                (r,) = diagnose_files([str(folder / rate / f"{stem}.csv")], pl)
                ch = {c.channel: c for c in r.diagnosis.channels}
                cells = []
                for name in ("DE_g", "FE_g", "BA_g"):
                    c = ch.get(name)
                    if c is None:
                        cells.append("—")
                    elif c.transmission is not None:
                        cells.append(f"from {c.transmission.source}")
                    else:
                        cells.append(f"{short(c.label)} ({c.confidence:.2f})")
                d = r.diagnosis
                o = outcome(stem, d.label)
                tally[way][f"{short_name(stem)}:{o}"] += 1
                print(f"| {rate[2:]} | {short_name(stem)} | {way} | {r.window} | "
                      f"{' | '.join(cells)} | **{short(d.label)}** ({d.confidence:.2f}), "
                      f"{d.channel or '—'} | {o} |")  # fmt: skip
    print()
    for way, t in tally.items():
        print(f"* {way}: " + ", ".join(f"{k} {v}" for k, v in sorted(t.items())))


def segment_table(folder: Path) -> None:
    print("| rate | band | window, overlap | recording | windows | right | uncertain | unknown "
          "| wrong (labels) |")  # fmt: skip
    print("|---|---|---|---|---|---|---|---|---|")
    shapes = (("de12k", 4096, 0.9375), ("de12k", 16384, 0.5),
              ("de48k", 16384, 0.9375), ("de48k", 4096, 0.5))  # fmt: skip
    for rate, window, overlap in shapes:
        for band in ("fixed", "auto"):
            for stem in STEMS[rate]:
                rec, pl = open_recording(folder / rate / f"{stem}.csv",
                                         pipeline(band, window, overlap))  # fmt: skip
                with rec:
                    stream = FeatureStream(pl, rec.sample_rate_hz)
                    labels = [wf.diagnosis.label for wf in stream.feed(rec.chunks())
                              if wf.diagnosis is not None]  # fmt: skip
                counts = collections.Counter(outcome(stem, lab) for lab in labels)
                wrong = collections.Counter(
                    short(lab) for lab in labels if outcome(stem, lab) == "wrong"
                )
                n = len(labels)

                def pct(k: str, counts: collections.Counter[str] = counts, n: int = n) -> str:
                    return f"{100 * counts[k] / n:.0f} %"

                detail = ", ".join(f"{k} {100 * v / n:.0f} %" for k, v in wrong.most_common())
                print(f"| {rate[2:]} | {'2–5 kHz' if band == 'fixed' else 'auto'} | "
                      f"{window}, {overlap:g} | {short_name(stem)} | {n} | {pct('right')} | "
                      f"{pct('uncertain')} | {pct('unknown')} | {pct('wrong')}"
                      f"{f' ({detail})' if detail else ''} |")  # fmt: skip


def main() -> None:
    folder = Path(sys.argv[1] if len(sys.argv) > 1 else "/work/shared/datasets/cwru")
    diagnose_table(folder)
    print()
    segment_table(folder)


if __name__ == "__main__":
    main()
