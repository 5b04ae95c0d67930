"""The spectra a commissioning engineer diagnoses from, recomputed from the raw signal.

History keeps one spectrum a minute (``[history] spectra_every_s``), so the stored spectrum
of a short recording is the one of its first window — before the fault. What an analyst
needs is the spectrum of the window that *decided* (the one that raised the highest alarm,
else the window with the highest score), and the diagnosis engine's averaged spectra. Both
are recomputed here from the recording itself, through the project's own window path
(:class:`pdm.processing.FeatureStream`, :func:`pdm.diagnose.diagnose_files`), not stored:
a recording is at hand whenever a commissioning report is made, and storing every
window's spectrum would cost ~13 KB per channel and window for the few that matter.

The same is done for an alarm capture (the raw windows kept at every transition) on the
machine page: :func:`capture_spectra`.

``python -m pdm.dashboard.analysis RECORDING PIPELINE WINDOW OUT_DIR [--model-free]`` runs
:func:`analyse` in a child process (the dashboard's commissioning page bounds its time
and kills it with the page, as it does the replay); it writes ``analysis.npz`` (arrays,
no pickle) and ``analysis.json`` next to each other.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from pdm.config import Pipeline, load_pipeline
from pdm.dashboard.labels import channel_label
from pdm.errors import PdmError
from pdm.history.records import Capture, to_ns

__all__ = [
    "Averaged",
    "WindowSpectra",
    "analyse",
    "averaged_spectra",
    "capture_spectra",
    "load_analysis",
    "window_spectra",
]

F64 = npt.NDArray[np.float64]


@dataclass
class WindowSpectra:
    """The amplitude and envelope spectra of one window, every channel, full resolution.

    Attributes
    ----------
    window, t_ns : the window's index in its stream and its start time, ns
    channels : channel names, the rows of the arrays
    freqs_hz : (n,) bin frequencies of the acceleration spectrum, Hz
    acc_g : (C, n) acceleration amplitude, g peak
    env_freqs_hz : (m,) bin frequencies of the envelope spectrum, Hz
    env_g : (C, m) envelope amplitude, g peak
    shaft_rpm : the speed the window was analysed at, r/min (NaN: unknown)
    envelope_band_hz : the demodulation band, Hz
    """

    window: int
    t_ns: int
    channels: tuple[str, ...]
    freqs_hz: F64
    acc_g: F64
    env_freqs_hz: F64
    env_g: F64
    shaft_rpm: float
    envelope_band_hz: tuple[float, float]


@dataclass
class Averaged:
    """The diagnosis engine's averaged spectra of a recording and its verdict.

    ``channels[i]`` is the row of ``acc_g``/``env_g``; ``verdicts`` are the engine's
    per-channel results as ``pdm-edge diagnose --json`` prints them; ``html`` the
    diagnose page's sections (verdict and SVG spectra), ready to embed.
    """

    channels: tuple[str, ...]
    df_hz: float
    acc_g: F64
    env_g: F64 | None
    window_samples: int
    windows: int
    sample_rate_hz: float
    label: str
    confidence: float
    channel: str | None
    verdicts: list[dict[str, Any]] = field(default_factory=list)
    html: str = ""


def _spectra(frame: Any, window: int, t_ns: int) -> WindowSpectra:
    freqs, acc = frame.amplitude_spectrum()
    efreqs, env = frame.envelope_spectrum()
    return WindowSpectra(
        window=window,
        t_ns=t_ns,
        channels=tuple(frame.channels),
        freqs_hz=np.asarray(freqs, dtype=np.float64),
        acc_g=np.asarray(acc, dtype=np.float64),
        env_freqs_hz=np.asarray(efreqs, dtype=np.float64),
        env_g=np.asarray(env, dtype=np.float64),
        shaft_rpm=float(frame.shaft_speed_rpm),
        envelope_band_hz=(float(frame.envelope_band_hz[0]), float(frame.envelope_band_hz[1])),
    )


def window_spectra(path: str | Path, pipeline: Pipeline, index: int) -> WindowSpectra:
    """Window ``index`` of a recording (as ``replay`` numbers them), read up to it only.

    Raises :class:`PdmError` when the recording has no such window.
    """
    from pdm.processing import FeatureStream, open_recording

    rec, pl = open_recording(path, pipeline)
    with rec:
        stream = FeatureStream(pl, rec.sample_rate_hz, diagnose=False)
        for chunk in rec.chunks():
            for w in stream.cut(chunk):
                if w.index == index:
                    frame = stream.extract([w])[0].features
                    return _spectra(frame, index, to_ns(w.t_start))
    raise PdmError(f"{path}: no window {index} (the recording has {stream.windows} windows)")


def capture_spectra(
    data_dir: str | Path, capture: Capture, pipeline: Pipeline, *, window: int = -1
) -> WindowSpectra:
    """The spectra of one raw window of an alarm capture (default: the newest, the one that
    changed the state). Raises ``OSError``/``ValueError`` for unreadable capture files."""
    from pdm.history.provenance import load_capture
    from pdm.processing import build_extractor

    raw, meta = load_capture(data_dir, capture)
    if raw.ndim != 3 or raw.shape[0] == 0:
        raise ValueError(f"capture {capture.id}: unexpected shape {raw.shape}")
    fs = float(meta.get("fs_hz") or capture.fs_hz)
    channels = list(meta.get("channels") or capture.channels)
    pl = pipeline
    if pl.acquisition.sample_rate_hz != fs:
        pl = pl.with_sample_rate(fs)
    if pl.acquisition.window_samples != raw.shape[-1]:
        pl = pl.with_window(int(raw.shape[-1]))
    if list(pl.columns) != channels:
        pl = pl.with_columns(channels)
    ex = build_extractor(pl, fs)
    frame = ex.extract_windows([np.asarray(raw[window], dtype=np.float32)])[0]
    return _spectra(frame, int(window), capture.t_ns)


def averaged_spectra(path: str | Path, pipeline: Pipeline, *, progress: bool = False) -> Averaged:
    """The diagnosis engine over the whole recording (``pdm-edge diagnose`` of it)."""
    from pdm.diagnose import diagnose_files, sections
    from pdm.diagnosis.report import section_html

    r = next(diagnose_files([str(path)], pipeline, display=True, progress=progress))
    d = r.diagnosis
    env = None if r.env_g is None else np.asarray(r.env_g, dtype=np.float64)
    return Averaged(
        channels=r.channels,
        df_hz=float(r.df_hz),
        acc_g=np.asarray(r.acc_g, dtype=np.float64),
        env_g=env,
        window_samples=r.window,
        windows=r.windows,
        sample_rate_hz=r.sample_rate_hz,
        label=d.label,
        confidence=float(d.confidence),
        channel=d.channel,
        verdicts=[ch.as_dict() for ch in d.channels],
        html="\n".join(
            section_html(s) for s in sections(r, lambda ch: channel_label(pipeline, ch))
        ),
    )


# --- the child's files -----------------------------------------------------------------------


def analyse(
    recording: str | Path, pipeline: Pipeline, window: int, out_dir: Path, *, progress: bool = False
) -> list[str]:
    """Both analyses into ``out_dir`` (``analysis.npz``, ``analysis.json``); returns notes
    (one line each) for what could not be done — a recording without a shaft speed has no
    diagnosis, for example."""
    notes: list[str] = []
    arrays: dict[str, Any] = {}
    meta: dict[str, Any] = {}
    try:
        ws = window_spectra(recording, pipeline, window)
        arrays.update(
            w_freqs=ws.freqs_hz, w_acc=ws.acc_g, w_env_freqs=ws.env_freqs_hz, w_env=ws.env_g
        )
        meta["window"] = {
            "window": ws.window,
            "t_ns": ws.t_ns,
            "channels": list(ws.channels),
            "shaft_rpm": ws.shaft_rpm,
            "envelope_band_hz": list(ws.envelope_band_hz),
        }
    except PdmError as exc:
        notes.append(f"spectra of window {window}: {str(exc).splitlines()[0]}")
    try:
        av = averaged_spectra(recording, pipeline, progress=progress)
        arrays["a_acc"] = av.acc_g
        if av.env_g is not None:
            arrays["a_env"] = av.env_g
        meta["averaged"] = {
            k: getattr(av, k)
            for k in (
                "df_hz",
                "window_samples",
                "windows",
                "sample_rate_hz",
                "label",
                "confidence",
                "channel",
                "verdicts",
                "html",
            )
        }
        meta["averaged"]["channels"] = list(av.channels)
    except PdmError as exc:
        notes.append(f"diagnosis: {str(exc).splitlines()[0]}")
    meta["notes"] = notes
    out_dir.mkdir(parents=True, exist_ok=True)
    np.savez(out_dir / "analysis.npz", **arrays)
    (out_dir / "analysis.json").write_text(json.dumps(meta), encoding="utf-8")
    return notes


def load_analysis(out_dir: Path) -> tuple[WindowSpectra | None, Averaged | None, list[str]]:
    """What :func:`analyse` wrote (no pickle: ``allow_pickle=False``)."""
    meta = json.loads((out_dir / "analysis.json").read_text(encoding="utf-8"))
    with np.load(out_dir / "analysis.npz", allow_pickle=False) as z:
        arrays = {k: np.asarray(z[k], dtype=np.float64) for k in z.files}
    ws = None
    if "window" in meta and "w_acc" in arrays:
        m = meta["window"]
        ws = WindowSpectra(
            window=int(m["window"]),
            t_ns=int(m["t_ns"]),
            channels=tuple(m["channels"]),
            freqs_hz=arrays["w_freqs"],
            acc_g=arrays["w_acc"],
            env_freqs_hz=arrays["w_env_freqs"],
            env_g=arrays["w_env"],
            shaft_rpm=float(m["shaft_rpm"]),
            envelope_band_hz=(float(m["envelope_band_hz"][0]), float(m["envelope_band_hz"][1])),
        )
    av = None
    if "averaged" in meta and "a_acc" in arrays:
        m = meta["averaged"]
        av = Averaged(
            channels=tuple(m["channels"]),
            df_hz=float(m["df_hz"]),
            acc_g=arrays["a_acc"],
            env_g=arrays.get("a_env"),
            window_samples=int(m["window_samples"]),
            windows=int(m["windows"]),
            sample_rate_hz=float(m["sample_rate_hz"]),
            label=str(m["label"]),
            confidence=float(m["confidence"]),
            channel=m.get("channel"),
            verdicts=list(m.get("verdicts") or []),
            html=str(m.get("html") or ""),
        )
    return ws, av, [str(n) for n in meta.get("notes", [])]


def main(argv: Sequence[str] | None = None) -> int:
    """The child: ``RECORDING PIPELINE WINDOW OUT_DIR``; one line on stderr and 2 on error."""
    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) != 4:
        print(
            "usage: python -m pdm.dashboard.analysis RECORDING PIPELINE WINDOW OUT_DIR",
            file=sys.stderr,
        )
        return 2
    recording, pipeline_file, window, out_dir = args
    try:
        analyse(recording, load_pipeline(pipeline_file), int(window), Path(out_dir))
    except (PdmError, ValueError, OSError) as exc:
        print(f"pdm-edge: error: {str(exc).splitlines()[0]}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
