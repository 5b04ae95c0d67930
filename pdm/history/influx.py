"""InfluxDB stores: the 1.x HTTP API, and the v2 write API through influxdb-client.

Both read through InfluxQL on ``/query`` — served by 1.x, by 2.x through a
DBRP mapping (which :class:`Influx2Store` creates when it is missing) and by
3.x — never Flux, so one read path serves every generation.

Writes are line protocol built by :mod:`pdm.history.lineproto` and sent in
batches of :data:`BATCH_LINES`. Neither store queues anything: a failed write
raises :class:`HistoryError` — permanent only when the data itself is refused
(HTTP 400, 413, 422); connection errors, timeouts, 5xx, 429, and also 401/403/404
(a token or database problem that someone will fix) are retryable, so
:class:`pdm.history.writer.HistoryWriter` keeps the rows in its spool instead of
rejecting them. A store can be created while the server is down; the first
write or read tells.
"""

from __future__ import annotations

import base64
import dataclasses
import json
import math
from collections.abc import Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import httpx
import numpy as np

from pdm.appliance import appliance_id
from pdm.history.base import (
    UNSTORABLE,
    HistoryError,
    LogRecord,
    MachineStatus,
    StoreURL,
    Trend,
    bucket_ns,
    unstorable,
)
from pdm.history.lineproto import MEASUREMENTS, lines
from pdm.history.records import (
    ActionResult,
    Capture,
    Event,
    FeatureRows,
    Kind,
    Record,
    ScoreRows,
    Spectrum,
    StateChange,
)

__all__ = ["BATCH_LINES", "Influx1Store", "Influx2Store"]

#: Lines per HTTP write request (InfluxDB's documented sweet spot is 5,000–10,000).
BATCH_LINES = 5000

#: HTTP statuses that mean "this data can never be written" (everything else is retried).
_DATA_ERRORS = frozenset({400, 413, 422})

# Columns of pdm_features that are not features.
_FEATURE_META = {"time", "appliance", "machine", "sensor", "channel", "iso_zone", "valid", "window"}
# A field every point of a kind has, for count().
_COUNT_FIELD = {
    "features": "window",
    "scores": "window",
    "spectra": "n",
    "states": "new",
    "events": "id",
    "actions": "attempt",
    "captures": "samples",
}


def _q(s: str) -> str:
    """An InfluxQL string literal."""
    return "'" + s.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _ident(s: str) -> str:
    """An InfluxQL double-quoted identifier."""
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _where(
    machine: str | None, start_ns: int | None, end_ns: int | None, appliance: str | None = None
) -> str:
    cond = []
    if appliance is not None:
        cond.append(f"appliance = {_q(appliance)}")
    if machine is not None:
        cond.append(f"machine = {_q(machine)}")
    if start_ns is not None:
        cond.append(f"time >= {int(start_ns)}")
    if end_ns is not None:
        cond.append(f"time < {int(end_ns)}")
    return (" WHERE " + " AND ".join(cond)) if cond else ""


def _f(v: Any) -> float:
    return math.nan if v is None else float(v)


