"""One monitored machine inside the service: chunks in, everything else out.

A :class:`MachineRunner` owns a bounded queue of chunks and takes them through the
same path as ``pdm-edge replay`` — windows, features, scoring (teach-in included), the
alarm engine (actions live) and the history writer — on a :class:`RunnerPool`'s thread,
whose rounds extract the windows of all machines waiting in one pass (or on a thread
of its own).

**Backlog policy** (never a silent drop): sources put chunks with
:meth:`MachineRunner.offer`; when the queue is full the source waits up to
``put_timeout_s`` (a TCP sender is slowed by TCP's own flow control). If the
machine's processing then lags real time by more than ``max_lag_s`` (a live chunk
waited that long for its decision; see :meth:`MachineRunner._check_lag`), the
runner raises ``appliance_fault`` (its relay drops — an unsupervised machine
must not run), discards the queued backlog, counts it (``backlog_dropped``
samples, an event in history) and restarts the windowing at the newest data.
It clears the fault when it has kept up for ``max_lag_s`` again.

**Watchdog**: :attr:`heartbeat` moves after every chunk; the service's
watchdog drops the relay and raises ``appliance_fault`` when a runner with
work waiting has not moved for ``stall_s``.

**Shadow mode**: a checked candidate model set with :meth:`MachineRunner.set_shadow`
scores every window the active model scores (the same feature vector, batch 1,
after the window's alarms and history are done) and feeds a
:class:`~pdm.scoring.update.ShadowStats`; its scores never reach the alarm
engine, the actions or the history rows.
"""

from __future__ import annotations

import contextlib
import logging
import math
import queue
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from pdm.config import Pipeline
from pdm.dsp.features import FeatureExtractor, extract_many
from pdm.dsp.windows import Window
from pdm.history.provenance import CaptureStore
from pdm.history.recorder import Recorder
from pdm.history.records import Event
from pdm.history.writer import HistoryWriter
from pdm.loglimit import LogLimiter
from pdm.processing import FeatureStream, WindowFeatures
from pdm.scoring.result import CONFIDENCE_DECIMALS, WindowScore, written_score
from pdm.service.shedding import LEVELS, LoadSample, Shed, Shedder, WindowGate, max_skipped_run
from pdm.sources.base import Chunk
from pdm.supervision.engine import AlarmEngine
from pdm.supervision.store import AlarmStore
from pdm.supervision.window import WindowPipeline

if TYPE_CHECKING:
    from pdm.scoring.runtime import Model
    from pdm.scoring.vector import FeatureVectorizer

__all__ = ["SHED_KINDS", "MachineRunner", "RunnerPool", "RunnerStats", "ShadowRun"]

log = logging.getLogger("pdm.service")


#: What a machine's shedding counts (``/status``'s ``shedding.shed``, ``pdm_shed_total``).
SHED_KINDS = ("windows", "spectra", "explanations", "history_rows")


@dataclass
class RunnerStats:
    windows: int = 0
    chunks: int = 0
    samples_dropped: int = 0
    last_window_t: float | None = None  # POSIX s, end of the newest window
    lag_s: float = 0.0
    stage_s: dict[str, float] | None = None
    started: float = 0.0
    #: What the worker's shedding (pdm/service/shedding.py) left out for this machine:
    #: windows not decided, spectra sets not stored, explanations not made, windows whose
    #: feature and score rows were not stored.
    shed: dict[str, int] = field(default_factory=lambda: dict.fromkeys(SHED_KINDS, 0))


class ShadowRun:
    """A candidate model scored beside the active one, and its agreement figures.

    Written by the runner's thread (:meth:`add`), read by the API's (:meth:`as_dict`):
    both under :attr:`lock`. The figures restart whenever the active model changes, so
    they always compare the candidate with the model that is scoring now.
    """

    def __init__(self, model: Model, vectorizer: FeatureVectorizer, directory: Path) -> None:
        from pdm.scoring.update import ShadowStats

        self.model = model
        self.vectorizer = vectorizer
        self.directory = directory
        self.version = model.version
        self.since_ns = time.time_ns()
        self.active_version = ""
        self.stats = ShadowStats()
        self.errors = 0
        self.lock = threading.Lock()

    def add(self, active_version: str, active: float, active_state: str, score: float) -> None:
        """One window: the active model's score and state, the candidate's score."""
        from pdm.scoring.update import ShadowStats

        with self.lock:
            if active_version != self.active_version:
                self.active_version, self.stats = active_version, ShadowStats()
                self.since_ns = time.time_ns()
            self.stats.add(active, score, active_state, self.model.state(score))

    def as_dict(self) -> dict[str, Any]:
        """``GET /status``'s ``shadow``: versions, since when, and :meth:`ShadowStats.as_dict`."""
        with self.lock:
            return {
                "version": self.version,
                "active_version": self.active_version or None,
                "since": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(self.since_ns / 1e9)),
                "thresholds": {"alert": self.model.alert, "danger": self.model.danger},
                **self.stats.as_dict(),
                "errors": self.errors,
            }


