"""One SQLite history file per worker process, read as one history.

SQLite lets one connection write a file at a time. Two worker processes writing one
history file took turns on its write lock, waited, and failed "database is locked" when
the wait ran out (their rows then went to the spool and came back later): at 300 machines
on two workers history was mostly spooled. So worker ``K`` of a multi-process service
writes a file of its own beside the configured one — ``history.db`` for worker 0 (and for a
service of one process), ``history-w1.db``, ``history-w2.db``, … for the others — and
**never contends with another writer**. A writer process for all of them was measured
before and not kept (docs/benchmarks.md, "A history writer in a process of its own":
pickling batches across processes cost more than it saved, and its writes competed with the
processing for the cores).

Everything that reads — the dashboard, the control API's readers, ``pdm-edge replay``'s
summary, the soak's account, the tests — opens the configured file as usual
(:func:`pdm.history.open_store`) and gets a :class:`SqliteHistory`: its writes go to that
file, its reads cover it and every ``-wK`` file beside it, merged as one store would answer
(a machine's rows live in its worker's file; after a change of worker count they may be in
two, and are merged by time).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from pdm.history.base import Kind, LogRecord, MachineStatus, Trend
from pdm.history.records import FeatureRows, Record, ScoreRows, Spectrum
from pdm.history.sqlite import SqliteStore

__all__ = ["SqliteHistory", "history_files", "worker_file"]


def worker_file(path: Path, worker: int | None) -> Path:
    """The history file worker ``worker`` writes (``None`` or 0: ``path`` itself).

    >>> worker_file(Path("/var/pdm/history.db"), 2).name
    'history-w2.db'
    >>> worker_file(Path("/var/pdm/history.db"), 0).name
    'history.db'
    """
    if not worker:
        return path
    return path.with_name(f"{path.stem}-w{worker}{path.suffix}")


def history_files(path: Path) -> list[Path]:
    """``path`` and the worker files beside it that exist, worker 1 first."""
    pattern = re.compile(rf"{re.escape(path.stem)}-w([1-9][0-9]*){re.escape(path.suffix)}")
    found: list[tuple[int, Path]] = []
    try:
        for p in path.parent.iterdir():
            m = pattern.fullmatch(p.name)
            if m:
                found.append((int(m[1]), p))
    except OSError:
        pass
    return [path, *(p for _, p in sorted(found))]


class SqliteHistory:
    """The history of a service's SQLite file and its workers' files, as one store.

    Writes go to ``path`` (a :class:`SqliteStore`); reads merge ``path`` with every
    ``-wK`` file beside it (:func:`history_files`, looked up at each read, so a worker
    that starts later is seen). Same parameters and errors as :class:`SqliteStore`.
    """

    def __init__(
        self,
        path: str | Path,
        *,
        retention_days: float | None = None,
        appliance: str | None = None,
    ) -> None:
        self.path = Path(path)
        self.url = f"sqlite:///{path}"
        self._own = SqliteStore(self.path, retention_days=retention_days, appliance=appliance)
        self._others: dict[Path, SqliteStore] = {}

    # -- plumbing -------------------------------------------------------------------------
    def _stores(self) -> list[SqliteStore]:
        out = [self._own]
        for p in history_files(self.path)[1:]:
            st = self._others.get(p)
            if st is None:
                st = self._others[p] = SqliteStore(p)
            out.append(st)
        return out

    @property
    def pace(self) -> Any:
        return self._own.pace

    @pace.setter
    def pace(self, value: Any) -> None:
        self._own.pace = value

    # -- writing --------------------------------------------------------------------------
    def write(self, records: Sequence[Record]) -> None:
        self._own.write(records)

    def ping(self) -> None:
        self._own.ping()

    # -- reading --------------------------------------------------------------------------
    def machines(self) -> list[str]:
        return sorted({m for st in self._stores() for m in st.machines()})

    def latest_status(self, machine: str | None = None) -> list[MachineStatus]:
        stores = self._stores()
        if len(stores) == 1:
            return self._own.latest_status(machine)
        by: dict[str, list[MachineStatus]] = {}
        listed: list[set[str]] = []
        for st in stores:
            parts = st.latest_status(machine)
            listed.append({s.machine for s in parts})
            for s in parts:
                by.setdefault(s.machine, []).append(s)
        # A file lists the machines it has features or scores of; one may hold only a
        # machine's newest state change (written after a change of worker count): ask it.
        for st, seen in zip(stores, listed, strict=True):
            for m in by.keys() - seen:
                by[m].extend(st.latest_status(m))
        return [_merge_status(v) for _, v in sorted(by.items())]

    def fleet(self) -> list[MachineStatus]:
        """The files are one appliance's history: each machine once, with its appliance."""
        return sorted(self.latest_status(), key=lambda st: (st.appliance, st.machine))

    def trend(
        self,
        machine: str,
        name: str,
        start_ns: int,
        end_ns: int,
        *,
        points: int = 500,
        channel: str | None = None,
    ) -> list[Trend]:
        parts = [
            t
            for st in self._stores()
            for t in st.trend(machine, name, start_ns, end_ns, points=points, channel=channel)
        ]
        by: dict[str, list[Trend]] = {}
        for t in parts:
            by.setdefault(t.channel, []).append(t)
        return [_merge_trends(v) for _, v in sorted(by.items())]

    def log(
        self,
        machine: str | None = None,
        start_ns: int | None = None,
        end_ns: int | None = None,
        *,
        limit: int = 200,
        kinds: Sequence[Kind] = ("states", "events", "actions", "captures"),
    ) -> list[LogRecord]:
        found: list[LogRecord] = []
        for st in self._stores():
            found += st.log(machine, start_ns, end_ns, limit=limit, kinds=kinds)
        found.sort(key=lambda r: -r.t_ns)  # stable: each file's order among ties kept
        return found[: max(0, limit)]

    def latest_spectra(self, machine: str, channel: str | None = None) -> list[Spectrum]:
        newest: dict[tuple[str, str], Spectrum] = {}
        for st in self._stores():
            for s in st.latest_spectra(machine, channel):
                key = (s.channel, s.type)
                if key not in newest or s.t_ns > newest[key].t_ns:
                    newest[key] = s
        return [newest[k] for k in sorted(newest)]

    def features(
        self, machine: str, start_ns: int | None = None, end_ns: int | None = None
    ) -> FeatureRows:
        parts = [st.features(machine, start_ns, end_ns) for st in self._stores()]
        parts = [p for p in parts if len(p.t_ns)] or parts[:1]
        return parts[0] if len(parts) == 1 else _merge_features(machine, parts)

    def scores(
        self, machine: str, start_ns: int | None = None, end_ns: int | None = None
    ) -> ScoreRows:
        parts = [st.scores(machine, start_ns, end_ns) for st in self._stores()]
        parts = [p for p in parts if len(p.t_ns)] or parts[:1]
        if len(parts) == 1:
            return parts[0]
        order = np.argsort(np.concatenate([p.t_ns for p in parts]), kind="stable")

        def cat(field: str) -> Any:
            return np.concatenate([np.asarray(getattr(p, field), dtype=object) for p in parts])

        newest = max(parts, key=lambda p: int(p.t_ns[-1]))
        return ScoreRows(
            machine,
            newest.model,
            np.concatenate([p.t_ns for p in parts])[order],
            np.concatenate([p.window for p in parts])[order],
            np.concatenate([p.score for p in parts])[order],
            tuple(cat("state")[order]),
            tuple(cat("diagnosis")[order]),
            tuple(cat("top")[order]),
            np.concatenate(
                [
                    np.full(len(p), np.nan)
                    if p.diagnosis_confidence is None
                    else p.diagnosis_confidence
                    for p in parts
                ]
            )[order],
        )

    def count(self, kind: Kind, machine: str | None = None) -> int:
        return sum(st.count(kind, machine) for st in self._stores())

    # -- lifetime -------------------------------------------------------------------------
    def close(self) -> None:
        self._own.close()
        for st in self._others.values():
            st.close()
        self._others.clear()

    def __enter__(self) -> SqliteHistory:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"SqliteHistory({str(self.path)!r})"