class _InfluxQL:
    """The shared part: HTTP client, batched line-protocol writes, InfluxQL reads."""

    url: str

    def __init__(
        self,
        cfg: StoreURL,
        *,
        client: httpx.Client | None = None,
        appliance: str | None = None,
        scope: str | None = None,
    ) -> None:
        self.cfg = cfg
        self.url = str(cfg)
        #: The ``appliance`` tag of every point written (None: ``appliance_id()``, at the
        #: first write); ``scope``: read only this appliance's points (None: every one).
        self.appliance = appliance
        self.scope = scope
        self._sender = ThreadPoolExecutor(max_workers=1, thread_name_prefix="pdm-influx-send")
        self._http = client or httpx.Client(
            base_url=cfg.http_base,
            timeout=httpx.Timeout(cfg.timeout_s, connect=min(cfg.timeout_s, 3.0)),
            verify=True,
        )

    # -- subclass hooks --------------------------------------------------------------------
    def _auth(self) -> dict[str, str]:
        return {}

    def _query_params(self) -> dict[str, str]:
        raise NotImplementedError

    def _send(self, body: bytes) -> None:
        raise NotImplementedError

    def _on_missing_database(self) -> bool:
        """Called when a query finds no database; True if it fixed that (then the query is retried)."""
        return False

    # -- plumbing --------------------------------------------------------------------------
    def _error(self, what: str, exc: Exception | httpx.Response) -> HistoryError:
        if isinstance(exc, httpx.Response):
            try:
                reason = exc.json().get("error") or exc.text
            except ValueError:
                reason = exc.text
            reason = " ".join(str(reason).split())[:300]
            # 400/413/422: this data can never be written. Any other status (401, 403, 404,
            # 429, 5xx) is about the server or its configuration: keep the data and retry.
            retry = exc.status_code not in _DATA_ERRORS
            return HistoryError(
                f"{self.url}: {what}: HTTP {exc.status_code}: {reason}", retryable=retry
            )
        if isinstance(exc, httpx.TimeoutException):
            return HistoryError(f"{self.url}: {what}: timed out", retryable=True)
        if isinstance(exc, httpx.TransportError):
            return HistoryError(
                f"{self.url}: {what}: {exc.__class__.__name__}: {exc}", retryable=True
            )
        return HistoryError(f"{self.url}: {what}: {exc}", retryable=False)

    def write(self, records: Sequence[Record]) -> None:
        """Send ``records`` in requests of :data:`BATCH_LINES` lines.

        The next request is encoded while the previous one is in flight (one
        request at a time on the wire), so the Python encoder and the server's
        parser work on both cores. Raises the first error; everything before it
        may be stored, which is harmless — a resent point replaces itself.
        """
        try:
            self._write(records)
        except UNSTORABLE as exc:
            # A value line protocol cannot carry (a str with a lone surrogate, a type with no
            # field form). (A time beyond int64 the server refuses itself: HTTP 400.)
            raise unstorable(self.url, exc) from exc

    def _write(self, records: Sequence[Record]) -> None:
        if self.appliance is None:
            self.appliance = appliance_id()
        in_flight: Future[None] | None = None
        try:
            batch: list[str] = []
            for line in lines(records, self.appliance):
                batch.append(line)
                if len(batch) >= BATCH_LINES:
                    body = ("\n".join(batch) + "\n").encode()
                    batch = []
                    if in_flight is not None:
                        in_flight.result()
                    in_flight = self._sender.submit(self._send, body)
            if in_flight is not None:
                in_flight.result()
                in_flight = None
            if batch:
                self._send(("\n".join(batch) + "\n").encode())
        finally:
            if in_flight is not None:
                in_flight.cancel()
                try:
                    in_flight.result()
                except Exception:
                    pass

    def ping(self) -> None:
        try:
            r = self._http.get("/ping", headers=self._auth())
        except httpx.HTTPError as exc:
            raise self._error("ping", exc) from exc
        if r.status_code >= 300:
            raise self._error("ping", r)

    def _chunks(self, q: str) -> Iterator[dict[str, Any]]:
        """The ``results`` of a query (chunked), with ``epoch=ns`` times; errors → HistoryError."""
        params = {**self._query_params(), "q": q, "epoch": "ns", "chunked": "true"}
        params["chunk_size"] = "10000"
        for attempt in (0, 1):
            try:
                with self._http.stream("POST", "/query", data=params, headers=self._auth()) as r:
                    if r.status_code >= 300:
                        r.read()
                        raise self._error("query", r)
                    docs = [json.loads(line) for line in r.iter_lines() if line.strip()]
            except httpx.HTTPError as exc:
                raise self._error("query", exc) from exc
            missing = False
            for doc in docs:
                if "error" in doc:
                    raise HistoryError(f"{self.url}: query: {doc['error']}", retryable=False)
                for res in doc.get("results", []):
                    err = res.get("error", "")
                    if err.startswith("database not found"):
                        missing = True
                        break
                    if err:
                        raise HistoryError(f"{self.url}: query: {err}", retryable=False)
            if missing:
                if attempt == 0 and self._on_missing_database():
                    continue
                return  # nothing written yet: an empty history
            for doc in docs:
                yield from doc.get("results", [])
            return

    def _series(self, q: str) -> Iterator[dict[str, Any]]:
        """Each series of the query, chunks merged: ``{'name', 'tags', 'columns', 'values'}``."""
        merged: dict[tuple[str, str], dict[str, Any]] = {}
        for res in self._chunks(q):
            for s in res.get("series", []):
                key = (s.get("name", ""), json.dumps(s.get("tags") or {}, sort_keys=True))
                if key in merged:
                    merged[key]["values"].extend(s.get("values", []))
                else:
                    merged[key] = {**s, "values": list(s.get("values", []))}
        yield from merged.values()

    def _rows(self, q: str) -> list[dict[str, Any]]:
        """Rows as dicts (series tags merged in)."""
        out: list[dict[str, Any]] = []
        for s in self._series(q):
            cols = s["columns"]
            tags = s.get("tags") or {}
            out.extend({**tags, **dict(zip(cols, v, strict=True))} for v in s["values"])
        return out

    # -- reads -----------------------------------------------------------------------------
    def _w(self, machine: str | None, start_ns: int | None, end_ns: int | None) -> str:
        """The WHERE clause of a read, within :attr:`scope` when set."""
        return _where(machine, start_ns, end_ns, self.scope)

    def machines(self) -> list[str]:
        found: set[str] = set()
        scope = "" if self.scope is None else f" WHERE appliance = {_q(self.scope)}"
        for m in ("pdm_features", "pdm_scores"):
            for s in self._series(f'SHOW TAG VALUES FROM {m} WITH KEY = "machine"{scope}'):
                found.update(v[1] for v in s["values"])
        return sorted(found)

    def _feature_names(self) -> list[str]:
        names: list[str] = []
        for s in self._series("SHOW FIELD KEYS FROM pdm_features"):
            names += [v[0] for v in s["values"] if v[0] not in _FEATURE_META]
        return names

    def latest_status(self, machine: str | None = None) -> list[MachineStatus]:
        out = []
        for m in [machine] if machine is not None else self.machines():
            w = self._w(m, None, None)
            sc = self._rows(f"SELECT * FROM pdm_scores{w} ORDER BY time DESC LIMIT 1")
            st = self._rows(
                f"SELECT * FROM pdm_states{w} AND sensor = '' ORDER BY time DESC LIMIT 1"
            )
            feats = self._rows(
                f"SELECT * FROM pdm_features{w} GROUP BY channel ORDER BY time DESC LIMIT 1"
            )
            out.append(_status(m, sc[0] if sc else {}, st[0] if st else {}, feats))
        return out

    def fleet(self) -> list[MachineStatus]:
        """Three queries whatever the number of appliances and machines (GROUP BY tags)."""
        w = self._w(None, None, None)
        group = "GROUP BY appliance, machine ORDER BY time DESC LIMIT 1"

        def key(row: dict[str, Any]) -> tuple[str, str]:
            return row.get("appliance") or "", row.get("machine") or ""

        scores = {key(r): r for r in self._rows(f"SELECT * FROM pdm_scores{w} {group}")}
        sw = f"{w} AND sensor = ''" if w else " WHERE sensor = ''"
        states = {key(r): r for r in self._rows(f"SELECT * FROM pdm_states{sw} {group}")}
        feats: dict[tuple[str, str], list[dict[str, Any]]] = {}
        for r in self._rows(
            f"SELECT * FROM pdm_features{w} GROUP BY appliance, machine, channel "
            "ORDER BY time DESC LIMIT 1"
        ):
            feats.setdefault(key(r), []).append(r)
        out = []
        for k in sorted(set(scores) | set(feats)):
            status = _status(k[1], scores.get(k, {}), states.get(k, {}), feats.get(k, []))
            out.append(dataclasses.replace(status, appliance=k[0]))
        return out

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
        width = bucket_ns(start_ns, end_ns, points)
        f = _ident(name)
        w = self._w(machine, start_ns, end_ns)
        if name == "score":
            q = (
                f"SELECT mean({f}), min({f}), max({f}) FROM pdm_scores{w} "
                f"GROUP BY time({width // 1000}u) fill(none)"
            )
        else:
            if name not in self._feature_names():
                return []  # never written, always NaN, or not a feature: nothing to show
            if channel is not None:
                w += f" AND channel = {_q(channel)}"
            q = (
                f"SELECT mean({f}), min({f}), max({f}) FROM pdm_features{w} "
                f"GROUP BY time({width // 1000}u), channel fill(none)"
            )
        out: list[Trend] = []
        for s in sorted(self._series(q), key=lambda s: (s.get("tags") or {}).get("channel", "")):
            v = s["values"]
            out.append(
                Trend(
                    machine,
                    name,
                    (s.get("tags") or {}).get("channel", ""),
                    width,
                    np.array([r[0] for r in v], dtype=np.int64),
                    np.array([_f(r[1]) for r in v]),
                    np.array([_f(r[2]) for r in v]),
                    np.array([_f(r[3]) for r in v]),
                )
            )
        return out

    def log(
        self,
        machine: str | None = None,
        start_ns: int | None = None,
        end_ns: int | None = None,
        *,
        limit: int = 200,
        kinds: Sequence[Kind] = ("states", "events", "actions", "captures"),
    ) -> list[LogRecord]:
        w = self._w(machine, start_ns, end_ns)
        found: list[LogRecord] = []
        for kind in kinds:
            if kind not in ("states", "events", "actions", "captures"):
                raise ValueError(f"log() reads states, events, actions, captures; not {kind}")
            q = f"SELECT * FROM {MEASUREMENTS[kind]}{w} ORDER BY time DESC LIMIT {int(limit)}"
            found += [_log_record(kind, r) for r in self._rows(q)]
        found.sort(key=lambda r: r.t_ns, reverse=True)
        return found[:limit]

    def latest_spectra(self, machine: str, channel: str | None = None) -> list[Spectrum]:
        w = self._w(machine, None, None)
        if channel is not None:
            w += f" AND channel = {_q(channel)}"
        q = f'SELECT * FROM pdm_spectra{w} GROUP BY channel, "type" ORDER BY time DESC LIMIT 1'
        out = []
        for r in self._rows(q):
            data = np.frombuffer(base64.b64decode(r["values"]), dtype="<f4").astype(np.float32)
            out.append(
                Spectrum(
                    machine,
                    r.get("sensor") or "",
                    r.get("channel") or "",
                    int(r["time"]),
                    r.get("type") or "",
                    float(r["f0_hz"]),
                    float(r["df_hz"]),
                    r.get("unit") or "",
                    data,
                )
            )
        out.sort(key=lambda s: (s.channel, s.type))
        return out

    def features(
        self, machine: str, start_ns: int | None = None, end_ns: int | None = None
    ) -> FeatureRows:
        rows = self._rows(f"SELECT * FROM pdm_features{self._w(machine, start_ns, end_ns)}")
        rows.sort(key=lambda r: (r["time"], r.get("channel") or ""))
        known = self._feature_names()
        names = tuple(n for n in known if any(r.get(n) is not None for r in rows))
        return FeatureRows(
            machine,
            np.array([r["time"] for r in rows], dtype=np.int64),
            np.array([r.get("window") or 0 for r in rows], dtype=np.int64),
            tuple(r.get("sensor") or "" for r in rows),
            tuple(r.get("channel") or "" for r in rows),
            names,
            np.array([[_f(r.get(n)) for n in names] for r in rows], dtype=np.float64).reshape(
                len(rows), len(names)
            ),
            tuple(r.get("iso_zone") or "?" for r in rows),
            np.array([bool(r.get("valid")) for r in rows], dtype=bool),
        )

    def scores(
        self, machine: str, start_ns: int | None = None, end_ns: int | None = None
    ) -> ScoreRows:
        rows = self._rows(f"SELECT * FROM pdm_scores{self._w(machine, start_ns, end_ns)}")
        rows.sort(key=lambda r: r["time"])
        return ScoreRows(
            machine,
            (rows[-1].get("model") or "") if rows else "",
            np.array([r["time"] for r in rows], dtype=np.int64),
            np.array([r.get("window") or 0 for r in rows], dtype=np.int64),
            np.array([_f(r.get("score")) for r in rows], dtype=np.float64),
            tuple(r.get("state") or "" for r in rows),
            tuple(r.get("diagnosis") or "" for r in rows),
            tuple(r.get("top_features") or "" for r in rows),
            np.array([_f(r.get("diagnosis_confidence")) for r in rows], dtype=np.float64),
        )

    def count(self, kind: Kind, machine: str | None = None) -> int:
        f = _COUNT_FIELD[kind]
        total = 0
        for s in self._series(
            f"SELECT count({_ident(f)}) FROM {MEASUREMENTS[kind]}{self._w(machine, None, None)}"
        ):
            total += sum(int(v[1]) for v in s["values"])
        return total

    def close(self) -> None:
        self._sender.shutdown(wait=True)
        self._http.close()

    def __enter__(self) -> _InfluxQL:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _status(
    machine: str, s0: dict[str, Any], st: dict[str, Any], features: list[dict[str, Any]]
) -> MachineStatus:
    """A machine's status from its newest score row, state change and feature rows."""
    channels: dict[str, dict[str, Any]] = {}
    t_feat = None
    for row in features:
        row = dict(row)
        ch = row.pop("channel", "")
        t = int(row.pop("time"))
        t_feat = t if t_feat is None else max(t_feat, t)
        vals: dict[str, Any] = {
            k: v for k, v in row.items() if k not in _FEATURE_META and v is not None
        }
        vals["iso_zone"] = row.get("iso_zone")
        vals["t_ns"] = t
        channels[ch] = vals
    t_all = [t for t in (t_feat, s0.get("time")) if t is not None]
    return MachineStatus(
        machine=machine,
        t_ns=int(max(t_all)) if t_all else None,
        score=s0.get("score"),
        state=s0.get("state"),
        model=(s0.get("model") or "") if s0 else None,
        diagnosis=(s0.get("diagnosis") or "") if s0 else None,
        alarm_state=st["new"] if st else None,
        alarm_t_ns=int(st["time"]) if st else None,
        channels=dict(sorted(channels.items())),
        appliance=(s0.get("appliance") or "") if s0 else "",
    )


