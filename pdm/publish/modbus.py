"""A read-only Modbus TCP server (pymodbus) with a fixed register map, for PLCs that poll.

The map (docs/integration.md, "Modbus register map") is served as holding registers (FC 3)
*and* input registers (FC 4) at the same addresses — PLCs differ in which they read — for
any unit id. Every write (FC 5, 6, 15, 16, 22, 23) and every coil or discrete-input read
(FC 1, 2) is refused with exception 01 (illegal function); an address outside the map is
exception 02. All values are unsigned 16-bit; 32-bit values take two registers, high word
first; 65535 means "no value" where a value can be missing.

Header, addresses 0–15:

====  =================================================================================
0     map version (1)
1     machines served, N
2     address of machine 0's block (:data:`FIRST_BLOCK`, 100)
3     registers per machine block (:data:`BLOCK`, 32)
4     appliance heartbeat: +1 every second while the service runs (wraps at 65535)
5     machines whose snapshots stopped (stale)
====  =================================================================================

Machine ``k`` (the order of the pipelines given to ``pdm-edge run``) at ``100 + 32·k``:

====  =================================================================================
+0    state: 0 ok, 1 alert, 2 danger, 3 trip, 4 unknown (its process does not answer)
+1    flags: bit 0 latched (danger/trip), 1 acknowledged, 2 a sensor in sensor_fault,
      3 appliance fault, 4 stale (no snapshot for 5 s), 5 learning (teach-in)
+2    anomaly score × 100 (1.0 = alert threshold; 65534 at most; 65535 none)
+3    velocity RMS × 100, mm/s (highest channel of the newest window; 65535 none)
+4    ISO 10816-3 zone: 0 none, 1 A, 2 B, 3 C, 4 D
+5    sensor-fault bits: bit i set while the pipeline's i-th sensor is in sensor_fault
+6    diagnosis code (docs/integration.md; 0 none)
+7    diagnosis confidence × 100 (65535 none)
+8    newest window's end, s since 1970 (uint32, high word first; 0 none)
+10   state since, s since 1970 (uint32, high word first; 0 never changed)
+12   machine heartbeat: +1 every second while its snapshots are fresh
+13   number of sensors
+14   alarm transitions since the service started (wraps at 65535)
+15   the newest transition's new state (codes as +0), +16 the one before, up to +18:
      a PLC polling every second sees each of up to four transitions in between, in order
====  =================================================================================

At most :data:`MAX_CONNECTIONS` clients are connected at once, at most
:data:`pdm.publish.slots.PER_PEER` from one address: a scanner or a misbehaving client
opening connections in a loop must not take the service's file descriptors. A newcomer
from an address at its cap pushes out that address's connection quiet longest; with every
slot taken, it pushes out the connection quiet longest if that has asked nothing for
:data:`QUIET_S` or nothing at all, else the quietest of the address holding the most slots
when that is at least two more than the newcomer's (counted in
:attr:`ModbusPublisher.pushed_out`); else it is closed as soon as it connects
(:attr:`ModbusPublisher.turned_away`). Why this order: pdm/publish/slots.py.

The image is rebuilt by the hub's thread under a lock (a few integer stores per machine);
the server's loop copies it into the reply of each read, on a thread and event loop of its
own — a PLC polling fast never touches the processing.
"""

from __future__ import annotations

import asyncio
import logging
import math
import re
import threading
import time
from collections.abc import Mapping, Sequence
from typing import Any, cast

from pymodbus.constants import ExcCodes
from pymodbus.server import ModbusTcpServer
from pymodbus.server.requesthandler import ServerRequestHandler
from pymodbus.simulator import DataType, SimData, SimDevice

from pdm.core.net import quiet_accept_failures
from pdm.errors import ConfigError
from pdm.loglimit import LogLimiter
from pdm.publish import slots
from pdm.publish.model import STATE_CODES, MachineInfo, Snapshot, TransitionEvent, iso_datetime

__all__ = [
    "BLOCK",
    "FIRST_BLOCK",
    "MAP_VERSION",
    "MAX_CONNECTIONS",
    "ModbusPublisher",
    "machine_registers",
]

