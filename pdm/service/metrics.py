"""A tiny thread-safe metrics registry, rendered in the Prometheus text exposition format 0.0.4.

Three kinds, each with optional labels, each series created at its first use::

    registry = Registry()
    windows = registry.counter("pdm_windows_total", "Windows processed.", ["machine"])
    windows.labels(machine="pump-1").inc()
    up = registry.gauge("pdm_history_store_up", "1 when the history store answers.")
    up.set(1)
    took = registry.histogram("pdm_stage_seconds", "Time per stage, in s.", ["stage"], (0.001, 0.01))
    took.labels(stage="dsp").observe(0.002)
    registry.render()   # the body of GET /metrics

A metric without labels has one series from the start (value 0); a labelled one has
none until ``labels(...)`` is called. Every operation takes the metric's lock, and
:meth:`Registry.render` reads each metric under its lock, so a scrape never sees a
histogram whose buckets disagree with its count.

:class:`ServiceMetrics` declares the appliance's own metrics (the ``pdm_*`` names)
with helpers for the values that need more than one series changed at once.

Why not ``prometheus_client``: the appliance needs a dozen metrics and one text
format; this is ~300 lines with no process-global registry to reset between tests.
"""

from __future__ import annotations

import bisect
import itertools
import math
import re
import threading
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, ClassVar, Generic, TypeVar

from pdm.alarms.state import LEVELS

if TYPE_CHECKING:
    from pdm.history.writer import WriterStats
    from pdm.service.shedding import Shedder

__all__ = [
    "ALARM_STATES",
    "CONTENT_TYPE",
    "STAGES",
    "STAGE_BUCKETS",
    "Counter",
    "CounterSeries",
    "Gauge",
    "GaugeSeries",
    "Histogram",
    "HistogramSeries",
    "Registry",
    "ServiceMetrics",
]

#: The Content-Type of :meth:`Registry.render`'s output.
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

_METRIC_NAME = re.compile(r"^[a-zA-Z_:][a-zA-Z0-9_:]*$")
_LABEL_NAME = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")


def _fmt(value: float) -> str:
    """A sample value as the text format writes it: ``3``, ``0.25``, ``+Inf``, ``NaN``."""
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    if float(value).is_integer() and abs(value) < 2**53:
        return str(int(value))
    return repr(float(value))


def _fmt_le(bound: float) -> str:
    """A bucket bound as Prometheus clients write it (``1.0``, ``0.005``, ``+Inf``), so the
    ``le`` label values match other exporters' in queries across them."""
    return "+Inf" if math.isinf(bound) else repr(float(bound))


