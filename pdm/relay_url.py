"""Relay URLs (``[alarms] relay``) parsed into values; no I/O.

Below the configuration, so a pipeline file's relay is checked where it is read;
:func:`pdm.actions.relay.relay_from_url` turns a :class:`RelayURL` into a relay. The forms::

    modbus://192.168.1.50:502?device=1&coil=0&polarity=normal&timeout=0.4&retries=2
    gpio:///dev/gpiochip0?line=17&active_low=false
    log:

Every parameter is optional (defaults as shown, port 502). An unknown scheme or parameter, or a
bad value, raises :class:`pdm.errors.ConfigError` with one line naming the URL.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Literal
from urllib.parse import parse_qsl, urlsplit

from pdm.errors import ConfigError
from pdm.secrets import redact_url

__all__ = [
    "DEADLINE_S",
    "POLARITIES",
    "RelayURL",
    "check_int",
    "check_modbus",
    "parse_relay_url",
]

#: Upper bound of one ``set_permissive``/``read_back``/``close`` call, connect and retries
#: included, seconds. The appliance must raise ``appliance_fault`` within 2 s of a relay failure.
DEADLINE_S = 1.5

POLARITIES = ("normal", "inverted")

RelayScheme = Literal["modbus", "gpio", "log"]


def check_int(name: str, value: object, low: int, high: int, who: str) -> int:
    """``value`` when it is an integer (not a bool) in ``low``–``high``, else a ConfigError."""
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ConfigError(f"{who}: {name}={value!r} must be an integer in {low}–{high}")
    return value


def check_modbus(
    host: str, port: int, device_id: int, coil: int, polarity: str, timeout_s: float, retries: int
) -> tuple[int, int, int, float, int]:
    """The Modbus relay's parameters checked: ``(port, device_id, coil, timeout_s, retries)``.

    Raises :class:`ConfigError` (``ModbusRelay: ...``) for the first one out of its range.
    """
    who = "ModbusRelay"
    if not isinstance(host, str) or not host or any(c.isspace() for c in host):
        raise ConfigError(f"{who}: {host=} must be an IP address or host name")
    port = check_int("port", port, 1, 65535, who)
    device_id = check_int("device_id", device_id, 0, 247, who)
    coil = check_int("coil", coil, 0, 65535, who)
    if polarity not in POLARITIES:
        raise ConfigError(f"{who}: {polarity=} must be 'normal' or 'inverted'")
    if (
        isinstance(timeout_s, bool)
        or not isinstance(timeout_s, int | float)
        or not math.isfinite(timeout_s)
        or not 0 < timeout_s <= DEADLINE_S
    ):
        raise ConfigError(f"{who}: {timeout_s=} must be a number of seconds in (0, {DEADLINE_S}]")
    retries = check_int("retries", retries, 0, 10, who)
    return port, device_id, coil, float(timeout_s), retries


@dataclass(frozen=True, slots=True)
class RelayURL:
    """A parsed relay URL: the scheme's fields are set, the others keep their defaults."""

    scheme: RelayScheme
    text: str  # the URL as given
    host: str = ""  # modbus
    port: int = 502
    device_id: int = 1
    coil: int = 0
    polarity: str = "normal"
    timeout_s: float = 0.4  # s
    retries: int = 2
    chip: str = ""  # gpio
    line: int = 17
    active_low: bool = False

    def __str__(self) -> str:
        return self.text


_INT = re.compile(r"[0-9]+")
_BOOLS = {"true": True, "1": True, "yes": True, "false": False, "0": False, "no": False}


