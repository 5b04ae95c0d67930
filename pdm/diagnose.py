"""``pdm-edge diagnose``: the diagnosis of recordings, no model needed.

An analyst with a recording and a bearing number: each file goes through the project's
window path (:class:`pdm.processing.FeatureStream`) with a window chosen for the
resolution the bearing's lines need (:func:`pdm.diagnosis.resolution.choose_window`;
``--window`` overrides it), the diagnosis engine averages every window, and its
judgement at the end of the recording is reported per channel.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt

from pdm.config import Pipeline
from pdm.diagnosis import Diagnosis
from pdm.diagnosis.resolution import MIN_WINDOW as RESOLUTION_MIN_WINDOW
from pdm.diagnosis.resolution import choose_window, target_bin_hz
from pdm.dsp.windows import MAX_ABS_G
from pdm.errors import ConfigError, InputError
from pdm.processing import (
    MIN_WINDOW,
    FeatureStream,
    longest_stretch,
    open_recording,
    too_short,
)

if TYPE_CHECKING:
    from pdm.diagnosis.report import Section

__all__ = ["FileDiagnosis", "diagnose_files", "estimate_rows", "sections", "summary_text"]


@dataclass(frozen=True)
class FileDiagnosis:
    """One recording's diagnosis and the averaged spectra it was judged on.

    Attributes
    ----------
    file : the path as given
    sample_rate_hz, window : the sample rate (Hz) and the window (samples) used
    windows : windows read (all of them; the engine averages those of the last segment)
    diagnosis : the machine's diagnosis and every channel's
    channels : channel names, the rows of the spectra
    df_hz : bin spacing of both spectra, Hz
    acc_g : (C, n_bins) averaged acceleration amplitude spectrum, g
    env_g : (C, n_env) averaged envelope amplitude spectrum, g (None without a bearing band)
    window_wanted : the window the bearing's lines want when the recording was too short for
        even the shortest window :func:`~pdm.diagnosis.resolution.choose_window` takes on
        resolution's account (and ``window`` was shortened below it to fit), else 0
    """

    file: str
    sample_rate_hz: float
    window: int
    windows: int
    diagnosis: Diagnosis
    channels: tuple[str, ...]
    df_hz: float
    acc_g: npt.NDArray[np.float64]
    env_g: npt.NDArray[np.float64] | None
    window_wanted: int = 0

    def rows(self) -> list[dict[str, object]]:
        """One JSON-ready object per channel (``pdm-edge diagnose --json``); each also says
        the machine's diagnosis, its confidence and the deciding channel and bearing."""
        d = self.diagnosis
        machine = {
            "machine_diagnosis": d.label,
            "machine_confidence": round(d.confidence, 3),
            "machine_channel": d.channel,
            "machine_bearing": d.bearing or None,
        }
        head = {
            "file": self.file,
            "sample_rate_hz": self.sample_rate_hz,
            "window_samples": self.window,
            "window_wanted_samples": self.window_wanted or None,
        }
        if not d.channels:  # nothing judged: one object that says why, not none
            return [{**head, "channel": None, "evidence": [d.note], **machine}]
        return [{**head, **ch.as_dict(), **machine} for ch in d.channels]


def estimate_rows(path: str | os.PathLike[str]) -> int | None:
    """About how many data rows a CSV recording holds, from its size and its first lines
    (None for a compressed file: its size says little). Only sizes the window."""
    p = os.fspath(path)
    if p.endswith(".gz"):
        return None
    try:
        size = os.path.getsize(p)
        with open(p, "rb") as f:
            head = f.read(65536)
    except OSError:
        return None
    lines = head.splitlines()[1:-1]  # the header, and a line the read may have cut
    if len(lines) < 10:
        return len(lines)
    per_row = sum(len(x) + 1 for x in lines) / len(lines)
    return int(size / per_row)


def _nominal_rpm(pipeline: Pipeline, where: str) -> float:
    speed = pipeline.machine.speed
    if speed is None:
        raise ConfigError(
            f"{where}: diagnose needs the shaft speed: give --rpm (or a pipeline with "
            "[machine.speed])"
        )
    if speed.fixed_rpm is not None:
        return float(speed.fixed_rpm)
    return float(speed.nominal)


