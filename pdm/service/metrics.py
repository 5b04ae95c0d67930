"""The appliance's metrics on ``prometheus_client``, rendered in the Prometheus text format 0.0.4.

A :class:`ServiceMetrics` owns one ``CollectorRegistry`` (per instance: no process-global
registry to reset between tests or services). Its histograms are ``prometheus_client``
histograms; its counters and gauges are :class:`Family` collectors, because their values are
mirrored from counts the runners, the history writer and the inputs keep (a counter set to
its owner's total, which ``prometheus_client.Counter`` cannot), and because several series
of a machine change together (its alarm states, its model version) where a scrape must never
see half of a change::

    m = ServiceMetrics(appliance="edge-7")
    m.windows_total.labels(machine="pump-1").set_total(120)
    with m.stage("dsp").time():
        ...
    m.render()   # the body of GET /metrics

:func:`exposition` writes the registry's families as the service always has: labels in their
declared order (the appliance's first, a histogram's ``le`` last), integral values without
``.0`` and no ``_created`` series, so dashboards, scripts and merges that match the text keep
working (``prometheus_client.generate_latest`` sorts label names and writes ``1.0``;
Prometheus reads both the same).
"""

from __future__ import annotations

import math
import re
import threading
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Literal

from prometheus_client import CollectorRegistry, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from pdm.alarms.state import LEVELS
from pdm.service.shedding import LEVELS as SHED_LEVELS
from pdm.service.shedding import Shedder

if TYPE_CHECKING:
    from prometheus_client.metrics_core import Metric

    from pdm.history.writer import WriterStats

__all__ = [
    "ALARM_STATES",
    "CONTENT_TYPE",
    "STAGES",
    "STAGE_BUCKETS",
    "Family",
    "Series",
    "ServiceMetrics",
    "exposition",
]

#: The Content-Type of :func:`exposition`'s output.
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

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


