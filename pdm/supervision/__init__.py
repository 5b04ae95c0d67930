"""A machine's supervision: a window's one path, and the I/O its decisions cause.

The room above the pure alarm state machine (:mod:`pdm.alarms`), the actions
(:mod:`pdm.actions`) and history (:mod:`pdm.history`), which coordinates them:
:mod:`~pdm.supervision.window` (score → record → alarm state → submit, the one path the
service, replay and the benchmark take), :mod:`~pdm.supervision.engine` (the alarm state
saved before acting, the relay, the webhooks' outboxes, the audit records),
:mod:`~pdm.supervision.store` (the alarm state store) and :mod:`~pdm.supervision.ack`
(acknowledging with no service running).
"""
