"""Plain language for what a person reads: channel and feature names, numbers, times, reasons.

Pure functions, no Streamlit: the dashboard pages, the commissioning report and the
command line's plots all name things the same way —

* a channel by where its sensor sits and which way it points: ``Motor DE · horizontal``
  (from the pipeline's sensor ``location`` and the channel's ``axis``), never ``x_g``;
* a feature by what it measures, with its unit: ``BPFO envelope, g``, ``velocity RMS, mm/s``,
  never ``env_bpfo_g``;
* a number to the digits that mean something: a score as ``4,360`` (not ``4.36e+03``),
  a velocity in mm/s to two decimals, a time as ``13:49:07`` or a span as ``7 min``;
* a diagnosis as words: ``outer-race bearing defect``, not ``bearing_outer_race``.
"""

from __future__ import annotations

import datetime as dt
import math
import re
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pdm.config import Pipeline

__all__ = [
    "DIAGNOSIS_WORDS",
    "channel_label",
    "clock",
    "diagnosis_words",
    "duration",
    "feature_label",
    "fmt_g",
    "fmt_hz",
    "fmt_mm_s",
    "fmt_num",
    "fmt_score",
    "location_label",
    "plain_reason",
    "since_text",
    "state_word",
]

NS = 1_000_000_000

#: Diagnosis labels (:data:`pdm.diagnosis.DIAGNOSES`) in words.
DIAGNOSIS_WORDS: dict[str, str] = {
    "bearing_outer_race": "outer-race bearing defect",
    "bearing_inner_race": "inner-race bearing defect",
    "bearing_ball": "rolling-element (ball) defect",
    "bearing_cage": "bearing cage defect",
    "bearing_uncertain": "bearing defect, type uncertain",
    "unbalance": "unbalance",
    "misalignment": "misalignment",
    "looseness": "mechanical looseness",
    "unknown": "no fault named",
}

#: Bearing defect keys in upper case, as analysts write them.
_DEFECTS = {"bpfo": "BPFO", "bpfi": "BPFI", "bsf": "BSF", "ftf": "FTF"}

# Sensor locations as a maintenance planner writes them: "Motor DE", "Pump NDE".
_PLACES = (
    (re.compile(r"\bnon[- ]drive[- ]end\b", re.I), "NDE"),
    (re.compile(r"\bdrive[- ]end\b", re.I), "DE"),
    (re.compile(r"\bfan[- ]end\b", re.I), "NDE (fan end)"),
)


def location_label(location: str | None, fallback: str = "") -> str:
    """``"motor drive end"`` → ``"Motor DE"``; ``"motor fan end, 12 o'clock"`` →
    ``"Motor NDE (fan end), 12 o'clock"``; ``fallback`` when there is no location."""
    text = (location or "").strip()
    if not text:
        return fallback
    for pattern, short in _PLACES:
        text = pattern.sub(short, text)
    return text[:1].upper() + text[1:]


def channel_label(pipeline: Pipeline | None, column: str) -> str:
    """Where a channel measures and which way: ``"Motor DE · horizontal"``.

    Falls back to the column name when the pipeline does not know the column.
    """
    if pipeline is None:
        return column
    try:
        sensor, ch = pipeline.channel(column)
    except KeyError:
        return column
    where = location_label(sensor.location, sensor.id.replace("_", " "))
    return f"{where} · {ch.axis}"


_FEATURES: dict[str, str] = {
    "mean_g": "mean acceleration (offset), g",
    "rms_g": "RMS acceleration, g",
    "peak_g": "peak acceleration, g",
    "p2p_g": "peak-to-peak acceleration, g",
    "crest": "crest factor",
    "kurtosis": "kurtosis",
    "skewness": "skewness",
    "velocity_rms_mm_s": "velocity RMS (ISO 10816-3), mm/s",
    "score": "anomaly score",
    "shaft_speed_rpm": "shaft speed, r/min",
}


def _order(text: str) -> str:
    return text.replace("_", ".").rstrip("x") + "×"


def feature_label(name: str, pipeline: Pipeline | None = None) -> str:
    """What a feature measures, with its unit: ``env_bpfo_g`` → ``"BPFO envelope, g"``,
    ``order_1x_g`` → ``"1× shaft, g"``, ``band_high_rms_g`` → ``"band high (1–10 kHz) RMS, g"``."""
    if name in _FEATURES:
        return _FEATURES[name]
    m = re.fullmatch(r"env_(bpfo|bpfi|bsf|ftf)(?:_(\d+)x)?_g", name)
    if m:
        k = f"{m.group(2)}×" if m.group(2) else ""
        return f"{k}{_DEFECTS[m.group(1)]} envelope, g"
    m = re.fullmatch(r"order_(\d+(?:_\d+)?x)_g", name)
    if m:
        return f"{_order(m.group(1))} shaft, g"
    m = re.fullmatch(r"band_(.+)_rms_g", name)
    if m:
        band = m.group(1)
        span = ""
        if pipeline is not None:
            for b in pipeline.bands:
                if b.name == band:
                    span = f" ({fmt_hz(b.low_hz)}–{fmt_hz(b.high_hz)})"
        return f"band {band.replace('_', ' ')}{span} RMS, g"
    # Unknown: at least the unit, read from the suffix.
    for suffix, unit in (("_mm_s", "mm/s"), ("_hz", "Hz"), ("_g", "g")):
        if name.endswith(suffix):
            return f"{name[: -len(suffix)].replace('_', ' ')}, {unit}"
    return name.replace("_", " ")