def parse_relay_url(text: str) -> RelayURL:
    """Parse and check a relay URL; :class:`ConfigError` with one line naming it when bad.

    >>> parse_relay_url("modbus://10.0.0.5:5020?coil=3")
    RelayURL(scheme='modbus', text='modbus://10.0.0.5:5020?coil=3', host='10.0.0.5', port=5020, \
device_id=1, coil=3, polarity='normal', timeout_s=0.4, retries=2, chip='', line=17, active_low=False)
    >>> parse_relay_url("gpio:///dev/gpiochip0?line=5").line
    5
    >>> parse_relay_url("modbus://plc?coil=70000")
    Traceback (most recent call last):
    ...
    pdm.errors.ConfigError: relay URL 'modbus://plc?coil=70000': ModbusRelay: coil=70000 must be an integer in 0–65535
    """
    where = f"relay URL {redact_url(text) if isinstance(text, str) else text!r}"

    def bad(reason: str) -> ConfigError:
        return ConfigError(f"{where}: {reason}")

    if not isinstance(text, str) or not text.strip():
        raise bad("is empty; use modbus://HOST[:PORT]?coil=N, gpio:///dev/gpiochipN?line=N or log:")
    try:
        url = urlsplit(text.strip())
        params_list = parse_qsl(url.query, keep_blank_values=True, strict_parsing=bool(url.query))
    except ValueError as exc:
        raise bad(f"cannot be parsed ({exc})") from exc
    if url.fragment:
        raise bad("takes no #fragment")
    params: dict[str, str] = {}
    for key, value in params_list:
        if key in params:
            raise bad(f"parameter {key!r} given twice")
        params[key] = value

    def take(known: dict[str, str]) -> dict[str, str]:
        unknown = sorted(set(params) - set(known))
        if unknown:
            raise bad(f"unknown parameter {unknown[0]!r} (known: {', '.join(known)})")
        return {**known, **params}

    def as_int(name: str, value: str) -> int:
        if not _INT.fullmatch(value):
            raise bad(f"{name}={value!r} is not a whole number")
        return int(value)

    def as_float(name: str, value: str) -> float:
        try:
            number = float(value)
        except ValueError:
            number = math.nan
        if not math.isfinite(number):
            raise bad(f"{name}={value!r} is not a number of seconds")
        return number

    def as_bool(name: str, value: str) -> bool:
        try:
            return _BOOLS[value.lower()]
        except KeyError:
            raise bad(f"{name}={value!r} must be true or false") from None

    scheme = url.scheme.lower()
    try:
        if scheme == "modbus":
            if url.username is not None or url.password is not None:
                raise bad("takes no user or password")
            if url.path not in ("", "/"):
                raise bad(f"takes no path ({url.path!r}); parameters go after '?'")
            try:
                port = url.port
            except ValueError as exc:
                raise bad(f"bad port ({exc})") from exc
            host = url.hostname
            if not host:
                raise bad("has no host; use modbus://HOST[:PORT]")
            values = take(
                {
                    "device": "1",
                    "coil": "0",
                    "polarity": "normal",
                    "timeout": "0.4",
                    "retries": "2",
                }
            )
            checked_port, device_id, coil, timeout_s, retries = check_modbus(
                host,
                502 if port is None else port,
                device_id=as_int("device", values["device"]),
                coil=as_int("coil", values["coil"]),
                polarity=values["polarity"],
                timeout_s=as_float("timeout", values["timeout"]),
                retries=as_int("retries", values["retries"]),
            )
            return RelayURL(
                "modbus",
                text,
                host=host,
                port=checked_port,
                device_id=device_id,
                coil=coil,
                polarity=values["polarity"],
                timeout_s=timeout_s,
                retries=retries,
            )
        if scheme == "gpio":
            if url.netloc:
                raise bad("gpio URLs have no host: gpio:///dev/gpiochip0?line=17 (three slashes)")
            if not url.path.startswith("/dev/"):
                raise bad(
                    f"chip path {url.path!r} must be a device under /dev/, e.g. /dev/gpiochip0"
                )
            values = take({"line": "17", "active_low": "false"})
            line = as_int("line", values["line"])
            active_low = as_bool("active_low", values["active_low"])
            check_int("line", line, 0, 1023, f"GpioRelay({url.path} line {line})")
            return RelayURL("gpio", text, chip=url.path, line=line, active_low=active_low)
        if scheme == "log":
            if url.netloc or url.path or params:
                raise bad("the dry-run relay is written just 'log:'")
            return RelayURL("log", text)
    except ConfigError as exc:
        if str(exc).startswith(where):
            raise
        raise bad(str(exc)) from exc
    raise bad(f"unknown scheme {url.scheme!r}; use modbus://, gpio:// or log:")
