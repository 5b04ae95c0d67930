"""No secret in a URL reaches a message; no credentials in a webhook URL (issue 16, item 15).

The commands run as users run them (``pdm-edge check``, ``pdm-edge run``) and every error
line is searched for the secret.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from pdm.actions.webhook import WebhookSettings
from pdm.errors import ConfigError
from pdm.history.base import parse_store_url
from pdm.secrets import redact_url
from pdm.sources.mqtt import parse_mqtt_url

REPO = Path(__file__).resolve().parent.parent
SECRET = "hunter2-s3cr3t"


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pdm.cli", *args],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=60,
    )


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        (f"influx2://db:8086?org=o&bucket=b&token={SECRET}", "token=***"),
        (f"influx2://db:8086?org=o&bucket=b&api_key={SECRET}&x=1", "api_key=***&x=1"),
        (f"https://bob:{SECRET}@example.com/hook", "https://bob:***@example.com/hook"),
        (f"mqtt://edge:{SECRET}@broker/pdm/#", "mqtt://edge:***@broker/pdm/#"),
        (f"influx1://u:pa/{SECRET}@db:8086/x", "influx1://u:***@db:8086/x"),  # '/' in it
        ("https://example.com/hook?format=json", "https://example.com/hook?format=json"),
        # the name percent-encoded: the URL parser reads "token", and the error line named it
        (f"influx2://db:8086?org=o&bucket=b&tok%65n={SECRET}", "tok%65n=***"),
        (f"https://example.com/hook?x=1&Api+Key={SECRET}", "Api+Key=***"),
    ],
)
def test_redact_url_hides_passwords_and_secret_parameters(url: str, shown: str) -> None:
    out = redact_url(url)
    assert SECRET not in out and shown in out


@pytest.mark.parametrize(
    "url",
    [
        f"influx2://127.0.0.1:8086?org=o&bucket=b&token={SECRET}",  # unknown parameter
        f"influx1://admin:{SECRET}@127.0.0.1:8086/pdm",  # a password in the URL
        f"influx1://admin:{SECRET[:4]}/x@127.0.0.1:8086/pdm",  # one urlsplit reads as a port
        f"influx9://u:{SECRET}@h:1/x",  # unknown store
    ],
)
def test_a_store_url_error_never_shows_its_secret(url: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_store_url(url)
    assert SECRET not in str(info.value) and SECRET[:4] not in str(info.value)
    run = _cli("run", "pipelines/demo.toml", "--simulate", "--api", "off", "--store", url)
    assert run.returncode == 2 and run.stderr.startswith("pdm-edge: error: --store:")
    assert SECRET not in run.stderr and SECRET[:4] not in run.stderr, run.stderr


def test_a_webhook_url_with_credentials_is_refused_by_check(tmp_path: Path) -> None:
    """It passed ``check`` and went out as Basic auth; store and MQTT URLs refuse them."""
    text = (REPO / "pipelines" / "demo.toml").read_text()
    text = text.replace('path = "../models/demo-pump"', f'path = "{REPO}/models/demo-pump"')
    for url in (f"https://bob:{SECRET}@example.com/hook", "https://bob@example.com/hook"):
        p = tmp_path / "pump.toml"
        p.write_text(
            text.replace(
                "\n[alarms]\n", f'\n[alarms]\nrelay = "log:"\nwebhooks = [{{ url = "{url}" }}]\n'
            )
        )
        run = _cli("check", str(p))
        assert run.returncode == 2, run.stdout
        (line,) = run.stderr.strip().splitlines()
        assert "alarms.webhooks[0].url" in line and "no user or password" in line
        assert SECRET not in line
    with pytest.raises(ConfigError, match="no user or password") as info:
        WebhookSettings(f"https://bob:{SECRET}@example.com/hook", b"k")
    assert SECRET not in str(info.value)


def test_an_mqtt_url_error_never_shows_its_password() -> None:
    with pytest.raises(ConfigError) as info:
        parse_mqtt_url(f"mqtt://edge:{SECRET}@broker:99999/t")
    assert SECRET not in str(info.value)