# --- numbers -------------------------------------------------------------------------------


def fmt_num(x: float | None, digits: int = 3) -> str:
    """``digits`` significant digits, thousands separated, never in e-notation; ``–`` for
    None or NaN. ``4362.7`` → ``"4,360"``; ``0.04321`` → ``"0.0432"``; ``1.0`` → ``"1"``."""
    if x is None or not math.isfinite(x):
        return "–"
    if x == 0:
        return "0"
    mag = math.floor(math.log10(abs(x)))
    decimals = max(0, digits - 1 - mag)
    rounded = round(x, -mag + digits - 1)
    if decimals == 0:
        return f"{rounded:,.0f}"
    text = f"{rounded:,.{decimals}f}"
    return text.rstrip("0").rstrip(".") if "." in text else text


def fmt_score(x: float | None) -> str:
    """An anomaly score (1 = the alert threshold): three significant digits."""
    return fmt_num(x, 3)


def fmt_mm_s(x: float | None) -> str:
    """A velocity in mm/s: two decimals (the ISO zone boundaries have one or two)."""
    return "–" if x is None or not math.isfinite(x) else f"{x:.2f} mm/s"


def fmt_g(x: float | None) -> str:
    """An acceleration in g, three significant digits (mg resolution of the sensors)."""
    return "–" if x is None or not math.isfinite(x) else f"{fmt_num(x, 3)} g"


def fmt_hz(x: float | None) -> str:
    """A frequency: ``88.4 Hz``, ``1.2 kHz`` from 1 kHz up, 3 significant digits."""
    if x is None or not math.isfinite(x):
        return "–"
    if abs(x) >= 1000:
        return f"{fmt_num(x / 1000, 3)} kHz"
    return f"{fmt_num(x, 3)} Hz"


# --- times ---------------------------------------------------------------------------------


def _local(t_ns: int) -> dt.datetime:
    return dt.datetime.fromtimestamp(t_ns / NS, tz=dt.UTC).astimezone()


def clock(t_ns: int, now_ns: int | None = None) -> str:
    """A time as a person on the floor reads it, in the dashboard host's time zone:
    ``13:49`` today, ``12 Mar 13:49`` another day of this year, ``2025-12-31 13:49`` before."""
    t = _local(t_ns)
    now = _local(now_ns) if now_ns is not None else dt.datetime.now().astimezone()
    if t.date() == now.date():
        return t.strftime("%H:%M")
    if t.year == now.year:
        return t.strftime("%d %b %H:%M").lstrip("0")
    return t.strftime("%Y-%m-%d %H:%M")


def duration(seconds: float | None) -> str:
    """``45 s``, ``7 min``, ``3 h 12 min``, ``5 d 4 h``; ``–`` for None."""
    if seconds is None or not math.isfinite(seconds):
        return "–"
    s = max(0.0, seconds)
    if s < 90:
        return f"{s:.0f} s"
    m = round(s / 60)
    if m < 60:
        return f"{m} min"
    h, m = divmod(m, 60)
    if h < 48:
        return f"{h} h {m} min" if m else f"{h} h"
    d, h = divmod(h, 24)
    return f"{d} d {h} h" if h else f"{d} d"


def since_text(t_ns: int | None, now_ns: int) -> str:
    """``since 13:49 (7 min)``; '' when unknown."""
    if not t_ns:
        return ""
    return f"since {clock(t_ns, now_ns)} ({duration((now_ns - t_ns) / NS)})"


def state_word(state: str) -> str:
    """``sensor_fault`` → ``SENSOR FAULT``."""
    return state.replace("_", " ").upper()


# --- reasons -------------------------------------------------------------------------------

_FLOAT_E = re.compile(r"(?<![\w.])[-+]?\d+(?:\.\d+)?e[-+]?\d+(?![\w.])", re.I)
_LONG_FLOAT = re.compile(r"(?<![\w.])[-+]?\d+\.\d{4,}(?![\w.])")
_DIAG = re.compile(r"\b(" + "|".join(sorted(DIAGNOSIS_WORDS, key=len, reverse=True)) + r")\b")


def diagnosis_words(label: str | None) -> str:
    """A diagnosis label in words ('' for none)."""
    if not label:
        return ""
    return DIAGNOSIS_WORDS.get(label, label.replace("_", " "))


def plain_reason(text: str, *, short: bool = False) -> str:
    """An alarm reason as a person reads it: numbers without e-notation or long decimals,
    diagnoses in words; ``short`` also drops the on-delay count ``(5 of the last 8 windows)``."""
    out = _FLOAT_E.sub(lambda m: fmt_num(float(m.group(0))), text)
    out = _LONG_FLOAT.sub(lambda m: fmt_num(float(m.group(0))), out)
    out = _DIAG.sub(lambda m: DIAGNOSIS_WORDS[m.group(1)], out)
    if short:
        out = re.sub(r"\s*\(\d+ of the last \d+ windows\)", "", out)
    return out.strip()
