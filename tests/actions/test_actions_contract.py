"""The contract every action keeps: relays fail safe, webhooks arrive signed, once, in time.

Two suites, each run over every implementation (as ``test_history_contract.py`` runs one over
every history store):

**Relays** (:data:`RELAYS`): a Modbus coil on a real pymodbus server (normal and inverted
polarity), a GPIO line, and the dry-run log relay. *Energised* means *permissive*: the machine
may run only while the appliance says so and is there to say it.

* building a relay never energises its output;
* ``set_permissive`` drives the output and verifies it, whatever was asked before
  (repeated commands are idempotent; Hypothesis sequences);
* ``close()`` (the appliance stopping) drops the output, is idempotent, and nothing energises it
  afterwards;
* a lost link never energises: every call reports the failure in one line within
  :data:`~pdm.actions.relay.DEADLINE_S`, and the output is as the last verified command left it.

GPIO has no chip on this machine (no ``/dev/gpiochip*``, no ``gpiod`` package, no gpio-sim
module): its line is a MOCK (:class:`FakeGpiod`, an in-memory line behind the ``gpiod`` v2 API
the relay calls). It shows the relay's own logic, not the kernel's.

**Webhooks** (:data:`~pdm.actions.webhook.FORMATS`), delivered through the durable outbox to a
real HTTP receiver (``tests/webhook_receiver.py`` in a subprocess):

* every request is signed, and the receiver verifies it with the secret (HMAC-SHA256 of
  ``timestamp.body``), and only with it;
* the secret is never printed: not in logs, stdout/stderr, reprs, results, requests or the outbox;
* retries are bounded in time (back-off within its bounds), durable (the outbox survives a
  restart of the sender) and the receiver gets each event once, in order; an event enqueued again
  is not sent again;
* a receiver that does not answer is cut off by the timeout, and the sender stops promptly.
"""

from __future__ import annotations

import hashlib
import hmac
import itertools
import logging
import re
import sys
import threading
import time
import types
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from test_webhook import SECRET, Receiver, wait_for
from webhook_sender import event

from pdm.actions.outbox import Outbox
from pdm.actions.relay import DEADLINE_S, GpioRelay, LogRelay, ModbusRelay, Relay
from pdm.actions.webhook import (
    FORMATS,
    HEADER_EVENT_ID,
    HEADER_SIGNATURE,
    HEADER_TIMESTAMP,
    WebhookSender,
    WebhookSettings,
    verify,
)
from pdm.tools.servers import DEVICE, ModbusServer

#: A call returns within the deadline; this much more is scheduling noise on a shared machine.
SLACK_S = 0.3


def _one_line(text: str) -> bool:
    return bool(text) and "\n" not in text and "\r" not in text


# --- relays: the rigs --------------------------------------------------------------------------


class FakeGpiod:
    """MOCK of the ``gpiod`` v2 API (no GPIO chip can run here): one requested line whose
    logical value is kept in memory; ``broken`` makes every call raise ``OSError`` as a chip
    that went away does. ``value`` is the logical value (ACTIVE = the relay energised, whatever
    ``active_low`` makes of the pin's level)."""

    def __init__(self) -> None:
        self.value: str | None = None
        self.broken = False
        self.released = False
        gpiod = types.ModuleType("gpiod")
        line = types.ModuleType("gpiod.line")
        line.Direction = types.SimpleNamespace(OUTPUT="output")  # type: ignore[attr-defined]
        line.Value = types.SimpleNamespace(ACTIVE="active", INACTIVE="inactive")  # type: ignore[attr-defined]
        gpiod.line = line  # type: ignore[attr-defined]
        gpiod.__version__ = "2.5.0"  # type: ignore[attr-defined]
        gpiod.LineSettings = lambda **kw: kw  # type: ignore[attr-defined]
        gpiod.request_lines = self._request  # type: ignore[attr-defined]
        self.modules = {"gpiod": gpiod, "gpiod.line": line}

    def _request(self, chip: str, consumer: str, config: dict[int, dict[str, Any]]) -> Any:
        ((offset, cfg),) = config.items()
        self.value = cfg["output_value"]  # the kernel drives the line as claimed
        fake = self

        class Request:
            def set_value(self, line: int, value: str) -> None:
                fake._check(line, offset)
                fake.value = value

            def get_value(self, line: int) -> str | None:
                fake._check(line, offset)
                return fake.value

            def release(self) -> None:
                fake.released = True

        return Request()

    def _check(self, line: int, offset: int) -> None:
        if self.broken or self.released:
            raise OSError(19, "No such device")
        assert line == offset