def diagnose_files(
    files: Sequence[str],
    pipeline: Pipeline,
    *,
    window: int | None = None,
    fs: float | None = None,
    start_time: float | None = None,
    display: bool = False,
    progress: bool = False,
) -> Iterator[FileDiagnosis]:
    """Diagnose each recording (see the module docstring); yields one result per file.
    ``progress``: a bar of seconds read on stderr when it is a terminal.

    Raises :class:`ConfigError` without a shaft speed, :class:`InputError` for a recording
    shorter than one window.
    """
    for path in files:
        chosen: int | None = None  # the window chosen again from the samples read
        while True:
            rec, pl = open_recording(path, pipeline, fs=fs, start_time=start_time)
            with rec:
                rate = rec.sample_rate_hz
                rpm = _nominal_rpm(pl, pl.source_path or "command line")
                bearings = [pl.bearing_for(col) for col in pl.columns]
                multiples = [b.defect_multiples() for b in bearings if b is not None]
                # The finest resolution any channel's bearing needs.
                mult = min(multiples, key=lambda m: target_bin_hz(rpm / 60.0, m), default=None)
                n = window or chosen or choose_window(rate, rpm / 60.0, mult, estimate_rows(path))
                if n != pl.acquisition.window_samples:
                    pl = pl.with_window(n)
                stream = FeatureStream(pl, rate, full_spectrum=display)
                from pdm.progress import estimate_seconds, seconds_bar, through

                total = estimate_seconds(path, rate) if progress else None
                with seconds_bar(os.path.basename(path), total, disable=not progress) as bar:
                    for _wf in stream.feed(through(rec.chunks(), bar)):
                        pass
                engine = stream.engine
                assert engine is not None
                if stream.windows == 0:
                    # The window was sized from an estimate of the rows: size it from the
                    # samples read, and read again if that gives a shorter one.
                    got = longest_stretch(stream)
                    if window is None and chosen is None and got >= MIN_WINDOW:
                        chosen = choose_window(rate, rpm / 60.0, mult, got)
                        if chosen < n:
                            continue
                    raise InputError(too_short(path, stream))
                if stream.invalid_windows == stream.windows:
                    raise InputError(
                        f"{path}: every one of its {stream.windows} windows holds a sample that "
                        f"is not a measurement (not finite, or beyond ±{MAX_ABS_G:g} g: a unit "
                        "or scale read wrong?); nothing to diagnose"
                    )
                d = engine.judge()
                avg = engine.average
                acc = (
                    np.sqrt(avg.acc_power())
                    if avg.acc is not None
                    else np.zeros((len(pl.columns), 0))
                )
                env_p = avg.env_power()
                result = FileDiagnosis(
                    file=str(path),
                    sample_rate_hz=rate,
                    window=n,
                    windows=stream.windows,
                    diagnosis=d,
                    channels=tuple(pl.columns),
                    df_hz=avg.df,
                    acc_g=acc,
                    env_g=None if env_p is None else np.sqrt(env_p),
                    window_wanted=0
                    if window is not None or n >= RESOLUTION_MIN_WINDOW
                    else choose_window(rate, rpm / 60.0, mult),
                )
            yield result
            break


def summary_text(r: FileDiagnosis) -> str:
    """The human-readable report of one file (``pdm-edge diagnose`` without ``--json``)."""
    d = r.diagnosis
    head = (
        f"{r.file}: {d.label} (confidence {d.confidence:.2f}"
        + (f", {d.channel}" if d.channel else "")
        + (f", bearing {d.bearing}" if d.channel and d.bearing else "")
        + f"); {r.windows} windows of {r.window} samples at {r.sample_rate_hz:g} Hz "
        f"({r.sample_rate_hz / r.window:.3g} Hz bins)"
    )
    out = [head]
    if r.window_wanted:
        want = r.window_wanted
        out.append(
            f"  the recording is too short for the lines: {r.window}-sample windows fit it, the "
            f"bearing's lines want {want} ({want / r.sample_rate_hz:.3g} s) and several of them"
        )
    if not d.channels and d.note:  # nothing judged: say why
        out.append(f"  {d.note}")
    for ch in d.channels:
        speed = f"{ch.shaft_speed_rpm:.1f} r/min" if math.isfinite(ch.shaft_speed_rpm) else "?"
        what = (
            f"transmitted from {ch.transmitted_from}"
            if ch.transmitted_from
            else f"{ch.label} (confidence {ch.confidence:.2f})"
        )
        out.append(f"  {ch.channel}: {what} at {speed}")
        out += [f"    {line}" for line in ch.reasons]
    return "\n".join(out)


def sections(r: FileDiagnosis, name: Callable[[str], str] | None = None) -> list[Section]:
    """The HTML page's sections of one file (:mod:`pdm.diagnosis.report`), one per channel;
    ``name`` turns a channel into its title (default: the channel itself)."""
    from pdm.diagnosis.report import Section

    return [
        Section(
            title=f"{r.file} — {name(ch.channel) if name else ch.channel}",
            meta=(
                f"{r.sample_rate_hz:g} Hz, {r.window}-sample windows "
                f"({r.sample_rate_hz / r.window:.3g} Hz bins), {ch.windows} windows averaged "
                f"({ch.k_eff:.1f} independent), {ch.shaft_speed_rpm:.1f} r/min"
            ),
            diagnosis=ch,
            df_hz=r.df_hz,
            acc_g=r.acc_g[i],
            env_g=None if r.env_g is None else r.env_g[i],
        )
        for i, ch in enumerate(r.diagnosis.channels)
    ]
