"""An OPC UA server (asyncua): one object per machine, stable node ids, alarms as conditions.

Address space (namespace ``urn:pdm-edge``, index 2 on this server — resolve it by URI from
the NamespaceArray; docs/integration.md lists every node)::

    Objects/
      pdm-edge                         ns=2;s=pdm-edge            the appliance
        ApplianceId, Version, Heartbeat (UInt32, +1 a second)
      Machines                         ns=2;s=Machines            OPC 40001-1's entry point
        <machine>                      ns=2;s=pdm-edge/<machine>
          State (String), StateCode (UInt16: 0 ok, 1 alert, 2 danger, 3 trip, 4 unknown),
          Since, Reason, Acknowledged (Boolean), AcknowledgedBy, Score (Double),
          Diagnosis, DiagnosisConfidence, VelocityRms_mm_s (Double), IsoZone (String),
          LastWindowTime (DateTime), ApplianceFault, ModelVersion, Heartbeat (UInt32: +1 a
          second while the machine's snapshots are fresh), Stale (Boolean)
          Sensors/<sensor>             ok | sensor_fault
          Identification/              Manufacturer, Model, ProductInstanceUri, SoftwareRevision
          Acknowledge(by, comment) -> Message           when acknowledging is enabled
          Vibration                    ns=2;s=pdm-edge/<machine>/Vibration: its condition

Every variable's node id is ``ns=2;s=pdm-edge/<machine>/<Name>`` (sensors:
``…/Sensors/<sensor>``): stable across restarts and versions, so an integrator maps them once.
The layout follows OPC 40001-1 (a ``Machines`` folder, ``Identification``) without
importing the Machinery and DI nodesets (they are not shipped here, and no download may
happen at run time): the objects are plain ``BaseObjectType`` instances.

**Alarms & Conditions (Part 9).** Each machine has one condition, ``Vibration``, reported as
``AlarmConditionType`` events from the Server object (where a SCADA alarm list subscribes):
Severity 1/400/700/900 for ok/alert/danger/trip, ActiveState while alert or worse,
AckedState false while a danger or trip waits for its acknowledgement, Retain while either
holds; ConditionRefresh replays the retained ones. The standard ``Acknowledge`` method of a
condition (AcknowledgeableConditionType, i=9111) acknowledges the machine, recorded with the
authenticated user's name. asyncua keeps no condition *instances* with the full
ConditionType subtree, so ``Vibration`` is a plain object whose node id is the events'
ConditionId; a client that browses for the condition's own state variables reads the
machine's variables instead.

**Security.** Endpoints Basic256Sha256 (SignAndEncrypt, Sign) with a certificate generated on
first start into ``<data dir>/opcua/`` (RSA 2048, ten years; delete both files to renew); an
unencrypted endpoint only when ``allow_unencrypted``. Anonymous sessions may browse, read
and subscribe (when ``anonymous``), never call or write. A user name and password are checked
against the dashboard's operators (``pdm-edge operators add NAME``: scrypt-hashed PINs, with
their lockout); an authenticated operator may call ``Acknowledge``. Nothing can be written.
"""

from __future__ import annotations

import asyncio
import contextvars
import datetime as dt
import ipaddress
import logging
import math
import os
import socket
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast
from urllib.parse import urlsplit

import asyncua.ua
from asyncua import Server
from asyncua.crypto import cert_gen, uacrypto
from asyncua.crypto.permission_rules import USER_TYPES, PermissionRuleset, User, UserRole
from asyncua.server.binary_server_asyncio import BinaryServer, OPCUAProtocol
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import ExtendedKeyUsageOID

from pdm import __version__
from pdm.core.net import quiet_accept_failures
from pdm.errors import ConfigError
from pdm.operators import check_pin
from pdm.publish import slots
from pdm.publish.model import Acknowledge, MachineInfo, Snapshot, TransitionEvent, iso_datetime
from pdm.secrets import redact_url

__all__ = [
    "MAX_CONNECTIONS",
    "NAMESPACE",
    "OpcUaPublisher",
    "OpcUaSettings",
    "node_id",
    "parse_opcua_url",
]

