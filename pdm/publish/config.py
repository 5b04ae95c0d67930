"""The service config's ``[publish]`` table and the ``run`` flags that stand for it.

``pdm-edge run --config service.toml`` reads a small TOML file about the *appliance* (what
a pipeline file says about a machine stays there)::

    schema_version = 1

    [publish.mqtt]                       # or: --publish mqtt[s]://[USER@]HOST[:PORT][/PREFIX]
    url = "mqtts://edge-7@broker.plant:8883/plant-a"
    password_file = "/run/secrets/mqtt-password"   # or PDM_PUBLISH_MQTT_PASSWORD(_FILE)
    ca_file = "/etc/pdm-edge/plant-ca.pem"         # cert_file + key_file: client certificate
    interval_s = 60                      # every retained value again this often
    value_interval_s = 5                 # score and velocity at most this often
    homeassistant = true                 # Home Assistant MQTT discovery
    commands = false                     # signed acknowledge commands in (see commands.py)
    command_key_file = "/run/secrets/pdm-command-key"

    [publish.opcua]                      # or: --opcua opc.tcp://HOST:PORT
    url = "opc.tcp://0.0.0.0:4840"
    anonymous = true                     # read-only sessions without a user
    acknowledge = true                   # the Acknowledge methods (an operator's login)
    allow_unencrypted = false            # a SecurityPolicy None endpoint too

    [publish.modbus]                     # or: --modbus-server HOST:PORT
    listen = "0.0.0.0:5020"

A flag replaces the URL of its table (or makes the table, with the defaults). Secrets come
from files or the environment, never from the config itself.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from pdm.config import load_settings
from pdm.core.files import read_at_most
from pdm.errors import ConfigError
from pdm.publish.model import MachineInfo
from pdm.secrets import MAX_SECRET_BYTES, secret_bytes

# The publishers (pdm.publish.mqtt, .opcua, .modbus) are imported where one is configured:
# paho-mqtt, asyncua and pymodbus take 0.6-1.1 s each to import (python -X importtime), and
# `pdm-edge check` validates this table without starting any of them.

__all__ = [
    "COMMAND_KEY_ENV",
    "MQTT_PASSWORD_ENV",
    "ModbusTable",
    "MqttTable",
    "OpcUaTable",
    "PublishTable",
    "ServiceConfig",
    "build_publishers",
    "describe",
    "load_service_config",
    "machine_infos",
    "with_flags",
]

MQTT_PASSWORD_ENV = "PDM_PUBLISH_MQTT_PASSWORD"
COMMAND_KEY_ENV = "PDM_PUBLISH_COMMAND_KEY"
_Seconds = Annotated[float, Field(gt=0, le=86_400, allow_inf_nan=False)]


def _checked(parse: Callable[[str, str], object], url: str) -> str:
    """``url`` when ``parse(url, "url")`` takes it; its ConfigError as the ValueError pydantic
    reports with the file's line."""
    try:
        parse(url, "url")
    except ConfigError as exc:
        raise ValueError(str(exc)) from None
    return url


class MqttTable(BaseModel):
    """``[publish.mqtt]``: MQTT out (pdm/publish/mqtt.py)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    url: str = Field(description="mqtt[s]://[USER@]HOST[:PORT][/PREFIX] (prefix: pdm-edge)")
    password_file: str | None = Field(default=None, description="file holding the broker password")
    ca_file: str | None = Field(
        default=None, description="PEM CA bundle for mqtts:// (else the system's)"
    )
    cert_file: str | None = Field(default=None, description="client certificate (PEM)")
    key_file: str | None = Field(default=None, description="the client certificate's key (PEM)")
    qos: Literal[0, 1, 2] = Field(default=1, description="QoS of every message")
    interval_s: _Seconds = Field(default=60.0, ge=1.0, description="full re-publish period, s")
    value_interval_s: _Seconds = Field(
        default=5.0, ge=0.1, description="score and velocity at most this often, s"
    )
    homeassistant: bool = Field(default=False, description="Home Assistant MQTT discovery")
    discovery_prefix: str = Field(
        default="homeassistant", pattern=r"^[A-Za-z0-9_-][A-Za-z0-9_/-]{0,99}$"
    )
    commands: bool = Field(default=False, description="signed acknowledge commands in")
    command_key_file: str | None = Field(default=None, description="file holding the HMAC key")
    client_id: str | None = Field(default=None, pattern=r"^[A-Za-z0-9_.-]{1,64}$")
    max_queued: int = Field(
        default=10_000, ge=10, le=1_000_000, description="events kept while away"
    )

    @field_validator("url")
    @classmethod
    def _mqtt_url(cls, v: str) -> str:
        from pdm.publish.mqtt import parse_publish_url

        return _checked(parse_publish_url, v)


class OpcUaTable(BaseModel):
    """``[publish.opcua]``: the OPC UA server (pdm/publish/opcua.py)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    url: str = Field(description="opc.tcp://HOST:PORT to listen on")
    anonymous: bool = Field(default=True, description="anonymous read-only sessions")
    acknowledge: bool = Field(default=True, description="Acknowledge methods, operators only")
    allow_unencrypted: bool = Field(default=False, description="a SecurityPolicy None endpoint")

    @field_validator("url")
    @classmethod
    def _opc_url(cls, v: str) -> str:
        from pdm.publish.opcua import parse_opcua_url

        return _checked(parse_opcua_url, v)


