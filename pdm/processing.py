"""From a pipeline and a source to per-window features: the one path every command uses.

``features``, the demo, and later ``score``/``replay``/``run`` all go through
:class:`FeatureStream`, so a recording replayed on a laptop is processed
exactly as the appliance processes a live stream.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from pdm.config import Pipeline
from pdm.core.chunk import Chunk
from pdm.core.time import iso_time
from pdm.diagnosis import (
    Diagnosis,
    DiagnosisEngine,
    Rules,
    WindowVerdict,
    names_bearing_defect,
    routine_phase,
)
from pdm.diagnosis.resolution import least_window
from pdm.dsp.envelope import BandSchedule
from pdm.dsp.features import STANDARD_G, ChannelSpec, FeatureExtractor, FeatureFrame
from pdm.dsp.windows import StreamEvent, Window, Windower
from pdm.errors import DspError
from pdm.sources.csv import CsvRecording

__all__ = [
    "FeatureStream",
    "WindowFeatures",
    "build_engine",
    "build_extractor",
    "iso_time",
    "longest_stretch",
    "open_recording",
    "too_short",
    "window_for_diagnosis",
]


def open_recording(
    path: str | os.PathLike[str],
    pipeline: Pipeline,
    *,
    fs: float | None = None,
    start_time: float | None = None,
) -> tuple[CsvRecording, Pipeline]:
    """Open a CSV recording for a pipeline; returns it and the pipeline completed by it.

    The sample rate comes from ``fs`` (``--fs``), else the pipeline, else the
    file itself (comment, sidecar or time column); a pipeline built from quick
    flags without ``--columns`` takes every column of the file.
    """
    rate = fs if fs is not None else pipeline.acquisition.sample_rate_hz
    columns = None if pipeline.columns_from_file else list(pipeline.columns)
    rec = CsvRecording(
        path,
        columns=columns,
        fs=rate,
        on_bad_data=pipeline.acquisition.on_bad_data,
        start_time=start_time,
    )
    try:
        if pipeline.columns_from_file:
            pipeline = pipeline.with_columns(list(rec.channels))
        if pipeline.acquisition.sample_rate_hz != rec.sample_rate_hz:
            pipeline = pipeline.with_sample_rate(rec.sample_rate_hz)
        pipeline = window_for_diagnosis(pipeline)
    except BaseException:
        rec.close()
        raise
    return rec, pipeline


def window_for_diagnosis(pipeline: Pipeline) -> Pipeline:
    """A pipeline from quick flags without ``--window``, with a bearing and a speed, whose
    default window is too short for the diagnosis to read bearing lines at the lowest speed
    it may run at (fewer than ``Rules.min_bins_per_order_bearing`` bins per shaft order:
    the engine would refuse every judgement) gets the shortest window that has them (a model
    trained so keeps it); any other pipeline is returned as it is. A slow machine's: 600
    r/min searched ±5 % at 50 kHz needs 32768 samples, not the default 16384.
    """
    speed = pipeline.machine.speed
    fs = pipeline.acquisition.sample_rate_hz
    if pipeline.window_given or speed is None or fs is None:
        return pipeline
    if not any(pipeline.bearing_for(c) is not None for c in pipeline.columns):
        return pipeline
    fixed, searched = speed.fixed_rpm, speed.search_rpm
    lowest_rpm = fixed if fixed is not None else searched[0] if searched is not None else None
    if lowest_rpm is None or not lowest_rpm > 0:
        return pipeline
    n = least_window(fs, lowest_rpm / 60.0, Rules().min_bins_per_order_bearing)
    return pipeline.with_window(n) if n > pipeline.acquisition.window_samples else pipeline


def build_extractor(pipeline: Pipeline, fs: float) -> FeatureExtractor:
    """The feature extractor for a pipeline at sample rate ``fs`` (Hz)."""
    speed = pipeline.machine.speed
    channels = [ChannelSpec(col, pipeline.bearing_for(col)) for col in pipeline.columns]
    band = pipeline.envelope.band_hz
    try:
        return FeatureExtractor(
            fs,
            pipeline.acquisition.window_samples,
            channels,
            rpm=speed.fixed_rpm if speed is not None else None,
            rpm_range=speed.search_rpm if speed is not None else None,
            envelope_band_hz=band if isinstance(band, str) else (band[0], band[1]),
            slip_tolerance=pipeline.envelope.slip_tolerance,
            bands=[(b.name, b.low_hz, b.high_hz) for b in pipeline.bands],
            iso_group=pipeline.machine.iso_group,
            foundation=pipeline.machine.foundation,
        )
    except ValueError as exc:
        where = pipeline.source_path or "command line"
        raise DspError(f"{where}: {exc}") from exc


def build_engine(
    pipeline: Pipeline, extractor: FeatureExtractor, *, full_spectrum: bool = False
) -> DiagnosisEngine:
    """The diagnosis engine for a pipeline's windows as ``extractor`` computes them;
    ``full_spectrum`` also averages the whole acceleration spectrum (for display)."""
    acq = pipeline.acquisition
    return DiagnosisEngine(
        extractor.fs,
        extractor.n,
        acq.hop_samples,
        extractor.channels,
        rules=Rules(slip_tolerance=pipeline.envelope.slip_tolerance),
        iso_group=pipeline.machine.iso_group,
        foundation=pipeline.machine.foundation,
        acc_bins=extractor.n // 2 + 1 if full_spectrum else None,
        # Channels of different sensors are arbitrated (a fault seen at two housings).
        locations=[pipeline.channel(col)[0].id for col in pipeline.columns],
        # Machines started together are judged on grids apart, not all in one window.
        phase=routine_phase(pipeline.machine.id),
    )


@dataclass(slots=True)
class WindowFeatures:
    """A window's metadata and its features; :attr:`diagnosis` is the machine's diagnosis
    over the recent windows up to this one (None when the stream does not diagnose).

    ``verdict`` holds it as the engine handed it over (:meth:`DiagnosisEngine.push`):
    judged when first read, so a window nobody asks about costs no judgement.
    """

    window: Window
    features: FeatureFrame
    verdict: Diagnosis | WindowVerdict | None = None

    @property
    def diagnosis(self) -> Diagnosis | None:
        """The machine's routine diagnosis at this window (docs/diagnosis.md §1, "When it is
        judged")."""
        v = self.verdict
        return v.result() if isinstance(v, WindowVerdict) else v

    def named_bearing_defect(self) -> Diagnosis | None:
        """The routine diagnosis at this window when it names a bearing defect
        (:func:`pdm.diagnosis.names_bearing_defect`), else None; not judged for this while
        the average is worth too few independent windows to name one
        (:meth:`pdm.diagnosis.WindowVerdict.named_bearing_defect`)."""
        v = self.verdict
        if isinstance(v, WindowVerdict):
            return v.named_bearing_defect()
        named = v is not None and names_bearing_defect(v.label, v.confidence, v.k_eff)
        return v if named else None

    def fresh_diagnosis(self, *, now: bool = False) -> Diagnosis | None:
        """The machine's diagnosis judged near this window (``now``: at it), for a window
        at or above alert; read the windows of a stream in order."""
        v = self.verdict
        return v.fresh(now=now) if isinstance(v, WindowVerdict) else v

    def rows(self) -> list[dict[str, Any]]:
        """JSON-ready rows, one per channel: ``t_start`` (ISO 8601), ``window``, ``channel``, features."""
        head = {
            "t_start": iso_time(self.window.t_start),
            "window": self.window.index,
            "segment": self.window.segment,
            "valid": self.features.valid,
        }
        return [{**head, **row} for row in self.features.as_dicts()]