def _merge_status(parts: list[MachineStatus]) -> MachineStatus:
    """One machine's newest status over several files: each part from the newest file."""
    if len(parts) == 1:
        return parts[0]
    base = max(parts, key=lambda s: s.t_ns if s.t_ns is not None else -1)
    alarm = max(parts, key=lambda s: s.alarm_t_ns if s.alarm_t_ns is not None else -1)
    channels: dict[str, Any] = {}
    for s in parts:
        for ch, row in s.channels.items():
            if ch not in channels or row.get("t_ns", -1) > channels[ch].get("t_ns", -1):
                channels[ch] = row
    return MachineStatus(
        machine=base.machine,
        t_ns=base.t_ns,
        score=base.score,
        state=base.state,
        model=base.model,
        diagnosis=base.diagnosis,
        alarm_state=alarm.alarm_state,
        alarm_t_ns=alarm.alarm_t_ns,
        channels=channels,
        appliance=base.appliance,
    )


def _merge_trends(parts: list[Trend]) -> Trend:
    """One channel's buckets over several files (a bucket in two: the extremes of both and
    the mean of the means — rows per bucket are not kept)."""
    if len(parts) == 1:
        return parts[0]
    t = np.concatenate([p.t_ns for p in parts])
    mean = np.concatenate([p.mean for p in parts])
    lo = np.concatenate([p.min for p in parts])
    hi = np.concatenate([p.max for p in parts])
    keys, inverse = np.unique(t, return_inverse=True)
    n = len(keys)
    counts = np.bincount(inverse, minlength=n)
    out_mean = np.bincount(inverse, weights=mean, minlength=n) / counts
    out_lo = np.full(n, np.inf)
    out_hi = np.full(n, -np.inf)
    np.minimum.at(out_lo, inverse, lo)
    np.maximum.at(out_hi, inverse, hi)
    p0 = parts[0]
    return Trend(p0.machine, p0.field, p0.channel, p0.bucket_ns, keys, out_mean, out_lo, out_hi)


def _merge_features(machine: str, parts: list[FeatureRows]) -> FeatureRows:
    """Rows of several files by time then channel; the feature names of all of them."""
    names: list[str] = []
    for p in parts:
        names += [n for n in p.names if n not in names]
    k = len(names)
    blocks = []
    for p in parts:
        v = np.full((len(p.t_ns), k), np.nan)
        for j, n in enumerate(p.names):
            v[:, names.index(n)] = p.values[:, j]
        blocks.append(v)
    t = np.concatenate([p.t_ns for p in parts])
    channel = np.array([c for p in parts for c in p.channel], dtype=object)
    order = np.lexsort((channel.astype(str), t))

    def cat(field: str) -> tuple[str, ...]:
        return tuple(np.array([x for p in parts for x in getattr(p, field)], dtype=object)[order])

    return FeatureRows(
        machine,
        t[order],
        np.concatenate([p.window for p in parts])[order],
        cat("sensor"),
        tuple(channel[order]),
        tuple(names),
        np.concatenate(blocks)[order],
        cat("iso_zone"),
        np.concatenate([p.valid for p in parts])[order],
    )