def _log_record(kind: str, r: dict[str, Any]) -> LogRecord:
    m, t = r.get("machine") or "", int(r["time"])
    if kind == "states":
        return StateChange(
            m,
            t,
            r.get("old") or "",
            r.get("new") or "",
            r.get("reason") or "",
            r.get("sensor") or "",
            _f(r.get("score")),
            r.get("capture") or "",
        )
    if kind == "events":
        return Event(
            m,
            t,
            r.get("type") or "",
            r.get("severity") or "",
            r.get("message") or "",
            r.get("sensor") or "",
            r.get("detail") or "",
            r.get("id") or "",
        )
    if kind == "actions":
        return ActionResult(
            m,
            t,
            r.get("action") or "",
            r.get("target") or "",
            r.get("outcome") or "",
            int(r.get("attempt") or 0),
            r.get("detail") or "",
            r.get("event_id") or "",
        )
    return Capture(
        m,
        t,
        r.get("id") or "",
        r.get("reason") or "",
        r.get("path") or "",
        r.get("model") or "",
        r.get("thresholds") or "",
        _f(r.get("fs_hz")),
        tuple(c for c in (r.get("channels") or "").split(",") if c),
        int(r.get("samples") or 0),
    )


class Influx1Store(_InfluxQL):
    """InfluxDB 1.x over its HTTP API: ``/write`` and ``/query`` (basic auth when a user is set).

    The database is created by the first write that finds it missing (``CREATE
    DATABASE`` is idempotent); a user without that right gets a clear error.
    """

    def __init__(self, cfg: StoreURL, **kw: Any) -> None:
        super().__init__(cfg, **kw)
        self._db_ready = False

    def _auth(self) -> dict[str, str]:
        if not self.cfg.user:
            return {}
        pair = f"{self.cfg.user}:{self.cfg.secret}".encode()
        return {"Authorization": "Basic " + base64.b64encode(pair).decode()}

    def _query_params(self) -> dict[str, str]:
        p = {"db": self.cfg.database}
        if self.cfg.rp:
            p["rp"] = self.cfg.rp
        return p

    def _create_database(self) -> None:
        try:
            r = self._http.post(
                "/query",
                data={"q": f"CREATE DATABASE {_ident(self.cfg.database)}"},
                headers=self._auth(),
            )
        except httpx.HTTPError as exc:
            raise self._error("create database", exc) from exc
        if r.status_code >= 300:
            raise self._error(f"create database {self.cfg.database!r}", r)
        self._db_ready = True

    def _on_missing_database(self) -> bool:
        return False  # reads of a database nothing was written to are simply empty

    def _send(self, body: bytes) -> None:
        params = {**self._query_params(), "precision": "ns"}
        for attempt in (0, 1):
            try:
                r = self._http.post("/write", params=params, content=body, headers=self._auth())
            except httpx.HTTPError as exc:
                raise self._error("write", exc) from exc
            if r.status_code == 404 and attempt == 0 and "database not found" in r.text:
                self._create_database()
                continue
            if r.status_code >= 300:
                raise self._error("write", r)
            return


