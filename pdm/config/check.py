"""``pdm-edge check``: a pipeline file loaded and described in a few lines."""

from __future__ import annotations

import os

from pdm.config.fields import (
    fmt_num,
)
from pdm.config.load import load_pipeline
from pdm.dsp.bearings import (
    BearingGeometry,
)
from pdm.dsp.iso import iso_band_hz, zone_limits


def bearing_text(geometry: BearingGeometry, rpm: float | None, slip: float) -> str:
    name = geometry.designation or "custom"
    text = (
        f"bearing {name}: {geometry.rolling_elements} elements, "
        f"d {geometry.ball_diameter_mm:.2f} mm, D {geometry.pitch_diameter_mm:.2f} mm, "
        f"contact angle {fmt_num(geometry.contact_angle_deg)}°"
    )
    if rpm is None:
        return text
    freqs = geometry.defect_frequencies_hz(rpm / 60)
    lines = ", ".join(f"{k.upper()} {v:.1f} Hz" for k, v in freqs.items())
    return f"{text}\n      at {fmt_num(rpm)} r/min: {lines} (searched ±{slip:.0%})"


def check_pipeline(path: str | os.PathLike[str]) -> str:
    """Load a pipeline file and describe it in a few lines, for ``pdm-edge check``.

    Parameters
    ----------
    path : str or path-like
        The pipeline file.

    Returns
    -------
    str
        A multi-line summary: machine and ISO zones, speed, sampling and
        windowing, sensors with bearing defect frequencies, envelope band, bands.

    Raises
    ------
    ConfigError
        When the file does not load (see :func:`load_pipeline`).
    """
    p = load_pipeline(path)
    m, acq = p.machine, p.acquisition
    out = [f"{os.fspath(path)}: OK (schema_version {p.schema_version})"]
    name = f" ({m.name})" if m.name != m.id else ""
    out.append(
        f"machine   {m.id}{name}: ISO 10816-3 group {m.iso_group}, {m.foundation} foundation"
    )
    ab, bc, cd = zone_limits(m.iso_group, m.foundation)
    speed = m.speed
    low, high = iso_band_hz(speed.nominal if speed is not None else None)
    out.append(
        f"  zones   velocity RMS {fmt_num(low)}–{fmt_num(high)} Hz: A/B {ab} mm/s, "
        f"B/C {bc} mm/s, C/D {cd} mm/s"
    )
    if speed is None:
        out.append("speed     unknown (no order or bearing-defect features)")
    elif speed.fixed_rpm is not None:
        fixed = speed.fixed_rpm
        out.append(f"speed     fixed {fmt_num(fixed)} r/min ({fixed / 60:.2f} Hz shaft frequency)")
    else:
        lo, hi = speed.search_rpm or (0.0, 0.0)
        out.append(
            f"speed     nominal {fmt_num(speed.nominal)} r/min, searched "
            f"{fmt_num(lo)}–{fmt_num(hi)} r/min"
        )
    fs = acq.sample_rate_hz
    hop = acq.hop_samples
    if fs is not None:
        out.append(
            f"sampling  {fmt_num(fs)} Hz; window {acq.window_samples} samples "
            f"({acq.window_samples / fs:.3f} s, {fs / acq.window_samples:.3g} Hz resolution), "
            f"overlap {acq.overlap:.0%} → hop {hop} samples ({hop / fs:.3f} s)"
        )
    else:
        out.append(
            f"sampling  rate from the recording; window {acq.window_samples} samples, "
            f"overlap {acq.overlap:.0%} → hop {hop} samples (durations depend on the rate)"
        )
    gap = f"{fmt_num(acq.max_gap_s)} s" if acq.max_gap_s > 0 else "1.5 sample periods"
    out.append(f"  bad data: {acq.on_bad_data}; a time gap over {gap} restarts the window")
    n_channels = sum(len(s.channels) for s in p.sensors)
    out.append(f"sensors   {len(p.sensors)} sensor(s), {n_channels} channel(s)")
    if p.bearing_table is not None:
        out.append(
            f"  bearing table {p.bearing_table}: {p.table_bearings} bearing(s), "
            "looked up before the built-in catalogue"
        )
    for s in p.sensors:
        where = f" ({s.location})" if s.location else ""
        chans = ", ".join(
            f"{c.column} [{c.unit}, {c.axis}"
            + (f", full scale {fmt_num(c.full_scale)} {c.unit}" if c.full_scale else "")
            + "]"
            for c in s.channels
        )
        out.append(f"  {s.id}{where}: {chans}")
        geometry = s.bearing_geometry
        if geometry is not None:
            rpm = speed.nominal if speed is not None else None
            out.append("    " + bearing_text(geometry, rpm, p.envelope.slip_tolerance))
    band = p.envelope.band
    if band is None:
        out.append(
            "envelope  band chosen automatically (where the defect lines stand out most "
            "above the floor; docs/models.md)"
        )
    else:
        out.append(f"envelope  band {fmt_num(band[0])}–{fmt_num(band[1])} Hz")
    if p.bands:
        out.append(
            "bands     "
            + ", ".join(f"{b.name} {fmt_num(b.low_hz)}–{fmt_num(b.high_hz)} Hz" for b in p.bands)
        )
    else:
        out.append("bands     none")
    h = p.history
    keep = f"{fmt_num(h.retention_days)} days" if h.retention_days else "everything"
    out.append(
        f"history   {h.store or 'sqlite:///<data dir>/history.db (embedded default)'}; "
        f"keeps {keep} (SQLite), spool up to {fmt_num(h.spool_max_mb)} MB"
    )
    settings = p.model
    if p.model_dir is None:
        out.append("model     none (features only)")
    else:
        present = (p.model_dir / "model.json").exists()
        state = (
            "present"
            if present
            else (
                f"absent: teach-in learns {fmt_num(settings.teach_in_s)} s first"
                if settings.teach_in_s
                else "absent"
            )
        )
        out.append(
            f"model     {p.model_dir} ({state}); detector {settings.detector}, alert aims at "
            f"{fmt_num(settings.alerts_per_week)} false alerts/week, {settings.holdout:.0%} held out"
        )
    return "\n".join(out)
