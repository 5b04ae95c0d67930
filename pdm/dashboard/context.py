"""What every dashboard page gets: where history is, the pipelines, and the service's API.

Built once per browser session by :func:`load_context` from the command line the dashboard
was started with (``pdm-edge dashboard [--store URL] [--data-dir DIR] [--pipelines DIR]
[--api URL] [--appliance ID]``, passed through to ``streamlit run`` after ``--``) or from the
environment (``PDM_DASHBOARD_STORE``, ``PDM_EDGE_DATA``, ``PDM_DASHBOARD_PIPELINES``,
``PDM_DASHBOARD_API``, ``PDM_DASHBOARD_APPLIANCE``).
The dashboard only *reads* history; it asks the service (control API) to acknowledge, or the
alarm state store when no service runs.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from pdm.appliance import APPLIANCE_ID
from pdm.config import Pipeline, load_pipeline
from pdm.errors import PdmError
from pdm.history import default_data_dir, open_store, parse_store_url
from pdm.history.base import HistoryStore, StoreURL
from pdm.secrets import api_token

__all__ = ["DashboardContext", "load_context", "parse_args"]

REPO = Path(__file__).resolve().parent.parent.parent


@dataclass
class DashboardContext:
    store_url: StoreURL
    data_dir: Path
    pipelines: dict[str, Pipeline] = field(default_factory=dict)  # machine id → pipeline
    api_url: str | None = None  # e.g. http://127.0.0.1:8470 (None: no service, use the state store)
    api_token: str | None = None
    problems: list[str] = field(default_factory=list)  # one-line messages to show, not raise
    #: On a central store many appliances write: the machine pages read only this one's rows
    #: (None: every appliance's; two with a machine of the same id would mix).
    appliance: str | None = None

    def store(self, *, every_appliance: bool = False) -> HistoryStore:
        """A new read handle on the history store (close it, or use ``with``), reading
        :attr:`appliance`'s rows only unless ``every_appliance`` (the fleet page)."""
        return open_store(self.store_url, scope=None if every_appliance else self.appliance)


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="pdm-edge dashboard", add_help=False)
    p.add_argument("--store", default=os.environ.get("PDM_DASHBOARD_STORE"))
    p.add_argument("--data-dir", default=os.environ.get("PDM_EDGE_DATA"))
    p.add_argument(
        "--pipelines", default=os.environ.get("PDM_DASHBOARD_PIPELINES", str(REPO / "pipelines"))
    )
    p.add_argument("--api", default=os.environ.get("PDM_DASHBOARD_API"))
    p.add_argument("--appliance", default=os.environ.get("PDM_DASHBOARD_APPLIANCE") or None)
    args, _unknown = p.parse_known_args(list(argv))
    return args


def load_context(argv: Sequence[str]) -> DashboardContext:
    """The context for these arguments; problems (a bad pipeline file) are collected, not raised."""

    args = parse_args(argv)
    data_dir = Path(args.data_dir) if args.data_dir else default_data_dir()
    url = parse_store_url(args.store or f"sqlite:///{(data_dir / 'history.db').resolve()}")
    ctx = DashboardContext(url, data_dir, api_url=args.api)
    if args.appliance is not None:
        if APPLIANCE_ID.match(args.appliance):
            ctx.appliance = args.appliance
        else:
            ctx.problems.append(f"--appliance {args.appliance!r}: not an appliance id; ignored")
    try:
        ctx.api_token = api_token()
    except PdmError as exc:
        ctx.problems.append(str(exc))
    folder = Path(args.pipelines)
    for path in sorted(folder.glob("*.toml")) if folder.is_dir() else []:
        try:
            pl = load_pipeline(path)
        except PdmError as exc:
            ctx.problems.append(str(exc))
            continue
        ctx.pipelines[pl.machine.id] = pl
    return ctx
