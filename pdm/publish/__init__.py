"""Publishers: the appliance's state out to the plant — MQTT, an OPC UA server, a Modbus register map.

They *read* the state, never decide: every value comes from the machine's ``/status`` entry
(:class:`~pdm.publish.model.Snapshot`), every event from an alarm transition
(:class:`~pdm.publish.model.TransitionEvent`, the webhooks' payload). The machines' side
(:mod:`pdm.publish.feed`) only queues; a hub (:mod:`pdm.publish.hub`) on a thread of its own
hands everything to each :class:`~pdm.publish.model.Publisher`. docs/integration.md is the
integrator's view: topics, node ids, the register map.

The publishers (:mod:`~pdm.publish.mqtt`, :mod:`~pdm.publish.opcua`,
:mod:`~pdm.publish.modbus`) are imported when configured (each pulls in its library).
"""

from __future__ import annotations

from pdm.publish.model import MachineInfo, Publisher, Snapshot, TransitionEvent

__all__ = ["MachineInfo", "Publisher", "Snapshot", "TransitionEvent"]