class Rig:
    """A relay and a view of its output from outside (the device's coil, the line)."""

    name = ""
    has_link = True
    max_attempts = 1  # writes one call may try: retries are bounded

    def __init__(self) -> None:
        self.relay: Relay = LogRelay()

    def energised(self) -> bool | None:
        """The permissive state the output holds now, read without the relay."""
        raise NotImplementedError

    def preset(self, permissive: bool) -> None:
        """Put the output in this state behind the relay's back (a previous run left it)."""
        raise NotImplementedError

    def make(self) -> Relay:
        """A new relay on the same output."""
        raise NotImplementedError

    def break_link(self) -> None:
        raise NotImplementedError

    def restore_link(self) -> None:
        raise NotImplementedError

    def teardown(self) -> None:
        self.relay.close()


class ModbusRig(Rig):
    """A coil of a real pymodbus server on 127.0.0.1; the link breaks by stopping the server
    (coils kept: the module became unreachable, it was not powered off)."""

    def __init__(self, polarity: str) -> None:
        self.name = f"modbus_{polarity}"
        self.polarity = polarity
        self.max_attempts = 3  # 1 + the default retries=2
        self.server = ModbusServer(keep_coils=True).start()
        self.relay = self.make()

    def make(self) -> Relay:
        return ModbusRelay(
            "127.0.0.1", port=self.server.port, device_id=DEVICE, coil=3, polarity=self.polarity
        )

    def energised(self) -> bool | None:
        if not self.server.running:
            return None
        return self.server.coil(3) != (self.polarity == "inverted")

    def preset(self, permissive: bool) -> None:
        self.server.set_coil(3, permissive != (self.polarity == "inverted"))

    def break_link(self) -> None:
        self.server.stop()

    def restore_link(self) -> None:
        self.server.start()

    def teardown(self) -> None:
        if not self.server.running:
            self.server.start()
        self.relay.close()
        self.server.stop()


class GpioRig(Rig):
    """A GPIO line of :class:`FakeGpiod` (a MOCK; see the module docstring)."""

    def __init__(self, tmp: Path, monkeypatch: pytest.MonkeyPatch, active_low: bool) -> None:
        self.name = "gpio_active_low" if active_low else "gpio"
        self.fake = FakeGpiod()
        for name, module in self.fake.modules.items():
            monkeypatch.setitem(sys.modules, name, module)
        self.chip = tmp / "gpiochip0"  # GpioRelay checks that the chip exists
        self.chip.touch()
        self.active_low = active_low
        self.relay = self.make()

    def make(self) -> Relay:
        self.fake.released = False
        return GpioRelay(str(self.chip), line=17, active_low=self.active_low)

    def energised(self) -> bool | None:
        return None if self.fake.value is None else self.fake.value == "active"

    def preset(self, permissive: bool) -> None:
        self.fake.value = "active" if permissive else "inactive"

    def break_link(self) -> None:
        self.fake.broken = True

    def restore_link(self) -> None:
        self.fake.broken = False


class LogRig(Rig):
    """The dry run: no output and no link; its state is what it logged last."""

    name = "log"
    has_link = False

    def __init__(self) -> None:
        self.relay = self.make()

    def make(self) -> Relay:
        return LogRelay()

    def energised(self) -> bool | None:
        return self.relay.read_back()

    def preset(self, permissive: bool) -> None:
        return None  # nothing outside the process to leave energised