log = logging.getLogger("pdm.publish")
_PYMODBUS_LOG = logging.getLogger("pymodbus.logging")  # where pymodbus's Log class writes

MAP_VERSION = 1
FIRST_BLOCK = 100
BLOCK = 32
NONE16 = 0xFFFF
#: Transitions kept in registers +15… (newest first).
RECENT = 4
#: Flag bits of register +1.
FLAG_LATCHED, FLAG_ACKED, FLAG_SENSOR, FLAG_APPLIANCE, FLAG_STALE, FLAG_LEARNING = (
    1, 2, 4, 8, 16, 32,
)  # fmt: skip
_READS = (3, 4)
#: Clients connected at once (a site has a few PLCs and SCADA servers polling).
MAX_CONNECTIONS = 32
#: With every slot taken, a connection that has asked nothing for this long (or nothing at
#: all yet) is pushed out for a newcomer: a PLC polls every second or so.
QUIET_S = 10.0
_START_S = 10.0


class _OneLineAMinute(logging.Filter):
    """pymodbus logs each protocol error a client causes (a bad protocol id, an unknown
    function) with a dump of the last 20 frames appended, 3 lines or more a request: any
    client could flood the service's log. Keep each error's first line, at most once a
    minute per kind (numbers aside), with the count held back."""

    def __init__(self) -> None:
        super().__init__()
        self._limit = LogLimiter(60.0, max_keys=64)

    def filter(self, record: logging.LogRecord) -> bool:
        line = record.getMessage().split("\n", 1)[0][:200]
        held = self._limit.check(re.sub(r"\d+", "N", line))
        if held is None:
            return False
        more = f" ({held} more like it since the last report)" if held else ""
        record.msg, record.args = f"pymodbus: {line}{more}", None
        return True


def _scaled(x: float | None, k: float = 100.0) -> int:
    """``x × k`` as an unsigned 16-bit register (65534 at most; 65535 for none)."""
    if x is None or not math.isfinite(x):
        return NONE16
    return max(0, min(NONE16 - 1, round(x * k)))


def _epoch_words(text: str | None) -> tuple[int, int]:
    t = iso_datetime(text)
    s = 0 if t is None else max(0, min(0xFFFFFFFF, int(t.timestamp())))
    return s >> 16, s & 0xFFFF


def machine_registers(
    snap: Snapshot, *, stale: bool, heartbeat: int, transitions: int = 0, recent: Sequence[int] = ()
) -> list[int]:
    """The :data:`BLOCK` registers of one machine (see the module docstring); ``recent``: the
    newest transitions' new-state codes, newest first."""
    flags = (
        (FLAG_LATCHED if snap.latched else 0)
        | (FLAG_ACKED if snap.acknowledged else 0)
        | (FLAG_SENSOR if snap.sensor_faults else 0)
        | (FLAG_APPLIANCE if snap.appliance_fault else 0)
        | (FLAG_STALE if stale else 0)
        | (FLAG_LEARNING if snap.learning else 0)
    )
    regs = [0] * BLOCK
    regs[0] = snap.state_code
    regs[1] = flags
    regs[2] = _scaled(snap.score)
    regs[3] = _scaled(snap.velocity_rms_mm_s)
    regs[4] = snap.iso_zone_code
    regs[5] = snap.sensor_fault_bits
    regs[6] = snap.diagnosis_code
    regs[7] = _scaled(snap.diagnosis_confidence)
    regs[8], regs[9] = _epoch_words(snap.last_window)
    regs[10], regs[11] = _epoch_words(snap.since)
    regs[12] = heartbeat & 0xFFFF
    regs[13] = min(len(snap.sensors), NONE16)
    regs[14] = transitions & 0xFFFF
    for i, code in enumerate(list(recent)[:RECENT]):
        regs[15 + i] = code
    return regs