class Influx2Store(_InfluxQL):
    """InfluxDB 2.x/3.x (and 1.8+): writes through influxdb-client's v2 API, reads with InfluxQL.

    Writes use the client's *synchronous* API, one call per batch: the client's
    own batching queue lives in memory only and drops batches on error, so the
    appliance's :class:`~pdm.history.writer.HistoryWriter` does the queueing.
    Reads go to ``/query`` with the token; when InfluxDB 2.x answers "database
    not found", the store creates the DBRP mapping (database ``db`` → bucket) once.
    """

    def __init__(self, cfg: StoreURL, **kw: Any) -> None:
        super().__init__(cfg, **kw)
        # influxdb-client takes ~0.35 s to import (python -X importtime): imported by the
        # store that writes through it, not by every user of pdm.history.
        from influxdb_client import InfluxDBClient
        from influxdb_client.client.write_api import SYNCHRONOUS

        self._client = InfluxDBClient(
            url=cfg.http_base,
            token=cfg.secret,
            org=cfg.org,
            timeout=int(cfg.timeout_s * 1000),
            verify_ssl=True,
            retries=False,
        )
        self._write_api = self._client.write_api(write_options=SYNCHRONOUS)
        self._dbrp_tried = False

    def _auth(self) -> dict[str, str]:
        return {"Authorization": f"Token {self.cfg.secret}"}

    def _query_params(self) -> dict[str, str]:
        p = {"db": self.cfg.database}
        if self.cfg.rp:
            p["rp"] = self.cfg.rp
        return p

    def _send(self, body: bytes) -> None:
        from influxdb_client import WritePrecision
        from influxdb_client.rest import ApiException
        from urllib3.exceptions import HTTPError as Urllib3Error

        try:
            self._write_api.write(
                bucket=self.cfg.bucket,
                org=self.cfg.org,
                record=body,
                write_precision=WritePrecision.NS,  # type: ignore[arg-type]
            )
        except ApiException as exc:
            status = int(exc.status or 0)
            body_text = (
                exc.body.decode(errors="replace") if isinstance(exc.body, bytes) else exc.body
            )
            reason = " ".join(str(body_text or exc.reason).split())[:300]
            raise HistoryError(
                f"{self.url}: write: HTTP {status}: {reason}",
                retryable=status not in _DATA_ERRORS,
            ) from exc
        except (Urllib3Error, OSError) as exc:
            raise HistoryError(
                f"{self.url}: write: {exc.__class__.__name__}: {exc}", retryable=True
            ) from exc

    def _on_missing_database(self) -> bool:
        """Create the DBRP mapping database → bucket (InfluxDB 2.x), once."""
        if self._dbrp_tried:
            return False
        self._dbrp_tried = True
        try:
            r = self._http.get(
                "/api/v2/buckets",
                params={"name": self.cfg.bucket, "org": self.cfg.org},
                headers=self._auth(),
            )
            if r.status_code >= 300:
                raise self._error("find bucket for the DBRP mapping", r)
            buckets = r.json().get("buckets") or []
            if not buckets:
                raise HistoryError(
                    f"{self.url}: bucket {self.cfg.bucket!r} not found in org {self.cfg.org!r}",
                    retryable=False,
                )
            r = self._http.post(
                "/api/v2/dbrps",
                json={
                    "bucketID": buckets[0]["id"],
                    "database": self.cfg.database,
                    "retention_policy": self.cfg.rp or "autogen",
                    "default": True,
                    "org": self.cfg.org,
                },
                headers=self._auth(),
            )
            if r.status_code >= 300:
                raise self._error("create the DBRP mapping", r)
        except httpx.HTTPError as exc:
            raise self._error("create the DBRP mapping", exc) from exc
        return True

    def close(self) -> None:
        try:
            self._write_api.close()
            self._client.close()
        finally:
            super().close()