log = logging.getLogger("pdm.publish")
#: asyncua's constructors are typed with its NewTypes (Int32, UInt32, …), which plain ints and
#: strs do not satisfy for mypy; at run time they are the same.
ua: Any = asyncua.ua

NAMESPACE = "urn:pdm-edge"
#: Clients connected at once (asyncua's default, 1000, is about a process's whole
#: file-descriptor limit). A newcomer whose address holds its share, or that finds every slot
#: taken, pushes out whom pdm/publish/slots.py names (else it is closed as soon as it
#: connects); asyncua's own watchdog closes a connection without a session after 30 s anyway.
MAX_CONNECTIONS = 32
#: With every slot taken, a session that has sent nothing for this long may be pushed out for
#: a newcomer (a client with a subscription sends Publish requests all the time; an HMI that
#: reads on demand may be quiet for a minute).
QUIET_S = 60.0
_START_S = 60.0
_SEVERITY = {"ok": 1, "alert": 400, "danger": 700, "trip": 900, "unknown": 500}
#: The user whose request is being served: set by the permission check, read by the
#: method (asyncua runs both in the same task and passes methods no session).
_CALLER: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "pdm_opcua_caller", default=None
)

#: (name, variant type name, what a snapshot gives) of every machine variable.
VARIABLES: tuple[tuple[str, str], ...] = (
    ("State", "String"),
    ("StateCode", "UInt16"),
    ("Since", "DateTime"),
    ("Reason", "String"),
    ("Acknowledged", "Boolean"),
    ("AcknowledgedBy", "String"),
    ("Score", "Double"),
    ("Diagnosis", "String"),
    ("DiagnosisConfidence", "Double"),
    ("VelocityRms_mm_s", "Double"),
    ("IsoZone", "String"),
    ("LastWindowTime", "DateTime"),
    ("ApplianceFault", "String"),
    ("ModelVersion", "String"),
    ("Heartbeat", "UInt32"),
    ("Stale", "Boolean"),
)


_INITIAL: dict[Any, Any] = {
    ua.VariantType.String: "",
    ua.VariantType.UInt16: 0,
    ua.VariantType.UInt32: 0,
    ua.VariantType.Double: math.nan,
    ua.VariantType.Boolean: False,
    ua.VariantType.DateTime: dt.datetime(1970, 1, 1, tzinfo=dt.UTC),
}


def node_id(machine: str, name: str) -> str:
    """The string part of a machine variable's node id: ``pdm-edge/<machine>/<name>``."""
    return f"pdm-edge/{machine}/{name}"


def parse_opcua_url(url: str, what: str = "--opcua") -> tuple[str, int]:
    """``opc.tcp://HOST:PORT`` → (host, port); ConfigError otherwise (the URL shown with any
    password as ``***``: the server's own URL has no user, and one given there was printed in
    the start line and advertised to every client as the endpoint)."""
    parts = urlsplit(url)
    try:
        port = parts.port
    except ValueError:
        port = None
    if parts.username is not None or parts.password is not None:
        raise ConfigError(
            f"{what} {redact_url(url)!r}: the server's URL takes no user or password "
            f"(clients log in with the operators' names: docs/integration.md)"
        )
    if (
        parts.scheme != "opc.tcp"
        or not parts.hostname
        or port is None
        or parts.path not in ("", "/")
        or parts.query
        or parts.fragment
    ):
        raise ConfigError(
            f"{what} {url!r}: expected opc.tcp://HOST:PORT, e.g. opc.tcp://0.0.0.0:4840"
        )
    return parts.hostname, port


def _activated(conn: OPCUAProtocol) -> bool:
    session = conn.processor.session if conn.processor is not None else None
    return session is not None and bool(session.is_activated())


