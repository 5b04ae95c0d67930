"""History: what the appliance saw and decided, in SQLite or InfluxDB, never lost to an outage.

* :mod:`pdm.history.records` — the typed records every store writes.
* :mod:`pdm.history.base` — the :class:`HistoryStore` protocol, store URLs, read results.
* :mod:`pdm.history.sqlite`, :mod:`pdm.history.influx` — the stores.
* :mod:`pdm.history.writer`, :mod:`pdm.history.spool` — the queue and disk spool in front.
* :mod:`pdm.history.provenance` — the raw windows behind each decision.
* :mod:`pdm.history.recorder` — from the pipeline's windows and scores to records.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from pdm.core.files import default_data_dir
from pdm.history.base import HistoryError, HistoryStore, StoreURL, parse_store_url
from pdm.history.influx import Influx1Store, Influx2Store
from pdm.history.sqlite import SqliteStore
from pdm.history.sqlite_files import SqliteHistory, worker_file

__all__ = [
    "HistoryError",
    "HistoryStore",
    "StoreURL",
    "default_data_dir",
    "open_store",
    "parse_store_url",
    "spool_path",
]


def spool_path(data_dir: Path, url: StoreURL, *, worker: int | None = None) -> Path:
    """One spool file per store, named after the store (without secrets); one per worker
    process of a multi-process service (``-wK``)."""
    slug = "".join(c if c.isalnum() else "-" for c in f"{url.scheme}-{url.host or 'local'}")
    digest = hashlib.sha256(str(url).encode()).hexdigest()[:8]
    suffix = "" if worker is None else f"-w{worker}"
    return data_dir / "spool" / f"{slug}-{digest}{suffix}.db"


def open_store(
    url: StoreURL | str,
    *,
    retention_days: float | None = None,
    worker: int | None = None,
    appliance: str | None = None,
    scope: str | None = None,
) -> HistoryStore:
    """Open the store a URL names. Nothing is contacted yet for InfluxDB (works offline).

    SQLite: worker ``K`` of a multi-process service writes a file of its own (worker 0 the
    named one, ``K`` ≥ 1 ``history-wK.db`` beside it), so that no two processes contend for
    one file; without ``worker`` the store writes the named file and reads it with its
    workers' files as one history (:mod:`pdm.history.sqlite_files`).

    ``appliance``: the id written on every row (default :func:`pdm.appliance.appliance_id`,
    looked up at the first write); ``scope``: InfluxDB reads only that appliance's points (a
    central database many appliances write; an SQLite file is one appliance's).
    """
    cfg = parse_store_url(url) if isinstance(url, str) else url
    if cfg.scheme == "sqlite":
        assert cfg.path is not None
        keep = retention_days or None  # 0: keep all
        if worker is not None:  # a worker's writer: its own file only
            return SqliteStore(
                worker_file(cfg.path, worker), retention_days=keep, appliance=appliance
            )
        return SqliteHistory(cfg.path, retention_days=keep, appliance=appliance)
    if cfg.scheme == "influx1":
        return Influx1Store(cfg, appliance=appliance, scope=scope)

    return Influx2Store(cfg, appliance=appliance, scope=scope)
