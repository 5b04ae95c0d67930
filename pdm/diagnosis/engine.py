"""The diagnosis engine: evidence gathered over the recent windows of one machine.

One :class:`DiagnosisEngine` per machine (per feature stream) takes every window's
feature frame (:meth:`DiagnosisEngine.update`, or :meth:`DiagnosisEngine.push` which hands
back the window's :class:`WindowVerdict` first: the spectra the extractor already computed
are averaged in, nothing is transformed again) and judges the averages
(:mod:`pdm.diagnosis.rules`) per channel; the machine's diagnosis is the clearest
channel's. Judging costs a hundred times more than averaging, so a judgement is made only
when somebody reads it, and as often as the reader needs:

* **routinely** (:meth:`WindowVerdict.result`, what a replayed window's row shows): at the
  1st, 2nd, 4th, 8th … window of a segment up to ``judge_every`` and then every
  ``judge_every`` windows — by default :data:`ROUTINE_TIME_CONSTANTS` averaging time
  constants (``8 × memory`` window lengths of new data: 256 windows at 50 % overlap) — the
  last judgement handed back in between. From the averages' memory on (32 windows at 50 %
  overlap), each due point is offset into the first half of its interval by the engine's
  ``phase`` (window ``2^k + (phase mod 2^(k-1))``; a stable hash of the machine id in a
  pipeline's engine: :func:`routine_phase`): machines started together — a service start —
  would otherwise come due in the same window, a judgement each (1–3 ms) at once in front
  of every other machine's decision;
* **fresh** (:meth:`WindowVerdict.fresh`, what a window at or above alert reads): a
  judgement at most ``fresh_within`` windows old (:data:`FRESH_TIME_CONSTANTS` of an
  averaging time constant: 8 window lengths of new data, 16 windows at 50 % overlap, in
  which at most 1 − e^(−1/2) ≈ 39 % of the average renews), and of the window itself with
  ``now=True`` (the first alerting window of a run: the alarm's transition). The end of a
  recording is judged then (:meth:`judge`).

A change of the machine's state starts a new segment (:mod:`pdm.diagnosis.average`),
which is judged on its own windows at once, not at the next due time.

A reader that only asks whether the routine diagnosis names a bearing defect
(:meth:`WindowVerdict.named_bearing_defect`, the scorer's named-defect alert on every
healthy window) gets its answer without a judgement while the average is worth fewer than
:data:`~pdm.diagnosis.verdict.MIN_INDEPENDENT_WINDOWS` independent windows: no judgement of
it could name one (a segment's first windows, where the doubling judges most often).
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from pdm.diagnosis.average import AverageState, SpectrumAverage
from pdm.diagnosis.baseline import Baseline
from pdm.diagnosis.confidence import confidence
from pdm.diagnosis.evidence import ChannelVerdict, FamilyEvidence
from pdm.diagnosis.machine import Transmission, transmitted
from pdm.diagnosis.rules import Rules
from pdm.diagnosis.shaft_speed import read_speed
from pdm.diagnosis.silence import Signal, Silence
from pdm.diagnosis.verdict import MIN_INDEPENDENT_WINDOWS, judge_channels, names_bearing_defect
from pdm.dsp.bearings import defect_line_orders
from pdm.dsp.features import ChannelSpec, FeatureFrame

__all__ = [
    "FRESH_TIME_CONSTANTS",
    "ROUTINE_TIME_CONSTANTS",
    "ChannelDiagnosis",
    "Diagnosis",
    "DiagnosisEngine",
    "PendingDiagnosis",
    "WindowVerdict",
    "routine_phase",
]

#: Averaging time constants between two routine judgements (staleness of a window's
#: diagnosis nobody needs at once: a healthy machine's, shown in a replay's rows).
ROUTINE_TIME_CONSTANTS = 8.0
#: Averaging time constants a fresh judgement may be old (a window at or above alert): at
#: most 1 − e^(−1/2) ≈ 39 % of the average is newer than the judgement. Half the average's
#: memory: a judgement is over evidence one time constant long anyway, and judging more
#: often would cost a machine in alert a judgement every few windows.
FRESH_TIME_CONSTANTS = 0.5
#: Windows handed out by push() and not averaged in yet, at the most (a bound on memory:
#: the oldest are averaged in when more come and nobody reads).
MAX_QUEUED = 64


def routine_phase(machine: str) -> int:
    """A stable number for a machine id (the same in every process and run, unlike
    ``hash()``): the :class:`DiagnosisEngine` ``phase`` of its routine judgements.

    >>> routine_phase("pump-7") == routine_phase("pump-7"), routine_phase("")
    (True, 0)
    """
    if not machine:
        return 0
    return int.from_bytes(hashlib.blake2b(machine.encode(), digest_size=8).digest(), "little")


@dataclass(frozen=True, slots=True)
class ChannelDiagnosis:
    """One channel's diagnosis over the recent windows.

    Attributes
    ----------
    channel : its name
    label : one of :data:`pdm.diagnosis.DIAGNOSES`
    confidence : 0–1, see :func:`pdm.diagnosis.confidence.confidence`
    verdict : the rules' verdict (its families and reasons are built when read)
    shaft_speed_rpm : the speed the lines were placed by (the segment's reference), r/min
    envelope_band_hz : the demodulation band of the envelope average, Hz
    windows : windows averaged in this segment
    k_eff : independent windows the average is worth
    bearing : the designation of the channel's bearing ('' when none or not catalogued)
    transmission : when the channel's bearing verdict is another sensor's fault seen here
        (:mod:`pdm.diagnosis.machine`): where from and why; the label is then ``unknown``
    shaft_speed_source : what ``shaft_speed_rpm`` rests on: ``"spectrum"`` (the shaft's
        lines in the averaged spectra read it), ``"tracked"`` (no such line; the windows'
        searched speeds that stood), ``"given"`` (no such line; the speed given, as given),
        ``"nominal"`` (searched, and nothing stood out anywhere: the nominal speed — no
        measurement)
    """

    channel: str
    label: str
    confidence: float
    verdict: ChannelVerdict
    shaft_speed_rpm: float
    envelope_band_hz: tuple[float, float] | None
    windows: int
    k_eff: float
    bearing: str = ""
    transmission: Transmission | None = None
    shaft_speed_source: str = "given"

    @property
    def transmitted_from(self) -> str:
        """The channel whose fault this channel sees, or ''."""
        return self.transmission.source if self.transmission is not None else ""

    @property
    def margin_db(self) -> float:
        """How clearly the label won, dB."""
        return self.verdict.margin_db

    @property
    def families(self) -> tuple[FamilyEvidence, ...]:
        """Every family examined, with its lines."""
        return self.verdict.families

    @property
    def reasons(self) -> tuple[str, ...]:
        """Lines of text with numbers, the deciding one first, then what was averaged."""
        band = self.envelope_band_hz
        head = (
            f"{self.channel}: {self.windows} windows averaged ({self.k_eff:.1f} independent) "
            f"at {self.shaft_speed_rpm:.1f} r/min"
            + (" (nominal: no speed measured)" if self.shaft_speed_source == "nominal" else "")
            + (f", envelope {band[0]:.0f}–{band[1]:.0f} Hz" if band is not None else "")
        )
        t = self.transmission
        if t is not None:
            first = t.text(self.channel, self.verdict.named_families[0])
            judged = tuple(f"  (judged alone: {r})" for r in self.verdict.reasons[:1])
            return (first, *judged, head)
        return (*self.verdict.reasons, head)

    def as_dict(self) -> dict[str, object]:
        """JSON-ready: the fields ``pdm-edge diagnose --json`` prints per channel."""
        return {
            "channel": self.channel,
            "diagnosis": self.label,
            "confidence": round(self.confidence, 3),
            "shaft_speed_rpm": round(self.shaft_speed_rpm, 2)
            if math.isfinite(self.shaft_speed_rpm)
            else None,
            "shaft_speed_source": self.shaft_speed_source,
            "envelope_band_hz": [round(x, 1) for x in self.envelope_band_hz]
            if self.envelope_band_hz
            else None,
            "windows": self.windows,
            "independent_windows": round(self.k_eff, 2),
            "bearing": self.bearing or None,
            "transmitted_from": self.transmitted_from or None,
            "judged_alone": self.verdict.label if self.transmission is not None else None,
            "evidence": list(self.reasons),
            "families": {f.family: f.as_dict() for f in self.families},
        }


@dataclass(frozen=True, slots=True)
class Diagnosis:
    """A machine's diagnosis: the clearest channel's, with the others as reasons.

    Attributes
    ----------
    label : one of :data:`pdm.diagnosis.DIAGNOSES`
    confidence : 0–1 (the deciding channel's)
    channel : the deciding channel, None when nothing was decided
    channels : every channel's diagnosis
    windows : windows averaged in the current segment
    note : why there is nothing to judge (no channel), else ''

    A channel whose bearing verdict is another sensor's fault seen there says so
    (:attr:`ChannelDiagnosis.transmission`) and does not decide.
    """

    label: str
    confidence: float
    channel: str | None
    channels: tuple[ChannelDiagnosis, ...]
    windows: int
    note: str = ""

    @property
    def k_eff(self) -> float:
        """Independent windows the deciding channel's average is worth (0 when none decided)."""
        best = next((c for c in self.channels if c.channel == self.channel), None)
        return best.k_eff if best is not None else 0.0

    @property
    def bearing(self) -> str:
        """The deciding channel's bearing designation ('' when none decided or not known)."""
        best = next((c for c in self.channels if c.channel == self.channel), None)
        return best.bearing if best is not None else ""

    @property
    def reasons(self) -> tuple[str, ...]:
        """The deciding channel's reasons, then one line on the other channels."""
        if not self.channels:
            return (self.note,)
        best = next((c for c in self.channels if c.channel == self.channel), self.channels[0])
        others = [
            f"{c.channel} transmitted from {c.transmitted_from}"
            if c.transmission is not None
            else f"{c.channel} {c.label} ({c.confidence:.2f})"
            for c in self.channels
            if c is not best
        ]
        return best.reasons + ((f"other channels: {', '.join(others)}",) if others else ())


class DiagnosisEngine:
    """Averages a machine's spectra over recent windows and judges them.

    Parameters
    ----------
    fs, n, hop : sample rate (Hz), window length and hop (samples) of the frames to come
    channels : the extractor's channels (a channel's bearing decides its bearing families)
    rules : thresholds of :mod:`pdm.diagnosis.rules`
    iso_group, foundation : the machine's ISO 10816-3 class (running-speed severity)
    memory, segment_tolerance : of :class:`~pdm.diagnosis.average.SpectrumAverage`
    judge_every : windows between routine judgements (None: ROUTINE_TIME_CONSTANTS
        averaging time constants)
    phase : where in their intervals the routine judgements fall: the doubling's at the
        segment's window ``2^k + (phase mod 2^(k-1))`` (not ``2^k``) for each ``2^k`` from
        the averages' memory (``memory`` window lengths of new data) to ``judge_every``,
        then every ``judge_every`` windows after the last — still at most ``judge_every``
        apart. 0 (the default): at ``2^k``. A pipeline's engine takes
        :func:`routine_phase` of its machine id, so machines started together are judged
        spread over half of each interval, not all in one window
    fresh_within : windows a fresh judgement may be old (None: FRESH_TIME_CONSTANTS
        averaging time constants)
    acc_bins : acceleration bins to average (None: up to ~10.8 × shaft speed)
    locations : per channel, the sensor (bearing housing) it is mounted on; channels at
        different locations are arbitrated (:mod:`pdm.diagnosis.machine`). None: all at one

    Examples
    --------
    >>> from pdm.dsp.bearings import BEARINGS
    >>> from pdm.dsp.features import FeatureExtractor
    >>> from pdm.sources.simulator import FaultSpec, SimSpec, simulate
    >>> spec = SimSpec(duration_s=4.0, faults=(FaultSpec("bpfo", 0.3),))
    >>> x = simulate(spec).T.astype("float32")
    >>> chans = [ChannelSpec("x_g", BEARINGS["6205"]), ChannelSpec("y_g", BEARINGS["6205"])]
    >>> fx = FeatureExtractor(spec.fs, 16384, chans, rpm=1480.0, envelope_band_hz=(2000, 6000))
    >>> engine = DiagnosisEngine(spec.fs, 16384, 8192, chans)
    >>> for s in range(0, x.shape[1] - 16384 + 1, 8192):
    ...     _ = engine.update(fx.extract(x[:, s : s + 16384]))
    >>> engine.diagnosis().label
    'bearing_outer_race'
    """

    def __init__(
        self,
        fs: float,
        n: int,
        hop: int,
        channels: Sequence[ChannelSpec],
        *,
        rules: Rules | None = None,
        iso_group: int = 2,
        foundation: str = "rigid",
        memory: float = 16.0,
        segment_tolerance: float = 0.03,
        judge_every: int | None = None,
        fresh_within: int | None = None,
        acc_bins: int | None = None,
        locations: Sequence[str] | None = None,
        phase: int = 0,
    ) -> None:
        if judge_every is not None and judge_every < 1:
            raise ValueError(f"{judge_every=} must be >= 1")
        if fresh_within is not None and fresh_within < 0:
            raise ValueError(f"{fresh_within=} must be >= 0")
        self.channels = tuple(channels)
        if locations is not None and len(locations) != len(self.channels):
            raise ValueError(f"{len(locations)} locations for {len(self.channels)} channels")
        self.locations = tuple(locations) if locations is not None else ("",) * len(self.channels)
        self.rules = rules or Rules()
        self.iso_group = iso_group
        self.foundation = foundation
        self._average = SpectrumAverage(
            len(self.channels),
            fs,
            n,
            hop,
            memory=memory,
            segment_tolerance=segment_tolerance,
            acc_bins=acc_bins,
        )
        # Channels that share a bearing are judged in one pass: (rows, multiples) per group.
        groups: dict[object, tuple[list[int], dict[str, float] | None]] = {}
        for c, ch in enumerate(self.channels):
            mult = ch.bearing.defect_multiples() if ch.bearing is not None else None
            key = tuple(mult.values()) if mult is not None else None
            groups.setdefault(key, ([], mult))[0].append(c)
        self._groups = [(np.array(rows), mult) for rows, mult in groups.values()]
        # Where any named bearing may put a line of its own, in shaft orders: such a line
        # alone does not read the running speed (:func:`read_speed`).
        self._defect_orders = defect_line_orders(
            [mult for _rows, mult in groups.values() if mult is not None], self.rules.harmonics
        )
        self.judge_every = judge_every or max(
            1, round(ROUTINE_TIME_CONSTANTS * self._average.n_mem)
        )
        self.fresh_within = (
            fresh_within
            if fresh_within is not None
            else max(1, math.ceil(FRESH_TIME_CONSTANTS * self._average.n_mem))
        )
        self.phase = phase % self.judge_every
        self._last: PendingDiagnosis | None = None
        self._fresh: PendingDiagnosis | None = None
        # Frames handed to push() and not averaged in yet, with their verdicts.
        self._queue: deque[tuple[FeatureFrame, WindowVerdict]] = deque()
        self._tick = 0  # windows offered so far
        self._fresh_read = -(1 << 62)  # the window of the last fresh read
        #: The machine's healthy spectra (a model's card), or None: see :meth:`set_baseline`.
        self.baseline: Baseline | None = None
        # The baseline aligned to a segment's bins: (baseline, key, (acc, env)).
        self._healthy: tuple[Baseline, object, tuple[np.ndarray, np.ndarray]] | None = None
        self._since = 0
        self._segment = -1
        self._silence = Silence(len(self.channels))  # channels with no signal

    @property
    def average(self) -> SpectrumAverage:
        """The averages, every window handed over averaged in."""
        self.drain()
        return self._average

    def set_baseline(self, baseline: Baseline | None) -> None:
        """Judge lines over the machine's healthy spectra from now on (None: over the local
        floor only); the next diagnosis is judged again."""
        self.drain()
        self.baseline = baseline
        self._healthy = None
        self._last = self._fresh = None

    def reset(self) -> None:
        """Forget the averages (a stream reset: a gap, time going back)."""
        self.drain()
        self._average.restart()
        self._silence.reset()
        self._last = self._fresh = None

    def update(self, frame: FeatureFrame) -> bool:
        """Average a window's spectra in; False when the window was not used (invalid, no
        speed, or a stray speed estimate)."""
        self.drain()
        return self._update(frame)

    def push(self, frame: FeatureFrame) -> WindowVerdict:
        """Hand a window over; its :class:`WindowVerdict` is the diagnosis at it, however
        late it is read. The window is averaged in when a verdict at or after it is read,
        at the next call of any other method, or when :data:`MAX_QUEUED` wait — so a reader
        that reads windows in order (a score of a batch) can have each one judged on the
        averages as they stood at it."""
        if len(self._queue) >= MAX_QUEUED:
            self.drain()
        v = WindowVerdict(self)
        self._queue.append((frame, v))
        return v

    def drain(self, upto: WindowVerdict | None = None) -> None:
        """Average in the windows handed to :meth:`push` (up to ``upto``, else all)."""
        q = self._queue
        while q:
            frame, v = q.popleft()
            self._update(frame)
            v.routine, v.tick = self._later(), self._tick
            if v is upto:
                return

    def _update(self, frame: FeatureFrame) -> bool:
        self._tick += 1
        if not frame.valid:
            return False
        used = self._average.add(
            frame.spectrum,
            frame.env_parts,
            frame.shaft_speed_rpm / 60.0,
            tuple(frame.envelope_band_hz),  # type: ignore[arg-type]
            frame.speed_measured,
            frame.nominal_speed_rpm / 60.0,
        )
        if used:
            self._since += 1
            self._silence.add(frame.values)
        return used

    def diagnosis(self) -> Diagnosis:
        """The current diagnosis, judged again when due (see the module docstring)."""
        return self.later().result()

    def later(self) -> PendingDiagnosis:
        """The current diagnosis as :meth:`diagnosis` would give it now, judged only when
        read (:meth:`PendingDiagnosis.result`): when a judgement is due, the averages are
        copied (a few kB) and judged if and when somebody asks — the service asks only for
        the windows it explains, so a healthy machine's windows are averaged, never judged.
        The answer is the same as :meth:`diagnosis`'s at this window, whenever it is read."""
        self.drain()
        return self._later()

    def _later(self) -> PendingDiagnosis:
        avg = self._average
        c = avg.count
        every = self.judge_every
        due = (
            self._last is None
            or self._segment != avg.segments
            or (self._since > 0 and self._doubling(c))
            or self._since >= every
        )
        if due:
            self._since = 0
            self._segment = avg.segments
            self._last = self._pending()
        assert self._last is not None
        return self._last

    def _doubling(self, c: int) -> bool:
        """Whether the segment's ``c``-th window is one of the doubling's due points: the
        window ``2^k`` for each ``2^k ≤ judge_every``, offset by ``phase mod 2^(k-1)`` once
        ``2^k`` reaches the averages' memory — in the first half of the doubled interval,
        so that each is less than ``2^(k+1)`` windows after the one before. Before the
        memory the average is a plain mean whose every doubling halves the weight of what
        was judged; past it, an exponential one renewing at a fixed rate, where a judgement
        a few windows later weighs the same evidence."""
        base = 1 << (c.bit_length() - 1)  # the power of two at or below c
        half = base >> 1 if base >= self._average.n_mem else 0
        return base <= self.judge_every and c == base + (self.phase % half if half else 0)

    def _pending(self) -> PendingDiagnosis:
        return PendingDiagnosis(
            self,
            self._average.state(),
            self.baseline,
            self._tick,
            self._silence.state(
                [ch.name for ch in self.channels], self._average.count, self._average.n_mem
            ),
        )

    def fresh_at(self, verdict: WindowVerdict, *, now: bool = False) -> Diagnosis:
        """The diagnosis at ``verdict``'s window judged at most :attr:`fresh_within` windows
        before it (``now``: at it, unless a fresh one was read within :attr:`fresh_within`
        windows). When windows after it were averaged in already (read out of order), its
        routine judgement. Past the averages' memory a judgement made already is reused
        while within the bound (one per ``fresh_within + 1`` windows of an alerting run);
        in a segment's plain mean the routine doubling's are taken."""
        self.drain(upto=verdict)
        routine = verdict.routine
        assert routine is not None
        if verdict.tick != self._tick:
            return routine.result()
        # A run of alerting windows broken by a window or two below alert is not a new
        # one: judging at every such window would cost a judgement a window when a score
        # flickers about the threshold.
        if now and self._tick - self._fresh_read <= self.fresh_within:
            now = False
        self._fresh_read = self._tick
        limit = 0 if now else self.fresh_within
        seg = self._average.segments
        near = [
            p
            for p in (routine, self._fresh)
            if p is not None
            and p.segment == seg
            and p.baseline is self.baseline
            and self._tick - p.tick <= limit
        ]
        # Once the average is exponential (its evidence renews at most 39 % in the bound), a
        # judgement made already serves while within the bound, and one to make is made at
        # this window (it then serves the longest): the routine one due in between would be
        # a second judgement for no fresher bound. In a segment's plain mean the routine
        # doubling is followed (each doubling halves the weight of what was judged).
        n_mem = self._average.n_mem
        for p in near:
            if p.judged and p.windows >= n_mem:
                return p.result()
        for p in near:
            if p.windows < n_mem or p.tick == self._tick:
                return p.result()
        self._fresh = self._pending()
        return self._fresh.result()

    def judge(self) -> Diagnosis:
        """Judge the averages now."""
        self.drain()
        self._since = 0
        self._segment = self._average.segments
        self._last = self._pending()
        return self._last.result()

    def judge_state(
        self,
        avg: AverageState,
        baseline: Baseline | None = None,
        signal: Signal | None = None,
    ) -> Diagnosis:
        """Judge the averages ``avg`` (:meth:`SpectrumAverage.state`) over ``baseline``;
        ``signal``: the channels' (:meth:`pdm.diagnosis.silence.Silence.state`) — a channel
        with no signal is ``unknown`` with its reason, not judged, and every spectrum is
        read down to its channel's numerical zero only."""
        no_signal = signal.no_signal if signal is not None else ()
        if avg.count == 0 or avg.acc is None:
            return Diagnosis(
                "unknown",
                0.0,
                None,
                (),
                0,
                "no window with a known shaft speed in this segment yet",
            )
        k_acc, k_env = avg.k_acc, avg.k_env
        acc, env = avg.acc, avg.env
        # Lines are placed by the speed the averaged spectra show (a given speed is rarely
        # exactly the running speed), within the order tolerance of the segment's speed.
        fr, read = read_speed(acc, avg.df, avg.ref_shaft_hz, self.rules, self._defect_orders)
        source = (
            "spectrum" if read
            else "given" if not avg.searched
            else "tracked" if avg.tracked
            else "nominal"
        )  # fmt: skip
        # The averages are in the shaft orders of the segment's speed (its assumed one, then
        # the median of its first readings: every later window re-indexed by its tracked
        # speed over that), so ``fr`` places lines on them; in hertz the machine ran at that
        # times the windows' mean speed over the segment's — a segment speed 1 % off would
        # otherwise be reported 1 % off whatever the windows said.
        shaft_hz = fr * avg.mean_shaft_hz / avg.ref_shaft_hz
        verdicts: list[ChannelVerdict | None] = [None] * len(self.channels)
        acc_h = env_h = None
        if baseline is not None:
            # The same for a segment at one speed and band (levelled anew when bands differ).
            key = (avg.segment, fr, avg.band, acc.shape, None if env is None else env.shape)
            cached = self._healthy
            if (
                cached is None
                or cached[0] is not baseline
                or cached[1] != key
                or (avg.band != baseline.envelope_band_hz)
            ):
                aligned = baseline.aligned(
                    [ch.name for ch in self.channels],
                    avg.df,
                    fr,
                    acc.shape[1],
                    env.shape[1] if env is not None else 0,
                    avg.band,
                    env,
                )
                cached = self._healthy = (baseline, key, aligned)
            acc_h, env_h = cached[2]
        for rows_all, mult in self._groups:
            rows = rows_all
            if no_signal:
                for c in rows_all.tolist():
                    if no_signal[c]:
                        name = self.channels[c].name
                        verdicts[c] = ChannelVerdict(
                            "unknown", 0.0, (), channel=name, reasons=(no_signal[c],)
                        )
                rows = np.array([c for c in rows_all.tolist() if not no_signal[c]], dtype=int)
                if rows.size == 0:
                    continue
            got = judge_channels(
                acc[rows],
                env[rows] if env is not None else None,
                avg.df,
                fr,
                mult,
                k_acc,
                k_eff_env=k_env,
                rules=self.rules,
                iso_group=self.iso_group,
                foundation=self.foundation,
                channels=[self.channels[c].name for c in rows.tolist()],
                healthy=None
                if acc_h is None or env_h is None
                else (acc_h[rows], env_h[rows] if env is not None else None),
                zero_power=None if signal is None else signal.zero_power[rows],
            )
            for c, v in zip(rows.tolist(), got, strict=True):
                verdicts[c] = v
        moved: list[Transmission | None] = [None] * len(self.channels)
        if env is not None and len(set(self.locations)) > 1:
            moved = transmitted(
                verdicts,
                [ch.name for ch in self.channels],
                self.locations,
                [_designation(ch) for ch in self.channels],
                [ch.bearing.defect_multiples() if ch.bearing is not None else None
                 for ch in self.channels],
                env,
                avg.df,
                fr,
                k_env,
                self.rules,
                env_h,
            )  # fmt: skip
        per = [
            _channel(ch, v, avg, shaft_hz, t, source)
            for ch, v, t in zip(self.channels, verdicts, moved, strict=True)
            if v is not None
        ]
        return _combine(per, avg.count)


class PendingDiagnosis:
    """A machine's diagnosis at one window, judged when first read (then kept): the
    averages as they stood then, and the baseline then in force
    (:meth:`DiagnosisEngine.later`).

    Attributes
    ----------
    tick : the window it is of (windows offered to the engine until then)
    segment : the averages' segment then
    windows : windows averaged in it then
    baseline : the baseline it is judged over
    k_eff : independent windows the averages are worth (0 with none): the judgement's
        :attr:`Diagnosis.k_eff` when a channel decides, known without judging
    """

    __slots__ = (
        "_engine",
        "_result",
        "_signal",
        "_state",
        "baseline",
        "k_eff",
        "segment",
        "tick",
        "windows",
    )

    def __init__(
        self,
        engine: DiagnosisEngine,
        state: AverageState,
        baseline: Baseline | None,
        tick: int = 0,
        signal: Signal | None = None,
    ) -> None:
        self._engine: DiagnosisEngine | None = engine
        self._state: AverageState | None = state
        self._signal = signal
        self.baseline = baseline
        self.segment = state.segment
        self.tick = tick
        self.k_eff = 0.0 if state.count == 0 or state.acc is None else state.k_acc
        self.windows = state.count
        self._result: Diagnosis | None = None

    @property
    def judged(self) -> bool:
        """Whether the judgement was made (read) already."""
        return self._result is not None

    def named_bearing_defect(self) -> Diagnosis | None:
        """The diagnosis when it names a bearing defect
        (:func:`~pdm.diagnosis.verdict.names_bearing_defect`), else None — without a
        judgement when the averages are worth fewer than ``MIN_INDEPENDENT_WINDOWS``
        independent windows: a diagnosis names one only from an average worth that many
        (its ``k_eff`` is the averages' :attr:`k_eff` whenever a channel decides)."""
        if self._result is None and not self.k_eff >= MIN_INDEPENDENT_WINDOWS:
            return None
        d = self.result()
        return d if names_bearing_defect(d.label, d.confidence, d.k_eff) else None

    def result(self) -> Diagnosis:
        """The diagnosis (judged now if this is the first read)."""
        if self._result is None:
            assert self._engine is not None and self._state is not None
            self._result = self._engine.judge_state(self._state, self.baseline, self._signal)
            self._engine = self._state = None  # the copies are not needed now
        return self._result


class WindowVerdict:
    """One window's diagnosis from :meth:`DiagnosisEngine.push`: :meth:`result` the routine
    one, :meth:`fresh` one judged near (or at) the window (see the module docstring).

    Attributes
    ----------
    routine : the routine judgement at the window, once the window is averaged in
    tick : the window (windows offered to the engine until it), once averaged in
    """

    __slots__ = ("_engine", "routine", "tick")

    def __init__(self, engine: DiagnosisEngine) -> None:
        self._engine = engine
        self.routine: PendingDiagnosis | None = None
        self.tick = -1

    def result(self) -> Diagnosis:
        """The routine diagnosis at this window."""
        if self.routine is None:
            self._engine.drain(upto=self)
        assert self.routine is not None
        return self.routine.result()

    def fresh(self, *, now: bool = False) -> Diagnosis:
        """The diagnosis judged at most ``fresh_within`` windows before this one (``now``:
        at it); read windows in order for this (:meth:`DiagnosisEngine.fresh_at`)."""
        return self._engine.fresh_at(self, now=now)

    def asks_judgement(self) -> bool:
        """Whether :meth:`named_bearing_defect` would judge now (the routine judgement at
        this window is not made yet and its average could name a defect): the window is
        averaged in to know, as reading it would."""
        if self.routine is None:
            self._engine.drain(upto=self)
        p = self.routine
        assert p is not None
        return not p.judged and p.k_eff >= MIN_INDEPENDENT_WINDOWS

    def named_bearing_defect(self) -> Diagnosis | None:
        """The routine diagnosis at this window when it names a bearing defect, else None
        (:meth:`PendingDiagnosis.named_bearing_defect`: not judged for it while the
        average is worth too few independent windows to name one)."""
        if self.routine is None:
            self._engine.drain(upto=self)
        assert self.routine is not None
        return self.routine.named_bearing_defect()


def _channel(
    ch: ChannelSpec,
    v: ChannelVerdict,
    avg: AverageState,
    shaft_hz: float,
    moved: Transmission | None,
    source: str = "given",
) -> ChannelDiagnosis:
    d = ChannelDiagnosis(
        ch.name,
        v.label,
        confidence(v.label, v.margin_db, v.calibration),
        v,
        shaft_hz * 60.0,
        avg.band,
        avg.count,
        avg.k_acc,
        _designation(ch),
        shaft_speed_source=source,
    )
    if moved is not None:  # another sensor's fault seen here: no fault of this bearing
        d = dataclasses.replace(d, label="unknown", confidence=0.0, transmission=moved)
    return d


def _designation(ch: ChannelSpec) -> str:
    return (ch.bearing.designation or "") if ch.bearing is not None else ""


def _combine(per: list[ChannelDiagnosis], windows: int) -> Diagnosis:
    """The machine's diagnosis: a bearing verdict first, that of the channel whose evidence
    is strongest (the best family's score: a defect is clearest nearest it), whether named or
    uncertain; else the most confident running-speed fault; ``unknown`` only when every
    channel says so (or sees another's fault)."""

    def rank(d: ChannelDiagnosis) -> tuple[bool, bool, float, float]:
        bearing = d.label.startswith("bearing_")
        strength = d.verdict.strength_db if bearing else 0.0
        return (d.label != "unknown", bearing, strength, d.confidence)

    best = max(per, key=rank)
    channel = best.channel if best.label != "unknown" else None
    return Diagnosis(best.label, best.confidence, channel, tuple(per), windows)