def _escape_label(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _escape_help(text: str) -> str:
    return text.replace("\\", "\\\\").replace("\n", "\\n")


def exposition(registry: CollectorRegistry) -> str:
    """Every family of ``registry`` in the text exposition format 0.0.4 (:data:`CONTENT_TYPE`),
    in registration order; a counter's family is named with its ``_total``."""
    lines: list[str] = []
    for family in registry.collect():
        name = family.name + "_total" if family.type == "counter" else family.name
        lines += [
            f"# HELP {name} {_escape_help(family.documentation)}",
            f"# TYPE {name} {family.type}",
        ]
        created = family.name + "_created"
        for s in family.samples:
            if s.name == created:
                continue
            labels = ",".join(f'{k}="{_escape_label(v)}"' for k, v in s.labels.items())
            lines.append(
                f"{s.name}{{{labels}}} {_fmt(s.value)}" if labels else f"{s.name} {_fmt(s.value)}"
            )
    return "\n".join(lines) + "\n"


# -- counters and gauges mirrored from the service -----------------------------------------------


class Series:
    """One series of a :class:`Family` (its label values)."""

    __slots__ = ("_family", "_key")

    def __init__(self, family: Family, key: tuple[str, ...]) -> None:
        self._family = family
        self._key = key

    def set(self, value: float) -> None:
        """A gauge's value."""
        self._family.set_many({self._key: value})

    def inc(self, amount: float = 1.0) -> None:
        """Add ``amount`` (a counter's: ≥ 0, a counter only goes up)."""
        self._family.add(self._key, amount)

    def dec(self, amount: float = 1.0) -> None:
        self.inc(-amount)

    def set_total(self, total: float) -> None:
        """Mirror a count kept elsewhere (a runner's or the history writer's), which only grows
        while its owner lives; a smaller value means the owner started again, which
        Prometheus' ``rate()`` reads as a counter reset, as it should."""
        if not total >= 0:
            raise ValueError(f"{self._family.name}: a count is ≥ 0 ({total=})")
        self._family.set_many({self._key: total})

    def get(self) -> float:
        return self._family.get(self._key)


class Family(Collector):
    """A counter or gauge family whose series are set by the service and read at each scrape
    (a ``prometheus_client`` custom collector).

    ``const_labels`` go first on every sample (the appliance's id), then ``labelnames``.
    A family without labels has one series from the start (value 0); a labelled one has
    none until ``labels(...)`` is called. One lock guards every series of the family, so
    :meth:`set_many` changes several at once for any scrape.
    """

    def __init__(
        self,
        kind: Literal["counter", "gauge"],
        name: str,
        help: str,
        labelnames: Sequence[str] = (),
        const_labels: Mapping[str, str] | None = None,
    ) -> None:
        if isinstance(labelnames, str):
            raise TypeError(f"{name}: labelnames must be a sequence of names, not a string")
        const = dict(const_labels or {})
        names = [*const, *labelnames]
        bad = [n for n in names if not _LABEL_NAME.match(n) or n.startswith("__")]
        if bad or len(set(names)) != len(names):
            raise ValueError(f"{name}: label names {names} must be distinct and match [a-zA-Z_]…")
        self.kind, self.name, self.help = kind, name, help
        self.labelnames: tuple[str, ...] = tuple(labelnames)
        self._const = const
        self._lock = threading.Lock()
        self._values: dict[tuple[str, ...], float] = {}
        if not self.labelnames:
            self._values[()] = 0.0

    def _key(self, labels: Mapping[str, object]) -> tuple[str, ...]:
        if labels.keys() != set(self.labelnames):
            raise ValueError(
                f"{self.name}: labels {sorted(labels)} given, {list(self.labelnames)} expected"
            )
        return tuple(str(labels[n]) for n in self.labelnames)

    def labels(self, **labels: object) -> Series:
        """The series for these label values (every label name, each exactly once)."""
        key = self._key(labels)
        with self._lock:
            self._values.setdefault(key, 0.0)
        return Series(self, key)

    def _unlabelled(self) -> Series:
        if self.labelnames:
            raise ValueError(
                f"{self.name} has labels {list(self.labelnames)}: use .labels(...) first"
            )
        return Series(self, ())

    def set(self, value: float) -> None:
        self._unlabelled().set(value)

    def inc(self, amount: float = 1.0) -> None:
        self._unlabelled().inc(amount)

    def set_total(self, total: float) -> None:
        self._unlabelled().set_total(total)

    def get(self, key: tuple[str, ...] = ()) -> float:
        with self._lock:
            return self._values.setdefault(key, 0.0)

    def add(self, key: tuple[str, ...], amount: float) -> None:
        if self.kind == "counter" and not amount >= 0:
            raise ValueError(f"{self.name}: counters only go up ({amount=})")
        with self._lock:
            self._values[key] = self._values.get(key, 0.0) + amount

    def set_many(
        self, values: Mapping[tuple[str, ...], float], *, drop: Mapping[str, object] | None = None
    ) -> None:
        """Set several series (label values → value) at once, after dropping the series that
        match ``drop`` (as :meth:`remove`), under one lock: no scrape sees half of it."""
        with self._lock:
            if drop is not None:
                self._drop(drop)
            for key, value in values.items():
                self._values[key] = float(value)

    def remove(self, **labels: object) -> int:
        """Drop the series whose labels include all of ``labels`` (all series when none are
        given; an unlabelled family goes back to 0). Returns how many were dropped."""
        with self._lock:
            return self._drop(labels)

    def _drop(self, labels: Mapping[str, object]) -> int:
        unknown = set(labels) - set(self.labelnames)
        if unknown:
            raise ValueError(f"{self.name}: no label(s) {sorted(unknown)}")
        want = [(self.labelnames.index(k), str(v)) for k, v in labels.items()]
        gone = [k for k in self._values if all(k[i] == v for i, v in want)]
        for k in gone:
            del self._values[k]
        if not self.labelnames:
            self._values[()] = 0.0
        return len(gone)

    def describe(self) -> Iterable[Metric]:
        return [self._family()]  # the name, for the registry's duplicate check

    def collect(self) -> Iterable[Metric]:
        family = self._family()
        with self._lock:
            items = sorted(self._values.items())
        for key, value in items:
            family.add_metric([*self._const.values(), *key], value)
        return [family]

    def _family(self) -> CounterMetricFamily | GaugeMetricFamily:
        names = [*self._const, *self.labelnames]
        if self.kind == "counter":
            return CounterMetricFamily(self.name, self.help, labels=names)
        return GaugeMetricFamily(self.name, self.help, labels=names)


class _Histograms:
    """A ``prometheus_client`` histogram with the appliance's label bound: ``labels(stage=…)``."""

    def __init__(self, metric: Histogram, const: Mapping[str, str]) -> None:
        self._metric, self._const = metric, dict(const)

    def labels(self, **labels: object) -> Histogram:
        return self._metric.labels(**self._const, **labels)

    def one(self) -> Histogram:
        """The one series of a histogram without labels of its own."""
        return self._metric.labels(**self._const) if self._const else self._metric


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

    def __init__(self, *, appliance: str | None = None) -> None:
        """``appliance``: an ``appliance`` label on every sample (the service gives its
        :func:`pdm.appliance.appliance_id`)."""
        self.registry = CollectorRegistry()
        self._const = {"appliance": appliance} if appliance is not None else {}
        self.windows_total = self._counter("pdm_windows_total", "Windows processed.", ["machine"])
        self.windows_per_second = self._gauge(
            "pdm_windows_per_second", "Windows processed per second (recent rate).", ["machine"]
        )
        self.lag_seconds = self._gauge(
            "pdm_lag_seconds",
            "How far the newest processed window's end is behind real time, in s.",
            ["machine"],
        )
        self.stage_seconds = self._histogram(
            "pdm_stage_seconds",
            "Time spent in each processing stage per batch of windows, in s.",
            ["stage"],
            STAGE_BUCKETS,
        )
        self.decision_latency_seconds = self._histogram(
            "pdm_decision_latency_seconds",
            "From the arrival of a window's last sample (live inputs) to its alarm decision, "
            "the relay command included when the state changes, in s.",
            (),
            DECISION_BUCKETS,
        ).one()
        self.decision_latency_from_sensor_seconds = self._histogram(
            "pdm_decision_latency_from_sensor_seconds",
            "From a window's last sample on the sensor's clock (the end of the live chunk "
            "that completed it: t0 + samples / rate) to its alarm decision, the relay command "
            "included, in s: the DAQ's sending and time in socket buffers included; as right as "
            "the DAQ's clock is.",
            (),
            DECISION_BUCKETS,
        ).one()
        self.queue_depth = self._gauge(
            "pdm_queue_depth", "Windows read but not yet processed.", ["machine"]
        )
        self.history_spool_rows = self._gauge(
            "pdm_history_spool_rows", "Rows waiting in the history spool on disk."
        )
        self.history_rows_dropped_total = self._counter(
            "pdm_history_rows_dropped_total",
            "History rows dropped by the spool's overflow policy (or lost to a disk error).",
        )
        self.history_store_up = self._gauge(
            "pdm_history_store_up", "1 when the history store accepts writes, 0 while spooling."
        )
        self.action_failures_total = self._counter(
            "pdm_action_failures_total", "Failed relay or webhook attempts.", ["action"]
        )
        self.alarm_state = self._gauge(
            "pdm_alarm_state",
            "1 for the machine's current alarm state, 0 for the others.",
            ["machine", "state"],
        )
        self.sensor_fault = self._gauge(
            "pdm_sensor_fault", "1 while a sensor is in sensor_fault.", ["machine", "sensor"]
        )
        self.appliance_fault = self._gauge(
            "pdm_appliance_fault", "1 while the appliance itself is faulty (e.g. the relay fails)."
        )
        self.model_info = self._gauge(
            "pdm_model_info",
            "The model version a machine scores with (always 1).",
            ["machine", "version"],
        )
        self.watchdog_stalls_total = self._counter(
            "pdm_watchdog_stalls_total", "Times the watchdog found the processing loop stalled."
        )
        self.input_refused_total = self._counter(
            "pdm_input_refused_total",
            "Connections, frames or messages a live input refused, by input and cause "
            "(protocol, auth, too_many, per_peer, no_data, slow_frame, memory, clock, "
            "sample_rate, channels, unknown_sensor, ...).",
            ["input", "cause"],
        )
        self.frames_refused_total = self._counter(
            "pdm_frames_refused_total",
            "A machine's frames refused by the pipeline's checks (clock, sample_rate, channels).",
            ["machine", "cause"],
        )
        self.shedding_level = self._gauge(
            "pdm_shedding_level",
            "The worker's shedding level: 0 nothing shed, 1 spectra, 2 explanations, 3 history "
            "detail, 4-6 one window in 4, in 2, 3 in 4 not decided, 7 machines parked "
            "(docs/service.md, Overload).",
        )
        self.machines_parked = self._gauge(
            "pdm_machines_parked",
            "Machines the worker's shedding parked (level 7): not decided, relays dropped.",
        )
        self.shedding_seconds_total = self._counter(
            "pdm_shedding_seconds_total", "Seconds spent at each shedding level.", ["level"]
        )
        self.shed_total = self._counter(
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
        self._lock = threading.Lock()  # of those two (scrapes may run at once)

    def _counter(self, name: str, help: str, labelnames: Sequence[str] = ()) -> Family:
        family = Family("counter", name, help, labelnames, self._const)
        self.registry.register(family)
        return family

    def _gauge(self, name: str, help: str, labelnames: Sequence[str] = ()) -> Family:
        family = Family("gauge", name, help, labelnames, self._const)
        self.registry.register(family)
        return family

    def _histogram(
        self, name: str, help: str, labelnames: Sequence[str], buckets: Sequence[float]
    ) -> _Histograms:
        metric = Histogram(
            name, help, [*self._const, *labelnames], buckets=buckets, registry=self.registry
        )
        return _Histograms(metric, self._const)

    def render(self) -> str:
        return exposition(self.registry)

    def stage(self, name: str) -> Histogram:
        """``with metrics.stage("dsp").time(): ...`` times one stage."""
        return self.stage_seconds.labels(stage=name)

    def set_alarm_state(self, machine: str, state: str) -> None:
        """1 for ``state``, 0 for every other state the machine has shown (all of
        :data:`ALARM_STATES` at least), changed together so no scrape sees two or none."""
        with self._lock:
            shown = self._states_of.get(machine)
            if shown is None:
                shown = self._states_of[machine] = dict.fromkeys(ALARM_STATES)
            shown[state] = None
            self.alarm_state.set_many({(machine, s): float(s == state) for s in shown})

    def set_model(self, machine: str, version: str) -> None:
        """``pdm_model_info{machine,version} 1``, replacing the machine's previous version."""
        with self._lock:
            old = self._model_of.get(machine)
            self._model_of[machine] = version
            drop = {"machine": machine} if old is not None and old != version else None
            self.model_info.set_many({(machine, version): 1.0}, drop=drop)

    def set_sensor_faults(
        self, machine: str, sensors: Iterable[str], faulty: Iterable[str]
    ) -> None:
        """``pdm_sensor_fault`` of each of the machine's ``sensors``: 1 if in ``faulty``."""
        bad = set(faulty)
        self.sensor_fault.set_many({(machine, s): float(s in bad) for s in sensors})

    def observe_history(self, stats: WriterStats) -> None:
        """Copy the history writer's counts (at start, then before each scrape or periodically)."""
        self.history_spool_rows.set(stats.spool_rows)
        self.history_store_up.set(1.0 if stats.store_up else 0.0)
        self.history_rows_dropped_total.set_total(stats.rows_dropped)

    def observe_shedding(self, shedder: Shedder, shed: Sequence[Mapping[str, int]]) -> None:
        """Copy a worker's shedding level, its time per level and the machines' counts."""
        self.shedding_level.set(float(shedder.rules.level))
        self.machines_parked.set(float(shedder.parked))
        for level, seconds in zip(SHED_LEVELS, list(shedder.seconds), strict=True):
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
        with self._lock:
            self._states_of.pop(machine, None)
            self._model_of.pop(machine, None)