RigFactory = Callable[[Path, pytest.MonkeyPatch], Rig]

#: name → factory of a rig on a fresh output.
RELAYS: dict[str, RigFactory] = {
    "modbus": lambda tmp, mp: ModbusRig("normal"),
    "modbus_inverted": lambda tmp, mp: ModbusRig("inverted"),
    "gpio": lambda tmp, mp: GpioRig(tmp, mp, active_low=False),
    "gpio_active_low": lambda tmp, mp: GpioRig(tmp, mp, active_low=True),
    "log": lambda tmp, mp: LogRig(),
}


@pytest.fixture(params=list(RELAYS))
def rig(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Rig]:
    r = RELAYS[request.param](tmp_path, monkeypatch)
    try:
        yield r
    finally:
        r.teardown()


def assert_applied(rig: Rig, permissive: bool) -> None:
    result = rig.relay.set_permissive(permissive)
    assert result.ok, result
    assert result.permissive is permissive and 1 <= result.attempts <= rig.max_attempts
    assert _one_line(result.detail) and result.elapsed_s <= DEADLINE_S + SLACK_S
    assert rig.energised() is permissive
    assert rig.relay.read_back() is permissive


def assert_failed_in_time(rig: Rig, result: Any, permissive: bool) -> None:
    assert not result.ok, result
    assert result.permissive is permissive
    assert result.attempts <= rig.max_attempts, result
    assert result.elapsed_s <= DEADLINE_S + SLACK_S, result
    assert _one_line(result.detail), result.detail


# --- relays: the contract ----------------------------------------------------------------------


def test_building_a_relay_never_energises_it(rig: Rig) -> None:
    rig.relay.close()
    rig.preset(False)
    rig.relay = rig.make()
    assert rig.energised() is not True
    assert rig.relay.read_back() is not True


def test_set_permissive_drives_and_verifies_the_output(rig: Rig) -> None:
    assert_applied(rig, True)
    assert_applied(rig, False)
    assert_applied(rig, True)
    assert rig.relay.target and _one_line(rig.relay.target)


