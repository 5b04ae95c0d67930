"""The appliance's own write path: a bounded queue, a writer thread, and the disk spool.

influxdb-client's batching keeps its queue in memory only, drops a batch on a
non-retryable error and has no real ``flush()``; so pdm-edge does not use it.
Instead:

* :meth:`HistoryWriter.submit` never blocks the pipeline. Feature, score and
  spectrum records join an in-memory queue; alarm states, events, action
  results and captures are written to the spool (fsynced) before ``submit``
  returns (inside :meth:`~HistoryWriter.together`, when its block ends) — they
  survive kill -9 and power loss.
* A writer thread sends the queue to the store in batches of ``batch_rows``,
  at least every ``flush_interval_s``.
* When the store fails with a retryable error (down, slow, timing out), the
  thread logs it once, moves the queue to the spool, and retries with
  exponential back-off (``retry_min_s`` … ``retry_max_s``). When the store is
  back it logs that once and replays the spool in order before anything new
  from the queue.
* If the queue outgrows ``queue_rows`` (the store is slower than the
  pipeline), ``submit`` spills it to the spool itself, so memory stays bounded.
* A permanent error (HTTP 400, say) isolates the offending record and keeps it
  in the spool's ``rejected`` table; the rest is delivered. A value a store
  cannot take at all (``OverflowError``, ``ValueError``, ``TypeError`` from
  binding or encoding: an integer beyond int64, say) is such a permanent error
  too, whichever store raised it: one bad record never stalls the writer.
* :meth:`close` (called on SIGTERM through the commands' handlers) delivers
  what it can within its timeout and spools the rest.

**What kill -9 can lose:** the in-memory queue — at most ``flush_interval_s``
of feature/score/spectrum rows when the store keeps up (bounded by
``queue_rows`` in any case). Nothing else. :attr:`durable_mark` tells a
replay how far it can resume from (see ``pdm-edge replay``).
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from pdm.history.base import UNSTORABLE, HistoryError, HistoryStore, unstorable
from pdm.history.records import CRITICAL_KINDS, KINDS, Event, Record
from pdm.history.spool import Spool

__all__ = ["HistoryWriter", "WriterStats"]

log = logging.getLogger("pdm.history")

#: The spool's flag for an outage that has not ended (``store_down`` without ``store_up``).
_OUTAGE = "outage_open"


@dataclass
class WriterStats:
    """Counts since the writer started (``dropped``/``rejected``: since the spool file was made)."""

    rows_submitted: int = 0
    rows_written: int = 0  # delivered to the store (directly or from the spool)
    rows_spooled: int = 0  # rows that went through the spool
    rows_dropped: int = 0  # by the spool's overflow policy
    rows_rejected: int = 0  # refused by the store for good, kept in the spool's rejected table
    dropped_by_kind: dict[str, int] = field(default_factory=dict)
    queue_rows: int = 0
    spool_rows: int = 0
    spool_bytes: int = 0
    store_up: bool = True
    outages: int = 0
    #: How long the store has been down, s (0 while it is up).
    down_s: float = 0.0
    #: How long rows have been waiting (queue or spool) with none delivered or rejected
    #: meanwhile, s (0 when nothing waits): a writer that is stuck shows here.
    stalled_s: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}


@dataclass
class _Held:
    """What a thread's :meth:`HistoryWriter.together` block holds until it ends."""

    records: list[Record] = field(default_factory=list)
    mark: int | None = None