@dataclass
class FeatureStream:
    """Windower + extractor for one pipeline, fed with chunks.

    Windows are extracted in groups of ``batch`` consecutive windows (grouped
    by window index, so the grouping — and every feature value, to the bit —
    does not depend on how the stream was chunked). Batching is what makes
    the DSP core cheap (see :meth:`FeatureExtractor.extract_batch`); a live
    single-sensor stream that needs each window at once uses ``batch=1``.
    Call :meth:`flush` at the end of the stream for the last partial group.

    In ``envelope.band_hz = "auto"`` mode, the band is chosen
    (:meth:`FeatureExtractor.choose_band`) on the first window of a group when its
    :class:`pdm.dsp.envelope.BandSchedule` says so: on a segment's first window, to confirm
    it 64, 128, … up to every 1024 windows, sooner when a look at the band in force
    (:meth:`FeatureExtractor.band_holds`, one window in 128) finds it changed. The choice keeps
    its state (:class:`pdm.dsp.envelope.BandChoice`) across segments of one sample rate, so
    that the band changes only for a clearly better one.

    With ``diagnose`` (the default) every window's spectra also go to the machine's
    :class:`~pdm.diagnosis.DiagnosisEngine`, which restarts at every reset, and each
    :class:`WindowFeatures` carries the engine's diagnosis up to that window.

    Keeps the counts a summary needs: windows, invalid windows, resets.
    """

    pipeline: Pipeline
    fs: float
    batch: int = 8
    diagnose: bool = True
    #: The engine also averages the whole acceleration spectrum (``pdm-edge diagnose --html``).
    full_spectrum: bool = False
    windows: int = 0
    invalid_windows: int = 0
    events: list[StreamEvent] = field(default_factory=list)
    #: The most recent window's features, spectra included (for display).
    latest: WindowFeatures | None = None
    _windower: Windower = field(init=False, repr=False)
    _extractor: FeatureExtractor = field(init=False, repr=False)
    _pending: list[Window] = field(default_factory=list, init=False, repr=False)
    _band: BandSchedule = field(default_factory=BandSchedule, init=False, repr=False)
    _engine: DiagnosisEngine | None = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        if self.batch < 1:
            raise ValueError(f"batch={self.batch} must be >= 1")
        acq = self.pipeline.acquisition
        scale = []
        for col in self.pipeline.columns:
            _sensor, ch = self.pipeline.channel(col)
            scale.append(1.0 if ch.unit == "g" else 1.0 / STANDARD_G)
        self._windower = Windower(
            acq.window_samples, acq.hop_samples, np.array(scale), max_gap_s=acq.max_gap_s or None
        )
        self._extractor = build_extractor(self.pipeline, self.fs)
        if self.diagnose:
            self._engine = build_engine(
                self.pipeline, self._extractor, full_spectrum=self.full_spectrum
            )

    @property
    def extractor(self) -> FeatureExtractor:
        return self._extractor

    @property
    def engine(self) -> DiagnosisEngine | None:
        """The machine's diagnosis engine (None when the stream does not diagnose)."""
        return self._engine

    def push(self, chunk: Chunk) -> Iterator[WindowFeatures]:
        """Feed a chunk; yields the features of every complete group of windows."""
        windows, events = self._windower.push(chunk)
        if any(ev.kind == "rate_change" for ev in events):
            yield from self.flush()  # windows before the change belong to the old rate
        self._reset(events, chunk.fs)
        for w in windows:
            self._pending.append(w)
            if (w.index + 1) % self.batch == 0:
                yield from self.flush()

    def feed(self, chunks: Iterable[Chunk]) -> Iterator[WindowFeatures]:
        """Push every chunk of a finite stream, then flush: all its windows' features."""
        for chunk in chunks:
            yield from self.push(chunk)
        yield from self.flush()

    def flush(self) -> Iterator[WindowFeatures]:
        """Extract the windows still waiting for their group to fill (end of stream)."""
        pending, self._pending = self._pending, []
        yield from self.extract(pending)

    def cut(self, chunk: Chunk) -> list[Window]:
        """Feed a chunk to the windower only; returns the windows it completed.

        For a caller that extracts windows itself — the service batches the windows of
        many machines into one pass (:func:`pdm.dsp.features.extract_many` with
        :attr:`extractor`, then :meth:`take`; or :meth:`extract`). Windows of one call
        share the extractor in force when it returns (a rate change rebuilds it first).
        Not to be mixed with :meth:`push` on one stream.
        """
        if self._pending:
            raise RuntimeError("cut() on a stream with windows waiting in push()'s groups")
        windows, events = self._windower.push(chunk)
        self._reset(events, chunk.fs)
        return windows

    def _reset(self, events: list[StreamEvent], fs: float) -> None:
        """Take the windower's resets: kept, a new band per segment, a new extractor per rate."""
        for ev in events:
            self.events.append(ev)
            # a new segment chooses its band again (with hysteresis)
            self._band = self._band.new_segment()
            if ev.kind == "rate_change":
                self._band = BandSchedule()  # other candidates at another rate
                self.pipeline = self.pipeline.with_sample_rate(fs)
                self._extractor = build_extractor(self.pipeline, fs)
                self.fs = fs
                if self._engine is not None:
                    self._engine = build_engine(
                        self.pipeline, self._extractor, full_spectrum=self.full_spectrum
                    )
            elif self._engine is not None:
                self._engine.reset()  # evidence from before a gap is not this segment's

    def extract(self, windows: list[Window]) -> list[WindowFeatures]:
        """The features of ``windows`` (consecutive, of this stream) in one pass of its own."""
        if not windows:
            return []
        self._band, frames = self._extractor.extract_scheduled(
            [w.data for w in windows], self._band
        )
        return self.take(windows, frames)

    def take(self, windows: list[Window], frames: list[FeatureFrame]) -> list[WindowFeatures]:
        """Windows and their frames extracted elsewhere (see :meth:`cut`), counted as ours."""
        out = []
        engine = self._engine
        if engine is not None:
            engine.drain()  # the windows before these averaged in: one batch waits at most
        for w, frame in zip(windows, frames, strict=True):
            self.windows += 1
            if not frame.valid:
                self.invalid_windows += 1
            verdict = None if engine is None else engine.push(frame)
            out.append(WindowFeatures(w, frame, verdict))
        if out:
            self.latest = out[-1]
        return out

    def tail_samples(self) -> int:
        """Samples after the last window (unused if the stream ends now)."""
        return self._windower.tail_samples()