@pytest.mark.parametrize("name", list(RELAYS))
def test_repeated_commands_are_idempotent(
    name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    rig = RELAYS[name](tmp_path, monkeypatch)
    try:

        @settings(max_examples=15, deadline=None, derandomize=True)
        @given(st.lists(st.booleans(), min_size=1, max_size=6))
        def check(commands: list[bool]) -> None:
            for permissive in commands:
                assert_applied(rig, permissive)  # the same command twice changes nothing

        check()
    finally:
        rig.teardown()


def test_close_drops_the_output_for_good(rig: Rig) -> None:
    assert_applied(rig, True)
    rig.relay.close()
    assert rig.energised() is False  # the appliance stopping trips the machine
    rig.relay.close()  # idempotent
    after = rig.relay.set_permissive(True)
    assert_failed_in_time(rig, after, True)
    assert rig.energised() is False
    assert rig.relay.read_back() is not True


def test_leaving_a_with_block_by_an_exception_drops_the_output(rig: Rig) -> None:
    with pytest.raises(RuntimeError), rig.relay:
        assert_applied(rig, True)
        raise RuntimeError("the engine crashed")
    assert rig.energised() is False


def test_a_lost_link_never_energises_and_is_reported_in_time(rig: Rig) -> None:
    if not rig.has_link:
        pytest.skip(f"{rig.name}: no link to lose (the dry run has no output)")
    assert_applied(rig, False)
    rig.break_link()
    asked = rig.relay.set_permissive(True)
    assert_failed_in_time(rig, asked, True)
    t = time.monotonic()
    assert rig.relay.read_back() is None  # unknown, not a guess
    assert time.monotonic() - t <= DEADLINE_S + SLACK_S
    rig.restore_link()
    assert rig.energised() is False  # the failed command did not land late
    assert_applied(rig, True)  # and the relay recovers by itself
    # From permissive, a trip that cannot be applied is reported (appliance_fault follows).
    rig.break_link()
    trip = rig.relay.set_permissive(False)
    assert_failed_in_time(rig, trip, False)
    t = time.monotonic()
    rig.relay.close()  # stopping with the link down returns too
    assert time.monotonic() - t <= 2 * DEADLINE_S + SLACK_S
    rig.restore_link()
    assert rig.relay.set_permissive(True).ok is False  # closed stays closed


# --- webhooks ----------------------------------------------------------------------------------


@pytest.fixture(autouse=True)
def no_threads_left() -> Iterator[None]:
    """Senders, servers and resolvers all stop."""
    before = set(threading.enumerate())
    yield
    deadline = time.monotonic() + 3.0
    while (extra := set(threading.enumerate()) - before) and time.monotonic() < deadline:
        time.sleep(0.01)
    assert not extra, f"threads left running: {sorted(t.name for t in extra)}"


@pytest.fixture
def receiver(tmp_path: Path) -> Iterator[Callable[..., Receiver]]:
    made: list[Receiver] = []

    def make(*args: str, start: bool = True) -> Receiver:
        rx = Receiver(tmp_path, *args)
        made.append(rx)
        return rx.start() if start else rx

    yield make
    for rx in made:
        rx.stop()


class Results:
    """``on_result`` calls with their monotonic time."""

    def __init__(self) -> None:
        self.calls: list[tuple[float, str, str, int, str]] = []

    def __call__(self, event_id: str, outcome: str, attempt: int, detail: str) -> None:
        self.calls.append((time.monotonic(), event_id, outcome, attempt, detail))


def settings_for(url: str, fmt: str, **kw: Any) -> WebhookSettings:
    base: dict[str, Any] = {"timeout_s": 3.0, "backoff_min_s": 0.05, "backoff_max_s": 0.2}
    return WebhookSettings(url, SECRET, format=fmt, **{**base, **kw})  # type: ignore[arg-type]


@pytest.mark.webhook
@pytest.mark.parametrize("fmt", FORMATS)
def test_every_request_is_signed_and_verifiable_only_with_the_secret(
    fmt: str, tmp_path: Path, receiver: Callable[..., Receiver]
) -> None:
    rx = receiver()
    with Outbox(tmp_path / "outbox.db") as box, WebhookSender(settings_for(rx.url, fmt), box) as s:
        for i in range(3):
            s.enqueue(event(i))
        assert s.drain(10.0)
    got = rx.requests()
    assert [r["id"] for r in got] == [event(i).id for i in range(3)]
    for r in got:
        assert r["valid"], r  # the receiver's own check, with its copy of the secret
        headers, body = r["headers"], r["body"].encode()
        ts = headers[HEADER_TIMESTAMP]
        want = hmac.new(SECRET, f"{ts}.".encode() + body, hashlib.sha256).hexdigest()
        assert headers[HEADER_SIGNATURE] == f"sha256={want}"
        assert headers[HEADER_EVENT_ID] == r["id"]
        assert not verify(b"another-secret-0123456789", headers, body)
        assert not verify(SECRET, headers, body + b" ")


@pytest.mark.webhook
@pytest.mark.parametrize("fmt", FORMATS)
def test_the_secret_is_never_printed(
    fmt: str,
    tmp_path: Path,
    receiver: Callable[..., Receiver],
    caplog: pytest.LogCaptureFixture,
    capfd: pytest.CaptureFixture[str],
) -> None:
    # Every path that writes something: refused (401), broken (500), down, rejected (400), ok.
    rx = receiver("--answers", "401,500,400")
    results = Results()
    path = tmp_path / "outbox.db"
    with caplog.at_level(logging.DEBUG):
        settings = settings_for(rx.url, fmt)
        with Outbox(path) as box, WebhookSender(settings, box, on_result=results) as s:
            s.enqueue(event(0))
            s.enqueue(event(1))
            assert s.drain(10.0)
            rx.stop()
            s.enqueue(event(2))
            wait_for(lambda: any(c[2] == "retrying" for c in results.calls[3:]), what="a retry")
            shown = [repr(settings), repr(s), str(settings.__class__)]
    out, err = capfd.readouterr()
    secret = SECRET.decode()
    texts = [caplog.text, out, err, *shown, *(c[4] for c in results.calls)]
    texts += [str(r) for r in rx.requests()]
    for text in texts:
        assert secret not in text
        assert SECRET.hex() not in text
    assert SECRET not in path.read_bytes()
    assert len(rx.requests()) == 4  # 401, 500, 400 (rejected), 200


@pytest.mark.webhook
@pytest.mark.parametrize("fmt", FORMATS)
def test_retries_are_bounded_durable_and_deliver_each_event_once(
    fmt: str, tmp_path: Path, receiver: Callable[..., Receiver]
) -> None:
    rx = receiver(start=False)  # down: nobody listens on its port yet
    path = tmp_path / "outbox.db"
    events = [event(i) for i in range(4)]
    settings = settings_for(rx.url, fmt, backoff_min_s=0.05, backoff_max_s=0.15)
    results = Results()
    with Outbox(path) as box, WebhookSender(settings, box, on_result=results) as s:
        for ev in events:
            assert s.enqueue(ev)
        wait_for(lambda: len(results.calls) >= 5, what="five failed attempts")
    # Retries of the head event (in order: nothing overtakes it), each after a back-off within
    # [backoff_min_s, backoff_max_s], and one after another no later than that (plus the time
    # an attempt takes to be refused, and noise).
    head = [c for c in results.calls if c[1] == events[0].id]
    assert len(head) == len(results.calls)
    assert [c[2] for c in head] == ["retrying"] * len(head)
    assert [c[3] for c in head] == list(range(1, len(head) + 1))  # attempts counted
    for c in head:
        delay = float(re.findall(r"next attempt in ([0-9.]+) s", c[4])[0])
        assert 0.05 - 0.005 <= delay <= 0.15 + 0.005, c
    for a, b in itertools.pairwise(head):
        assert b[0] - a[0] <= 0.15 + 0.5, (a, b)
    # The sender restarts (the appliance did): the outbox kept every event and its attempts.
    with Outbox(path) as box:
        assert box.ids() == [ev.id for ev in events]
        assert box.head() is not None and box.head().attempts == len(head)  # type: ignore[union-attr]
        rx.start()
        with WebhookSender(settings, box) as s:
            assert s.drain(10.0)
            for ev in events:  # enqueued again (a replay, a restart): not sent again
                assert not s.enqueue(ev)
            time.sleep(0.3)
    got = rx.requests()
    assert [r["id"] for r in got] == [ev.id for ev in events]  # once each, in order
    assert all(r["valid"] for r in got)


@pytest.mark.webhook
def test_a_receiver_that_does_not_answer_is_cut_off_by_the_timeout(
    tmp_path: Path, receiver: Callable[..., Receiver]
) -> None:
    rx = receiver("--delay", "5")
    results = Results()
    settings = settings_for(rx.url, "json", timeout_s=0.5, backoff_min_s=1.0, backoff_max_s=1.0)
    with Outbox(tmp_path / "outbox.db") as box:
        s = WebhookSender(settings, box, on_result=results).start()
        t = time.monotonic()
        s.enqueue(event(0))
        wait_for(lambda: bool(results.calls), what="the first attempt's result")
        when, _, outcome, _, detail = results.calls[0]
        assert outcome == "retrying" and "timed out after 0.5 s" in detail
        assert when - t < 0.5 + 1.0
        stop = time.monotonic()
        s.close()  # in its back-off: stops at once, the event stays in the outbox
        assert time.monotonic() - stop < 1.0
        assert box.ids() == [event(0).id]