class _Turns:
    """The machines with a chunk waiting, one entry per chunk offered (a ``SimpleQueue``'s
    ``put``/``get``/``get_nowait``/``empty``): in arrival order, except that a machine whose
    next window may trip its relay (:attr:`MachineRunner.urgent`, judged when the entry is
    put) goes before the others waiting — one entry of it at a time, so a machine with a
    backlog jumps the line by one chunk, not by its backlog.

    Why: when many DAQs sample in step, every machine's window arrives in the same instant
    and a round after round of other machines' work stood before a trip (measured: median
    27 ms from the deciding window's last sample to the relay at 60 machines, docs/service.md
    "Limits, honestly"). A k-of-n debounce only trips a machine whose recent windows were
    over a threshold already, so those are known before the deciding window comes. The
    work done is the same, only its order changes: a machine not urgent waits at most one
    turn per urgent machine waiting.
    """

    def __init__(self) -> None:
        self._cond = threading.Condition(threading.Lock())
        self._urgent: deque[MachineRunner] = deque()
        self._rest: deque[MachineRunner] = deque()
        self._ahead: set[MachineRunner] = set()  # the machines with an entry in _urgent

    def put(self, runner: MachineRunner) -> None:
        urgent = runner not in self._ahead and runner.urgent
        with self._cond:
            if urgent and runner not in self._ahead:
                self._ahead.add(runner)
                self._urgent.append(runner)
            else:
                self._rest.append(runner)
            self._cond.notify()

    def _pop(self) -> MachineRunner:
        if self._urgent:
            runner = self._urgent.popleft()
            self._ahead.discard(runner)
            return runner
        if self._rest:
            return self._rest.popleft()
        raise queue.Empty

    def get_nowait(self) -> MachineRunner:
        with self._cond:
            return self._pop()

    def get(self, timeout: float | None = None) -> MachineRunner:
        """The next entry, waiting up to ``timeout`` s (forever: None); ``queue.Empty``."""
        with self._cond:
            if not self._cond.wait_for(lambda: self._urgent or self._rest, timeout):
                raise queue.Empty
            return self._pop()

    def empty(self) -> bool:
        return not (self._urgent or self._rest)


