"""``pdm-edge dashboard``: start the Streamlit dashboard as a child process.

::

    pdm-edge dashboard [--store URL] [--data-dir DIR] [--pipelines DIR] [--api URL]
                       [--port 8501] [--address 127.0.0.1]

Runs ``python -m streamlit run pdm/dashboard/app.py`` headless on ADDRESS:PORT, with usage
statistics off (the appliance never phones home) and uploads capped by Streamlit's server at
``PDM_DASHBOARD_MAX_UPLOAD_MB``, and passes the history and pipeline options through to the
app after ``--``. Before starting it removes the temporary folders a previous dashboard left
(:func:`pdm.dashboard.uploads.sweep_stale`). The exit status is Streamlit's.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import signal
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

from pdm.appliance import APPLIANCE_ID
from pdm.dashboard.uploads import max_upload_mb, sweep_stale
from pdm.errors import PdmError
from pdm.history import parse_store_url

__all__ = [
    "APP",
    "DESCRIPTION",
    "add_arguments",
    "build_command",
    "dashboard_main",
    "parse_args",
    "run",
    "run_child",
]

APP = Path(__file__).resolve().parent / "app.py"


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        raise PdmError(f"pdm-edge dashboard: {message}")


#: How the dashboard is always served: headless, no usage statistics sent (plant networks
#: are offline), the dark theme the wall screens need, no developer toolbar.
STREAMLIT_OPTIONS = [
    "--server.headless",
    "true",
    "--browser.gatherUsageStats",
    "false",
    "--global.developmentMode",
    "false",
    "--theme.base",
    "dark",
    # Blue widgets: on a plant-floor screen red means an alarm, not a slider.
    "--theme.primaryColor",
    "#1a73e8",
    "--client.toolbarMode",
    "viewer",
]


#: ``pdm-edge dashboard --help``'s description.
DESCRIPTION = "The plant-floor dashboard (Streamlit), served from this appliance."


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    p = _Parser(prog="pdm-edge dashboard", description=DESCRIPTION)
    add_arguments(p)
    return p.parse_args(list(argv))


def add_arguments(p: argparse.ArgumentParser) -> None:
    """``pdm-edge dashboard``'s options, on ``p`` (the CLI's sub-parser or :func:`parse_args`'s)."""
    p.add_argument("--store", help="history store URL (default: sqlite in the data directory)")
    p.add_argument("--data-dir", help="data directory (default: $PDM_EDGE_DATA or ./var)")
    p.add_argument(
        "--pipelines", help="folder of pipeline files (default: ./pipelines of pdm-edge)"
    )
    p.add_argument("--api", help="the service's control API, e.g. http://127.0.0.1:8470")
    p.add_argument(
        "--appliance",
        help="on a central store: the machine pages show this appliance's rows (Fleet: all)",
    )
    p.add_argument("--port", type=int, default=8501, help="TCP port (default 8501)")
    p.add_argument(
        "--address", default="127.0.0.1", help="address to listen on (default 127.0.0.1)"
    )


def build_command(args: argparse.Namespace) -> list[str]:
    """The ``python -m streamlit run …`` command line for these options."""
    cmd = [
        sys.executable,
        "-m",
        "streamlit",
        "run",
        str(APP),
        "--server.port",
        str(args.port),
        "--server.address",
        args.address,
        *STREAMLIT_OPTIONS,
        "--server.maxUploadSize",
        str(max_upload_mb()),
        "--",
    ]
    for opt in ("store", "data_dir", "pipelines", "api", "appliance"):
        value = getattr(args, opt)
        if value:
            cmd += [f"--{opt.replace('_', '-')}", str(value)]
    return cmd


def _check(args: argparse.Namespace) -> None:
    if not 1 <= args.port <= 65535:
        raise PdmError(f"pdm-edge dashboard: --port {args.port}: must be 1–65535")
    if args.store:
        parse_store_url(args.store, where="--store")
    if args.data_dir and Path(args.data_dir).exists() and not Path(args.data_dir).is_dir():
        raise PdmError(f"pdm-edge dashboard: --data-dir {args.data_dir}: not a directory")
    if args.pipelines and not Path(args.pipelines).is_dir():
        raise PdmError(f"pdm-edge dashboard: --pipelines {args.pipelines}: no such directory")
    if args.appliance is not None:
        if not APPLIANCE_ID.match(args.appliance):
            raise PdmError(
                f"pdm-edge dashboard: --appliance {args.appliance!r}: 1–64 characters from "
                "A–Z, a–z, 0–9, '_', '.', '-'"
            )
    if args.api and not args.api.startswith(("http://", "https://")):
        raise PdmError(f"pdm-edge dashboard: --api {args.api}: expected http(s)://HOST:PORT")
    if importlib.util.find_spec("streamlit") is None:
        raise PdmError(
            "pdm-edge dashboard: streamlit is not installed (pip install streamlit altair)"
        )


def dashboard_main(argv: Sequence[str]) -> int:
    """Start the dashboard and wait for it; 2 with a one-line message on bad options."""
    argv = list(argv)
    if argv[:1] == ["--"]:
        argv = argv[1:]
    try:
        args = parse_args(argv)
    except PdmError as exc:
        print(str(exc).splitlines()[0], file=sys.stderr)
        return 2
    except SystemExit as exc:  # --help
        return int(exc.code or 0)
    return run(args)


def run(args: argparse.Namespace) -> int:
    """``pdm-edge dashboard`` with its parsed options (:func:`add_arguments`): serve, wait."""
    try:
        _check(args)
    except PdmError as exc:
        print(
            str(exc).splitlines()[0] if str(exc) else "pdm-edge dashboard: error", file=sys.stderr
        )
        return 2
    return _serve(args)


def _serve(args: argparse.Namespace) -> int:
    env = dict(os.environ, STREAMLIT_BROWSER_GATHER_USAGE_STATS="false")
    sweep_stale()
    try:
        cmd = build_command(args)
    except PdmError as exc:  # PDM_DASHBOARD_MAX_UPLOAD_MB
        print(f"pdm-edge dashboard: {exc}", file=sys.stderr)
        return 2
    return run_child(cmd, env)


def run_child(cmd: list[str], env: dict[str, str]) -> int:
    """Run Streamlit; SIGTERM/SIGINT to us go to it too (no orphan when a supervisor stops us)."""
    child = subprocess.Popen(cmd, env=env)

    def forward(signum: int, _frame: object) -> None:
        child.send_signal(signum)

    previous = {s: signal.signal(s, forward) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        while True:
            try:
                return child.wait()
            except KeyboardInterrupt:  # pragma: no cover - forwarded above
                continue
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