class HistoryWriter:
    """Bounded queue + writer thread + spool in front of one :class:`HistoryStore`.

    Parameters
    ----------
    open_store : makes the store; called in the writer thread (SQLite connections
        belong to the thread that opened them)
    spool : the spool (shared by nothing else)
    label : who writes (a machine id or ``appliance``): the machine of the
        ``store_down``/``store_up`` events recorded in history
    nice : CPU priority of the writer thread relative to the process (Linux; higher is
        lower priority). The service lowers it: history may wait a moment, decisions may not.
    yield_to : an event set while the process's urgent thread waits for work (the
        service's processing thread: :attr:`pdm.service.runner.RunnerPool.idle`); a store
        with a ``pace`` hook (SQLite) binds each statement then, or after at most
        :attr:`YIELD_MAX_S`. Binding holds the interpreter lock, and taking it ~130 times a
        flush in the middle of the processing's rounds is where its slowest decisions came
        from (traced; paired runs at 420-440 machines: p99 lower in 9 of 13 pairs).
    """

    #: The longest a statement waits for the urgent thread to be idle, s.
    YIELD_MAX_S = 0.002

    def __init__(
        self,
        open_store: Callable[[], HistoryStore],
        spool: Spool,
        *,
        label: str = "appliance",
        batch_rows: int = 20_000,
        queue_rows: int = 100_000,
        flush_interval_s: float = 1.0,
        retry_min_s: float = 0.5,
        retry_max_s: float = 5.0,
        nice: int = 0,
        yield_to: threading.Event | None = None,
    ) -> None:
        self.spool = spool
        self.label = label
        self.batch_rows = batch_rows
        self.queue_rows = queue_rows
        self.flush_interval_s = flush_interval_s
        self.retry_min_s = retry_min_s
        self.retry_max_s = retry_max_s
        self.nice = nice
        self.yield_to = yield_to
        self._open_store = open_store
        self._store: HistoryStore | None = None
        self._queue: deque[tuple[Record, int | None]] = deque()
        self._queued_rows = 0
        self._cond = threading.Condition()
        self._io = threading.Lock()  # one delivery or spill at a time
        self._push = threading.Lock()  # one push to the spool at a time (see _push_spool)
        self._stop = False
        self._busy = False
        self._flush_wanted = False
        self._retry_at = 0.0
        self._backoff = retry_min_s
        self._mark: int | None = None
        self._rejections: set[str] = set()
        self._pending_at_recovery = 0
        self._inflight: list[Record] | None = None  # the batch being written from the queue
        self._down_since: float | None = None  # monotonic time the store went down
        self._progress_at = time.monotonic()  # last delivery, rejection, or nothing waiting
        self._unexpected_logged = False
        self.stats = WriterStats()
        if spool.flag(_OUTAGE):
            # An earlier run ended with the store down: the outage goes on until a write
            # succeeds, which records its store_up (history shows where it ended).
            self.stats.store_up = False
            self._down_since = time.monotonic()
        self.last_error: str = ""
        #: Per thread, inside :meth:`together`: its _Held.
        self._held = threading.local()
        self._thread = threading.Thread(target=self._run, name="pdm-history-writer", daemon=True)
        self._thread.start()

    # -- producer side -----------------------------------------------------------------------
    def submit(self, *records: Record, mark: int | None = None) -> None:
        """Queue records; critical ones are spooled (fsynced) before this returns.

        ``mark`` (optional, increasing, e.g. a window's t_ns) becomes
        :attr:`durable_mark` once these records are in the store or the spool.
        """
        # One pass over the records: this runs for every window on the processing thread.
        critical: list[Record] = []
        bulk: list[Record] = []
        n = bulk_rows = 0
        for r in records:
            rows = len(r)
            n += rows
            if r.kind in CRITICAL_KINDS:
                critical.append(r)
            else:
                bulk.append(r)
                bulk_rows += rows
        held: _Held | None = getattr(self._held, "batch", None)
        if held is not None:
            # Inside ``together``: spooled (and the mark advanced) when the block ends.
            held.records += critical
            if mark is not None:
                held.mark = mark if held.mark is None else max(held.mark, mark)
            critical, mark = [], None
        if critical:
            # Not behind ``_io``: a delivery to the store holds that for as long as the
            # store takes (measured: 100-200 ms a batch under load), and this is the
            # processing thread waiting.
            self._push_spool(critical)
        spill = False
        with self._cond:
            self.stats.rows_submitted += n
            if bulk:
                queue = self._queue
                for r in bulk[:-1]:
                    queue.append((r, None))
                queue.append((bulk[-1], mark))  # the mark rides on the last one
                self._queued_rows += bulk_rows
            elif mark is not None:
                self._mark_after_queue(mark)
            spill = self._queued_rows > self.queue_rows
            if critical or spill or self._queued_rows >= self.batch_rows:
                # Only then has the writer something to do before its flush interval ends
                # (a wake-up per window cost the producer ~6 % of its time in notify and
                # woke the writer to find nothing to write).
                self._cond.notify()
        if spill:
            with self._io:
                self._spill_queue()

    def submit_durable(self, *records: Record) -> None:
        """Spool records (fsynced) before returning, even inside :meth:`together`: for a
        record that something else durable is about to depend on — a state change before
        its webhook goes to the outbox, so that a webhook is never delivered for a state
        change that kill -9 then takes from history. Submitting the same record again
        later is harmless (the stores keep one row per key)."""
        if records:
            self._push_spool(list(records))
            with self._cond:
                self.stats.rows_submitted += sum(len(r) for r in records)
                self._cond.notify()

    @contextlib.contextmanager
    def together(self) -> Iterator[None]:
        """Critical records this thread submits inside the block are spooled together when it
        ends: one fsynced transaction instead of one per ``submit``.

        For work that submits for many machines at once — a round of the service's
        processing, a check for silent sources. When many machines change state together (a
        service starting: each one's relay set; a plant-wide upset: each one's alarm), an
        fsync per machine on the processing thread delayed every decision behind it. Until
        the block ends those records exist only in memory, so keep blocks to one round of
        work; :attr:`durable_mark` does not pass the block's marks before then. Nested
        blocks spool with the outermost.
        """
        if getattr(self._held, "batch", None) is not None:
            yield
            return
        held = self._held.batch = _Held()
        try:
            yield
        finally:
            self._held.batch = None
            if held.records:
                self._push_spool(held.records)
            with self._cond:
                if held.mark is not None:
                    self._mark_after_queue(held.mark)
                if held.records:
                    self._cond.notify()

    def _mark_after_queue(self, mark: int) -> None:
        """``mark`` for records already spooled: durable once the rows queued before them
        are (it rides on the queue's tail), at once when nothing is queued. Holds ``_cond``."""
        if self._queue:
            rec, m = self._queue[-1]
            self._queue[-1] = (rec, mark if m is None else max(m, mark))
        else:
            self._mark = mark if self._mark is None else max(self._mark, mark)

    def cpu_s(self) -> float:
        """CPU seconds the writer thread has used so far (its thread's CPU clock; a running
        thread on a POSIX system): what history costs beside the thread that submits."""
        ident = self._thread.ident
        assert ident is not None
        return time.clock_gettime(time.pthread_getcpuclockid(ident))

    @property
    def durable_mark(self) -> int | None:
        """The largest ``mark`` whose records (and all before them) are in the store or spool."""
        return self._mark

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until the queue is delivered or spooled; True when nothing is left in memory."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            self._flush_wanted = True
            self._cond.notify()
            while self._queue or self._busy:
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    return False
                self._cond.wait(0.05 if left is None else min(left, 0.05))
        return True

    def drain(self, timeout: float, *, while_up: bool = False) -> bool:
        """Wait until the queue *and* the spool reach the store; False on timeout (or, with
        ``while_up``, as soon as the store is found down: a stopping service does not wait
        for a store that does not answer)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.flush(timeout=max(0.0, deadline - time.monotonic()))
            with self._cond:
                if not self._queue and not self._busy and len(self.spool) == 0:
                    return True
                if while_up and not self.stats.store_up:
                    return False
                self._retry_at = min(self._retry_at, time.monotonic())
                self._flush_wanted = True
                self._cond.notify()
            time.sleep(0.02)
        return False

    def close(self, timeout: float = 10.0) -> None:
        """Deliver what can be delivered within ``timeout`` s; spool the rest; stop the thread.

        Returns within about ``timeout`` s even when the store hangs in the middle of a write
        (a server that accepts and never answers): the batch being written is spooled too,
        and should the write still succeed later, the store keeps one copy of each row
        (every store writes a row twice as once).
        """
        if self._stop and not self._thread.is_alive():
            return
        deadline = time.monotonic() + timeout
        if self.stats.store_up:
            self.flush(timeout=max(0.0, timeout - 1.0))
        with self._cond:
            self._stop = True
            self._cond.notify()
        self._thread.join(max(0.1, deadline - time.monotonic()))
        if not self._io.acquire(timeout=max(0.1, deadline - time.monotonic())):
            # The writer thread is stuck in the store: spool what it holds and the queue.
            with self._cond:
                held = list(self._inflight or ())
            if held:
                self._push_spool(held)
            self._spill_queue()
            self._refresh_stats()
            log.warning("history: the store did not answer in time; the rest is in the spool")
            return
        try:
            self._spill_queue()  # whatever is left in memory goes to disk
            self._refresh_stats()
            if self._store is not None:
                try:
                    self._store.close()
                except Exception:
                    log.debug("closing the store failed", exc_info=True)
                self._store = None
        finally:
            self._io.release()

    def __enter__(self) -> HistoryWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- writer thread ---------------------------------------------------------------------
    def _run(self) -> None:
        if self.nice:
            # Linux schedules threads one by one: this lowers the writer thread alone.
            with contextlib.suppress(OSError, AttributeError):
                os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), self.nice)
        while True:
            with self._cond:
                while not self._stop:
                    now = time.monotonic()
                    ready = now >= self._retry_at
                    if ready and (
                        len(self.spool)
                        or self._queued_rows >= self.batch_rows
                        or (self._queue and self._flush_wanted)
                    ):
                        break
                    if (
                        not ready
                        and self._queue
                        and (self._flush_wanted or self._queued_rows >= self.batch_rows)
                    ):
                        break  # the store is down: move the queue to disk now
                    wait = self.flush_interval_s
                    if not ready:
                        wait = min(self._retry_at - now, wait)
                    if not self._cond.wait(wait) and self._queue:
                        break  # a flush interval passed with rows waiting (spilled if down)
                if self._stop:
                    return
                self._busy = True
            try:
                with self._io:
                    self._step()
            except Exception as exc:
                log.exception("history writer: unexpected error: %s", exc)
                self._went_down(f"unexpected error: {exc}")
            finally:
                with self._cond:
                    self._busy = False
                    if not self._queue:
                        self._flush_wanted = False
                    self._cond.notify_all()

    def _step(self) -> None:
        if time.monotonic() < self._retry_at:
            self._spill_queue()
            return
        if len(self.spool):
            # The spool is older than the queue: deliver it first. If the store fails
            # meanwhile, the queue follows it into the spool (_went_down → next step).
            self._replay_spool()
            if len(self.spool):
                return
        with self._cond:
            batch: list[tuple[Record, int | None]] = []
            rows = 0
            while self._queue and (not batch or rows + len(self._queue[0][0]) <= self.batch_rows):
                item = self._queue.popleft()
                batch.append(item)
                rows += len(item[0])
            self._queued_rows -= rows
        if not batch:
            return
        records = [r for r, _ in batch]
        with self._cond:
            self._inflight = records  # for close(), should the store hang
        try:
            self._store_write(records)
        except HistoryError as exc:
            if exc.retryable:
                self._went_down(str(exc))
                self._push_spool(records)
                self._spill_queue()
            else:
                self._isolate(records, str(exc))
        else:
            self.stats.rows_written += rows
            self._came_up()
        finally:
            with self._cond:
                self._inflight = None
        self._advance_mark(batch)

    def _store_write(self, records: list[Record]) -> None:
        """Write through the store; every failure comes out as a :class:`HistoryError`."""
        if self._store is None:
            try:
                self._store = self._open_store()
            except Exception as exc:
                raise HistoryError(f"cannot open the store: {exc}", retryable=True) from exc
            if hasattr(self._store, "pace"):
                self._store.pace = self._pace
        try:
            self._store.write(records)
        except HistoryError:
            raise
        except UNSTORABLE as exc:
            # The stores translate these themselves; this is the net under any that does
            # not: a value that cannot be bound or encoded never will be.
            raise unstorable("the store", exc) from exc
        except Exception as exc:
            if not self._unexpected_logged:  # a bug: its traceback once, not per retry
                self._unexpected_logged = True
                log.error("history: the store failed unexpectedly", exc_info=True)
            raise HistoryError(
                f"unexpected error: {type(exc).__name__}: {exc}", retryable=True
            ) from exc
        self._progress_at = time.monotonic()

    def _pace(self) -> None:
        """Before each statement: let the urgent thread finish what it is doing first."""
        idle = self.yield_to
        if idle is not None:
            idle.wait(self.YIELD_MAX_S)

    def _isolate(self, records: list[Record], reason: str) -> None:
        """A permanent error on a batch: spool it, then the spool replay rejects the culprit."""
        self._push_spool(records)
        self._replay_spool(isolate=True, first_reason=reason)

    def _replay_spool(self, *, isolate: bool = False, first_reason: str = "") -> None:
        """Deliver the spool head to the store until it is empty or the store fails."""
        self._pending_at_recovery = self.spool.rows
        one_by_one = isolate
        while len(self.spool) and not (self._stop and not isolate):
            entries = self.spool.peek(1 if one_by_one else self.batch_rows)
            bad = [seq for seq, rec, _, _ in entries if rec is None]
            for seq in bad:
                self._reject(seq, "the spooled bytes cannot be decoded")
            good = [(seq, rec, rows) for seq, rec, rows, _ in entries if rec is not None]
            if not good:
                continue
            try:
                self._store_write([rec for _, rec, _ in good if rec is not None])
            except HistoryError as exc:
                if exc.retryable:
                    self._went_down(str(exc))
                    return
                if len(good) > 1:
                    one_by_one = True  # find the record the store refuses
                    continue
                self._reject(good[0][0], str(exc) or first_reason)
                continue
            self.spool.delete([seq for seq, _, _ in good])
            self.stats.rows_written += sum(rows for _, _, rows in good)
            self._came_up()
            if one_by_one and not isolate:
                one_by_one = False

    def _reject(self, seq: int, reason: str) -> None:
        rows = self.spool.reject(seq, reason)
        self.stats.rows_rejected += rows
        self._progress_at = time.monotonic()
        key = reason.split(":")[-1].strip()[:80]
        if key not in self._rejections:
            self._rejections.add(key)
            log.warning(
                "history: %d row(s) refused by the store, kept in %s: %s",
                rows,
                self.spool.path,
                reason,
            )

    def _push_spool(self, records: list[Record]) -> None:
        """Spool records; counts what the overflow policy drops. (The spool is thread-safe;
        ``_push`` keeps the counting to one pusher at a time.)"""
        with self._push:
            try:
                dropped = self.spool.push(records)
            except HistoryError as exc:
                # The disk itself failed: nothing durable is left. Say so loudly and count.
                n = sum(len(r) for r in records)
                log.error("history: %s; %d row(s) lost", exc, n)
                for r in records:
                    self.spool.count_dropped(r.kind, len(r))
                self.stats.rows_dropped += n
                return
            self.stats.rows_spooled += sum(len(r) for r in records)
            if dropped:
                if self.stats.rows_dropped == 0:
                    msg = (
                        f"spool {self.spool.path} full ({self.spool.max_bytes // 2**20} MB): "
                        "dropping the oldest spectra, then feature and score rows (alarm "
                        "states, events, actions and captures are kept)"
                    )
                    log.warning("history: %s", msg)
                    # Into history too (once per writer), so the gap is explained where it shows.
                    self.spool.push(
                        [Event(self.label, time.time_ns(), "rows_dropped", "warning", msg)]
                    )
                self.stats.rows_dropped += dropped

    def _spill_queue(self) -> None:
        """Move the whole in-memory queue to the spool (the caller holds ``_io``)."""
        with self._cond:
            batch = list(self._queue)
            self._queue.clear()
            self._queued_rows = 0
        if batch:
            self._push_spool([r for r, _ in batch])
            self._advance_mark(batch)

    def _advance_mark(self, batch: list[tuple[Record, int | None]]) -> None:
        marks = [m for _, m in batch if m is not None]
        if marks:
            with self._cond:
                self._mark = max(marks) if self._mark is None else max(self._mark, *marks)

    def _went_down(self, reason: str) -> None:
        self.last_error = reason
        if self.stats.store_up:
            self.stats.store_up = False
            self.stats.outages += 1
            self._down_since = time.monotonic()
            log.warning("history store down: %s; spooling to %s", reason, self.spool.path)
            self._set_outage(True)
            self._push_spool(
                [
                    Event(
                        self.label,
                        time.time_ns(),
                        "store_down",
                        "warning",
                        f"history store down: {reason}",
                    )
                ]
            )
            self._backoff = self.retry_min_s
        else:
            self._backoff = min(self._backoff * 2, self.retry_max_s)
        self._retry_at = time.monotonic() + self._backoff
        if self._store is not None:
            try:
                self._store.close()
            except Exception:
                log.debug("closing the failed store", exc_info=True)
            self._store = None

    def _came_up(self) -> None:
        if not self.stats.store_up:
            self.stats.store_up = True
            self._down_since = None
            waiting = max(self._pending_at_recovery, self.spool.rows)
            log.warning("history store back; replaying %d spooled row(s)", waiting)
            self._push_spool(
                [Event(self.label, time.time_ns(), "store_up", "info", "history store back")]
            )
            self._set_outage(False)
        self._backoff = self.retry_min_s
        self._retry_at = 0.0

    def _set_outage(self, on: bool) -> None:
        """Remember in the spool file that an outage is open (a restart ends it properly)."""
        try:
            self.spool.set_flag(_OUTAGE, on)
        except HistoryError as exc:
            log.warning("history: %s", exc)

    def _refresh_stats(self) -> None:
        s = self.stats
        now = time.monotonic()
        with self._cond:
            s.queue_rows = self._queued_rows
        s.spool_rows = self.spool.rows
        s.spool_bytes = self.spool.nbytes
        if not s.queue_rows and not s.spool_rows:
            self._progress_at = now  # nothing waits: nothing is stuck
        s.stalled_s = round(now - self._progress_at, 3)
        down = self._down_since
        s.down_s = 0.0 if down is None else round(now - down, 3)
        s.dropped_by_kind = {k: v for k, v in self.spool.dropped().items() if v}

    def snapshot(self) -> WriterStats:
        """Current counts (a copy)."""
        self._refresh_stats()
        return WriterStats(
            **{**self.stats.as_dict(), "dropped_by_kind": dict(self.stats.dropped_by_kind)}
        )


assert CRITICAL_KINDS < set(KINDS)
