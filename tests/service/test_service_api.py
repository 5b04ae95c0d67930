"""The control API and the metrics registry: a real server on loopback, real HTTP (httpx).

The backend here is a TEST DOUBLE of the service (:class:`FakeService`): it implements
:class:`pdm.service.api.ServiceBackend` over a few dicts, so these tests pin the HTTP
contract — routes, status codes, auth, limits, error bodies — and the exposition format.
The real service's wiring to that contract is tested by the service's own tests.

Every test starts its own :class:`ControlAPI` on port 0 and stops it; an autouse fixture
fails a test that leaves an API thread behind. The file runs in well under 5 s.
"""

from __future__ import annotations

import json
import logging
import math
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client import CollectorRegistry, Histogram

from pdm.alarms.state import LEVELS, Ack, MachineAlarm
from pdm.errors import ConfigError
from pdm.history.writer import WriterStats
from pdm.secrets import api_token
from pdm.service.api import (
    ControlAPI,
    health_report,
    history_health,
    machine_status,
)
from pdm.service.metrics import (
    ALARM_STATES,
    CONTENT_TYPE,
    STAGES,
    Family,
    ServiceMetrics,
    exposition,
)

TOKEN = "t0ken-for-tests-0123456789abcdef"
T_NS = 1_780_000_000_000_000_000  # 2026-05-28T20:26:40Z


class FakeService:
    """A test double of the service behind the API (see the module docstring)."""

    def __init__(self) -> None:
        self.machines = {
            "pump-1": machine_status(
                "pump-1",
                "Cooling pump 1",
                MachineAlarm(state="danger", since_ns=T_NS, reason="score 2.4 ≥ danger 2.0"),
                score=math.nan,  # JSON has no NaN: the API must send null
                thresholds={"alert": 1.0, "danger": 2.0},
                diagnosis="bearing outer race",
                model_version="pump-1@3",
                last_window_ns=T_NS,
                now_ns=T_NS + 1_500_000_000,
            ),
            "fan-2": machine_status("fan-2", "Fan 2", MachineAlarm(), now_ns=T_NS),
        }
        self.healthy = True
        self.fail: Exception | None = None
        self.acks: list[tuple[str, str, str]] = []
        self.metrics_obj = ServiceMetrics()
        self.metrics_obj.windows_total.labels(machine="pump-1").inc(3)

    def _maybe_fail(self) -> None:
        if self.fail is not None:
            raise self.fail

    def status(self) -> list[dict[str, Any]]:
        self._maybe_fail()
        return list(self.machines.values())

    def health(self) -> dict[str, Any]:
        self._maybe_fail()
        checks = {"loop": (self.healthy, "alive" if self.healthy else "stalled for 12 s")}
        return health_report(checks)

    def acknowledge(self, machine: str, by: str, comment: str) -> str:
        self._maybe_fail()
        if machine not in self.machines:
            raise KeyError(machine)
        if not by.strip():
            raise ValueError("an acknowledgement needs a name")
        self.acks.append((machine, by, comment))
        return f"danger acknowledged by {by.strip()}"

    def metrics(self) -> str:
        self._maybe_fail()
        return self.metrics_obj.render()


def _api_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("pdm-api")]


@pytest.fixture(autouse=True)
def no_threads_left() -> Iterator[None]:
    yield
    deadline = time.monotonic() + 2.0
    while _api_threads() and time.monotonic() < deadline:
        time.sleep(0.01)
    assert not _api_threads(), f"threads left behind: {_api_threads()}"


@pytest.fixture
def service() -> FakeService:
    return FakeService()


@pytest.fixture
def api(service: FakeService) -> Iterator[ControlAPI]:
    with ControlAPI(service, port=0, timeout_s=2.0) as running:
        yield running


@pytest.fixture
def client(api: ControlAPI) -> Iterator[httpx.Client]:
    # trust_env=False: a proxy from the environment must not see loopback requests.
    with httpx.Client(base_url=api.url, timeout=5.0, trust_env=False) as c:
        yield c


def raw(port: int, data: bytes) -> tuple[int, dict[str, str], bytes]:
    """Send raw bytes (what httpx would refuse to send); returns status, headers, body."""
    with socket.create_connection(("127.0.0.1", port), timeout=5.0) as s:
        s.sendall(data)
        reply = b""
        while chunk := s.recv(65536):
            reply += chunk
    head, _, body = reply.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = dict(line.split(": ", 1) for line in lines[1:])
    return int(lines[0].split()[1]), headers, body


# -- metrics: the exposition format --------------------------------------------------------------