class ModbusPublisher:
    """The register map on ``HOST:PORT`` (see the module docstring). ``port`` 0 picks a free
    one (:attr:`port` tells which, once started)."""

    name = "modbus"

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self._lock = threading.Lock()
        self._image: list[int] = []
        self._slots: dict[str, int] = {}
        self._snaps: dict[str, Snapshot] = {}
        self._beats: dict[str, int] = {}
        self._stale: set[str] = set()
        self._transitions: dict[str, int] = {}
        self._recent: dict[str, list[int]] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._server: Any = None
        self.reads = 0
        self.refused = 0
        #: Clients connected now, and connections closed at once because
        #: :data:`MAX_CONNECTIONS` were (both kept by the server's loop).
        self.connected = 0
        self.turned_away = 0
        #: Connections closed for a newcomer (pdm/publish/slots.py), in all and by why.
        self.pushed_out = 0
        self.pushed_out_by: dict[str, int] = {}

    # -- the register image (hub's thread) ------------------------------------------------------
    def start(self, machines: Sequence[MachineInfo]) -> None:
        size = FIRST_BLOCK + BLOCK * len(machines)
        if size > 0xFFFF:
            raise ConfigError(
                f"--modbus-server: {len(machines)} machines do not fit the register map "
                f"(at most {(0xFFFF - FIRST_BLOCK) // BLOCK})"
            )
        with self._lock:
            self._image = [0] * size
            self._slots = {m.id: i for i, m in enumerate(machines)}
            self._image[0:4] = [MAP_VERSION, len(machines), FIRST_BLOCK, BLOCK]
            for m in machines:
                self._snaps[m.id] = Snapshot("", m.id, m.name, sensors=m.sensors)
                self._beats[m.id] = 0
                self._transitions[m.id] = 0
                self._recent[m.id] = []
                self._stale.add(m.id)
                self._write(m.id)
        self._serve()

    def _write(self, machine: str) -> None:
        """Machine's block from its snapshot (the caller holds the lock)."""
        k = self._slots[machine]
        base = FIRST_BLOCK + BLOCK * k
        self._image[base : base + BLOCK] = machine_registers(
            self._snaps[machine],
            stale=machine in self._stale,
            heartbeat=self._beats[machine],
            transitions=self._transitions[machine],
            recent=self._recent[machine],
        )

    def publish_state(self, snap: Snapshot) -> None:
        with self._lock:
            if snap.machine not in self._slots:
                return
            self._snaps[snap.machine] = snap
            self._write(snap.machine)

    def publish_transition(self, event: TransitionEvent) -> None:
        """A machine's transition into the count and the newest-first list (+14…)."""
        code = STATE_CODES.get(event.new)
        if event.sensor or code is None:
            return  # a sensor's or the appliance's own: in +1 and +5, not an alarm level
        with self._lock:
            if event.machine not in self._slots:
                return
            self._transitions[event.machine] += 1
            self._recent[event.machine] = [code, *self._recent[event.machine][: RECENT - 1]]
            self._write(event.machine)

    def tick(self, heartbeat: int, fresh: Mapping[str, bool]) -> None:
        with self._lock:
            self._image[4] = heartbeat & 0xFFFF
            for machine in self._slots:
                ok = fresh.get(machine, False)
                if ok:
                    self._beats[machine] = (self._beats[machine] + 1) & 0xFFFF
                    self._stale.discard(machine)
                else:
                    self._stale.add(machine)
                self._write(machine)
            self._image[5] = len(self._stale)

    def registers(self, address: int, count: int) -> list[int]:
        """A copy of ``count`` registers from ``address`` (tests, diagnostics)."""
        with self._lock:
            return list(self._image[address : address + count])

    # -- the server (its own thread and loop) ---------------------------------------------------
    async def _action(
        self,
        function_code: int,
        start_address: int,
        address: int,
        count: int,
        current_registers: list[int],
        set_values: list[int] | list[bool] | None,
    ) -> Any:
        if set_values is not None or function_code not in _READS:
            self.refused += 1
            return ExcCodes.ILLEGAL_FUNCTION
        with self._lock:
            n = len(self._image)
            current_registers[0:n] = self._image  # the block starts at address 0
        self.reads += 1
        return None

    def _serve(self) -> None:
        modbus_log = logging.getLogger("pymodbus")
        modbus_log.setLevel(logging.ERROR)  # a PLC's every refusal: no log storm
        if not any(isinstance(f, _OneLineAMinute) for f in _PYMODBUS_LOG.filters):
            _PYMODBUS_LOG.addFilter(_OneLineAMinute())

        owner = self
        # handler -> [its peer's address, when it last asked (monotonic; None: never)]
        admitted: dict[Any, list[Any]] = {}

        class Handler(ServerRequestHandler):
            """Counts the connections it lets in (asyncio may make many protocols before the
            first connection_made, so the listener's own list is no count of what is open);
            a newcomer that finds its address at its cap, or every slot taken, pushes out
            whom :func:`pdm.publish.slots.choose` names (else it is turned away)."""

            def connection_made(self, transport: asyncio.BaseTransport) -> None:
                super().connection_made(transport)
                peer = transport.get_extra_info("peername")
                host = str(peer[0]) if isinstance(peer, tuple) and peer else "?"
                now = time.monotonic()
                key, why = slots.choose(
                    (slots.Slot(h, a[0], a[1]) for h, a in admitted.items()),
                    host,
                    now=now,
                    max_slots=MAX_CONNECTIONS,
                    quiet_s=QUIET_S,
                )
                if why == "full":
                    owner.turned_away += 1
                    transport.close()
                    return
                if key is not None:
                    owner.pushed_out += 1
                    owner.pushed_out_by[why] = owner.pushed_out_by.get(why, 0) + 1
                    cast(Handler, key).drop()
                admitted[self] = [host, None]
                owner.connected += 1

            def callback_data(self, data: bytes, addr: tuple[Any, ...] | None = None) -> int:
                used = int(super().callback_data(data, addr))
                if self.last_pdu and self in admitted:
                    admitted[self][1] = time.monotonic()
                return used

            def drop(self) -> None:
                if admitted.pop(self, None) is not None:
                    owner.connected -= 1
                if self.transport is not None:
                    self.transport.close()

            def connection_lost(self, exc: Exception | None) -> None:
                if admitted.pop(self, None) is not None:
                    owner.connected -= 1
                super().connection_lost(exc)

        class Server(ModbusTcpServer):
            def callback_new_connection(self) -> Any:
                return Handler(self, self.trace_packet, self.trace_pdu, self.trace_connect)

        device = SimDevice(
            0,  # every unit id
            simdata=[SimData(0, values=[0] * len(self._image), datatype=DataType.REGISTERS)],
            action=self._action,
        )
        ready = threading.Event()
        failure: list[BaseException] = []
        loop = asyncio.new_event_loop()
        quiet_accept_failures(loop, log, "Modbus register map")

        async def serve() -> None:
            try:
                self._server = Server(device, address=(self.host, self.port))
                await self._server.serve_forever(background=True)
                sockets = getattr(self._server.transport, "sockets", None) or ()
                if sockets:
                    self.port = int(sockets[0].getsockname()[1])
            except BaseException as exc:
                failure.append(exc)
            finally:
                ready.set()

        def run() -> None:
            asyncio.set_event_loop(loop)
            loop.run_until_complete(serve())
            if not failure:
                loop.run_forever()
            loop.close()

        self._loop = loop
        self._thread = threading.Thread(target=run, name="pdm-publish-modbus", daemon=True)
        self._thread.start()
        if not ready.wait(_START_S) or failure:
            self.close()
            why = f"{failure[0]}" if failure else "did not start"
            raise ConfigError(f"--modbus-server {self.host}:{self.port}: cannot listen: {why}")
        log.warning("Modbus register map on %s:%d (read-only)", self.host, self.port)

    def close(self) -> None:
        loop, server = self._loop, self._server
        if loop is None:
            return
        self._loop = None
        if server is not None and not loop.is_closed():

            async def down() -> None:
                await server.shutdown()
                loop.stop()

            try:
                asyncio.run_coroutine_threadsafe(down(), loop)
            except RuntimeError:  # the loop already ended
                pass
        elif not loop.is_closed():
            loop.call_soon_threadsafe(loop.stop)
        if self._thread is not None:
            self._thread.join(3.0)