class ModbusTable(BaseModel):
    """``[publish.modbus]``: the read-only register map (pdm/publish/modbus.py)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    listen: str = Field(description="HOST:PORT to listen on (502 is Modbus's; needs root)")

    @field_validator("listen")
    @classmethod
    def _hostport(cls, v: str) -> str:
        _split_hostport(v, "listen")
        return v


class PublishTable(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    mqtt: MqttTable | None = None
    opcua: OpcUaTable | None = None
    modbus: ModbusTable | None = None

    @property
    def any(self) -> bool:
        return self.mqtt is not None or self.opcua is not None or self.modbus is not None


class ServiceConfig(BaseModel):
    """The whole service config file (``--config``)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    schema_version: Literal[1] = Field(description="this file's format version")
    publish: PublishTable = Field(default_factory=PublishTable)


def _split_hostport(text: str, what: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f"{what} {text!r}: expected HOST:PORT")
    return host.strip("[]") or "0.0.0.0", int(port)


def load_service_config(path: str | os.PathLike[str]) -> ServiceConfig:
    return load_settings(path, ServiceConfig, what="service config")


def with_flags(
    cfg: ServiceConfig | None,
    *,
    publish: str | None = None,
    opcua: str | None = None,
    modbus: str | None = None,
) -> PublishTable:
    """The ``[publish]`` table with the flags applied (a flag's URL replaces the file's)."""
    table = cfg.publish if cfg is not None else PublishTable()
    if publish:
        from pdm.publish.mqtt import parse_publish_url

        parse_publish_url(publish, "--publish")
    if opcua:
        from pdm.publish.opcua import parse_opcua_url

        parse_opcua_url(opcua, "--opcua")
    try:
        if publish:
            mqtt = (
                table.mqtt.model_copy(update={"url": publish})
                if table.mqtt
                else MqttTable(url=publish)
            )
            table = table.model_copy(update={"mqtt": mqtt})
        if opcua:
            o = (
                table.opcua.model_copy(update={"url": opcua})
                if table.opcua
                else OpcUaTable(url=opcua)
            )
            table = table.model_copy(update={"opcua": o})
        if modbus:
            _split_hostport(modbus, "--modbus-server")
            table = table.model_copy(update={"modbus": ModbusTable(listen=modbus)})
    except ValueError as exc:
        raise ConfigError(str(exc).splitlines()[0]) from None
    return table


def _file_secret(path: str | None, env: str, what: str) -> bytes | None:
    """A secret from ``path`` (trailing newline dropped), else from ``env`` / ``env_FILE``."""
    if path:
        try:
            data = read_at_most(path, MAX_SECRET_BYTES)
        except OSError as exc:
            raise ConfigError(f"{what} {path}: cannot read it: {exc.strerror or exc}") from exc
        if len(data) > MAX_SECRET_BYTES:  # never shown: it may be the secret
            raise ConfigError(f"{what} {path}: larger than {MAX_SECRET_BYTES:,} bytes")
        data = data.rstrip(b"\r\n")
        if not data:
            raise ConfigError(f"{what} {path}: the file is empty")
        return data
    return secret_bytes(env, what)


