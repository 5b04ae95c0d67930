"""Who this appliance is: the id every webhook, history row, metric and published topic carries.

``PDM_APPLIANCE_ID`` when it is set, else the host name. Many appliances write one central
InfluxDB and one MQTT broker (docs/integration.md): the id tells their rows, series and topics
apart, so it must be a name every one of those can carry unchanged — 1 to 64 characters from
``A–Z a–z 0–9 _ . -`` (the pipeline's machine-id rule). A ``PDM_APPLIANCE_ID`` outside that
rule is refused with one line; a host name outside it is made to fit (other characters become
``-``, cut at 64), since nobody chose it for this.

>>> import os
>>> os.environ["PDM_APPLIANCE_ID"] = "line-3.edge"
>>> appliance_id()
'line-3.edge'
>>> os.environ["PDM_APPLIANCE_ID"] = "line 3/edge"
>>> appliance_id()
Traceback (most recent call last):
...
pdm.errors.ConfigError: PDM_APPLIANCE_ID='line 3/edge': must be 1–64 characters from A–Z, a–z, 0–9, '_', '.', '-' (it names topics, tags and rows)
>>> del os.environ["PDM_APPLIANCE_ID"]
"""

from __future__ import annotations

import os
import re
import socket

from pdm.errors import ConfigError

__all__ = ["APPLIANCE_ENV", "APPLIANCE_ID", "appliance_id"]

APPLIANCE_ENV = "PDM_APPLIANCE_ID"
#: What an appliance id may look like (the same rule as a machine id).
APPLIANCE_ID = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
_OTHER = re.compile(r"[^A-Za-z0-9_.-]")


def appliance_id() -> str:
    """``PDM_APPLIANCE_ID``, else the host name (made to fit :data:`APPLIANCE_ID`).

    Raises :class:`ConfigError` for a ``PDM_APPLIANCE_ID`` that does not fit.
    """
    given = os.environ.get(APPLIANCE_ENV)
    if given:
        if not APPLIANCE_ID.match(given):
            raise ConfigError(
                f"{APPLIANCE_ENV}={given!r}: must be 1–64 characters from A–Z, a–z, 0–9, "
                "'_', '.', '-' (it names topics, tags and rows)"
            )
        return given
    return _OTHER.sub("-", socket.gethostname())[:64] or "appliance"