def test_exposition_format_known_answer() -> None:
    """prometheus_client's families written as the service always wrote them: labels in their
    declared order (``le`` last), integral values without ``.0``, no ``_created`` series."""
    r = CollectorRegistry()
    c = Family(
        "counter", "demo_requests_total", "Requests.\nSecond line with a \\ backslash.", ["path"]
    )
    r.register(c)
    c.labels(path="/a").inc()
    c.labels(path="/a").inc(2)
    c.labels(path='we"ird\\pa\nth').inc(0.5)
    g = Family("gauge", "demo_temperature_celsius", "Temperature, in °C.")
    r.register(g)
    g.set(-3.25)
    h = Histogram("demo_latency_seconds", "Latency, in s.", ["stage"], buckets=(0.1, 1), registry=r)
    for v in (0.05, 0.1, 0.5, 3.0):
        h.labels(stage="dsp").observe(v)
    r.register(Family("gauge", "demo_empty", "A labelled family with no series yet.", ["machine"]))
    inf = Family("counter", "demo_inf", "Not finite.")
    r.register(inf)
    inf.inc(math.inf)

    expected = (
        "# HELP demo_requests_total Requests.\\nSecond line with a \\\\ backslash.\n"
        "# TYPE demo_requests_total counter\n"
        'demo_requests_total{path="/a"} 3\n'
        'demo_requests_total{path="we\\"ird\\\\pa\\nth"} 0.5\n'
        "# HELP demo_temperature_celsius Temperature, in °C.\n"
        "# TYPE demo_temperature_celsius gauge\n"
        "demo_temperature_celsius -3.25\n"
        "# HELP demo_latency_seconds Latency, in s.\n"
        "# TYPE demo_latency_seconds histogram\n"
        'demo_latency_seconds_bucket{stage="dsp",le="0.1"} 2\n'
        'demo_latency_seconds_bucket{stage="dsp",le="1.0"} 3\n'
        'demo_latency_seconds_bucket{stage="dsp",le="+Inf"} 4\n'
        'demo_latency_seconds_count{stage="dsp"} 4\n'
        'demo_latency_seconds_sum{stage="dsp"} 3.65\n'
        "# HELP demo_empty A labelled family with no series yet.\n"
        "# TYPE demo_empty gauge\n"
        "# HELP demo_inf_total Not finite.\n"  # a counter's name ends in _total
        "# TYPE demo_inf_total counter\n"
        "demo_inf_total +Inf\n"
    )
    assert exposition(r) == expected


def test_the_appliance_label_is_on_every_sample() -> None:
    """Many appliances scraped into one Prometheus: each sample says whose it is."""
    m = ServiceMetrics(appliance="edge-7")
    m.windows_total.labels(machine="pump-1").inc()
    m.stage("dsp").observe(0.002)
    m.decision_latency_seconds.observe(0.002)
    samples = [ln for ln in m.render().splitlines() if ln and not ln.startswith("#")]
    assert samples and all(ln.split("{", 1)[1].startswith('appliance="edge-7"') for ln in samples)
    assert 'pdm_windows_total{appliance="edge-7",machine="pump-1"} 1' in samples
    assert 'pdm_stage_seconds_bucket{appliance="edge-7",stage="dsp",le="0.0025"} 1' in samples
    assert 'pdm_decision_latency_seconds_count{appliance="edge-7"} 1' in samples
    with pytest.raises(ValueError, match="distinct"):
        Family("gauge", "g", "g", ["machine"], {"machine": "x"})


def test_metric_misuse_is_refused_with_the_name() -> None:
    c = Family("counter", "x_total", "x", ["machine"])
    with pytest.raises(ValueError, match=r"x_total: labels \['sensor'\] given"):
        c.labels(sensor="a")
    with pytest.raises(ValueError, match="x_total has labels"):
        c.inc()
    with pytest.raises(ValueError, match="only go up"):
        c.labels(machine="m").inc(-1)
    with pytest.raises(ValueError, match="a count is"):
        c.labels(machine="m").set_total(-1)
    with pytest.raises(ValueError, match="no label"):
        c.remove(sensor="a")
    r = CollectorRegistry()
    r.register(c)
    with pytest.raises(ValueError, match="Duplicated timeseries"):
        r.register(Family("counter", "x_total", "again"))
    with pytest.raises(ValueError, match="must be distinct and match"):
        Family("gauge", "g", "h", ["bad-label"])
    with pytest.raises(TypeError, match="not a string"):
        Family("counter", "c", "c", "machine")


