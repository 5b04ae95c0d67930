"""Records → InfluxDB line protocol, with plain string formatting.

influxdb-client's ``Point(...).to_line_protocol()`` manages ~120k points/s on
this machine; formatting over ``.tolist()`` columns does ~1M. Measurements,
tags and fields (what a Grafana panel queries) are documented in
``docs/history.md``:

=================  ==============================  =========================================
measurement        tags                            fields
=================  ==============================  =========================================
``pdm_features``   machine, sensor, channel        one float per feature (``rms_g``, …),
                                                   ``iso_zone`` (string), ``window`` (int),
                                                   ``valid`` (bool)
``pdm_scores``     machine, model                  ``score``, ``diagnosis_confidence``
                                                   (float), ``state``,
                                                   ``diagnosis``, ``top_features`` (strings),
                                                   ``window`` (int)
``pdm_spectra``    machine, sensor, channel, type  ``f0_hz``, ``df_hz`` (float), ``n`` (int),
                                                   ``unit``, ``values`` (base64 float32 LE)
``pdm_states``     machine, sensor                 ``old``, ``new``, ``reason``, ``capture``
                                                   (strings), ``score`` (float)
``pdm_events``     machine, type, severity         ``id``, ``message``, ``sensor``, ``detail``
``pdm_actions``    machine, action                 ``target``, ``outcome``, ``detail``,
                                                   ``event_id`` (strings), ``attempt`` (int)
``pdm_captures``   machine                         ``id``, ``reason``, ``path``, ``model``,
                                                   ``thresholds``, ``channels`` (strings),
                                                   ``fs_hz`` (float), ``samples`` (int)
=================  ==============================  =========================================

Every point also carries the ``appliance`` tag (the id of the appliance that wrote it,
:func:`pdm.appliance.appliance_id`): many appliances write one database, and their machines'
series stay apart even where two machines share an id.

Empty tag values are left out (InfluxDB does not store them; InfluxQL reads a
missing tag as ``''``). NaN and infinite floats are left out (InfluxDB cannot
store them; they read back as missing → NaN).
"""

from __future__ import annotations

import base64
import math
from collections.abc import Iterable, Sequence

import numpy as np

from pdm.history.records import (
    ActionResult,
    Capture,
    Event,
    FeatureRows,
    Record,
    ScoreRows,
    Spectrum,
    StateChange,
)

__all__ = ["MEASUREMENTS", "encode_lines", "lines"]

MEASUREMENTS = {
    "features": "pdm_features",
    "scores": "pdm_scores",
    "spectra": "pdm_spectra",
    "states": "pdm_states",
    "events": "pdm_events",
    "actions": "pdm_actions",
    "captures": "pdm_captures",
}

_KEY = str.maketrans({",": r"\,", "=": r"\=", " ": r"\ ", "\n": r"\n"})


def _key(s: str) -> str:
    """Escape a tag key, tag value or field key."""
    return s.translate(_KEY)


def _str(s: str) -> str:
    """A string field value: quoted, with backslash and quote escaped (newlines kept)."""
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _float(v: float) -> str | None:
    return repr(v) if math.isfinite(v) else None


def _tags(measurement: str, tags: Sequence[tuple[str, str]]) -> str:
    """``measurement,k=v,...`` with empty values left out and keys in sorted order."""
    return measurement + "".join(f",{k}={_key(v)}" for k, v in sorted(tags) if v)


def _point(head: str, fields: Sequence[tuple[str, str | None]], t_ns: int) -> str:
    body = ",".join(f"{k}={v}" for k, v in fields if v is not None)
    return f"{head} {body} {t_ns}"


def _features(r: FeatureRows, app: str) -> Iterable[str]:
    keys = [_key(n) + "=" for n in r.names]
    heads = {}
    for s, c in set(zip(r.sensor, r.channel, strict=True)):
        heads[s, c] = _tags(
            "pdm_features",
            [("appliance", app), ("machine", r.machine), ("sensor", s), ("channel", c)],
        )
    zones = [_str(z) for z in r.iso_zone]
    # One C-level format for the rows without NaN (almost all of them).
    every = ",".join(k.replace("%", "%%") + "%r" for k in keys)
    finite = np.asarray(np.isfinite(r.values).all(axis=1), dtype=bool) & bool(keys)
    for vals, fin, s, c, zone, w, ok, t in zip(
        r.values.tolist(),
        finite.tolist(),
        r.sensor,
        r.channel,
        zones,
        r.window.tolist(),
        r.valid.tolist(),
        r.t_ns.tolist(),
        strict=True,
    ):
        if fin:
            body = every % tuple(vals)
        else:  # v - v == 0 is False exactly for NaN and ±inf: those are left out.
            body = ",".join([k + repr(v) for k, v in zip(keys, vals, strict=True) if v - v == 0])
        yield (
            f"{heads[s, c]} {body}{',' if body else ''}iso_zone={zone},"
            f"valid={'true' if ok else 'false'},window={w}i {t}"
        )


