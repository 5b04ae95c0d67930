"""Shared test helpers: where the real recordings are, real database servers, and skips when absent."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, settings
from servers import SETUP_SCRIPT, Influx1Server, VictoriaServer, find_influxd, find_victoria

REPO = Path(__file__).resolve().parents[1]
TESTS = Path(__file__).resolve().parent

# The tests live in rooms that mirror pdm/ (tests/dsp, tests/service, ...). Their shared helpers
# (servers.py, webhook_receiver.py, ...) and the fixtures one room's tests take from another
# room's test module are imported by module name, which pytest's default import mode resolves
# only from directories on sys.path; basenames are unique across rooms.
for _room in sorted(p for p in TESTS.iterdir() if p.is_dir() and p.name[0] not in "._"):
    if str(_room) not in sys.path:
        sys.path.append(str(_room))
CWRU = REPO.parent / "shared" / "datasets" / "cwru"
FIXTURES = REPO / "fixtures"
PIPELINES = REPO / "pipelines"

# Hypothesis budgets of the `fuzz` tests (tests/test_fuzz_*.py): "short" by default (./test.sh,
# CI), "long" with PDM_FUZZ_PROFILE=long (the command is in the README). A fuzz test takes
# `@settings(fuzz_settings())`; other Hypothesis tests keep their own settings.
FUZZ_PROFILE = os.environ.get("PDM_FUZZ_PROFILE", "short")
if FUZZ_PROFILE not in ("short", "long"):
    raise pytest.UsageError(f"PDM_FUZZ_PROFILE={FUZZ_PROFILE!r}: 'short' or 'long'")
_FUZZ_COMMON: dict[str, Any] = {
    "deadline": None,  # a shared 2-core machine: time per example is noise, not a finding
    "suppress_health_check": [HealthCheck.too_slow, HealthCheck.data_too_large],
    "print_blob": True,  # a failure prints the line that reproduces it
}
settings.register_profile("fuzz-short", max_examples=60, **_FUZZ_COMMON)
settings.register_profile("fuzz-long", max_examples=5_000, **_FUZZ_COMMON)


def fuzz_settings(**overrides: Any) -> settings:
    """The settings of the current fuzz profile, with per-test ``overrides``."""
    return settings(settings.get_profile(f"fuzz-{FUZZ_PROFILE}"), **overrides)


# Fixtures that start a real server; a test using any of them gets the `influxdb` marker even when
# its author forgot it, so `-m "not influxdb"` always deselects them.
SERVER_FIXTURES = {"influxdb1", "influxdb1_session", "victoria", "victoria_session"}


@pytest.fixture(scope="session")
def cwru() -> Path:
    """The CWRU recordings folder (read in place, never copied); skips when absent."""
    if not (CWRU / "de12k").is_dir():
        pytest.skip(f"CWRU recordings not found at {CWRU} (see ../shared/datasets/cwru/README.md)")
    return CWRU


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if SERVER_FIXTURES.intersection(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.influxdb)
    # Modules holding a `slow` test (a soak, an outage, the bench: a minute or more each) run
    # first. `-n auto --dist loadscope` (README.md, "Test suite time") deals whole modules out
    # to pytest-xdist workers in collection order; a slow module dealt out last keeps one worker
    # busy alone while the others have nothing left.
    # A stable sort: every module's own order, and the order among the others, are unchanged.
    slow = {item.path for item in items if item.get_closest_marker("slow")}
    items.sort(key=lambda item: item.path not in slow)


def _need(binary: str | None, missing: str) -> str:
    if binary is None:
        pytest.skip(f"{missing}; install it with {SETUP_SCRIPT}")
    return binary


def _influx(data_dir: Path) -> Iterator[Influx1Server]:
    server = Influx1Server(
        data_dir, _need(find_influxd(), "influxd (InfluxDB 1.x) not found on PATH")
    )
    try:
        yield server.start()
    finally:
        server.stop()


def _victoria(data_dir: Path) -> Iterator[VictoriaServer]:
    missing = "victoria-metrics not found in .cache/test-servers/ or on PATH"
    server = VictoriaServer(data_dir, _need(find_victoria(), missing))
    try:
        yield server.start()
    finally:
        server.stop()


@pytest.fixture
def influxdb1(tmp_path: Path) -> Iterator[Influx1Server]:
    """A fresh influxd 1.x on a free loopback port, data in tmp_path; the test may stop/restart it."""
    yield from _influx(tmp_path / "influxdb1")


@pytest.fixture(scope="session")
def influxdb1_session(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Influx1Server]:
    """One influxd shared by the session (e.g. for Hypothesis tests, which reject function-scoped
    fixtures). Use a database of your own and never stop or restart it."""
    yield from _influx(tmp_path_factory.mktemp("influxdb1_session"))


@pytest.fixture
def victoria(tmp_path: Path) -> Iterator[VictoriaServer]:
    """A fresh VictoriaMetrics on a free loopback port, data in tmp_path; may be stopped/restarted."""
    yield from _victoria(tmp_path / "victoria")


@pytest.fixture(scope="session")
def victoria_session(tmp_path_factory: pytest.TempPathFactory) -> Iterator[VictoriaServer]:
    """One VictoriaMetrics shared by the session: use distinct metric names or labels, never stop it."""
    yield from _victoria(tmp_path_factory.mktemp("victoria_session"))


@pytest.fixture
def modbus_server() -> Iterator[Any]:
    """A real pymodbus Modbus TCP server on a free loopback port (see test_relay.ModbusServer)."""
    from test_relay import HAVE_PYMODBUS, ModbusServer

    if not HAVE_PYMODBUS:
        pytest.skip("pymodbus not installed (pip install -c constraints.txt -e .)")
    srv = ModbusServer()
    try:
        yield srv.start()
    finally:
        srv.stop()


@pytest.fixture
def mosquitto(tmp_path: Path) -> Iterator[Any]:
    """A real mosquitto on a free loopback port, without persistence (see test_mqtt.Broker)."""
    from test_mqtt import Broker, find_mosquitto

    binary = find_mosquitto()
    if binary is None:
        pytest.skip(f"mosquitto (MQTT broker) not installed; install it with {SETUP_SCRIPT}")
    b = Broker(binary, tmp_path / "mosquitto")
    try:
        yield b.start()
    finally:
        b.stop()