class _Protocol(OPCUAProtocol):
    """asyncua's connection, except that a newcomer whose address holds its share of the
    slots, or that finds every slot taken, pushes out whom :func:`pdm.publish.slots.choose`
    names: the oldest connection without an activated session first — idle connections (40
    of them, red team 2026-12-07) held the server shut for the 30 s of asyncua's activation
    watchdog, again with each new wave — then a session quiet for :data:`QUIET_S`, then the
    quietest of the address holding the most slots; and sessions that activate and then
    sit, from one address or a few, no longer keep the plant's client out (round two). A
    client activates its session within a second of connecting."""

    last_asked: float | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        peer = transport.get_extra_info("peername")
        host = str(peer[0]) if isinstance(peer, tuple) and peer else "?"
        key, why = slots.choose(
            (
                slots.Slot(c, _peer_host(c), cast(_Protocol, c).last_asked, _activated(c))
                for c in self.clients
            ),
            host,
            now=time.monotonic(),
            max_slots=self.iserver.max_connections,
            quiet_s=QUIET_S,
        )
        if key is not None:
            out = cast(OPCUAProtocol, key)
            self.clients.remove(out)  # its connection_lost comes later: free the slot now
            if out.transport is not None:
                out.transport.close()
            _BinaryServer.pushed_out += 1
            _BinaryServer.pushed_out_by[why] = _BinaryServer.pushed_out_by.get(why, 0) + 1
        super().connection_made(transport)  # still full: asyncua refuses it

    def data_received(self, data: bytes) -> None:
        self.last_asked = time.monotonic()
        super().data_received(data)


def _peer_host(conn: OPCUAProtocol) -> str:
    peer = conn.peer_name
    return str(peer[0]) if isinstance(peer, tuple) and peer else "?"


class _BinaryServer(BinaryServer):
    #: Connections pushed out for a newcomer, in this process, in all and by why.
    pushed_out = 0
    pushed_out_by: dict[str, int] = {}  # noqa: RUF012 (one per process, as pushed_out)

    def _make_protocol(self) -> OPCUAProtocol:
        return _Protocol(
            self.iserver, self._policies, self.clients, self.closing_tasks, self.limits
        )


class _Server(Server):
    """asyncua's Server listening through :class:`_BinaryServer`: ``Server.start`` of asyncua
    2.1 (pinned), whose listener class is fixed."""

    async def start(self) -> None:
        if self.iserver.certificate is not None:
            uacrypto.check_certificate(
                self.iserver.certificate, self._application_uri, socket.gethostname()
            )
        await self._setup_server_nodes()
        await self.iserver.start()
        try:
            host, port = self._get_bind_socket_info()
            # None for either is what asyncua's own start passes on (create_server takes it).
            self.bserver = _BinaryServer(self.iserver, host, port, self.limits)  # type: ignore[arg-type]
            self.bserver.set_policies(self._policies)
            await self.bserver.start()
        except Exception:
            await self.iserver.stop()
            raise


@dataclass(frozen=True)
class OpcUaSettings:
    """The ``[publish.opcua]`` table: ``url`` ``opc.tcp://HOST:PORT``; certificates in
    ``data_dir/opcua``; operators (who may acknowledge) from ``data_dir/operators.json``."""

    url: str
    data_dir: Path
    anonymous: bool = True
    acknowledge: bool = True
    allow_unencrypted: bool = False


def _values(snap: Snapshot, heartbeat: int, stale: bool) -> dict[str, Any]:
    """Variable name → value (None: no value yet)."""
    return {
        "State": snap.state,
        "StateCode": snap.state_code,
        "Since": iso_datetime(snap.since),
        "Reason": snap.reason,
        "Acknowledged": snap.acknowledged,
        "AcknowledgedBy": snap.ack_by or "",
        "Score": snap.score,
        "Diagnosis": snap.diagnosis or "",
        "DiagnosisConfidence": snap.diagnosis_confidence,
        "VelocityRms_mm_s": snap.velocity_rms_mm_s,
        "IsoZone": snap.iso_zone or "",
        "LastWindowTime": iso_datetime(snap.last_window),
        "ApplianceFault": snap.appliance_fault,
        "ModelVersion": snap.model_version or "",
        "Heartbeat": heartbeat & 0xFFFFFFFF,
        "Stale": stale,
    }


