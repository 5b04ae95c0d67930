"""``pdm-edge soak``: the short variant of the soak (every fault once, ~80 s) must account for
everything — the same command as docs/soak.md's hour-long run, on a 60 s cycle."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from pdm.errors import ConfigError
from pdm.tools.soak import SoakOptions, parse_duration, run_soak, schedule

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(
    ("text", "seconds"), [("90", 90), ("90s", 90), ("10m", 600), ("1h", 3600), ("1h30m", 5400)]
)
def test_durations(text: str, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "h", "-5s", "0s", "1d", "99999h"])
def test_bad_durations_are_one_line(text: str) -> None:
    with pytest.raises(ConfigError, match="--duration"):
        parse_duration(text)


@pytest.mark.parametrize(
    ("changes", "words"), [({"machines": 0}, "--machines 0"), ({"workers": "-1"}, "--workers '-1'")]
)
def test_bad_options_are_refused_before_anything_starts(
    tmp_path: Path, changes: dict[str, object], words: str
) -> None:
    """``--workers -1`` was refused by the service only after the soak had trained its model
    and started its servers."""
    opts = SoakOptions(duration_s=60.0, work_dir=tmp_path / "w", **changes)  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match=words):
        run_soak(opts)
    assert not (tmp_path / "w").exists()


def test_the_schedule_puts_every_fault_in_each_cycle_and_ends_before_the_end() -> None:
    steps = schedule(650.0, 300.0, 4)
    kinds = {"store_down", "receiver_down", "fault", "ack", "relay_down", "silent",
             "bad_frames", "SIGTERM", "SIGKILL"}  # fmt: skip
    assert {s.what for s in steps if s.at_s < 300} == kinds
    assert {s.what for s in steps if 300 <= s.at_s < 600} == kinds
    assert all(s.at_s + s.seconds < 650 for s in steps)
    assert [s.at_s for s in steps] == sorted(s.at_s for s in steps)
    # the fault of machine 1 falls while the receiver is down; machine 2's while the relay is
    down = {s.what: (s.at_s, s.at_s + s.seconds) for s in steps[:11]}
    faults = [s for s in steps[:11] if s.what == "fault"]
    assert down["receiver_down"][0] < faults[0].at_s < down["receiver_down"][1]
    assert down["relay_down"][0] < faults[1].at_s < down["relay_down"][1]


@pytest.mark.slow
@pytest.mark.relay
@pytest.mark.webhook
def test_a_short_soak_loses_nothing(tmp_path: Path) -> None:
    proc = subprocess.run(
        [
            sys.executable, "-m", "pdm.cli", "soak", "--duration", "75s", "--cycle", "60s",
            "--machines", "3", "--workers", "2", "--bad-frames", "protocol",
            "--work-dir", str(tmp_path / "soak"),
        ],
        capture_output=True, text=True, timeout=600, cwd=REPO,
    )  # fmt: skip
    assert proc.stdout.strip(), proc.stderr[-3000:]
    summary = json.loads(proc.stdout.strip().splitlines()[-1])
    assert proc.returncode == 0, json.dumps(summary, indent=1)[-4000:]
    assert summary["ok"] and summary["lost"]["total"] == 0 and not summary["problems"]
    done = {f["what"] for f in summary["faults"]}
    assert done >= {"store_down", "receiver_down", "relay_down", "fault", "ack", "silent",
                    "bad_frames", "SIGTERM", "SIGKILL"}  # fmt: skip
    # Three machines for 75 s with three restarts: ~2,050 windows on a quiet machine, ~1,660
    # measured with the two cores loaded by other work (restarts take longer). The bound says
    # the soak ran; that nothing was lost is the line above.
    assert summary["scores_stored"] == summary["windows_analysed"] > 1200
    assert summary["transitions"] >= 6 and summary["webhooks_delivered"] == summary["transitions"]
    assert summary["history_events"]["store_down"] >= 1
    assert summary["history_events"]["store_up"] >= 1
    assert [r["how"] for r in summary["restarts"]] == ["SIGTERM", "SIGKILL", "SIGTERM"]
    assert summary["relay"]["coils"] == [True, True, True]
    assert summary["tracebacks_in_service_log"] == 0