def longest_stretch(stream: FeatureStream) -> int:
    """The most samples a stream that gave no window received between two resets."""
    return max([stream.tail_samples(), *(e.unused_samples for e in stream.events)])


#: The shortest window any command takes, samples (``acquisition.window_samples``' bound).
MIN_WINDOW = 256


def too_short(path: str | os.PathLike[str], stream: FeatureStream) -> str:
    """Why a recording gave ``stream`` no window: the file, its length, the window and what
    to do — ``"f.csv: 300 samples (0.015 s at 20000 Hz), shorter than one window of 16384
    samples (0.819 s); use a shorter window (256 samples at least) or a longer recording"``.
    Samples left unused at gaps are counted and the stretches said."""
    fs, n = stream.fs, stream.pipeline.acquisition.window_samples
    longest = longest_stretch(stream)
    total = stream.tail_samples() + sum(e.unused_samples for e in stream.events)
    parts = f" in {len(stream.events) + 1} stretches between resets" if stream.events else ""
    hint = (
        f"use a shorter window ({MIN_WINDOW} samples at least) or a longer recording"
        if longest >= MIN_WINDOW
        else f"a window is {MIN_WINDOW} samples at least: record longer"
    )
    return (
        f"{os.fspath(path)}: {total} sample{'s' * (total != 1)} ({total / fs:.3g} s at "
        f"{fs:g} Hz){parts}, shorter than one window of {n} samples ({n / fs:.3g} s); {hint}"
    )
