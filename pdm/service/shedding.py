"""Graceful overload: what a busy service sheds, in which order, and when.

A service that cannot keep up used to fall behind on every machine at once, until every
one of them crossed the backlog limit together and every relay dropped — for one faulty
machine, the plant stopped. Now a worker that is busy sheds work in a stated order, one
level at a time, long before any machine's protection is late (docs/service.md,
"Overload"):

===== =================== ====================================================================
level name                what is shed (each level keeps shedding what the levels below shed)
===== =================== ====================================================================
0     ``normal``          nothing
1     ``spectra``         spectra to history (a set due meanwhile is stored when the level falls)
2     ``explanations``    the top features and the diagnosis's evidence text of windows at or
                          above alert (the diagnosis label and its confidence stay: they may
                          corroborate a trip)
3     ``history_detail``  feature and score rows of at most one window a second per machine;
                          rows of windows not ``ok`` and of windows with a transition are kept;
                          states, transitions, events, actions and captures always
4     ``windows_1_in_4``  one window in four of every machine is not decided
5     ``windows_1_in_2``  one in two
6     ``windows_3_in_4``  three in four
7     ``machines_parked`` still overloaded at level 6: machines are *parked*, 5 % of the
                          worker's machines a step — their data is read and discarded, their
                          relays dropped (``appliance_fault``: their protection cannot be
                          decided); those in alert or worse are parked last
===== =================== ====================================================================

**What is never shed** — the protective path of every window that is decided: the DSP
features the trip paths read (ISO 10816-3 velocity, every feature a limit names, all of
them come from the window's one extraction), the sensor health checks, the anomaly score
and the diagnosis label with its confidence (which may corroborate a score trip), the
alarm step, the fsynced state save and the relay. Levels 4-6 decide fewer windows, not
less of a window: a machine skips at most as many windows in a row as keep the windows it
decides contiguous (``window / hop − 1``: with 50 % overlap every second window, with
75 % three in four), so **every sample still passes the protection**; what is lost is the
overlap (decisions every window length instead of every hop). A pipeline without overlap
sheds nothing at levels 4-6. The alarm on-delay counts decided windows, so in time it
stretches by the same factor (decided windows do not overlap: each is independent
evidence). This follows protection practice (API 670: the protection channel is
continuous and never multiplexed away; condition-monitoring data — spectra, trends,
diagnostics — may be sampled more slowly): levels 1-3 are condition monitoring, levels
4-6 its overlap.

Every machine of a worker is at the worker's level, skips by the same fraction (counted
per machine, so each one decides the same share of its windows) and is served in arrival
order by the worker's one processing thread: no machine is starved.

**When** (:func:`shed_step`, a pure step tested as a table): every half second the worker
measures how long its oldest undecided data has waited (``delay_s``) and how busy its
processing thread was. Overloaded — data waiting longer than ``up_delay_s`` with the
thread busy ``up_busy`` of the time — for ``up_samples`` samples in a row while the wait
is not falling: one level up; once the wait passes ``urgent_delay_s`` (a fifth of
``--max-lag-s``: 2 s by default), one level up every sample. Calm — waits under ``down_delay_s`` — and the level below
predicted to fit (this level's busy share × the level below's cost per window / this
level's, both measured) for ``down_s``: one level down. The hysteresis is the gap between
the two waits and the ten seconds.

Level 7 is the last resort of a worker that cannot keep up even deciding every window
length (overloaded at level 6 with the wait past ``urgent_delay_s`` and grown over the last
second): rather than every machine falling behind together until each one's data waits
``--max-lag-s`` and every relay drops, a few machines are given up — explicitly, named in
``/status`` and history — so that the rest stay protected. Parked machines come back one
step at a time (the last parked first) when the others leave room for them: calm, and the
load with one more step of machines predicted under ``down_target``, for ``down_s``.

A machine is still put in ``appliance_fault`` (its relay dropped) when its own data
waited longer than ``--max-lag-s`` for a decision (docs/service.md, "Backlog policy"):
shedding keeps that from happening to all of them because the appliance is busy.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

__all__ = [
    "LEVELS",
    "PARK_LEVEL",
    "LoadSample",
    "Shed",
    "ShedPolicy",
    "ShedState",
    "Shedder",
    "WindowGate",
    "gate",
    "max_skipped_run",
    "park_step",
    "shed_step",
]


@dataclass(frozen=True, slots=True)
class Shed:
    """What one level sheds (see the module docstring)."""

    level: int
    name: str
    #: Spectra go to history.
    spectra: bool
    #: Windows at or above alert get their top features and evidence text.
    explain: bool
    #: Feature and score rows of at most one window per this many seconds of signal per
    #: machine (0: every window's).
    rows_every_s: float
    #: The share of windows not decided (capped per machine by :func:`max_skipped_run`).
    skip: float


LEVELS: tuple[Shed, ...] = (
    Shed(0, "normal", True, True, 0.0, 0.0),
    Shed(1, "spectra", False, True, 0.0, 0.0),
    Shed(2, "explanations", False, False, 0.0, 0.0),
    Shed(3, "history_detail", False, False, 1.0, 0.0),
    Shed(4, "windows_1_in_4", False, False, 1.0, 0.25),
    Shed(5, "windows_1_in_2", False, False, 1.0, 0.5),
    Shed(6, "windows_3_in_4", False, False, 1.0, 0.75),
    Shed(7, "machines_parked", False, False, 1.0, 0.75),
)
#: The level at which machines are parked.
PARK_LEVEL = len(LEVELS) - 1


# -- which windows a machine decides ----------------------------------------------------------
def max_skipped_run(window_samples: int, hop_samples: int) -> int:
    """Windows a machine may skip in a row with the windows it decides still contiguous.

    Decided windows ``i`` and ``i + m + 1`` (``m`` skipped between them) leave no sample
    unexamined when ``(m + 1) · hop ≤ window``.

    >>> max_skipped_run(16384, 8192), max_skipped_run(8192, 2048), max_skipped_run(8192, 8192)
    (1, 3, 0)
    >>> max_skipped_run(10, 4)  # 60 % overlap: skipping one would leave a gap
    1
    """
    if hop_samples <= 0:
        return 0
    return max(0, window_samples // hop_samples - 1)


def gate(acc: float, run: int, skip: float, max_run: int) -> tuple[bool, float, int]:
    """Decide this window or skip it: ``(decide, acc, run)`` after it.

    ``acc`` carries the windows owed to the skipping (``skip`` more each window, at most
    ``max_run``); ``run`` the windows skipped in a row, at most ``max_run``. With ``skip``
    = 1/2 and ``max_run`` ≥ 1 every second window is decided; with 3/4 and ``max_run`` 1
    (50 % overlap) still every second: the coverage caps it.

    >>> acc, run, out = 0.0, 0, []
    >>> for _ in range(8):
    ...     d, acc, run = gate(acc, run, 0.5, 1)
    ...     out.append(int(d))
    >>> out
    [1, 0, 1, 0, 1, 0, 1, 0]
    """
    if skip <= 0.0 or max_run <= 0:
        return True, 0.0, 0
    acc = min(acc + skip, float(max_run))  # never owed more than can be skipped in a row
    if acc >= 1.0 - 1e-9 and run < max_run:
        return False, acc - 1.0, run + 1
    return True, acc, 0


@dataclass
class WindowGate:
    """One machine's :func:`gate`: its credit, its run of skipped windows and its segment
    (a new segment — after a gap — decides its first window: no samples unexamined)."""

    max_run: int
    acc: float = 0.0
    run: int = 0
    segment: int | None = None

    def decide(self, skip: float, segment: int) -> bool:
        if segment != self.segment:
            self.segment, self.acc, self.run = segment, 0.0, 0
            return True
        keep, self.acc, self.run = gate(self.acc, self.run, skip, self.max_run)
        return keep


# -- when: the level, a pure step --------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class LoadSample:
    """What a worker measured over one interval."""

    #: End of the interval, monotonic s.
    t: float
    interval_s: float
    #: The processing thread's time not spent waiting for work, s.
    busy_s: float
    #: Windows cut in the interval (decided or skipped).
    windows: int
    #: How long the oldest undecided data waits now, s.
    delay_s: float
    #: The worker's machines (how many a parking step takes, and may take at most).
    machines: int = 1


@dataclass(frozen=True, slots=True)
class ShedPolicy:
    """The thresholds of :func:`shed_step` (see the module docstring)."""

    up_delay_s: float = 0.5
    up_busy: float = 0.9
    up_samples: int = 2
    down_delay_s: float = 0.2
    down_target: float = 0.8
    down_s: float = 10.0
    #: A wait this long is urgent: one level up every overloaded sample, not every
    #: ``up_samples`` (parking steps still wait ``up_samples``). A fifth of ``--max-lag-s`` (the service
    #: sets it, :meth:`for_deadline`): a sudden 3x overload reaches the level that fits
    #: before any machine's data has waited ``--max-lag-s``.
    urgent_delay_s: float = 2.0
    #: A wait that fell by more than this since the previous sample is draining: the
    #: level in force is enough, give it time.
    draining_s: float = 0.05
    #: Weight of a new sample in a level's cost per window.
    cost_alpha: float = 0.3
    #: The share of a worker's machines a parking step takes (at least one).
    park_share: float = 0.05

    @classmethod
    def for_deadline(cls, max_lag_s: float) -> ShedPolicy:
        """The policy of a service whose machines fault when their data waits ``max_lag_s``."""
        return cls(urgent_delay_s=max(cls().up_delay_s, max_lag_s / 5))


@dataclass(frozen=True, slots=True)
class ShedState:
    """The level and what :func:`shed_step` remembers between samples."""

    level: int = 0
    #: When the level was entered, monotonic s.
    since: float = 0.0
    #: Overloaded samples in a row.
    over: int = 0
    #: When the current calm spell began (None: not calm).
    calm_since: float | None = None
    #: The previous sample's delay, s.
    last_delay: float = 0.0
    #: Busy seconds per window cut, measured at each level (None: not yet).
    cost: tuple[float | None, ...] = field(default=(None,) * len(LEVELS))
    #: Machines parked (level 7 only).
    parked: int = 0
    #: The delay of the sample before the previous one, s (a parking step needs the wait
    #: to have grown over a whole second).
    prev_delay: float = 0.0


def park_step(machines: int, policy: ShedPolicy) -> int:
    """Machines a parking step takes or gives back: ``park_share`` of them, at least one."""
    return max(1, round(policy.park_share * machines + 0.4999))


def shed_step(state: ShedState, s: LoadSample, policy: ShedPolicy) -> ShedState:
    """The state after one more sample (a change: another ``level`` or ``parked``)."""
    busy = s.busy_s / s.interval_s if s.interval_s > 0 else 0.0
    cost = list(state.cost)
    if s.windows > 0 and s.busy_s > 0:
        per = s.busy_s / s.windows
        old = cost[state.level]
        cost[state.level] = per if old is None else old + policy.cost_alpha * (per - old)
    costs = tuple(cost)
    level, parked = state.level, state.parked
    step = park_step(s.machines, policy)

    def stay(over: int = 0, calm_since: float | None = None) -> ShedState:
        return ShedState(
            level, state.since, over, calm_since, s.delay_s, costs, parked, state.last_delay
        )

    def move(new_level: int, new_parked: int) -> ShedState:
        return ShedState(new_level, s.t, 0, None, s.delay_s, costs, new_parked, state.last_delay)

    overloaded = s.delay_s > policy.up_delay_s and busy >= policy.up_busy
    draining = s.delay_s < state.last_delay - policy.draining_s
    if overloaded:
        over = state.over + 1
        # (urgency hurries the levels, never the parking: a parked machine's relay drops,
        # and the wait needs a second to show what the last step gave back)
        urgent = s.delay_s > policy.urgent_delay_s and level < PARK_LEVEL - 1
        if (over < policy.up_samples and not urgent) or draining:
            return stay(over)
        if level < PARK_LEVEL - 1:
            return move(level + 1, 0)
        # A parking step drops relays: only when the wait is past the urgent one and has
        # grown over the last second (a slow drain is not a reason to park one more).
        growing = s.delay_s > state.prev_delay + policy.draining_s
        if s.delay_s <= policy.urgent_delay_s or not growing:
            return stay(over)
        most = max(0, s.machines - 1)  # one machine is always served
        if parked < most:
            return move(PARK_LEVEL, min(most, parked + step))
        return stay(over)
    calm = s.delay_s < policy.down_delay_s
    if not calm or level == 0:
        return stay()
    if level == PARK_LEVEL:
        active = max(1, s.machines - parked)
        fits = busy * (active + min(step, parked)) / active < policy.down_target
    else:
        here, below = costs[level], costs[level - 1]
        fits = (
            busy * below / here < policy.down_target
            if here is not None and below is not None and here > 0
            else busy < policy.down_target * 0.5  # unmeasured: only when clearly idle
        )
    if not fits:
        return stay()
    calm_since = state.calm_since if state.calm_since is not None else s.t
    if s.t - calm_since < policy.down_s:
        return stay(0, calm_since)
    if level == PARK_LEVEL and parked > step:
        return move(PARK_LEVEL, parked - step)
    return move(level - 1, 0)


# -- the worker's controller -------------------------------------------------------------------
@dataclass
class ShedChange:
    """A change of level or of machines parked, for the log and history."""

    old: int
    new: int
    delay_s: float
    busy: float
    parked: int = 0
    machines: int = 0

    @property
    def message(self) -> str:
        what = LEVELS[self.new]
        load = f"oldest data waiting {self.delay_s:.2f} s, processing busy {self.busy:.0%}"
        if self.new == 0:
            return f"shedding off (level 0, was {self.old} {LEVELS[self.old].name}): {load}"
        verb = "up" if self.new > self.old else "down" if self.new < self.old else "stays"
        parked = (
            f"; {self.parked} of {self.machines} machines parked (relays dropped)"
            if self.new == PARK_LEVEL
            else ""
        )
        return f"shedding on, level {self.new} {what.name} ({verb} from {self.old}){parked}: {load}"


class Shedder:
    """A worker's level: :meth:`update` with each sample (the processing thread), :attr:`rules`
    read by every machine's turn, :meth:`status` by the API. ``on_change`` is called with
    each :class:`ShedChange`, on the thread that updates."""

    def __init__(
        self,
        policy: ShedPolicy | None = None,
        on_change: Callable[[ShedChange], None] | None = None,
        *,
        now: float = 0.0,
    ) -> None:
        self.policy = policy or ShedPolicy()
        self.on_change = on_change
        self.state = ShedState(since=now)
        self.rules: Shed = LEVELS[0]
        #: Seconds spent at each level, and times each level was entered.
        self.seconds = [0.0] * len(LEVELS)
        self.entered = [0] * len(LEVELS)
        self.last: LoadSample | None = None
        self._lock = threading.Lock()

    def update(self, sample: LoadSample) -> ShedChange | None:
        with self._lock:
            old = self.state
            self.seconds[old.level] += sample.interval_s
            new = shed_step(old, sample, self.policy)
            self.state, self.last = new, sample
            self.rules = LEVELS[new.level]
            if (new.level, new.parked) == (old.level, old.parked):
                return None
            if new.level != old.level:
                self.entered[new.level] += 1
        busy = sample.busy_s / sample.interval_s if sample.interval_s > 0 else 0.0
        change = ShedChange(old.level, new.level, sample.delay_s, busy, new.parked, sample.machines)
        if self.on_change is not None:
            self.on_change(change)
        return change

    @property
    def parked(self) -> int:
        """Machines to park now (level 7)."""
        return self.state.parked

    def force(self, level: int, now: float, parked: int = 0) -> None:
        """Put the worker at ``level`` now (the next samples move it as usual): for tests of
        what a level sheds."""
        with self._lock:
            self.state = replace(
                self.state, level=level, since=now, over=0, calm_since=None, parked=parked
            )
            self.rules = LEVELS[level]

    def status(self) -> dict[str, Any]:
        """``/status``'s ``shedding`` (besides each machine's own counts)."""
        with self._lock:
            st, last = self.state, self.last
            return {
                "level": st.level,
                "name": LEVELS[st.level].name,
                "parked": st.parked,
                "since_s": None if last is None else round(max(0.0, last.t - st.since), 1),
                "delay_s": None if last is None else round(last.delay_s, 3),
                "busy": None
                if last is None or last.interval_s <= 0
                else round(last.busy_s / last.interval_s, 3),
                "seconds_at_level": {
                    LEVELS[i].name: round(s, 1) for i, s in enumerate(self.seconds) if s > 0
                },
                "times_entered": {LEVELS[i].name: n for i, n in enumerate(self.entered) if n > 0},
            }
