"""Relay URLs parsed into values below the configuration (pdm/relay_url.py), built above it.

The one-line errors themselves are tested through ``relay_from_url`` in tests/actions/test_relay.py and
through the pipeline file in tests/config/test_alarm_config.py; here: the values, that the pipeline keeps
one, and that checking a file no longer imports the relay drivers.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from pdm.actions.relay import LogRelay, ModbusRelay, relay_from_url
from pdm.errors import ConfigError
from pdm.relay_url import RelayURL, parse_relay_url

REPO = Path(__file__).resolve().parent.parent
DEMO = (
    (REPO / "pipelines" / "demo.toml")
    .read_text()
    .replace('path = "../models/demo-pump"', 'path = "none"')
    .split("\n[alarms]")[0]
)


@pytest.mark.parametrize(
    ("text", "fields"),
    [
        ("log:", {"scheme": "log"}),
        (
            "modbus://plc",
            {"scheme": "modbus", "host": "plc", "port": 502, "device_id": 1, "coil": 0},
        ),
        (
            "modbus://[::1]:5020?device=0&coil=7&polarity=inverted&timeout=1.5&retries=0",
            {
                "host": "::1",
                "port": 5020,
                "device_id": 0,
                "coil": 7,
                "polarity": "inverted",
                "timeout_s": 1.5,
                "retries": 0,
            },
        ),
        (
            "gpio:///dev/gpiochip1?line=23&active_low=yes",
            {"scheme": "gpio", "chip": "/dev/gpiochip1", "line": 23, "active_low": True},
        ),
    ],
)
def test_each_scheme_parses_to_its_fields(text: str, fields: dict[str, object]) -> None:
    url = parse_relay_url(text)
    assert {k: getattr(url, k) for k in fields} == fields
    assert str(url) == url.text == text


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("gpio:///dev/gpiochip0?line=1024", "GpioRelay(/dev/gpiochip0 line 1024): line=1024"),
        ("gpio:///dev/gpiochip0?pin=3", "unknown parameter 'pin' (known: line, active_low)"),
        ("modbus://plc:0", "ModbusRelay: port=0 must be an integer in 1–65535"),
        ("modbus://plc?timeout=2", "ModbusRelay: timeout_s=2.0 must be a number of seconds"),
    ],
)
def test_ranges_are_checked_without_building_a_relay(text: str, message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_relay_url(text)
    assert str(caught.value).startswith(f"relay URL {text!r}: ") and message in str(caught.value)
    assert "\n" not in str(caught.value)


def test_a_password_in_a_relay_url_is_refused_without_showing_it() -> None:
    """Red team: the refusal printed the URL whole, the password with it."""
    with pytest.raises(ConfigError) as caught:
        parse_relay_url("modbus://plc:s3cret@10.0.0.5?coil=1")
    assert str(caught.value) == (
        "relay URL 'modbus://plc:***@10.0.0.5?coil=1': takes no user or password"
    )


def test_the_relay_is_built_from_the_value_the_pipeline_keeps(tmp_path: Path) -> None:
    from pdm.config import load_pipeline

    p = tmp_path / "p.toml"
    p.write_text(DEMO + '\n[alarms]\nrelay = "modbus://10.0.0.5:5020?coil=3"\n')
    url = load_pipeline(p).alarms.relay_url
    assert isinstance(url, RelayURL) and (url.host, url.port, url.coil) == ("10.0.0.5", 5020, 3)
    relay = relay_from_url(url)
    assert isinstance(relay, ModbusRelay)
    assert (
        relay.target == relay_from_url(url.text).target == "modbus://10.0.0.5:5020 device 1 coil 3"
    )
    assert isinstance(relay_from_url(parse_relay_url("log:")), LogRelay)


def test_a_bad_gpio_url_is_caught_when_the_file_is_read(tmp_path: Path) -> None:
    # Before the parsing moved below the configuration, gpio URLs were left to the service's
    # start (building a GpioRelay opens the chip); parsing alone does no I/O.
    from pdm.config import load_pipeline

    p = tmp_path / "p.toml"
    p.write_text(DEMO + '\n[alarms]\nrelay = "gpio:///dev/gpiochip0?line=x"\n')
    with pytest.raises(ConfigError, match=r"alarms\.relay: relay URL .*line='x' is not a whole"):
        load_pipeline(p)


def test_reading_a_pipeline_does_not_import_the_relay_drivers(tmp_path: Path) -> None:
    p = tmp_path / "p.toml"
    p.write_text(DEMO + '\n[alarms]\nrelay = "modbus://plc?coil=3"\n')
    code = (
        "import sys\nfrom pdm.config import load_pipeline\n"
        f"load_pipeline({str(p)!r})\n"
        "print(sorted(m for m in sys.modules if m.startswith('pdm.actions')))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert out.stdout.strip() == "[]"
