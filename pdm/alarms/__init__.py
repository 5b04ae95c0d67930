"""Alarm states (debounced, latched, acknowledged) and sensor health: pure steps, no I/O.

:mod:`pdm.alarms.state` is the state machine, :mod:`pdm.alarms.health` the sensor checks,
:mod:`pdm.alarms.rules` a pipeline's rules. The events they make are plain values of the
ground floor (:class:`pdm.core.events.AlarmEvent`); what acts on them — the state store,
relay, webhooks and history — is :mod:`pdm.supervision`'s.
"""