def _ensure_certificate(directory: Path, app_uri: str, host: str) -> tuple[Path, Path]:
    """The server's key (PEM, 0600) and certificate (DER), generated when missing."""

    directory.mkdir(parents=True, exist_ok=True)
    key_path, cert_path = directory / "server-key.pem", directory / "server-cert.der"
    if key_path.is_file() and cert_path.is_file():
        return key_path, cert_path
    key = cert_gen.generate_private_key()
    names: list[x509.GeneralName] = [x509.UniformResourceIdentifier(app_uri)]
    for name in dict.fromkeys((socket.gethostname(), host)):
        if name and name not in ("0.0.0.0", "::"):
            try:
                names.append(x509.IPAddress(ipaddress.ip_address(name)))
            except ValueError:
                names.append(x509.DNSName(name))
    cert = cert_gen.generate_self_signed_app_certificate(
        key,
        "pdm-edge",
        {"organizationName": "pdm-edge"},
        names,
        [ExtendedKeyUsageOID.SERVER_AUTH],
        days=3650,
    )

    fd = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(cert_gen.dump_private_key_as_pem(key))
    cert_path.write_bytes(cert.public_bytes(Encoding.DER))
    log.warning("OPC UA: a server certificate was generated in %s", directory)
    return key_path, cert_path