def _escape_label(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _escape_help(text: str) -> str:
    return text.replace("\\", "\\\\").replace("\n", "\\n")


# -- metrics -------------------------------------------------------------------------------------

C = TypeVar("C")


class _Metric(Generic[C]):
    """One metric family: a name, a help text, label names and a series per label values."""

    kind: ClassVar[str]
    _reserved_labels: ClassVar[frozenset[str]] = frozenset()

    def __init__(self, name: str, help: str, labelnames: Sequence[str] = ()) -> None:
        if not _METRIC_NAME.match(name):
            raise ValueError(f"metric {name=} must match {_METRIC_NAME.pattern}")
        if isinstance(labelnames, str):
            raise TypeError(f"{name}: labelnames must be a sequence of names, not a string")
        for label in labelnames:
            if not _LABEL_NAME.match(label) or label.startswith("__"):
                raise ValueError(f"{name}: label {label!r} must match {_LABEL_NAME.pattern}")
            if label in self._reserved_labels:
                raise ValueError(f"{name}: label {label!r} is reserved for a {self.kind}")
        if len(set(labelnames)) != len(labelnames):
            raise ValueError(f"{name}: duplicate label names in {list(labelnames)}")
        self.name = name
        self.help = help
        self.labelnames: tuple[str, ...] = tuple(labelnames)
        #: Labels every sample of this family carries (its registry's, e.g. the appliance).
        self.const_labels: tuple[tuple[str, str], ...] = ()
        self._lock = threading.Lock()
        self._series: dict[tuple[str, ...], C] = {}
        #: ``{name="value",...}`` of each series key, built once (a scrape renders thousands).
        self._labels_text: dict[tuple[str, ...], str] = {}
        if not self.labelnames:
            self._series[()] = self._new()

    def _new(self) -> C:
        raise NotImplementedError

    def _key(self, labels: Mapping[str, object]) -> tuple[str, ...]:
        if labels.keys() != set(self.labelnames):
            raise ValueError(
                f"{self.name}: labels {sorted(labels)} given, {list(self.labelnames)} expected"
            )
        return tuple(str(labels[n]) for n in self.labelnames)

    def _cell(self, key: tuple[str, ...]) -> C:
        """The series of ``key``, created if absent (the caller holds the lock)."""
        cell = self._series.get(key)
        if cell is None:
            cell = self._series[key] = self._new()
        return cell

    def remove(self, **labels: object) -> int:
        """Drop the series whose labels include all of ``labels`` (all series when none are
        given; an unlabelled metric goes back to 0). Returns how many were dropped."""
        unknown = set(labels) - set(self.labelnames)
        if unknown:
            raise ValueError(f"{self.name}: no label(s) {sorted(unknown)}")
        want = [(self.labelnames.index(k), str(v)) for k, v in labels.items()]
        with self._lock:
            gone = [k for k in self._series if all(k[i] == v for i, v in want)]
            for k in gone:
                self._drop(k)
            if not self.labelnames:
                self._series[()] = self._new()
        return len(gone)

    def _drop(self, key: tuple[str, ...]) -> None:
        """Forget the series of ``key`` (the caller holds the lock)."""
        self._series.pop(key, None)
        self._labels_text.pop(key, None)

    def _labelstr(self, key: tuple[str, ...], extra: Iterable[tuple[str, str]] = ()) -> str:
        extra = tuple(extra)
        text = self._labels_text.get(key) if not extra else None
        if text is not None:
            return text
        pairs = [*self.const_labels, *zip(self.labelnames, key, strict=True), *extra]
        text = "{" + ",".join(f'{n}="{_escape_label(v)}"' for n, v in pairs) + "}" if pairs else ""
        if not extra:
            self._labels_text[key] = text
        return text

    def _sample_lines(self, key: tuple[str, ...], cell: C) -> list[str]:
        raise NotImplementedError

    def render(self) -> str:
        """This family in the text format: HELP, TYPE, then one line per sample."""
        lines = [f"# HELP {self.name} {_escape_help(self.help)}", f"# TYPE {self.name} {self.kind}"]
        with self._lock:
            for key in sorted(self._series):
                lines += self._sample_lines(key, self._series[key])
        return "\n".join(lines) + "\n"

    def _unlabelled(self) -> tuple[str, ...]:
        if self.labelnames:
            raise ValueError(
                f"{self.name} has labels {list(self.labelnames)}: use .labels(...) first"
            )
        return ()


class _Cell:
    """A counter's or gauge's value (a box, so series objects can share it under the lock)."""

    __slots__ = ("value",)

    def __init__(self) -> None:
        self.value = 0.0


class CounterSeries:
    """One series of a :class:`Counter`."""

    __slots__ = ("_key", "_metric")

    def __init__(self, metric: Counter, key: tuple[str, ...]) -> None:
        self._metric = metric
        self._key = key

    def inc(self, amount: float = 1.0) -> None:
        """Add ``amount`` (≥ 0: a counter only goes up)."""
        if not amount >= 0:
            raise ValueError(f"{self._metric.name}: counters only go up ({amount=})")
        with self._metric._lock:
            self._metric._cell(self._key).value += amount

    def set_total(self, total: float) -> None:
        """Mirror a count kept elsewhere (a runner's or the history writer's), which only grows
        while its owner lives; a smaller value means the owner started again, which
        Prometheus' ``rate()`` reads as a counter reset, as it should."""
        if not total >= 0:
            raise ValueError(f"{self._metric.name}: a count is ≥ 0 ({total=})")
        with self._metric._lock:
            self._metric._cell(self._key).value = float(total)

    def get(self) -> float:
        with self._metric._lock:
            return self._metric._cell(self._key).value


class Counter(_Metric[_Cell]):
    """A value that only goes up (and back to 0 when the process restarts)."""

    kind = "counter"

    def _new(self) -> _Cell:
        return _Cell()

    def labels(self, **labels: object) -> CounterSeries:
        """The series for these label values (every label name, each exactly once)."""
        key = self._key(labels)
        with self._lock:
            self._cell(key)
        return CounterSeries(self, key)

    def inc(self, amount: float = 1.0) -> None:
        CounterSeries(self, self._unlabelled()).inc(amount)

    def set_total(self, total: float) -> None:
        CounterSeries(self, self._unlabelled()).set_total(total)

    def get(self) -> float:
        return CounterSeries(self, self._unlabelled()).get()

    def _sample_lines(self, key: tuple[str, ...], cell: _Cell) -> list[str]:
        return [f"{self.name}{self._labelstr(key)} {_fmt(cell.value)}"]


class GaugeSeries:
    """One series of a :class:`Gauge`."""

    __slots__ = ("_key", "_metric")

    def __init__(self, metric: Gauge, key: tuple[str, ...]) -> None:
        self._metric = metric
        self._key = key

    def set(self, value: float) -> None:
        with self._metric._lock:
            self._metric._cell(self._key).value = float(value)

    def inc(self, amount: float = 1.0) -> None:
        with self._metric._lock:
            self._metric._cell(self._key).value += amount

    def dec(self, amount: float = 1.0) -> None:
        self.inc(-amount)

    def get(self) -> float:
        with self._metric._lock:
            return self._metric._cell(self._key).value


class Gauge(_Metric[_Cell]):
    """A value that goes up and down."""

    kind = "gauge"

    def _new(self) -> _Cell:
        return _Cell()

    def labels(self, **labels: object) -> GaugeSeries:
        """The series for these label values (every label name, each exactly once)."""
        key = self._key(labels)
        with self._lock:
            self._cell(key)
        return GaugeSeries(self, key)

    def set(self, value: float) -> None:
        GaugeSeries(self, self._unlabelled()).set(value)

    def inc(self, amount: float = 1.0) -> None:
        GaugeSeries(self, self._unlabelled()).inc(amount)

    def dec(self, amount: float = 1.0) -> None:
        GaugeSeries(self, self._unlabelled()).dec(amount)

    def get(self) -> float:
        return GaugeSeries(self, self._unlabelled()).get()

    def _sample_lines(self, key: tuple[str, ...], cell: _Cell) -> list[str]:
        return [f"{self.name}{self._labelstr(key)} {_fmt(cell.value)}"]


class _HistCell:
    __slots__ = ("count", "counts", "sum")

    def __init__(self, n: int) -> None:
        self.counts = [0] * n  # per bucket, not cumulative; the last is +Inf
        self.sum = 0.0
        self.count = 0


class HistogramSeries:
    """One series of a :class:`Histogram`."""

    __slots__ = ("_key", "_metric")

    def __init__(self, metric: Histogram, key: tuple[str, ...]) -> None:
        self._metric = metric
        self._key = key

    def observe(self, value: float) -> None:
        """Count ``value`` in the first bucket whose upper bound is ≥ it (NaN: only ``+Inf``)."""
        m = self._metric
        i = bisect.bisect_left(m.buckets, value)
        with m._lock:
            cell = m._cell(self._key)
            cell.counts[i] += 1
            cell.sum += value
            cell.count += 1

    @contextmanager
    def time(self) -> Iterator[None]:
        """Observe the seconds the ``with`` block takes (``time.perf_counter``)."""
        t0 = time.perf_counter()
        try:
            yield
        finally:
            self.observe(time.perf_counter() - t0)

    def get(self) -> tuple[list[int], float, int]:
        """(cumulative bucket counts, sum, count): what :meth:`render` would show."""
        with self._metric._lock:
            cell = self._metric._cell(self._key)
            cum, run = [], 0
            for n in cell.counts:
                run += n
                cum.append(run)
            return cum, cell.sum, cell.count


class Histogram(_Metric[_HistCell]):
    """Observations counted in fixed buckets, with their sum and count.

    ``buckets``: finite upper bounds, strictly increasing; ``+Inf`` is added.
    """

    kind = "histogram"
    _reserved_labels = frozenset({"le"})

    def __init__(
        self,
        name: str,
        help: str,
        labelnames: Sequence[str] = (),
        buckets: Sequence[float] = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
    ) -> None:
        bounds = [float(b) for b in buckets]
        if not bounds or any(not math.isfinite(b) for b in bounds):
            raise ValueError(f"{name}: {buckets=} must be finite bounds, at least one")
        if any(b >= c for b, c in itertools.pairwise(bounds)):
            raise ValueError(f"{name}: {buckets=} must be strictly increasing")
        self.buckets: tuple[float, ...] = (*bounds, math.inf)
        super().__init__(name, help, labelnames)

    def _new(self) -> _HistCell:
        return _HistCell(len(self.buckets))

    def labels(self, **labels: object) -> HistogramSeries:
        """The series for these label values (every label name, each exactly once)."""
        key = self._key(labels)
        with self._lock:
            self._cell(key)
        return HistogramSeries(self, key)

    def observe(self, value: float) -> None:
        HistogramSeries(self, self._unlabelled()).observe(value)

    def _sample_lines(self, key: tuple[str, ...], cell: _HistCell) -> list[str]:
        lines, run = [], 0
        for bound, n in zip(self.buckets, cell.counts, strict=True):
            run += n
            lines.append(f"{self.name}_bucket{self._labelstr(key, [('le', _fmt_le(bound))])} {run}")
        lines.append(f"{self.name}_sum{self._labelstr(key)} {_fmt(cell.sum)}")
        lines.append(f"{self.name}_count{self._labelstr(key)} {cell.count}")
        return lines


M = TypeVar("M", bound="_Metric[Any]")


class Registry:
    """Metric families by name, rendered in the order they were registered.

    ``const_labels`` go on every sample of every family (the appliance's id: many
    appliances' series in one Prometheus stay apart without relabelling).
    """

    def __init__(self, const_labels: Mapping[str, str] | None = None) -> None:
        self._lock = threading.Lock()
        self._metrics: dict[str, _Metric[Any]] = {}
        for label in const_labels or {}:
            if not _LABEL_NAME.match(label) or label.startswith("__"):
                raise ValueError(f"label {label!r} must match {_LABEL_NAME.pattern}")
        self.const_labels = tuple((k, str(v)) for k, v in (const_labels or {}).items())

    def register(self, metric: M) -> M:
        clash = {k for k, _ in self.const_labels} & set(metric.labelnames)
        if clash:
            raise ValueError(f"{metric.name}: label(s) {sorted(clash)} are the registry's own")
        metric.const_labels = self.const_labels
        with self._lock:
            if metric.name in self._metrics:
                raise ValueError(f"metric {metric.name!r} is already registered")
            self._metrics[metric.name] = metric
        return metric

    def counter(self, name: str, help: str, labelnames: Sequence[str] = ()) -> Counter:
        return self.register(Counter(name, help, labelnames))

    def gauge(self, name: str, help: str, labelnames: Sequence[str] = ()) -> Gauge:
        return self.register(Gauge(name, help, labelnames))

    def histogram(
        self, name: str, help: str, labelnames: Sequence[str], buckets: Sequence[float]
    ) -> Histogram:
        return self.register(Histogram(name, help, labelnames, buckets))

    def render(self) -> str:
        """Every family in the text exposition format 0.0.4 (:data:`CONTENT_TYPE`)."""
        with self._lock:
            metrics = list(self._metrics.values())
        return "".join(m.render() for m in metrics)


# -- the appliance's metrics ---------------------------------------------------------------------

#: The processing stages timed by ``pdm_stage_seconds``.
STAGES = ("read", "dsp", "score", "alarms", "history")
#: The machine alarm states of ``pdm_alarm_state``: :data:`pdm.alarms.state.LEVELS`.
ALARM_STATES: tuple[str, ...] = LEVELS
#: ``pdm_stage_seconds`` buckets, s: a stage takes ~0.1 ms (scoring) to tens of ms (a DSP
#: batch); seconds mean something is wrong.
STAGE_BUCKETS = (
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
)  # fmt: skip


#: Fine at the low end, where the decision latency of a keeping-up appliance lies (s).
DECISION_BUCKETS = (
    *(i * 0.00025 for i in range(1, 21)),  # 0.25 ms steps to 5 ms
    0.006, 0.007, 0.008, 0.009, 0.01, 0.0125, 0.015, 0.0175, 0.02, 0.025, 0.03, 0.04, 0.05,
    0.075, 0.1, 0.15, 0.2, 0.3, 0.5, 0.75, 1.0, 2.0, 5.0, 10.0,
)  # fmt: skip


class ServiceMetrics:
    """The appliance service's metrics, declared once; :meth:`render` is ``GET /metrics``.

    Each family is the attribute named as the metric without ``pdm_``
    (``m.windows_total`` is ``pdm_windows_total``). The service updates them directly
    (``m.windows_total.labels(machine="pump-1").inc()``, ``m.stage("dsp").time()``) or
    through the helpers below, which change several series consistently.
    """

    def __init__(self, registry: Registry | None = None, *, appliance: str | None = None) -> None:
        """``appliance``: an ``appliance`` label on every sample (the service gives its
        :func:`pdm.appliance.appliance_id`); ignored when ``registry`` is given."""
        if registry is None:
            registry = Registry({"appliance": appliance} if appliance is not None else None)
        r = self.registry = registry
        self.windows_total = r.counter("pdm_windows_total", "Windows processed.", ["machine"])
        self.windows_per_second = r.gauge(
            "pdm_windows_per_second", "Windows processed per second (recent rate).", ["machine"]
        )
        self.lag_seconds = r.gauge(
            "pdm_lag_seconds",
            "How far the newest processed window's end is behind real time, in s.",
            ["machine"],
        )
        self.stage_seconds = r.histogram(
            "pdm_stage_seconds",
            "Time spent in each processing stage per batch of windows, in s.",
            ["stage"],
            STAGE_BUCKETS,
        )
        self.decision_latency_seconds = r.histogram(
            "pdm_decision_latency_seconds",
            "From the arrival of a window's last sample (live inputs) to its alarm decision, "
            "the relay command included when the state changes, in s.",
            (),
            DECISION_BUCKETS,
        )
        self.decision_latency_from_sensor_seconds = r.histogram(
            "pdm_decision_latency_from_sensor_seconds",
            "From a window's last sample on the sensor's clock (the end of the live chunk "
            "that completed it: t0 + samples / rate) to its alarm decision, the relay command "
            "included, in s: the DAQ's sending and time in socket buffers included; as right as "
            "the DAQ's clock is.",
            (),
            DECISION_BUCKETS,
        )
        self.queue_depth = r.gauge(
            "pdm_queue_depth", "Windows read but not yet processed.", ["machine"]
        )
        self.history_spool_rows = r.gauge(
            "pdm_history_spool_rows", "Rows waiting in the history spool on disk."
        )
        self.history_rows_dropped_total = r.counter(
            "pdm_history_rows_dropped_total",
            "History rows dropped by the spool's overflow policy (or lost to a disk error).",
        )
        self.history_store_up = r.gauge(
            "pdm_history_store_up", "1 when the history store accepts writes, 0 while spooling."
        )
        self.action_failures_total = r.counter(
            "pdm_action_failures_total", "Failed relay or webhook attempts.", ["action"]
        )
        self.alarm_state = r.gauge(
            "pdm_alarm_state",
            "1 for the machine's current alarm state, 0 for the others.",
            ["machine", "state"],
        )
        self.sensor_fault = r.gauge(
            "pdm_sensor_fault", "1 while a sensor is in sensor_fault.", ["machine", "sensor"]
        )
        self.appliance_fault = r.gauge(
            "pdm_appliance_fault", "1 while the appliance itself is faulty (e.g. the relay fails)."
        )
        self.model_info = r.gauge(
            "pdm_model_info",
            "The model version a machine scores with (always 1).",
            ["machine", "version"],
        )
        self.watchdog_stalls_total = r.counter(
            "pdm_watchdog_stalls_total", "Times the watchdog found the processing loop stalled."
        )
        self.input_refused_total = r.counter(
            "pdm_input_refused_total",
            "Connections, frames or messages a live input refused, by input and cause "
            "(protocol, auth, too_many, per_peer, no_data, slow_frame, memory, clock, "
            "sample_rate, channels, unknown_sensor, ...).",
            ["input", "cause"],
        )
        self.frames_refused_total = r.counter(
            "pdm_frames_refused_total",
            "A machine's frames refused by the pipeline's checks (clock, sample_rate, channels).",
            ["machine", "cause"],
        )
        self.shedding_level = r.gauge(
            "pdm_shedding_level",
            "The worker's shedding level: 0 nothing shed, 1 spectra, 2 explanations, 3 history "
            "detail, 4-6 one window in 4, in 2, 3 in 4 not decided, 7 machines parked "
            "(docs/service.md, Overload).",
        )
        self.machines_parked = r.gauge(
            "pdm_machines_parked",
            "Machines the worker's shedding parked (level 7): not decided, relays dropped.",
        )
        self.shedding_seconds_total = r.counter(
            "pdm_shedding_seconds_total", "Seconds spent at each shedding level.", ["level"]
        )
        self.shed_total = r.counter(
            "pdm_shed_total",
            "What shedding left out, over every machine: windows not decided, spectra sets "
            "not stored, explanations not made, windows whose feature and score rows were "
            "not stored.",
            ["what"],
        )
        for stage in STAGES:  # every stage shows (with zero counts) from the first scrape
            self.stage_seconds.labels(stage=stage)
        # Each machine's alarm states shown and model version: a scrape updates every
        # machine's series, and looking for them among all machines' made that quadratic
        # (measured: 235 machines, 10 ms a scrape, held under the interpreter lock).
        self._states_of: dict[str, dict[str, None]] = {}
        self._model_of: dict[str, str] = {}

    def render(self) -> str:
        return self.registry.render()

    def stage(self, name: str) -> HistogramSeries:
        """``with metrics.stage("dsp").time(): ...`` times one stage."""
        return self.stage_seconds.labels(stage=name)

    def set_alarm_state(self, machine: str, state: str) -> None:
        """1 for ``state``, 0 for every other state the machine has shown (all of
        :data:`ALARM_STATES` at least), changed together so no scrape sees two or none."""
        g = self.alarm_state
        with g._lock:
            shown = self._states_of.get(machine)
            if shown is None:
                shown = self._states_of[machine] = dict.fromkeys(ALARM_STATES)
            shown[state] = None
            for s in shown:
                g._cell((machine, s)).value = 1.0 if s == state else 0.0

    def set_model(self, machine: str, version: str) -> None:
        """``pdm_model_info{machine,version} 1``, replacing the machine's previous version."""
        g = self.model_info
        with g._lock:
            old = self._model_of.get(machine)
            if old is not None and old != version:
                g._drop((machine, old))
            self._model_of[machine] = version
            g._cell((machine, version)).value = 1.0

    def set_sensor_faults(
        self, machine: str, sensors: Iterable[str], faulty: Iterable[str]
    ) -> None:
        """``pdm_sensor_fault`` of each of the machine's ``sensors``: 1 if in ``faulty``."""
        bad = set(faulty)
        g = self.sensor_fault
        with g._lock:
            for sensor in sensors:
                g._cell((machine, sensor)).value = 1.0 if sensor in bad else 0.0

    def observe_history(self, stats: WriterStats) -> None:
        """Copy the history writer's counts (at start, then before each scrape or periodically)."""
        self.history_spool_rows.set(stats.spool_rows)
        self.history_store_up.set(1.0 if stats.store_up else 0.0)
        self.history_rows_dropped_total.set_total(stats.rows_dropped)

    def observe_shedding(self, shedder: Shedder, shed: Sequence[Mapping[str, int]]) -> None:
        """Copy a worker's shedding level, its time per level and the machines' counts."""
        from pdm.service.shedding import LEVELS

        self.shedding_level.set(float(shedder.rules.level))
        self.machines_parked.set(float(shedder.parked))
        for level, seconds in zip(LEVELS, list(shedder.seconds), strict=True):
            self.shedding_seconds_total.labels(level=level.name).set_total(seconds)
        totals: dict[str, int] = {}
        for counts in shed:
            for what, n in counts.items():
                totals[what] = totals.get(what, 0) + n
        for what, n in totals.items():
            self.shed_total.labels(what=what).set_total(n)

    def forget_machine(self, machine: str) -> None:
        """Drop every series of ``machine`` (it left the configuration)."""
        for g in (self.windows_total, self.windows_per_second, self.lag_seconds, self.queue_depth):
            g.remove(machine=machine)
        for g in (self.alarm_state, self.sensor_fault, self.model_info):
            g.remove(machine=machine)
        self.frames_refused_total.remove(machine=machine)
        self._states_of.pop(machine, None)
        self._model_of.pop(machine, None)