def _scores(r: ScoreRows, app: str) -> Iterable[str]:
    head = _tags("pdm_scores", [("appliance", app), ("machine", r.machine), ("model", r.model)])
    conf = (
        [math.nan] * len(r) if r.diagnosis_confidence is None else r.diagnosis_confidence.tolist()
    )
    for t, w, s, state, diag, top, c in zip(
        r.t_ns.tolist(),
        r.window.tolist(),
        r.score.tolist(),
        r.state,
        r.diagnosis,
        r.top,
        conf,
        strict=True,
    ):
        yield _point(
            head,
            [
                ("diagnosis", _str(diag) if diag else None),
                ("diagnosis_confidence", _float(c)),
                ("score", _float(s)),
                ("state", _str(state)),
                ("top_features", _str(top) if top else None),
                ("window", f"{w}i"),
            ],
            t,
        )


def _spectrum(r: Spectrum, app: str) -> str:
    head = _tags(
        "pdm_spectra",
        [
            ("appliance", app),
            ("machine", r.machine),
            ("sensor", r.sensor),
            ("channel", r.channel),
            ("type", r.type),
        ],
    )
    data = base64.b64encode(np.ascontiguousarray(r.values, dtype="<f4").tobytes()).decode()
    return _point(
        head,
        [
            ("df_hz", _float(r.df_hz)),
            ("f0_hz", _float(r.f0_hz)),
            ("n", f"{len(r.values)}i"),
            ("unit", _str(r.unit)),
            ("values", _str(data)),
        ],
        r.t_ns,
    )


def _one(r: Record, app: str) -> str:
    if isinstance(r, Spectrum):
        return _spectrum(r, app)
    if isinstance(r, StateChange):
        return _point(
            _tags("pdm_states", [("appliance", app), ("machine", r.machine), ("sensor", r.sensor)]),
            [
                ("capture", _str(r.capture)),
                ("new", _str(r.new)),
                ("old", _str(r.old)),
                ("reason", _str(r.reason)),
                ("score", _float(r.score)),
            ],
            r.t_ns,
        )
    if isinstance(r, Event):
        return _point(
            _tags(
                "pdm_events",
                [
                    ("appliance", app),
                    ("machine", r.machine),
                    ("type", r.type),
                    ("severity", r.severity),
                ],
            ),
            [
                ("detail", _str(r.detail)),
                ("id", _str(r.id)),
                ("message", _str(r.message)),
                ("sensor", _str(r.sensor)),
            ],
            r.t_ns,
        )
    if isinstance(r, ActionResult):
        return _point(
            _tags(
                "pdm_actions", [("appliance", app), ("machine", r.machine), ("action", r.action)]
            ),
            [
                ("attempt", f"{r.attempt}i"),
                ("detail", _str(r.detail)),
                ("event_id", _str(r.event_id)),
                ("outcome", _str(r.outcome)),
                ("target", _str(r.target)),
            ],
            r.t_ns,
        )
    if isinstance(r, Capture):
        return _point(
            _tags("pdm_captures", [("appliance", app), ("machine", r.machine)]),
            [
                ("channels", _str(",".join(r.channels))),
                ("fs_hz", _float(r.fs_hz)),
                ("id", _str(r.id)),
                ("model", _str(r.model)),
                ("path", _str(r.path)),
                ("reason", _str(r.reason)),
                ("samples", f"{r.samples}i"),
                ("thresholds", _str(r.thresholds)),
            ],
            r.t_ns,
        )
    raise TypeError(f"not a history record: {type(r).__name__}")


def lines(records: Iterable[Record], appliance: str = "") -> Iterable[str]:
    """Line-protocol lines (no trailing newline) for ``records``, in order, each tagged with
    ``appliance`` ('' leaves the tag out)."""
    for r in records:
        if isinstance(r, FeatureRows):
            yield from _features(r, appliance)
        elif isinstance(r, ScoreRows):
            yield from _scores(r, appliance)
        else:
            yield _one(r, appliance)


def encode_lines(records: Iterable[Record], appliance: str = "") -> bytes:
    """The request body for ``/write``: every line, newline-terminated, UTF-8."""
    return "".join(line + "\n" for line in lines(records, appliance)).encode()