def build_publishers(
    table: PublishTable,
    *,
    appliance: str,
    data_dir: Path,
    acknowledge: Any,
) -> list[Any]:
    """The publishers ``table`` asks for, configured but not started (ConfigError: one line)."""
    out: list[Any] = []
    if table.mqtt is not None:
        from pdm.publish.mqtt import MqttPublisher, MqttSettings, parse_publish_url

        t = table.mqtt
        url = parse_publish_url(t.url, "[publish.mqtt] url")
        key = (
            _file_secret(t.command_key_file, COMMAND_KEY_ENV, "[publish.mqtt] command_key_file")
            if t.commands
            else None
        )
        settings = MqttSettings(
            url=url,
            password=_file_secret(
                t.password_file, MQTT_PASSWORD_ENV, "[publish.mqtt] password_file"
            ),
            ca_file=t.ca_file,
            cert_file=t.cert_file,
            key_file=t.key_file,
            qos=t.qos,
            interval_s=t.interval_s,
            value_interval_s=t.value_interval_s,
            homeassistant=t.homeassistant,
            discovery_prefix=t.discovery_prefix,
            commands=t.commands,
            command_key=key,
            client_id=t.client_id,
            max_queued=t.max_queued,
        )
        out.append(MqttPublisher(settings, appliance, acknowledge=acknowledge))
    if table.opcua is not None:
        from pdm.publish.opcua import OpcUaPublisher, OpcUaSettings

        o = table.opcua
        out.append(
            OpcUaPublisher(
                OpcUaSettings(o.url, data_dir, o.anonymous, o.acknowledge, o.allow_unencrypted),
                appliance,
                acknowledge=acknowledge,
            )
        )
    if table.modbus is not None:
        from pdm.publish.modbus import ModbusPublisher

        host, port = _split_hostport(table.modbus.listen, "[publish.modbus] listen")
        out.append(ModbusPublisher(host, port))
    return out


def describe(table: PublishTable, *, machines: int, appliance: str) -> list[str]:
    """What ``run`` would publish, a line a publisher (``pdm-edge check``). Reads the secret
    files and the TLS files as ``run`` will (ConfigError: one line); never shows a secret."""
    out: list[str] = []
    if table.mqtt is not None:
        from pdm.publish.mqtt import MqttSettings, parse_publish_url, tls_context

        t = table.mqtt
        url = parse_publish_url(t.url, "[publish.mqtt] url")
        pw = _file_secret(t.password_file, MQTT_PASSWORD_ENV, "[publish.mqtt] password_file")
        if t.commands:
            _file_secret(t.command_key_file, COMMAND_KEY_ENV, "[publish.mqtt] command_key_file")
        if url.tls:
            tls_context(MqttSettings(url, ca_file=t.ca_file, cert_file=t.cert_file,
                                     key_file=t.key_file))  # fmt: skip
        out.append(
            f"mqtt      {url} → {url.topic}/{appliance}/<machine>/…, QoS {t.qos}, every value "
            f"again every {t.interval_s:g} s; {'TLS' if url.tls else 'no TLS'}, "
            f"{'a password' if pw else 'no password'}; Home Assistant discovery "
            f"{'on' if t.homeassistant else 'off'}; signed commands "
            f"{'on' if t.commands else 'off'}"
        )
    if table.opcua is not None:
        o = table.opcua
        out.append(
            f"opcua     {o.url}: Basic256Sha256"
            + (" and an unencrypted endpoint" if o.allow_unencrypted else "")
            + ("; anonymous read-only" if o.anonymous else "; no anonymous sessions")
            + ("; Acknowledge for operators" if o.acknowledge else "; no Acknowledge")
            + f"; {machines} machine(s) under Objects/Machines, nothing writable"
        )
    if table.modbus is not None:
        out.append(
            f"modbus    {table.modbus.listen}: read-only register map, {machines} machine "
            f"block(s) of 32 registers from address 100 (docs/integration.md)"
        )
    return out


def machine_infos(pipelines: Sequence[Any]) -> list[Any]:
    """:class:`~pdm.publish.model.MachineInfo` of each pipeline, in the given order."""

    return [
        MachineInfo(p.machine.id, p.machine.name or p.machine.id, tuple(s.id for s in p.sensors))
        for p in pipelines
    ]