class RunnerPool:
    """One processing thread for many machines: each chunk offered is one turn, in arrival order
    (a machine that may trip first, see :class:`_Turns`).

    A thread per machine looks free but is not: only one thread runs Python at a time, and a
    hundred runner threads starve the one that reads the network (measured: a process with
    ~100 machines of 2 tri-axial sensors fell behind at half the load one thread sustains).
    A pool keeps one processing thread per process (the service scales with processes, see
    :mod:`pdm.service.workers`); the machines take turns chunk by chunk, so a busy machine
    cannot hold the others back by more than one chunk's work.

    The watchdog watches the pool: :attr:`heartbeat` moves after every turn and every idle
    half second, so a machine waiting for its turn is not "stalled" — the loop is.

    A turn is taken in rounds (:meth:`_round`): every machine with a chunk waiting cuts its
    windows, all the windows are extracted together, then each machine goes on with its
    own. At light load a round is one chunk (nothing else waits); as load rises rounds
    grow and the FFTs of many machines run as one call — the cost per window falls just
    when it matters.
    """

    #: A round stops taking turns at this many windows (or turns): the decision latency
    #: of a round's first window includes the whole round's work. Four, not eight: the
    #: cost per window is the same from two up, and a longer round only delays its first
    #: window (docs/benchmarks.md, "Why the service's constants have their values").
    max_windows = 4
    max_turns = 64
    #: Under load, a round holding fewer than ``gather_windows`` windows waits for more,
    #: up to ``gather_s`` after its first window's data arrived: a window extracted alone
    #: costs more than one extracted with others (the FFTs batch; docs/benchmarks.md, "Why
    #: the service's constants have their values"). It waits only when windows
    #: come faster than one per ``gather_s`` (:attr:`window_rate`): at light load nothing
    #: would come, and each window is processed at once.
    gather_windows = 4
    gather_s = 0.004

    def __init__(self, name: str = "pdm-machines") -> None:
        #: The machines with a chunk waiting; those whose next window may trip go first.
        self.ready = _Turns()
        self.runners: list[MachineRunner] = []
        self.heartbeat = time.monotonic()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._lock = threading.Lock()
        #: A network input this thread polls between rounds (see :meth:`drive`).
        self.poller: Callable[[float], None] | None = None
        #: Machines whose queue reached half full from that input: no more reading until
        #: they are down to a quarter (the sender then waits on TCP's flow control).
        self.congested: set[MachineRunner] = set()
        #: Windows cut per second, over the last housekeeping interval (~0.5 s).
        self.window_rate = 0.0
        #: Set while this thread waits for work (the network or its queue): the history
        #: writer binds its statements then (HistoryWriter.yield_to) rather than in the
        #: middle of a round, where taking the interpreter lock delayed the windows waiting.
        self.idle = threading.Event()
        self._rate_windows = 0
        self._rate_since = time.monotonic()
        #: The worker's shedding level (pdm/service/shedding.py), sampled every half second
        #: from what this thread measures: how long it waited for work (the rest of the
        #: time it was busy), the windows cut, and how long the oldest undecided data waits.
        self.shedder = Shedder(now=self._rate_since)
        self._idle_s = 0.0
        #: Since when the network has not been read because a queue is congested (its data
        #: waits in the kernel meanwhile: that wait counts as the oldest data's too).
        self._paused_since: float | None = None
        #: The processing thread's id in the kernel (set when it runs).
        self.native_id: int | None = None
        #: Machines parked by the shedding (level 7), in the order they were parked.
        self.parked: list[MachineRunner] = []

    def add(self, runner: MachineRunner) -> None:
        with self._lock:
            self.runners.append(runner)

    def start(self) -> None:
        with self._lock:
            if not self._thread.is_alive() and self._thread.ident is None:
                self._thread.start()

    def drive(self, poll: Callable[[float], None]) -> None:
        """Let this thread read the network too: ``poll(timeout)`` (e.g.
        :meth:`TcpStreamServer.poll <pdm.sources.tcp.TcpStreamServer.poll>`) waits up to
        ``timeout`` s for frames and offers them, between rounds and while a round gathers.

        A reader thread of its own costs more than the reading: every frame took the
        interpreter lock from the processing, and every wait for it back could last the
        interpreter's switch interval (measured: ~90 µs of CPU per frame in the reader
        thread). Read here, frames and windows take turns without a hand-over.
        """
        self.poller = poll

    @property
    def on_thread(self) -> bool:
        """True on the pool's own thread (where offering must never wait)."""
        return threading.current_thread() is self._thread

    def _may_read(self) -> bool:
        """Whether the network may be read now (no machine's queue is congested)."""
        if self.congested:
            self.congested = {r for r in self.congested if r.queue.qsize() > r.queue.maxsize // 4}
        if self.congested:
            if self._paused_since is None:
                self._paused_since = time.monotonic()
            return False
        self._paused_since = None
        return True

    def _next(self, timeout: float) -> MachineRunner | None:
        """The next machine with a chunk waiting, waiting up to ``timeout`` s for one."""
        poll = self.poller
        if poll is not None and not self._may_read():
            poll = None  # work off the backlog first: nothing is read meanwhile
        waits = timeout > 0 and self.ready.empty()
        if waits:
            self.idle.set()
            t0 = time.monotonic()
        try:
            if poll is None and timeout > 0:
                return self.ready.get(timeout=timeout)
            if poll is not None and self.ready.empty():
                poll(timeout)  # waits for the network, which offers what it reads
            return self.ready.get_nowait()
        except queue.Empty:
            return None
        finally:
            if waits:
                self.idle.clear()
                # (the reading of what came counts as waiting too: a small share, and it
                # ends the wait only when something came)
                self._idle_s += time.monotonic() - t0

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()

    def _run(self) -> None:
        self.native_id = threading.get_native_id()  # the watchdog reads its CPU time
        housekeeping = time.monotonic() + 0.5
        while True:
            poll = self.poller
            if poll is not None and not self.ready.empty() and self._may_read():
                poll(0.0)  # busy: take in what the network has, without waiting
            runner = self._next(max(0.0, min(0.5, housekeeping - time.monotonic())))
            if runner is not None:
                self._round(runner)
            now = self.heartbeat = time.monotonic()
            if now >= housekeeping:
                housekeeping = now + 0.5
                with self._lock:
                    runners = list(self.runners)
                self._sample_load(now, runners)
                for r in runners:
                    if not r._done.is_set() and r.queue.empty():
                        r.writer.submit(*r.engine.retry_relay())
                if runners and all(r._done.is_set() for r in runners):
                    return

    def _sample_load(self, now: float, runners: list[MachineRunner]) -> None:
        """Every half second: the window rate (for gathering) and the shedding's sample."""
        interval = max(now - self._rate_since, 1e-3)
        self.window_rate = self._rate_windows / interval
        wall = time.time()
        delay = max((r.head_wait(now, wall) for r in runners), default=0.0)
        if self._paused_since is not None:
            delay = max(delay, now - self._paused_since)
        busy = max(0.0, interval - self._idle_s)
        sample = LoadSample(now, interval, busy, self._rate_windows, delay, len(runners))
        self.shedder.update(sample)
        self._rate_windows, self._rate_since, self._idle_s = 0, now, 0.0
        if self.shedder.parked != len(self.parked):
            self._park(runners, self.shedder.parked)

    def _park(self, runners: list[MachineRunner], n: int) -> None:
        """Park machines until ``n`` are (level 7, pdm/service/shedding.py): those in ``ok``
        first, the last configured first; give back the last parked first."""
        while len(self.parked) > n:
            self.parked.pop().park(False, "the appliance can decide for it again")
        if len(self.parked) >= n:
            return
        order = {id(r): i for i, r in enumerate(runners)}
        free = [r for r in runners if not r.is_parked and not r._done.is_set()]
        free.sort(key=lambda r: (r.engine.state is not None and r.engine.state.state != "ok",
                                 -order[id(r)]))  # fmt: skip
        for r in free[: n - len(self.parked)]:
            self.parked.append(r)
            r.park(
                True,
                f"appliance overloaded: parked at shedding level 7 ({n} of {len(runners)} "
                "machines), its protection cannot be decided",
            )

    @property
    def rules(self) -> Shed:
        """What the worker sheds now (its level's :class:`~pdm.service.shedding.Shed`)."""
        return self.shedder.rules

    def _round(self, first: MachineRunner) -> None:
        """One turn for ``first`` and for every machine already waiting, up to
        ``max_windows`` windows: cut them all, extract them in one pass (the windows of
        machines with the same DSP configuration share one FFT call), then each machine
        scores, decides and records its windows, in the order of the turns (a machine
        that may trip first: :class:`_Turns`)."""
        cuts: list[_Cut] = []
        windows = 0
        runner: MachineRunner | None = first
        gather = self.window_rate * self.gather_s >= 1.0
        until: float | None = None  # how long this round may wait for more windows
        # A machine that may trip is decided alone: no other machine's extraction and no
        # gathering before its decision (it costs that machine ~1.3x a batched window).
        alone = first.urgent
        while runner is not None:
            cut = runner._cut_turn()
            if cut is not None:
                cuts.append(cut)
                windows += len(cut.windows)
                if cut.windows and until is None and gather:
                    arrived = cut.received if cut.received is not None else time.monotonic()
                    until = arrived + self.gather_s
            if windows >= self.max_windows or len(cuts) >= self.max_turns or (alone and windows):
                break
            runner = self._next(0.0)
            if runner is None:
                left = 0.0 if until is None else until - time.monotonic()
                if windows < self.gather_windows and left > 0:
                    runner = self._next(left)
        self._rate_windows += windows
        if not windows:
            # Most rounds (a network frame read; a window completes every few) cut none:
            # nothing to decide, so no block to spool in (a record a cut still makes — a
            # processing error, a backlog dropped — is spooled by itself, as outside rounds).
            for cut in cuts:
                cut.runner._after_cut(cut)
            return
        t0 = time.perf_counter()
        _extract_cuts([c for c in cuts if c.windows])
        cuts[0].runner.observe("dsp", time.perf_counter() - t0)
        if windows > 1:
            _score_cuts(cuts)
            cuts = _judging_last(cuts)
        # The round's alarm states, relay results and events are spooled in one fsync per
        # writer, after its last window: not one per machine, each delaying the rest.
        writers = {id(c.runner.writer): c.runner.writer for c in cuts}
        with contextlib.ExitStack() as together:
            for writer in writers.values():
                together.enter_context(writer.together())
            for cut in cuts:
                cut.runner._after_cut(cut)


@dataclass
class _Cut:
    """One chunk's turn: the windows it completed, and then their features."""

    runner: MachineRunner
    windows: list[Window]
    received: float | None
    extractor: FeatureExtractor | None
    stop: bool = False
    #: The chunk's end on the sensor's clock (POSIX s: ``t0 + n/fs``), for a live chunk.
    sensor_end: float | None = None
    features: list[WindowFeatures] | None = None
    error: BaseException | None = None


def _extract_cuts(cuts: list[_Cut]) -> None:
    """Every cut's features: one :func:`extract_many` pass over the machines whose
    extractors allow it; the others (and all of them, should the shared pass fail)
    each on its own, so one machine's failure stays its own."""
    shared = [c for c in cuts if c.extractor is not None and c.extractor.batch_key is not None]
    if len(shared) > 1:
        try:
            jobs = [(c.extractor, [w.data for w in c.windows]) for c in shared]
            frames = extract_many(jobs)  # type: ignore[arg-type]  # extractor is set
            for c, f in zip(shared, frames, strict=True):
                c.features = c.runner.features.take(c.windows, f)
        except Exception:
            log.exception("a batched extraction failed; extracting machine by machine")
            for c in shared:
                c.features = None
    for c in cuts:
        if c.features is None:
            try:
                c.features = c.runner.features.extract(c.windows)
            except Exception as exc:
                c.error = exc


def _score_cuts(cuts: list[_Cut]) -> None:
    """The round's windows of machines whose models share a session (the same ONNX bytes:
    :func:`pdm.scoring.runtime.shared_session`) scored in one run of it
    (:func:`~pdm.scoring.runtime.score_together`), before each machine decides its own in
    turn; a machine about to swap its model, or still learning, scores its own. Should the
    shared run fail, every machine scores its windows alone (as without it)."""
    from pdm.scoring.runtime import WindowScorer, score_together

    groups: dict[int, list[tuple[WindowScorer, list[WindowFeatures]]]] = {}
    for c in cuts:
        runner, scores = c.runner, c.runner.scores
        if (
            not c.features
            or c.error is not None
            or scores is None
            or runner._next_model is not None
        ):
            continue
        scorer = scores.scorer
        if scorer is not None:
            groups.setdefault(id(scorer.model.session), []).append((scorer, c.features))
    for parts in groups.values():
        if sum(len(w) for _s, w in parts) > 1:
            try:
                score_together(parts)
            except Exception:
                log.exception("a shared scoring run failed; scoring machine by machine")


def _judging_last(cuts: list[_Cut]) -> list[_Cut]:
    """The round's cuts in the order they decide: those whose scoring will judge a routine
    diagnosis for the named-defect question (a machine's periodic work, 1–3 ms:
    :meth:`~pdm.scoring.runtime.WindowScorer.asks_judgement`) after the others, each part
    in its turns' order — so the others' decisions do not wait for it. A window at or above
    alert keeps its place, and a machine that may trip is decided in a round of its own."""
    late: list[_Cut] = []
    for c in cuts:
        scores = c.runner.scores
        scorer = scores.scorer if scores is not None else None
        if not c.features or c.error is not None or scorer is None:
            continue
        if c.runner._next_model is not None:
            continue
        try:
            if scorer.asks_judgement(c.features):
                late.append(c)
        except Exception:  # the order is an optimisation: the cut decides as it would have
            log.exception("%s: could not tell whether a judgement is due", c.runner.machine)
    if not late:
        return cuts
    ids = {id(c) for c in late}
    return [c for c in cuts if id(c) not in ids] + late


class MachineRunner:
    """The processing of one pipeline (see the module docstring): on its own thread, or
    taking turns on a :class:`RunnerPool`'s."""

    def __init__(
        self,
        pipeline: Pipeline,
        fs: float,
        *,
        writer: HistoryWriter,
        alarm_store: AlarmStore,
        data_dir: Path,
        actions: str = "live",
        queue_chunks: int = 64,
        put_timeout_s: float = 1.0,
        max_lag_s: float = 10.0,
        observe: Callable[[str, float], None] | None = None,
        on_decision: Callable[[float, float | None], None] | None = None,
        pool: RunnerPool | None = None,
    ) -> None:
        self.pipeline = (
            pipeline.with_sample_rate(fs) if pipeline.acquisition.sample_rate_hz != fs else pipeline
        )
        self.machine = pipeline.machine.id
        self.fs = fs
        self.writer = writer
        self.put_timeout_s = put_timeout_s
        self.max_lag_s = max_lag_s
        self.observe = observe or (lambda stage, s: None)
        self.on_decision = on_decision
        self.queue: queue.Queue[Chunk | None] = queue.Queue(maxsize=queue_chunks)
        self.features = FeatureStream(self.pipeline, fs, batch=1)
        self.scores: Any = None
        model_dir = self.pipeline.model_dir
        if model_dir is not None:
            from pdm.scoring.stream import ScoreStream

            self.scores = ScoreStream(
                self.pipeline,
                fs,
                model_dir,
                self.features.extractor.names,
                explain_all=False,
                engine=self.features.engine,  # the model's healthy lines are no fault evidence
            )
        self.recorder = Recorder(self.pipeline, CaptureStore(data_dir))
        acq = self.pipeline.acquisition
        #: Which windows are decided while the worker sheds windows (levels 4-6).
        self.gate = WindowGate(max_skipped_run(acq.window_samples, acq.hop_samples))
        #: Signal time (POSIX s) of the newest window whose rows went to history.
        self._rows_kept_t = -float("inf")
        #: Parked by the worker's shedding (level 7): windowed, not decided, relay dropped.
        self.is_parked = False
        self.engine = AlarmEngine(
            self.pipeline,
            alarm_store,
            writer.submit,
            self.recorder,
            data_dir,
            actions=actions,
            submit_durable=writer.submit_durable,
        )
        #: Each window's one path: score → history records → alarms and actions → submit.
        self.window_path = WindowPipeline(
            self.features, self.scores, self.recorder, self.engine, writer, self.observe
        )
        self.stats = RunnerStats(started=time.monotonic())
        self._heartbeat = time.monotonic()
        self.pool = pool
        self._done = threading.Event()
        self.backlog_fault = False
        self._drop_log = LogLimiter(60.0)  # backlog discards told, per cause
        self._drops_held = 0  # samples discarded since the last one told
        self._kept_up_since: float | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"pdm-{self.machine}", daemon=True)
        self.error: str = ""
        self._next_model: Any = None
        self._shadow: ShadowRun | None = None
        self.last_score: float | None = None
        self.last_diagnosis: str | None = None
        #: The newest window's diagnosis confidence and feature values (channels × features),
        #: for /status and the publishers (velocity, ISO zone); read from other threads.
        self.last_confidence: float | None = None
        self.last_values: Any = None
        #: The newest scored window's quiet-machine hint (an info, never an alarm), or None.
        self.last_hint: str | None = None
        if pool is not None:
            pool.add(self)

    # -- feeding -----------------------------------------------------------------------------
    def offer(self, chunk: Chunk) -> bool:
        """Queue a chunk; False when it could not be queued within ``put_timeout_s`` (counted).

        On the pool's own thread (a network input it polls) it never waits — nothing else
        would empty the queue meanwhile: a queue half full stops the pool reading the
        network until it is down to a quarter, so a sender faster than real time is slowed
        by TCP's flow control, as a waiting reader thread slowed it."""
        pool = self.pool
        wait = not (pool is not None and pool.on_thread)
        try:
            self.queue.put(chunk, timeout=self.put_timeout_s if wait else None, block=wait)
            # (the deque's length, read without the queue's lock: this thread is the one
            # that empties it, and ``qsize()`` took the lock once more per frame)
            if not wait and len(self.queue.queue) >= self.queue.maxsize // 2:
                assert pool is not None
                pool.congested.add(self)  # the pool stops reading until this drains
        except queue.Full:
            self._drop_backlog(extra=chunk.n_samples, why="queue full")
            return False
        if self.pool is not None:
            self.pool.ready.put(self)
        return True

    def start(self) -> MachineRunner:
        if self.pool is not None:
            self.pool.start()
        else:
            self._thread.start()
        return self

    @property
    def alive(self) -> bool:
        if self.pool is not None:
            return self.pool.alive and not self._done.is_set()
        return self._thread.is_alive()

    @property
    def heartbeat(self) -> float:
        """When the processing loop last moved (the pool's, when on one)."""
        return self.pool.heartbeat if self.pool is not None else self._heartbeat

    @heartbeat.setter
    def heartbeat(self, value: float) -> None:
        self._heartbeat = value

    @property
    def busy(self) -> bool:
        """Work is waiting (the watchdog only worries about runners with work to do)."""
        return not self.queue.empty()

    @property
    def urgent(self) -> bool:
        """Whether this machine's next window may trip its relay: its alarm state is alert
        or danger, or one of its last windows was over a threshold (what a k-of-n debounce
        counts) — and it is decided (not parked) and not tripped already. Its pool takes
        its turn before the others waiting (:class:`_Turns`). Read from any thread: the
        alarm state is replaced whole, never changed in place."""
        s = self.engine.state
        if s is None or self.is_parked or s.state == "trip":
            return False
        return s.state != "ok" or any(s.recent)

    @property
    def rules(self) -> Shed:
        """What the worker sheds now (nothing for a runner without a pool)."""
        return self.pool.rules if self.pool is not None else LEVELS[0]

    def head_wait(self, now: float, wall: float) -> float:
        """How long the oldest queued chunk has waited, s: since its arrival (live
        inputs), else since its last sample's time (the simulator and replays stamp their
        chunks with the wall clock). 0 with nothing queued."""
        with self.queue.mutex:
            head = self.queue.queue[0] if self.queue.queue else None
        if head is None:
            return 0.0
        if head.received is not None:
            return max(0.0, now - head.received)
        return max(0.0, wall - (head.t0 + head.n_samples / head.fs))

    def stop(self, timeout: float = 10.0) -> None:
        """Finish what is queued, then stop; the relay drops (fail-safe). Within about
        ``timeout`` s in all: half of it for the queue, the rest for the webhooks (what
        they do not deliver stays in their outboxes)."""
        deadline = time.monotonic() + timeout
        self._stop.set()
        try:
            self.queue.put_nowait(None)
        except queue.Full:
            pass
        if self.pool is not None:
            self.pool.ready.put(self)
            if self.pool.alive:
                self._done.wait(timeout / 2)
        else:
            self._thread.join(timeout / 2)
        self._done.set()
        self.engine.close(timeout=max(0.05, min(5.0, deadline - time.monotonic())))

    # -- the thread -------------------------------------------------------------------------
    def _run(self) -> None:
        while True:
            try:
                chunk = self.queue.get(timeout=0.5)
            except queue.Empty:
                self.heartbeat = time.monotonic()
                if self._stop.is_set():
                    return
                self.writer.submit(*self.engine.retry_relay())
                continue
            if chunk is None:
                return
            self._process(chunk)
            self.heartbeat = time.monotonic()

    def _cut_turn(self) -> _Cut | None:
        """The pool's call: window one queued chunk (None: nothing queued, or done)."""
        if self._done.is_set():
            return None
        try:
            chunk = self.queue.get_nowait()
        except queue.Empty:
            return None  # discarded by the backlog policy after it was offered
        if chunk is None:
            return _Cut(self, [], None, None, stop=True)
        return self._cut(chunk)

    def _cut(self, chunk: Chunk) -> _Cut:
        t0 = time.perf_counter()
        self.stats.chunks += 1
        try:
            windows = self.features.cut(chunk)
        except Exception as exc:
            return _Cut(self, [], chunk.received, None, error=exc)
        skip = self.rules.skip
        if self.is_parked:
            self.stats.shed["windows"] += len(windows)
            windows = []  # cut (the windowing goes on, no gap when it comes back), not decided
        elif windows and skip > 0:
            # Shedding windows (levels 4-6): every sample still in a decided window.
            kept = [w for w in windows if self.gate.decide(skip, w.segment)]
            self.stats.shed["windows"] += len(windows) - len(kept)
            windows = kept
        self.observe("read", time.perf_counter() - t0)
        end = None if chunk.received is None else chunk.t0 + chunk.n_samples / chunk.fs
        return _Cut(self, windows, chunk.received, self.features.extractor, sensor_end=end)

    def _after_cut(self, cut: _Cut) -> None:
        """Score, decide and record a cut's windows (features done); never raises."""
        if cut.error is None:
            try:
                for wf in cut.features or ():
                    self._window(wf, cut.received, cut.sensor_end)
                self._check_lag(cut.received)
            except Exception as exc:
                cut.error = exc
        failure = cut.error
        if failure is not None:
            self.error = f"{type(failure).__name__}: {failure}"
            log.error("%s: processing failed: %s", self.machine, self.error, exc_info=failure)
            self.writer.submit(
                Event(self.machine, time.time_ns(), "processing_error", "alarm", self.error)
            )
        if cut.stop:
            self._done.set()

    def _process(self, chunk: Chunk) -> None:
        """One chunk all the way, on the caller's thread (a runner without a pool)."""
        cut = self._cut(chunk)
        if cut.windows:
            _extract_cuts([cut])
        self._after_cut(cut)

    def swap_model(self, model: Any) -> None:
        """Score with ``model`` from the next window on (checked by the caller)."""
        self._next_model = model

    @property
    def model_version(self) -> str:
        """The version scoring now, or the one swapped in for the next window ('' for none)."""
        nxt = self._next_model
        if nxt is not None:
            return str(nxt.version)
        if self.scores is not None and self.scores.scorer is not None:
            return str(self.scores.scorer.model.version)
        return ""

    @property
    def shadow(self) -> ShadowRun | None:
        return self._shadow

    def make_shadow(self, model: Model, directory: Path | None = None) -> ShadowRun:
        """A shadow run of ``model`` (checked by the caller), not yet scoring.

        Raises ``ValueError`` when the model needs features this pipeline does not compute.
        """
        from pdm.scoring.vector import FeatureVectorizer

        vectorizer = FeatureVectorizer(
            model.names, tuple(self.pipeline.columns), tuple(self.features.extractor.names)
        )
        return ShadowRun(model, vectorizer, directory if directory is not None else model.directory)

    def set_shadow(self, run: ShadowRun | None) -> None:
        """Score ``run``'s model in shadow from the next window on; None stops the shadow."""
        self._shadow = run  # one assignment: the runner's thread sees the old or the new one

    def _window(
        self, wf: WindowFeatures, received: float | None = None, sensor_end: float | None = None
    ) -> None:
        if self._next_model is not None and self.scores is not None:
            model, self._next_model = self._next_model, None
            self.scores.scorer = self.scores.scorer_for(model)
            self.scores.teach = None
        rules = self.rules
        scorer = self.scores.scorer if self.scores is not None else None
        unexplained = 0
        if scorer is not None:
            scorer.explain, unexplained = rules.explain, scorer.unexplained
        spectra_shed = self.recorder.spectra_shed

        def scored(scores: list[WindowScore]) -> None:
            # The newest readings, before the alarms act: a transition's published state
            # (the publish feed's thread reads them) carries this window's, as written out.
            if scores:
                last = scores[-1]
                self.last_score, self.last_diagnosis = written_score(last.score), last.diagnosis
                self.last_confidence = (
                    None if last.learning else round(last.diagnosis_confidence, CONFIDENCE_DECIMALS)
                )
                if last.score is not None:
                    hint = last.below_baseline
                    self.last_hint = hint.get("message") if isinstance(hint, dict) else None
            self.last_values = wf.features.values

        def decided() -> None:
            if received is not None and self.on_decision is not None:
                # The window's last sample arrived with its chunk; the relay command (if the
                # state changed) has been issued by now. The second figure starts on the
                # sensor's clock, when the chunk's last sample was acquired: the DAQ's sending
                # and the time in the socket buffer (where backpressure parks a queue) are in it.
                self.on_decision(
                    time.monotonic() - received,
                    None if sensor_end is None else time.time() - sensor_end,
                )

        decision = self.window_path.process(
            [wf],
            spectra=rules.spectra,
            keep_rows=lambda rows: self._keep_rows(wf, rows, rules),
            on_scored=scored,
            on_decided=decided,
        )
        rows = decision.scores
        shed = self.stats.shed
        shed["spectra"] += self.recorder.spectra_shed - spectra_shed
        if scorer is not None:
            shed["explanations"] += scorer.unexplained - unexplained
        if not decision.detail and not decision.transition:
            shed["history_rows"] += 1
        self.stats.windows += 1
        self.stats.last_window_t = (
            wf.window.t_start + self.pipeline.acquisition.window_samples / self.fs
        )
        shadow = self._shadow
        version = self.window_path.model()[0]
        if shadow is not None and rows and version:
            # After the alarms and history: the candidate never delays a decision.
            t4 = time.perf_counter()
            self._shadow_window(shadow, wf, rows[-1], version)
            self.observe("shadow", time.perf_counter() - t4)

    def _keep_rows(self, wf: WindowFeatures, rows: list[WindowScore], rules: Shed) -> bool:
        """Whether this window's feature and score rows go to history: always, but at
        ``history_detail`` and above at most one window's per ``rules.rows_every_s`` of
        signal — and every window not ``ok`` (alert, danger, invalid, learning)."""
        t = wf.window.t_start
        every = rules.rows_every_s
        state = rows[-1].state if rows else "ok"
        if every <= 0 or state != "ok" or t - self._rows_kept_t >= every or t < self._rows_kept_t:
            self._rows_kept_t = t
            return True
        return False

    def _shadow_window(
        self, shadow: ShadowRun, wf: WindowFeatures, row: WindowScore, active_version: str
    ) -> None:
        """Score the window with the candidate and count the agreement; never raises."""
        from pdm.scoring.update import STATES

        score, state = row.score, row.state
        if score is None or state not in STATES or not row.valid:
            return  # the active model did not score this window (invalid, or still learning)
        try:
            x = shadow.vectorizer.matrix([wf.features])
            cand = math.nan
            if np.isfinite(x).all():
                cand = float(shadow.model.score(x)[0][0])
            shadow.add(active_version, float(score), str(state), cand)
        except Exception as exc:
            with shadow.lock:
                shadow.errors += 1
                first = shadow.errors == 1
            if first:  # once per candidate: a broken shadow is no log storm
                log.error(
                    "%s: the shadow model %s failed to score a window (counted in its "
                    "errors; alarms are unaffected): %s: %s",
                    self.machine,
                    shadow.version,
                    type(exc).__name__,
                    exc,
                )

    # -- backlog ----------------------------------------------------------------------------
    def _check_lag(self, received: float | None = None) -> None:
        """Is the processing behind real time? For a live input's chunk (``received``: when
        it arrived, monotonic) that is how long it waited for its decision: a sensor back
        from a silence (its last window long past, the next not complete yet) or a DAQ
        sending what it buffered is not processing that lags, and took a relay down for
        ``max_lag_s`` when the newest window's age decided it. Without an arrival time
        (simulator, replay) it is that age: how far the newest window's end is behind the
        wall clock (``stats.lag_s``, shown in any case)."""
        if self.stats.last_window_t is not None:
            self.stats.lag_s = time.time() - self.stats.last_window_t
        if received is not None:
            lag = time.monotonic() - received
        elif self.stats.last_window_t is not None:
            lag = self.stats.lag_s
        else:
            return
        if lag > self.max_lag_s and not self.backlog_fault:
            self._drop_backlog(why=f"processing lags real time by {lag:.1f} s")
        elif lag <= self.max_lag_s and self.backlog_fault:
            now = time.monotonic()
            self._kept_up_since = self._kept_up_since or now
            if now - self._kept_up_since >= self.max_lag_s:
                self._set_backlog_fault(False, "kept up with real time again")
        else:
            self._kept_up_since = None

    def _drop_backlog(self, *, extra: int = 0, why: str) -> None:
        dropped = extra
        while True:
            try:
                item = self.queue.get_nowait()
            except queue.Empty:
                break
            if item is None:
                self.queue.put_nowait(None)
                break
            dropped += item.n_samples
        self.stats.samples_dropped += dropped
        msg = f"{why}: {dropped} samples of backlog discarded ({dropped / self.fs:.1f} s)"
        # One line and one event a minute per cause (every sample stays counted in
        # samples_dropped): a sender of one-sample frames made each refused frame an ERROR
        # line and an "alarm" event in history, ~400 a second for as long as it kept on.
        held = self._drop_log.check(why)
        if held is None:
            self._drops_held += dropped
        else:
            if held:
                msg += (
                    f"; {held} more discard(s) of {self._drops_held} samples in all were "
                    f"held back over the last {self._drop_log.interval_s:g} s"
                )
            self._drops_held = 0
            log.error("%s: %s", self.machine, msg)
            self.writer.submit(Event(self.machine, time.time_ns(), "backlog_dropped", "alarm", msg))
        self._set_backlog_fault(True, msg)

    def park(self, on: bool, reason: str) -> None:
        """Parked (``on``) by the worker's shedding: its relay dropped with
        ``appliance_fault`` until it is given back. On the pool's thread."""
        if on == self.is_parked:
            return
        self.is_parked = on
        (log.error if on else log.warning)("%s: %s", self.machine, reason)
        self.writer.submit(*self.engine.force_safe(on, reason, source="shedding"))

    def _set_backlog_fault(self, on: bool, reason: str) -> None:
        if on == self.backlog_fault:
            return
        self.backlog_fault = on
        self._kept_up_since = None
        # The transition (history and webhooks) and the relay: the engine's.
        self.writer.submit(*self.engine.force_safe(on, reason))