def test_counters_are_thread_safe() -> None:
    c = Family("counter", "n_total", "n", ["k"])
    h = Histogram("h_seconds", "h", buckets=(0.5,), registry=None)

    def work() -> None:
        for _ in range(2000):
            c.labels(k="a").inc()
            h.observe(0.25)

    threads = [threading.Thread(target=work) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert c.labels(k="a").get() == 16_000
    samples = {s.name + str(s.labels): s.value for f in h.collect() for s in f.samples}
    assert samples["h_seconds_bucket{'le': '0.5'}"] == 16_000
    assert samples["h_seconds_count{}"] == 16_000
    assert samples["h_seconds_sum{}"] == 4000.0


def test_service_metrics_are_declared_with_their_types() -> None:
    m = ServiceMetrics()
    text = m.render()
    types = dict(line.split()[2:4] for line in text.splitlines() if line.startswith("# TYPE"))
    assert types == {
        "pdm_windows_total": "counter",
        "pdm_windows_per_second": "gauge",
        "pdm_lag_seconds": "gauge",
        "pdm_stage_seconds": "histogram",
        "pdm_queue_depth": "gauge",
        "pdm_history_spool_rows": "gauge",
        "pdm_history_rows_dropped_total": "counter",
        "pdm_history_store_up": "gauge",
        "pdm_action_failures_total": "counter",
        "pdm_alarm_state": "gauge",
        "pdm_sensor_fault": "gauge",
        "pdm_appliance_fault": "gauge",
        "pdm_model_info": "gauge",
        "pdm_watchdog_stalls_total": "counter",
        "pdm_decision_latency_seconds": "histogram",
        "pdm_decision_latency_from_sensor_seconds": "histogram",
        "pdm_input_refused_total": "counter",
        "pdm_frames_refused_total": "counter",
        "pdm_shedding_level": "gauge",
        "pdm_machines_parked": "gauge",
        "pdm_shedding_seconds_total": "counter",
        "pdm_shed_total": "counter",
    }
    # Every stage shows from the first scrape, with zero counts.
    for stage in STAGES:
        assert f'pdm_stage_seconds_count{{stage="{stage}"}} 0' in text
    assert ALARM_STATES == LEVELS


def test_service_metrics_helpers() -> None:
    m = ServiceMetrics()
    m.set_alarm_state("pump-1", "danger")
    m.set_alarm_state("pump-1", "alert")
    m.set_model("pump-1", "v1")
    m.set_model("pump-1", "v2")
    m.set_sensor_faults("pump-1", ["de", "fe"], faulty=["fe"])
    m.observe_history(WriterStats(rows_dropped=7, spool_rows=120, store_up=False))
    m.observe_history(WriterStats(rows_dropped=9, spool_rows=0, store_up=True))
    with m.stage("dsp").time():
        pass
    m.watchdog_stalls_total.inc()
    text = m.render()
    samples = dict(line.rsplit(" ", 1) for line in text.splitlines() if line[0] != "#")
    for s in LEVELS:
        want = "1" if s == "alert" else "0"
        assert samples[f'pdm_alarm_state{{machine="pump-1",state="{s}"}}'] == want
    assert samples['pdm_model_info{machine="pump-1",version="v2"}'] == "1"
    assert 'version="v1"' not in text
    assert samples['pdm_sensor_fault{machine="pump-1",sensor="de"}'] == "0"
    assert samples['pdm_sensor_fault{machine="pump-1",sensor="fe"}'] == "1"
    assert samples["pdm_history_rows_dropped_total"] == "9"
    assert samples["pdm_history_spool_rows"] == "0"
    assert samples["pdm_history_store_up"] == "1"
    assert samples['pdm_stage_seconds_count{stage="dsp"}'] == "1"
    assert samples["pdm_watchdog_stalls_total"] == "1"
    from pdm.service.shedding import LoadSample, Shedder

    sh = Shedder()
    for i in range(4):  # overloaded for 2 s: level 2
        sh.update(LoadSample(0.5 * (i + 1), 0.5, 0.5, 100, 1.0 + 0.2 * i))
    m.observe_shedding(sh, [{"windows": 3, "spectra": 1}, {"windows": 4, "spectra": 0}])
    samples = dict(line.rsplit(" ", 1) for line in m.render().splitlines() if line[0] != "#")
    assert samples["pdm_shedding_level"] == "2"
    assert samples["pdm_machines_parked"] == "0"
    assert samples['pdm_shedding_seconds_total{level="normal"}'] == "1"
    assert samples['pdm_shedding_seconds_total{level="spectra"}'] == "1"
    assert samples['pdm_shed_total{what="windows"}'] == "7"
    assert samples['pdm_shed_total{what="spectra"}'] == "1"
    m.forget_machine("pump-1")
    assert "pump-1" not in m.render()


def test_service_metrics_machines_keep_their_own_series() -> None:
    """Each machine's alarm states and model version change only its own series, a state
    outside ALARM_STATES is shown and later zeroed, and a forgotten machine starts afresh."""
    m = ServiceMetrics()
    m.set_alarm_state("pump-1", "trip")
    m.set_alarm_state("fan-2", "appliance_fault")  # not a level: shown as it comes
    m.set_alarm_state("fan-2", "normal")
    m.set_model("pump-1", "v1")
    m.set_model("fan-2", "v1")
    m.set_model("fan-2", "v3")

    def samples() -> dict[str, str]:
        text = m.render()
        return dict(line.rsplit(" ", 1) for line in text.splitlines() if line[0] != "#")

    got = samples()
    assert got['pdm_alarm_state{machine="pump-1",state="trip"}'] == "1"
    assert got['pdm_alarm_state{machine="fan-2",state="appliance_fault"}'] == "0"
    assert got['pdm_alarm_state{machine="fan-2",state="normal"}'] == "1"
    assert 'pdm_alarm_state{machine="pump-1",state="appliance_fault"}' not in got
    assert got['pdm_model_info{machine="pump-1",version="v1"}'] == "1"
    assert got['pdm_model_info{machine="fan-2",version="v3"}'] == "1"
    assert 'pdm_model_info{machine="fan-2",version="v1"}' not in got
    m.forget_machine("fan-2")
    m.set_alarm_state("fan-2", "alert")
    m.set_model("fan-2", "v4")
    got = samples()
    assert 'pdm_alarm_state{machine="fan-2",state="appliance_fault"}' not in got
    assert got['pdm_alarm_state{machine="fan-2",state="alert"}'] == "1"
    assert [k for k in got if k.startswith('pdm_model_info{machine="fan-2"')] == [
        'pdm_model_info{machine="fan-2",version="v4"}'
    ]
    assert got['pdm_alarm_state{machine="pump-1",state="trip"}'] == "1"


# -- the helpers the service builds its answers with ---------------------------------------------


def test_machine_status_known_answer() -> None:
    alarm = MachineAlarm(
        state="trip",
        since_ns=T_NS,
        reason="score trip",
        ack=Ack("ana", T_NS + 10**9, "bearing ordered"),
        sensor_faults={"fe": "flatline"},
    )
    st = machine_status(
        "pump-1",
        "Pump",
        alarm,
        score=12.5,
        thresholds={"alert": 1.0, "danger": 2.0},
        appliance_fault="relay: timeout",
        model_version="v3",
        last_window_ns=T_NS,
        now_ns=T_NS + 2_250_000_000,
    )
    assert st == {
        "id": "pump-1",
        "name": "Pump",
        "state": "trip",
        "since": "2026-05-28T20:26:40.000000Z",
        "reason": "score trip",
        "acknowledged": {
            "by": "ana",
            "at": "2026-05-28T20:26:41.000000Z",
            "comment": "bearing ordered",
        },
        "score": 12.5,
        "thresholds": {"alert": 1.0, "danger": 2.0},
        "diagnosis": None,
        "sensor_faults": {"fe": "flatline"},
        "appliance_fault": "relay: timeout",
        "model_version": "v3",
        "last_window": "2026-05-28T20:26:40.000000Z",
        "lag_s": 2.25,
    }
    fresh = machine_status("fan", "Fan", MachineAlarm())
    assert (fresh["since"], fresh["last_window"], fresh["lag_s"]) == (None, None, None)


def test_health_helpers() -> None:
    assert history_health(WriterStats(store_up=True), 1000)[0]
    assert history_health(WriterStats(store_up=False, spool_rows=999), 1000)[0]
    ok, why = history_health(WriterStats(store_up=False, spool_rows=1000), 1000)
    assert not ok and "1000" in why
    assert not history_health(WriterStats(rows_dropped=1), 1000)[0]
    # History that does not move is not healthy: the store down too long, or rows waiting
    # with the store up and none delivered (a stuck writer; issue 16 item 1).
    assert history_health(WriterStats(store_up=False, down_s=299.0), 1000)[0]
    ok, why = history_health(WriterStats(store_up=False, down_s=301.0, spool_rows=5), 1000)
    assert not ok and "down for 301 s (limit 300 s)" in why
    assert history_health(WriterStats(store_up=True, stalled_s=59.0, queue_rows=3), 1000)[0]
    ok, why = history_health(WriterStats(store_up=True, stalled_s=61.0, spool_rows=7), 1000)
    assert not ok and why.startswith("stuck: no row delivered for 61 s") and "7 wait" in why
    ok, why = history_health(WriterStats(store_up=True, rows_rejected=2), 1000)
    assert ok and "2 row(s) rejected" in why
    report = health_report({"loop": (True, "alive"), "history": (False, "store down")})
    assert report["ok"] is False
    assert report["reasons"] == ["history: store down"]


def test_api_token_from_env_or_file(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("PDM_API_TOKEN", raising=False)
    monkeypatch.delenv("PDM_API_TOKEN_FILE", raising=False)
    assert api_token() is None
    monkeypatch.setenv("PDM_API_TOKEN", TOKEN)
    assert api_token() == TOKEN
    f = tmp_path / "token"
    f.write_text(TOKEN + "\n")
    monkeypatch.setenv("PDM_API_TOKEN_FILE", str(f))
    with pytest.raises(ConfigError, match="not both"):
        api_token()
    monkeypatch.delenv("PDM_API_TOKEN")
    assert api_token() == TOKEN
    f.write_text("\n")
    with pytest.raises(ConfigError, match="empty"):
        api_token()
    monkeypatch.setenv("PDM_API_TOKEN_FILE", str(tmp_path / "missing"))
    with pytest.raises(ConfigError, match="cannot read"):
        api_token()


# -- the API over HTTP ---------------------------------------------------------------------------


def test_health_200_then_503(client: httpx.Client, service: FakeService) -> None:
    r = client.get("/health")
    assert r.status_code == 200
    assert r.headers["content-type"] == "application/json"
    assert r.json()["ok"] is True
    service.healthy = False
    r = client.get("/health")
    assert r.status_code == 503
    assert r.json()["reasons"] == ["loop: stalled for 12 s"]
    service.fail = RuntimeError("boom")
    r = client.get("/health")
    assert r.status_code == 503
    assert r.json() == {"ok": False, "reasons": ["the health check itself failed"]}
    assert client.head("/health").status_code == 503


def test_status_list_and_one(client: httpx.Client) -> None:
    r = client.get("/status")
    assert r.status_code == 200
    machines = r.json()
    assert [m["id"] for m in machines] == ["pump-1", "fan-2"]
    pump = client.get("/status/pump-1").json()
    assert pump["state"] == "danger"
    assert pump["score"] is None  # NaN → null
    assert pump["lag_s"] == 1.5
    assert pump["model_version"] == "pump-1@3"
    r = client.get("/status/nope")
    assert r.status_code == 404
    assert r.json() == {"error": "unknown machine 'nope'", "known": ["pump-1", "fan-2"]}


def test_unknown_endpoint_and_wrong_method(client: httpx.Client) -> None:
    r = client.get("/nope")
    assert r.status_code == 404 and r.json() == {"error": "no such endpoint: /nope"}
    r = client.post("/status", json={})
    assert r.status_code == 405 and r.headers["allow"] == "GET, HEAD"
    r = client.get("/ack/pump-1")
    assert r.status_code == 405 and r.headers["allow"] == "POST"
    r = client.request("OPTIONS", "/status")
    assert r.status_code == 501 and "error" in r.json()  # http.server's own refusal, as JSON


def test_ack_happy_path(client: httpx.Client, service: FakeService) -> None:
    r = client.post("/ack/pump-1", json={"by": "ana", "comment": "bearing ordered"})
    assert r.status_code == 200
    assert r.json() == {"machine": "pump-1", "message": "danger acknowledged by ana"}
    r = client.post("/ack/pump-1", json={"by": "bo"})  # the comment is optional
    assert r.status_code == 200
    assert service.acks == [("pump-1", "ana", "bearing ordered"), ("pump-1", "bo", "")]


@pytest.mark.parametrize(
    ("body", "status", "error"),
    [
        (b"{not json", 400, "not JSON"),
        (b"[1, 2]", 400, "JSON object"),
        (b'{"comment": "x"}', 400, "'by'"),
        (b'{"by": 7}', 400, "'by'"),
        (b'{"by": "ana", "comment": 1}', 400, "'comment'"),
        (b'{"by": "ana", "commment": "typo"}', 400, "unknown key"),
        (b'{"by": "  "}', 400, "name of who acts"),
        (b"", 400, "not JSON"),
        # Issue 16 item 9: bounded, one-line names and comments.
        (b'{"by": "' + b"a" * 65 + b'"}', 400, "'by' has 65 characters; at most 64"),
        (b'{"by": "ana", "comment": "' + b"c" * 501 + b'"}', 400, "at most 500"),
        (b'{"by": "ana\\nroot"}', 400, "'by' contains a control character"),
        (b'{"by": "ana", "comment": "x\\u0007y"}', 400, "'comment' contains a control"),
        (b'{"by": "ana", "comment": "x\\u2028y"}', 400, "line break"),
        (b'{"by": "ana", "force": true}', 400, "unknown key"),  # force: promote only
        # Red team: a nesting bomb within 64 KiB was a RecursionError and a 500; a repeated
        # key recorded the last name where a log in front may have read the first.
        (b"[" * 30000 + b"]" * 30000, 400, "nested too deep"),
        (b'{"by": "ana", "by": "bob"}', 400, "key 'by' appears twice"),
        # Red team: a text-direction override made "\u202enomis" read as "simon" in the log.
        (b'{"by": "\\u202enomis"}', 400, "'by' contains an invisible or text-direction"),
        (b'{"by": "ana", "comment": "ok\\u200b"}', 400, "'comment' contains an invisible"),
    ],
)
def test_ack_bad_bodies(
    client: httpx.Client, service: FakeService, body: bytes, status: int, error: str
) -> None:
    r = client.post("/ack/pump-1", content=body, headers={"Content-Type": "application/json"})
    assert r.status_code == status
    assert error in r.json()["error"]
    assert service.acks == []


def test_ack_unknown_machine_wrong_type_too_large(
    client: httpx.Client, service: FakeService
) -> None:
    r = client.post("/ack/nope", json={"by": "ana"})
    assert r.status_code == 404 and r.json() == {"error": "unknown machine 'nope'"}
    r = client.post("/ack/pump-1", content=b'{"by": "ana"}', headers={"Content-Type": "text/plain"})
    assert r.status_code == 415
    big = b'{"by": "ana", "comment": "' + b"x" * (64 * 1024) + b'"}'
    r = client.post("/ack/pump-1", content=big, headers={"Content-Type": "application/json"})
    assert r.status_code == 413
    assert r.json() == {"error": "the body may have at most 65536 bytes"}
    assert service.acks == []


def test_backend_raising_gives_500_json_without_traceback(
    client: httpx.Client, service: FakeService, caplog: pytest.LogCaptureFixture
) -> None:
    service.fail = RuntimeError("sqlite at /var/lib/pdm/secret.db is locked")
    with caplog.at_level(logging.ERROR, logger="pdm.service.api"):
        for method, path in (("GET", "/status"), ("GET", "/metrics"), ("POST", "/ack/pump-1")):
            r = client.request(method, path, json={"by": "ana"} if method == "POST" else None)
            assert r.status_code == 500
            assert r.headers["content-type"] == "application/json"
            assert r.json() == {"error": "internal error (the appliance log says more)"}
            assert "Traceback" not in r.text and "secret" not in r.text
    errors = [rec for rec in caplog.records if rec.levelno == logging.ERROR]
    assert len(errors) == 3
    for rec in errors:
        assert rec.exc_info is None and "\n" not in rec.getMessage()
        assert "RuntimeError: sqlite at /var/lib/pdm/secret.db is locked" in rec.getMessage()


def test_metrics_endpoint(client: httpx.Client) -> None:
    r = client.get("/metrics")
    assert r.status_code == 200
    assert r.headers["content-type"] == CONTENT_TYPE == "text/plain; version=0.0.4; charset=utf-8"
    assert "# TYPE pdm_windows_total counter\n" in r.text
    assert 'pdm_windows_total{machine="pump-1"} 3\n' in r.text


def test_malformed_requests_get_json_errors(api: ControlAPI) -> None:
    status, headers, body = raw(api.port, b"GET / two words HTTP/1.0\r\n\r\n")
    assert status == 400 and headers["Content-Type"] == "application/json"
    assert "error" in json.loads(body)
    req = b"POST /ack/pump-1 HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: -5\r\n\r\n"
    status, _, body = raw(api.port, req)
    assert status == 400 and json.loads(body) == {"error": "bad Content-Length"}
    req = (
        b"POST /ack/pump-1 HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n"
    )
    status, _, body = raw(api.port, req)
    assert status == 411 and "Content-Length" in json.loads(body)["error"]
    # Red team: two different lengths were taken (the first); a proxy in front may use the other.
    req = (
        b"POST /ack/pump-1 HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        b'Content-Length: 13\r\nContent-Length: 99\r\n\r\n{"by": "ana"}'
    )
    status, _, body = raw(api.port, req)
    assert status == 400 and json.loads(body) == {"error": "bad Content-Length"}


def test_foreign_host_header_is_refused_without_token(client: httpx.Client) -> None:
    # DNS rebinding: a web page whose name now points at 127.0.0.1 sends its own Host.
    r = client.get("/status", headers={"Host": "attacker.example:8470"})
    assert r.status_code == 403
    for host in ("localhost:8470", "127.0.0.1", "[::1]:8470"):
        assert client.get("/status", headers={"Host": host}).status_code == 200


# -- auth ----------------------------------------------------------------------------------------


def test_non_loopback_bind_requires_a_token(service: FakeService) -> None:
    for host in ("0.0.0.0", "", "192.0.2.10", "pdm-edge.local"):
        with pytest.raises(ConfigError, match="needs a token"):
            ControlAPI(service, host=host, port=0)
    with pytest.raises(ConfigError, match="at least 16"):
        ControlAPI(service, host="0.0.0.0", port=0, token="short")
    with pytest.raises(ConfigError, match="at least 16"):
        ControlAPI(service, port=0, token="has a space in it, sixteen+")


def test_token_on_a_non_loopback_bind(service: FakeService) -> None:
    with ControlAPI(service, host="0.0.0.0", port=0, token=TOKEN) as api:
        url = f"http://127.0.0.1:{api.port}"
        with httpx.Client(base_url=url, timeout=5.0, trust_env=False) as c:
            r = c.get("/status")
            assert r.status_code == 401
            assert r.headers["www-authenticate"] == 'Bearer realm="pdm-edge"'
            assert r.json() == {"error": "a valid bearer token is required"}
            r = c.get("/status", headers={"Authorization": f"Bearer {TOKEN}x"})
            assert r.status_code == 401
            assert 'error="invalid_token"' in r.headers["www-authenticate"]
            assert c.get("/status", headers={"Authorization": f"Basic {TOKEN}"}).status_code == 401
            assert c.get("/nope").status_code == 401  # no probing of paths without the token
            assert c.post("/ack/pump-1", json={"by": "ana"}).status_code == 401
            assert c.get("/metrics").status_code == 401
            assert c.get("/health").status_code == 200  # open to probes
            auth = {"Authorization": f"Bearer {TOKEN}"}
            assert c.get("/status", headers=auth).status_code == 200
            assert c.get("/metrics", headers=auth).status_code == 200
            r = c.post("/ack/pump-1", json={"by": "ana"}, headers=auth)
            assert r.status_code == 200
            # With a token, the Host header does not matter (the LAN uses the appliance's name).
            r = c.get("/status", headers={**auth, "Host": "pdm-edge.local:8470"})
            assert r.status_code == 200
    assert service.acks == [("pump-1", "ana", "")]


def test_a_token_given_on_loopback_is_enforced(service: FakeService) -> None:
    with (
        ControlAPI(service, host="localhost", port=0, token=TOKEN) as api,
        httpx.Client(base_url=api.url, timeout=5.0, trust_env=False) as c,
    ):
        assert api.url.startswith("http://127.0.0.1:")
        assert c.get("/status").status_code == 401
        assert c.get("/status", headers={"Authorization": f"bearer {TOKEN}"}).status_code == 200


# -- lifecycle -----------------------------------------------------------------------------------


def test_lifecycle(service: FakeService) -> None:
    api = ControlAPI(service, port=0)
    assert api.port > 0
    with pytest.raises(ConfigError, match=r"cannot listen on 127\.0\.0\.1:"):
        ControlAPI(service, port=api.port)  # the port is taken (bound at construction)
    api.start()
    with pytest.raises(RuntimeError, match="already started"):
        api.start()
    # A client that connects and says nothing must not hold stop() for the socket timeout.
    idle = socket.create_connection(("127.0.0.1", api.port), timeout=5.0)
    time.sleep(0.05)
    t0 = time.monotonic()
    api.stop(timeout=0.5)
    assert time.monotonic() - t0 < 1.0
    idle.close()
    api.stop()  # idempotent
    with pytest.raises(RuntimeError, match="stopped"):
        api.start()
    ControlAPI(service, port=0).stop()  # never started: closes its socket


def test_ipv6_loopback(service: FakeService) -> None:
    if not socket.has_ipv6:
        pytest.skip("no IPv6")
    try:
        api = ControlAPI(service, host="::1", port=0)
    except ConfigError as exc:
        pytest.skip(f"::1 unavailable here: {exc}")
    with api, httpx.Client(base_url=api.url, timeout=5.0, trust_env=False) as c:
        assert api.url == f"http://[::1]:{api.port}"
        assert c.get("/status/fan-2").json()["state"] == "ok"


def test_a_trickled_request_head_cannot_hold_the_api_shut(service: FakeService) -> None:
    # Slowloris: each connection sends one header line well within the per-read timeout,
    # for ever. Filling every request slot so used to shut the API — /health too — for as
    # long as the client liked; the head now has one deadline, timeout_s after connecting.
    with ControlAPI(service, port=0, timeout_s=1.0, max_connections=4) as api:
        socks = [socket.create_connection(("127.0.0.1", api.port), timeout=5.0) for _ in range(4)]
        stop = threading.Event()

        def trickle() -> None:
            while not stop.wait(0.3):
                for s in socks:
                    try:
                        s.sendall(b"X-Slow: y\r\n")
                    except OSError:
                        pass

        for s in socks:
            s.sendall(b"GET /health HTTP/1.0\r\n")
        t = threading.Thread(target=trickle)
        t.start()
        try:
            time.sleep(0.5)  # every slot is taken by now
            answered = None
            deadline = time.monotonic() + 4.0
            while answered is None and time.monotonic() < deadline:
                try:
                    answered = raw(api.port, b"GET /health HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")[0]
                except (OSError, IndexError):  # refused at once: every slot busy
                    time.sleep(0.2)
            assert answered == 200
        finally:
            stop.set()
            t.join()
            for s in socks:
                s.close()


def test_a_client_that_leaves_before_its_answer_writes_no_error_line(
    service: FakeService, caplog: pytest.LogCaptureFixture
) -> None:
    # Anyone who can connect is answered (401 without a token): each connection reset
    # before its answer used to log one ERROR line, as many as the client liked.
    slow = threading.Event()
    real_status = service.status

    def slow_status() -> list[dict[str, Any]]:
        slow.wait(0.5)  # the client is gone by the time the answer is written
        return real_status()

    service.status = slow_status  # type: ignore[method-assign]
    caplog.set_level(logging.DEBUG, logger="pdm")
    with ControlAPI(service, port=0, timeout_s=2.0) as api:
        for _ in range(3):
            s = socket.create_connection(("127.0.0.1", api.port), timeout=5.0)
            s.sendall(b"GET /status HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")
            s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
            s.close()  # RST: the server's write fails
        time.sleep(1.5)
        assert raw(api.port, b"GET /health HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")[0] == 200
    errors = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert not errors, [r.getMessage() for r in errors]
    assert any("left before its answer" in r.getMessage() for r in caplog.records)


def test_slow_clients_that_reconnect_at_once_cannot_hold_the_api_shut(
    service: FakeService,
) -> None:
    # Slowloris that opens a new slow connection as soon as one is closed: with the head
    # deadline alone the slots freed every timeout_s were taken again at once (/health
    # answered 1 probe in 35). A newcomer now pushes out the oldest connection still
    # sending its head, and a real client, whose head arrives at once, is served.
    with ControlAPI(service, port=0, timeout_s=5.0, max_connections=4) as api:
        stop = threading.Event()

        def attacker() -> None:
            while not stop.is_set():
                try:
                    with socket.create_connection(("127.0.0.1", api.port), timeout=1) as s:
                        s.sendall(b"GET /status HTTP/1.0\r\n")
                        while not stop.is_set():
                            s.sendall(b"X-Slow: y\r\n")
                            try:
                                if s.recv(1) == b"":
                                    break  # pushed out: come back at once
                            except TimeoutError:
                                pass
                except OSError:
                    time.sleep(0.01)

        threads = [threading.Thread(target=attacker) for _ in range(8)]
        for t in threads:
            t.start()
        try:
            time.sleep(0.5)  # every slot is taken by now, and kept taken
            answered = 0
            for _ in range(10):
                try:
                    status = raw(api.port, b"GET /health HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")[0]
                    answered += status == 200
                except (OSError, IndexError):
                    pass
                time.sleep(0.1)
            assert answered >= 8, f"/health answered {answered} of 10"
        finally:
            stop.set()
            for t in threads:
                t.join()


def test_connections_pushed_out_on_a_starved_machine_do_not_keep_their_slots(
    service: FakeService, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A starved machine, made deterministic: the first four connections' threads do not run
    # (as if waiting for a core) until released. Two fill the slots with slow heads; two more
    # push them out. The pushed-out threads, still not ended, held their slots before (every
    # slot taken, 2 x max_connections threads: a real client was refused, as the slowloris
    # test above saw under load); a connection pushed out now frees its slot at once.
    from pdm.service.guarded_http import GuardedHTTPServer

    release = threading.Event()
    started = {"n": 0}
    lock = threading.Lock()
    original = GuardedHTTPServer.process_request_thread

    def starved(self: GuardedHTTPServer, request: Any, client_address: Any) -> None:
        with lock:
            started["n"] += 1
            held = started["n"] <= 4
        if held:
            release.wait(10.0)
        original(self, request, client_address)

    monkeypatch.setattr(GuardedHTTPServer, "process_request_thread", starved)
    with ControlAPI(service, port=0, timeout_s=5.0, max_connections=2) as api:
        slow = []
        try:
            for _ in range(4):
                s = socket.create_connection(("127.0.0.1", api.port), timeout=5.0)
                s.sendall(b"GET /status HTTP/1.0\r\n")  # a head that never ends
                slow.append(s)
                time.sleep(0.05)  # accepted in this order
            assert raw(api.port, b"GET /health HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")[0] == 200
        finally:
            release.set()
            for s in slow:
                s.close()