class OpcUaPublisher:
    """See the module docstring. ``acknowledge`` carries out Acknowledge calls;
    ``check_user(name, password) -> bool`` authenticates (default: the dashboard operators)."""

    name = "opcua"

    def __init__(
        self,
        settings: OpcUaSettings,
        appliance: str,
        *,
        acknowledge: Acknowledge | None = None,
        check_user: Callable[[str, str], bool] | None = None,
    ) -> None:
        self.settings = settings
        self.host, self.port = parse_opcua_url(settings.url)
        self.appliance = appliance
        self._acknowledge = acknowledge
        self._check_user = check_user or self._operator_pin
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._server: Any = None
        self._ns = 2
        self._nodes: dict[str, dict[str, Any]] = {}  # machine -> name -> NodeId
        self._sensors: dict[str, dict[str, Any]] = {}
        self._snaps: dict[str, Snapshot] = {}
        self._beats: dict[str, int] = {}
        self._stale: dict[str, bool] = {}
        self._conditions: dict[str, Any] = {}  # machine -> EventGenerator
        self._cond_state: dict[str, tuple[str, bool]] = {}
        self._by_condition: dict[Any, str] = {}
        self._lock = threading.Lock()
        #: Snapshots waiting for the loop, in order; a newer one replaces a machine's waiting
        #: one unless a transition came between them (each transition's state is written).
        self._pending: list[Snapshot] = []
        self._open: dict[str, int] = {}
        self._flushing = False
        self.acknowledged = 0

    def _operator_pin(self, name: str, password: str) -> bool:
        return bool(check_pin(self.settings.data_dir, name, password).ok)

    # -- lifecycle ------------------------------------------------------------------------------
    def start(self, machines: Sequence[MachineInfo]) -> None:
        # asyncua logs every refused request and client quirk as a warning: a client in a
        # loop would flood the appliance's log. Its errors still show.
        logging.getLogger("asyncua").setLevel(logging.ERROR)
        for m in machines:
            self._snaps[m.id] = Snapshot(self.appliance, m.id, m.name, sensors=m.sensors)
            self._beats[m.id] = 0
            self._stale[m.id] = True
        ready = threading.Event()
        failure: list[BaseException] = []
        loop = asyncio.new_event_loop()
        quiet_accept_failures(loop, log, "OPC UA server")

        async def boot() -> None:
            try:
                await self._build(machines)
            except BaseException as exc:
                failure.append(exc)
                if self._server is not None:
                    await self._server.stop()
            finally:
                ready.set()

        def run() -> None:
            asyncio.set_event_loop(loop)
            loop.run_until_complete(boot())
            if not failure:
                loop.run_forever()
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()

        self._loop = loop
        self._thread = threading.Thread(target=run, name="pdm-publish-opcua", daemon=True)
        self._thread.start()
        if not ready.wait(_START_S) or failure:
            self.close()
            why = f"{type(failure[0]).__name__}: {failure[0]}" if failure else "did not start"
            raise ConfigError(f"--opcua {self.settings.url}: cannot serve: {why}")
        log.warning("OPC UA server on %s", self.settings.url)

    def close(self) -> None:
        loop, server = self._loop, self._server
        if loop is None:
            return
        self._loop = None
        running = self._thread is not None and self._thread.is_alive()
        if running and not loop.is_closed():

            async def down() -> None:
                try:
                    if server is not None:
                        await asyncio.wait_for(server.stop(), 3.0)
                finally:
                    loop.stop()

            try:
                asyncio.run_coroutine_threadsafe(down(), loop)
            except RuntimeError:
                pass
        if self._thread is not None:
            self._thread.join(5.0)

    # -- the hub's calls ------------------------------------------------------------------------
    def publish_state(self, snap: Snapshot) -> None:
        with self._lock:
            if snap.machine not in self._snaps:
                return
            i = self._open.get(snap.machine)
            if i is None:
                self._open[snap.machine] = len(self._pending)
                self._pending.append(snap)
            else:
                self._pending[i] = snap
            if self._flushing:
                return
            self._flushing = True
        self._call(self._flush())

    def publish_transition(self, event: TransitionEvent) -> None:
        """The snapshot before it (its state) is kept: a newer one is written after it."""
        with self._lock:
            self._open.pop(event.machine, None)

    def tick(self, heartbeat: int, fresh: Mapping[str, bool]) -> None:
        self._call(self._tick(heartbeat, dict(fresh)))

    def _call(self, coro: Any) -> None:
        loop = self._loop
        if loop is None or loop.is_closed():
            coro.close()
            return
        try:
            fut = asyncio.run_coroutine_threadsafe(coro, loop)
        except RuntimeError:
            coro.close()
            return
        fut.add_done_callback(_log_failure)

    # -- on the server's loop -------------------------------------------------------------------
    async def _build(self, machines: Sequence[MachineInfo]) -> None:
        rules = _Rules()
        publisher = self

        class Users:
            def get_user(
                self,
                iserver: Any,
                username: str | None = None,
                password: str | None = None,
                certificate: Any = None,
            ) -> Any:
                if username is None:
                    return User(role=UserRole.Anonymous) if publisher.settings.anonymous else None
                if publisher._check_user(username, password or ""):
                    return User(role=UserRole.User, name=username)
                log.warning("OPC UA: user %r refused (wrong password or locked)", username)
                return None

        server = _Server(user_manager=Users())  # type: ignore[arg-type]
        server.iserver.bind_condition_methods = True  # ConditionRefresh replays retained conditions
        server.iserver.max_connections = MAX_CONNECTIONS
        await server.init()
        server.set_endpoint(self.settings.url)
        server.set_server_name(f"pdm-edge {self.appliance}")
        app_uri = f"urn:pdm-edge:{self.appliance}"
        await server.set_application_uri(app_uri)
        key, cert = _ensure_certificate(self.settings.data_dir / "opcua", app_uri, self.host)
        await server.load_certificate(str(cert))
        await server.load_private_key(str(key))
        policies = [
            ua.SecurityPolicyType.Basic256Sha256_SignAndEncrypt,
            ua.SecurityPolicyType.Basic256Sha256_Sign,
        ]
        if self.settings.allow_unencrypted:
            policies.append(ua.SecurityPolicyType.NoSecurity)
        server.set_security_policy(policies, permission_ruleset=cast(Any, rules))
        tokens: list[type] = [ua.UserNameIdentityToken]
        if self.settings.anonymous:
            tokens.insert(0, ua.AnonymousIdentityToken)
        server.set_identity_tokens(tokens)
        self._ns = ns = await server.register_namespace(NAMESPACE)
        objects = server.nodes.objects

        def nid(text: str) -> Any:
            return ua.NodeId(text, ns)

        app = await objects.add_object(nid("pdm-edge"), ua.QualifiedName("pdm-edge", ns))
        await app.add_variable(
            nid("pdm-edge/ApplianceId"),
            ua.QualifiedName("ApplianceId", ns),
            self.appliance,
            ua.VariantType.String,
        )
        await app.add_variable(
            nid("pdm-edge/Version"),
            ua.QualifiedName("Version", ns),
            __version__,
            ua.VariantType.String,
        )
        await app.add_variable(
            nid("pdm-edge/Heartbeat"), ua.QualifiedName("Heartbeat", ns), 0, ua.VariantType.UInt32
        )
        folder = await objects.add_folder(nid("Machines"), ua.QualifiedName("Machines", ns))
        types = {name: getattr(ua.VariantType, t) for name, t in VARIABLES}
        for m in machines:
            obj = await folder.add_object(nid(f"pdm-edge/{m.id}"), ua.QualifiedName(m.id, ns))
            if m.name and m.name != m.id:
                await obj.write_attribute(
                    ua.AttributeIds.DisplayName, ua.DataValue(ua.Variant(ua.LocalizedText(m.name)))
                )
            nodes: dict[str, Any] = {}
            for name, _ in VARIABLES:
                var = await obj.add_variable(
                    nid(node_id(m.id, name)),
                    ua.QualifiedName(name, ns),
                    _INITIAL[types[name]],
                    types[name],
                )
                nodes[name] = var.nodeid
            sensors = await obj.add_folder(
                nid(node_id(m.id, "Sensors")), ua.QualifiedName("Sensors", ns)
            )
            self._sensors[m.id] = {}
            for s in m.sensors:
                var = await sensors.add_variable(
                    nid(node_id(m.id, f"Sensors/{s}")),
                    ua.QualifiedName(s, ns),
                    "ok",
                    ua.VariantType.String,
                )
                self._sensors[m.id][s] = var.nodeid
            ident = await obj.add_object(
                nid(node_id(m.id, "Identification")), ua.QualifiedName("Identification", ns)
            )
            for name, value in (
                ("Manufacturer", "pdm-edge"),
                ("Model", "vibration monitor"),
                ("ProductInstanceUri", f"{app_uri}:{m.id}"),
                ("SoftwareRevision", __version__),
            ):
                await ident.add_variable(
                    nid(node_id(m.id, f"Identification/{name}")),
                    ua.QualifiedName(name, ns),
                    value,
                    ua.VariantType.String,
                )
            if self.settings.acknowledge and self._acknowledge is not None:
                await obj.add_method(
                    nid(node_id(m.id, "Acknowledge")),
                    ua.QualifiedName("Acknowledge", ns),
                    self._method_ack,
                    [_argument("by", "who acknowledges"), _argument("comment", "why (recorded)")],
                    [_argument("Message", "what the acknowledgement did")],
                )
            cond = await obj.add_object(
                nid(node_id(m.id, "Vibration")), ua.QualifiedName("Vibration", ns)
            )
            gen = await server.get_event_generator(
                ua.ObjectIds.AlarmConditionType, server.nodes.server.nodeid
            )
            ev = gen.event
            # asyncua types these fields by the UtcTime NodeId, which its Variant cannot encode.
            ev.data_types["ActiveState/TransitionTime"] = ua.VariantType.DateTime
            ev.SourceNode, ev.SourceName = obj.nodeid, m.id
            ev.ConditionName, ev.NodeId = "Vibration", cond.nodeid
            self._conditions[m.id] = gen
            self._by_condition[cond.nodeid] = m.id
            self._nodes[m.id] = nodes
        if self.settings.acknowledge and self._acknowledge is not None:
            server.iserver.isession.add_method_callback(
                ua.NodeId(ua.ObjectIds.AcknowledgeableConditionType_Acknowledge),
                self._condition_ack,
            )
        await server.start()
        self._server = server
        for m in machines:
            await self._write_machine(m.id)

    async def _flush(self) -> None:
        while True:
            with self._lock:
                pending, self._pending, self._open = self._pending, [], {}
                if not pending:
                    self._flushing = False
                    return
            for snap in pending:
                self._snaps[snap.machine] = snap
                await self._write_machine(snap.machine)

    async def _tick(self, heartbeat: int, fresh: dict[str, bool]) -> None:
        server = self._server
        if server is None:
            return
        await server.write_attribute_value(
            ua.NodeId("pdm-edge/Heartbeat", self._ns),
            ua.DataValue(ua.Variant(heartbeat, ua.VariantType.UInt32)),
        )
        for machine in self._nodes:
            ok = fresh.get(machine, False)
            if ok:
                self._beats[machine] = (self._beats[machine] + 1) & 0xFFFFFFFF
            if ok == self._stale[machine] or ok:
                self._stale[machine] = not ok
                await self._write(machine, {"Heartbeat": self._beats[machine], "Stale": not ok})

    async def _write_machine(self, machine: str) -> None:
        snap = self._snaps[machine]
        await self._write(machine, _values(snap, self._beats[machine], self._stale[machine]))
        server = self._server
        for s, state in snap.sensor_states:
            node = self._sensors[machine].get(s)
            if node is not None and server is not None:
                await server.write_attribute_value(
                    node, ua.DataValue(ua.Variant(state, ua.VariantType.String))
                )
        key = (snap.state, snap.latched and not snap.acknowledged)
        if self._cond_state.get(machine) != key:
            first = machine not in self._cond_state
            self._cond_state[machine] = key
            if not (first and snap.state in ("ok", "unknown")):
                await self._trigger_condition(snap)

    async def _write(self, machine: str, values: Mapping[str, Any]) -> None:
        server = self._server
        if server is None:
            return
        types = dict(VARIABLES)
        for name, value in values.items():
            vtype = getattr(ua.VariantType, types[name])
            if value is None or (isinstance(value, float) and not math.isfinite(value)):
                dv = ua.DataValue(
                    ua.Variant(_INITIAL[vtype], vtype),
                    StatusCode=ua.StatusCode(ua.StatusCodes.BadWaitingForInitialData),
                )
            else:
                dv = ua.DataValue(ua.Variant(value, vtype))
            await server.write_attribute_value(self._nodes[machine][name], dv)

    async def _trigger_condition(self, snap: Snapshot) -> None:
        gen = self._conditions.get(snap.machine)
        if gen is None:
            return
        ev = gen.event
        active = snap.state in ("alert", "danger", "trip")
        acked = not (snap.latched and not snap.acknowledged)
        now = dt.datetime.now(dt.UTC)
        ev.Severity = _SEVERITY.get(snap.state, 500)
        ev.Retain = active or not acked
        ev.Quality = ua.StatusCode(ua.StatusCodes.Good)
        ev.EnabledState = ua.LocalizedText("Enabled")
        setattr(ev, "EnabledState/Id", True)
        ev.ActiveState = ua.LocalizedText("Active" if active else "Inactive")
        setattr(ev, "ActiveState/Id", active)
        setattr(ev, "ActiveState/TransitionTime", now)
        ev.AckedState = ua.LocalizedText("Acknowledged" if acked else "Unacknowledged")
        setattr(ev, "AckedState/Id", acked)
        setattr(ev, "ConfirmedState/Id", True)
        ev.ClientUserId = snap.ack_by or ""
        text = f"{snap.machine}: {snap.state}" + (f": {snap.reason}" if snap.reason else "")
        await gen.trigger(message=text[:1000])

    async def _method_ack(self, parent: Any, by: Any, comment: Any) -> Any:
        """``Acknowledge(by, comment)`` of a machine object; an authenticated operator only
        (the permission check refuses anonymous calls before this runs)."""
        machine = self._machine_of(parent)
        user = _CALLER.get()
        who = getattr(by, "Value", by)
        note = getattr(comment, "Value", comment)
        if machine is None or user is None:
            return ua.StatusCode(
                ua.StatusCodes.BadUserAccessDenied
                if user is None
                else ua.StatusCodes.BadNodeIdUnknown
            )
        if not isinstance(who, str) or not isinstance(note, str):
            return ua.StatusCode(ua.StatusCodes.BadInvalidArgument)
        status, message = await self._run_ack(machine, who, note, user)
        if status is not None:
            return ua.StatusCode(status)
        return [ua.Variant(message, ua.VariantType.String)]

    async def _condition_ack(self, parent: Any, event_id: Any, comment: Any) -> Any:
        """Part 9's ``Acknowledge(EventId, Comment)`` on a machine's condition."""
        machine = self._by_condition.get(parent)
        user = _CALLER.get()
        if machine is None:
            return ua.StatusCode(ua.StatusCodes.BadNodeIdUnknown)
        if user is None:
            return ua.StatusCode(ua.StatusCodes.BadUserAccessDenied)
        text = getattr(getattr(comment, "Value", comment), "Text", None) or ""
        status, _message = await self._run_ack(machine, user, str(text), user)
        return ua.StatusCode(status) if status is not None else ua.StatusCode()

    async def _run_ack(
        self, machine: str, by: str, comment: str, user: str
    ) -> tuple[int | None, str]:
        assert self._acknowledge is not None
        loop = asyncio.get_running_loop()
        note = comment + (f" [OPC UA user {user}]" if user != by else " [OPC UA]")
        try:
            message = await loop.run_in_executor(None, self._acknowledge, machine, by, note)
        except ValueError as exc:
            log.warning("OPC UA: acknowledge of %s by %s refused: %s", machine, user, exc)
            return ua.StatusCodes.BadInvalidArgument, str(exc)
        except KeyError:
            return ua.StatusCodes.BadNodeIdUnknown, ""
        except Exception as exc:
            log.error("OPC UA: acknowledge of %s failed: %s: %s", machine, type(exc).__name__, exc)
            return ua.StatusCodes.BadInternalError, ""
        self.acknowledged += 1
        log.warning("OPC UA: %s acknowledged by %s (user %s): %s", machine, by, user, message)
        return None, str(message)

    def _machine_of(self, parent: Any) -> str | None:
        text = getattr(parent, "Identifier", None)
        if isinstance(text, str) and text.startswith("pdm-edge/"):
            machine = text[len("pdm-edge/") :]
            return machine if machine in self._nodes else None
        return None


def _log_failure(fut: Any) -> None:
    """A scheduled update that failed is logged (it would vanish with its future)."""
    if not fut.cancelled() and fut.exception() is not None:
        exc = fut.exception()
        log.error("OPC UA: an update failed: %s: %s", type(exc).__name__, exc)


def _argument(name: str, description: str) -> Any:
    arg = ua.Argument()
    arg.Name = name
    arg.DataType = ua.NodeId(ua.ObjectIds.String)
    arg.ValueRank = -1
    arg.Description = ua.LocalizedText(description)
    return arg


class _Rules(PermissionRuleset):
    """Who may do what: anonymous and operators read, browse and subscribe; operators also
    call methods (Acknowledge); nobody writes or changes the address space."""

    def __init__(self) -> None:
        self._call = ua.NodeId(ua.ObjectIds.CallRequest_Encoding_DefaultBinary)
        refused = {
            ua.NodeId(ua.ObjectIds.WriteRequest_Encoding_DefaultBinary),
            ua.NodeId(ua.ObjectIds.HistoryUpdateRequest_Encoding_DefaultBinary),
            self._call,
        }
        self._read = {ua.NodeId(t) for t in USER_TYPES} - refused

    def check_validity(self, user: Any, action_type_id: Any, body: Any) -> bool:
        if action_type_id == self._call:
            ok = (
                user is not None
                and user.role in (UserRole.User, UserRole.Admin)
                and bool(user.name)
            )
            _CALLER.set(user.name if ok else None)
            return ok
        return action_type_id in self._read
