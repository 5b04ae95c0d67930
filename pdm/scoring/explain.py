"""Why a window is anomalous: the features that moved most, and a conservative diagnosis.

Input is one window's model vector: qualified feature names (``"<channel>.<feature>"``,
see :mod:`pdm.scoring.vector`), their raw values, and their robust z-scores
against the machine's own healthy baseline (:meth:`pdm.scoring.preprocess.Preprocess.transform`).
Any subset of features may be present; missing or non-finite ones are ignored.
Nothing here reads files or keeps state.

Rules
-----
A feature is *elevated* when its z-score is at least ``z_min`` (default 4; only
increases count, a feature that dropped is never evidence of a fault) and
*rising* when it is at least ``z_min / 2``. Each channel is judged on its own:

1. **Bearing, type named.** The defect *fundamentals* are ``env_bpfo_g`` (outer
   race), ``env_bpfi_g`` (inner race), ``env_bsf_2x_g`` (ball: a spalled ball
   strikes the races twice per spin revolution, so at 2 × BSF) and
   ``env_ftf_g`` (cage). A fundamental *stands out* when it is elevated and its
   value is at least 2 × the value of every other fundamental present in the
   same window (at least one other must be present: with nothing to compare
   with, the type is not named). Only fundamentals are compared, because
   harmonics of one defect can fall on another's line (on a 6205,
   2 × BPFI ≈ 3 × BPFO). The standing-out line names the defect; its
   harmonic (``env_bpfo_2x_g``, ``env_bpfi_2x_g``; for a ball ``env_bsf_g``)
   and elevated kurtosis, crest or band RMS are reported as supporting
   evidence, not required.

   The cage is held to more: ``env_ftf_g`` must stand out, be the only
   elevated fundamental, *and* its harmonic ``env_ftf_2x_g`` must be present
   and elevated. A ball fault is carried through the load zone by the cage and
   shows FTF too; cage impacts put equal lines on every FTF harmonic (BPFO =
   n × FTF among them); and the FTF line sits a few bins from the envelope
   spectrum's DC, so when the window is short it carries the envelope's mean
   (seen at 8192 samples / 25.6 kHz and on the CWRU fan-end channel at
   4096 / 12 kHz) and rises with any impacting. With the default model
   features (no ``env_ftf_2x_g``) the cage is therefore never named.
2. **Bearing, type uncertain.** Some ``env_*`` line is elevated, or kurtosis,
   crest or a ``band_*`` RMS is elevated while some ``env_*`` line is rising,
   and no fundamental stands out. Many real bearing faults look like this (the
   CWRU ball faults, Smith & Randall 2015), and so do cage faults; naming no
   type is preferred to a guess.
3. **Running-speed faults**, from ``order_0_5x_g`` … ``order_3x_g``, first match wins:

   * *looseness*: 0.5 × and 3 × both elevated, or at least three of the order
     lines (0.5 ×, 1 ×, 2 ×, 3 ×) elevated;
   * *misalignment*: 2 × elevated and its value at least that of 1 ×;
   * *unbalance*: 1 × elevated and its value at least 2 × that of 2 × and of 3 ×.
4. **Unknown** when none of the above applies: nothing is elevated, or what is
   elevated (overall RMS, velocity, a lone order line ...) matches no signature.

*Strength* of a verdict is the z-score of the line that decided it: the
standing-out fundamental; for "uncertain" the highest elevated (else rising)
``env_*`` line other than ``env_ftf_g`` (which, for the reason above, ranks
evidence only when it is the only line); for a running-speed fault its highest
elevated order line (looseness), 2 × (misalignment) or 1 × (unbalance).

On one channel, a running-speed fault replaces a *named* bearing defect only
when it is clearly stronger (at least 2 × its strength), and an *uncertain*
bearing when it is at least as strong; the verdict that loses is kept as a
reason. Across channels the strongest verdict wins (a named one on a tie), and
the other channels' verdicts are added as the last reason.

Known limits: one window is judged, not a trend; amplitudes are compared
within a window, not against their own healthy level, so a line that is
already the largest in health (a structural line, the DC-contaminated FTF) needs
only a small rise to stand out; an axial sensor would be needed to confirm
misalignment.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

__all__ = ["DIAGNOSES", "Evidence", "diagnose", "top_features"]

DIAGNOSES: tuple[str, ...] = (
    "bearing_outer_race",
    "bearing_inner_race",
    "bearing_ball",
    "bearing_cage",
    "bearing_uncertain",
    "unbalance",
    "misalignment",
    "looseness",
    "unknown",
)

#: (label, fundamental, supporting line) per bearing defect.
_DEFECTS: tuple[tuple[str, str, str], ...] = (
    ("bearing_outer_race", "env_bpfo_g", "env_bpfo_2x_g"),
    ("bearing_inner_race", "env_bpfi_g", "env_bpfi_2x_g"),
    ("bearing_ball", "env_bsf_2x_g", "env_bsf_g"),
    ("bearing_cage", "env_ftf_g", "env_ftf_2x_g"),
)
_SUPPORT_TEXT = {
    "env_bpfo_2x_g": "2nd harmonic",
    "env_bpfi_2x_g": "2nd harmonic",
    "env_bsf_g": "spin-frequency line",
    "env_ftf_2x_g": "2nd harmonic",
}
_ORDERS = ("order_0_5x_g", "order_1x_g", "order_2x_g", "order_3x_g")
_ORDER_TEXT = {"order_0_5x_g": "0.5×", "order_1x_g": "1×", "order_2x_g": "2×", "order_3x_g": "3×"}

#: A defect fundamental must be this many times every other fundamental to name the type.
STAND_OUT = 2.0
#: 1× must be this many times 2× and 3× for unbalance.
DOMINANT_1X = 2.0
#: A running-speed fault overrides a named bearing defect only with this many times its z.
CLEARLY_STRONGER = 2.0
#: "Rising" is this fraction of ``z_min``.
RISING = 0.5


@dataclass(frozen=True)
class Evidence:
    """A diagnosis and why.

    Attributes
    ----------
    label : str
        One of :data:`DIAGNOSES`.
    channel : str or None
        The channel whose evidence decided; None for ``"unknown"`` or unqualified names.
    reasons : tuple of str
        One-line, human-readable reasons with numbers, the deciding one first, e.g.
        ``"x_g: env_bpfo_g 0.081 g, z=+14.2, 6.1× the next defect line (env_bpfi_g 0.013 g)"``.
    """

    label: str
    channel: str | None
    reasons: tuple[str, ...]


@dataclass(frozen=True)
class _Verdict:
    label: str
    strength: float  # z-score of the line that decided
    named: bool  # a specific type, not "uncertain"
    reasons: tuple[str, ...]


def top_features(
    names: Sequence[str],
    values: npt.ArrayLike,
    z: npt.ArrayLike,
    k: int = 5,
    *,
    directions: Sequence[str] | None = None,
) -> list[dict[str, Any]]:
    """The ``k`` features furthest from the healthy baseline *in a direction that counts*.

    Parameters
    ----------
    names : sequence of str
        Qualified feature names, e.g. ``"x_g.env_bpfo_g"``.
    values : array_like, shape (d,)
        Raw feature values.
    z : array_like, shape (d,)
        Robust z-scores of the same features (not clipped).
    k : int
        How many to return, 3 to 5.
    directions : sequence of str, optional
        ``"up"`` or ``"both"`` per feature (the model card's, see
        :func:`pdm.scoring.vector.direction`). An ``up`` feature ranks by ``z`` and
        only when it rose (``z > 0``): a feature below its baseline is no evidence of
        damage and is left out; a ``both`` feature ranks by ``|z|``. Each entry then
        says its ``direction``. None (a model without directions): every feature
        ranks by ``|z|``, as before directions existed.

    Returns
    -------
    list of dict
        ``{"feature": str, "value": float, "z": float}`` (plus ``"direction"`` when
        ``directions`` is given), largest departure first, for at most ``k``
        features whose value and z-score are finite (fewer when fewer are, or fewer
        departed in a direction that counts).

    Raises
    ------
    ValueError
        When ``k`` is not in 3..5 or the lengths differ.

    Examples
    --------
    >>> top_features(["a.x", "a.y", "a.z"], [1.0, 2.0, 3.0], [0.5, -6.0, float("nan")], k=3)
    [{'feature': 'a.y', 'value': 2.0, 'z': -6.0}, {'feature': 'a.x', 'value': 1.0, 'z': 0.5}]
    >>> top_features(["a.x", "a.y"], [1.0, 2.0], [0.5, -6.0], k=3, directions=["up", "up"])
    [{'feature': 'a.x', 'value': 1.0, 'z': 0.5, 'direction': 'up'}]
    """
    if not 3 <= k <= 5:
        raise ValueError(f"{k=} must be in 3..5")
    v, zz = _check(names, values, z)
    ok = np.isfinite(v) & np.isfinite(zz)
    if directions is None:
        departure = np.abs(zz)
    else:
        if len(directions) != len(names):
            raise ValueError(f"{len(names)} names and {len(directions)} directions differ")
        up = np.array([d == "up" for d in directions], dtype=bool)
        departure = np.where(up, zz, np.abs(zz))
        ok &= ~up | (zz > 0)
    idx = np.flatnonzero(ok)
    order = idx[np.argsort(-departure[idx], kind="stable")][:k]
    out = [{"feature": names[i], "value": float(v[i]), "z": float(zz[i])} for i in order]
    if directions is not None:
        for entry, i in zip(out, order.tolist(), strict=True):
            entry["direction"] = directions[i]
    return out


def diagnose(
    names: Sequence[str], values: npt.ArrayLike, z: npt.ArrayLike, *, z_min: float = 4.0
) -> Evidence:
    """Diagnose one window by the rules of this module's docstring.

    Parameters
    ----------
    names : sequence of str
        Qualified feature names (``"<channel>.<feature>"``), any subset of the model features.
    values : array_like, shape (d,)
        Raw feature values (g, mm/s, or dimensionless).
    z : array_like, shape (d,)
        Robust z-scores against the machine's healthy baseline.
    z_min : float
        z-score from which a feature counts as elevated (> 0).

    Returns
    -------
    Evidence
        The label (one of :data:`DIAGNOSES`), the deciding channel and the reasons.

    Raises
    ------
    ValueError
        When the lengths differ or ``z_min`` is not a positive number.
    """
    if not (isinstance(z_min, int | float) and math.isfinite(z_min) and z_min > 0):
        raise ValueError(f"{z_min=} must be a positive number")
    v, zz = _check(names, values, z)
    channels: dict[str, dict[str, tuple[float, float]]] = {}
    for name, vi, zi in zip(names, v.tolist(), zz.tolist(), strict=True):
        ch, _, feat = name.rpartition(".")
        if math.isfinite(vi) and math.isfinite(zi):
            channels.setdefault(ch, {})[feat] = (vi, zi)

    verdicts = {ch: _judge_channel(ch, feats, z_min) for ch, feats in channels.items()}
    found = {ch: vd for ch, vd in verdicts.items() if vd is not None}
    if not found:
        return Evidence("unknown", None, _unknown_reasons(channels, z_min))
    best = max(found, key=lambda ch: (found[ch].strength, found[ch].named))
    vd = found[best]
    others = [
        f"{ch or '(unnamed)'} {o.label} (z={o.strength:+.1f})"
        for ch, o in found.items()
        if ch != best
    ]
    reasons = vd.reasons + ((f"other channels: {', '.join(others)}",) if others else ())
    return Evidence(vd.label, best or None, reasons)


# --------------------------------------------------------------------------- rules


def _judge_channel(ch: str, f: dict[str, tuple[float, float]], z_min: float) -> _Verdict | None:
    bearing = _bearing(ch, f, z_min)
    speed = _running_speed(ch, f, z_min)
    if bearing is not None and speed is not None:
        needed = CLEARLY_STRONGER * bearing.strength if bearing.named else bearing.strength
        if speed.strength < needed:
            return _also(bearing, speed)
        return _also(speed, bearing)
    return bearing or speed


def _also(main: _Verdict, other: _Verdict) -> _Verdict:
    return _Verdict(
        main.label,
        main.strength,
        main.named,
        (*main.reasons, f"also {other.label}: {other.reasons[0]}"),
    )


def _bearing(ch: str, f: dict[str, tuple[float, float]], z_min: float) -> _Verdict | None:
    env = {k: vz for k, vz in f.items() if k.startswith("env_")}
    if not env:
        return None
    elevated_env = {k: vz for k, vz in env.items() if vz[1] >= z_min}
    rising_env = {k: vz for k, vz in env.items() if vz[1] >= RISING * z_min}
    impulsive = {
        k: vz
        for k, vz in f.items()
        if (k in ("kurtosis", "crest") or k.startswith("band_")) and vz[1] >= z_min
    }
    fundamentals = {fund: f[fund] for _, fund, _ in _DEFECTS if fund in f}

    for label, fund, support in _DEFECTS:
        if fund not in fundamentals or fundamentals[fund][1] < z_min:
            continue
        others = {k: vz for k, vz in fundamentals.items() if k != fund}
        if not others:
            continue
        value, zf = fundamentals[fund]
        nxt_name, (nxt_value, _) = max(others.items(), key=lambda kv: kv[1][0])
        if value < STAND_OUT * nxt_value:
            continue
        if label == "bearing_cage" and (
            any(zk >= z_min for _, zk in others.values())
            or not (support in f and f[support][1] >= z_min)
        ):
            continue  # see the module docstring: a lone FTF line is not enough
        ratio = value / nxt_value if nxt_value > 0 else math.inf
        reasons = [
            f"{ch}: {_show(fund, value, zf)}, {ratio:.1f}× the next defect line "
            f"({nxt_name} {_fmt(nxt_name, nxt_value)})"
        ]
        if support in f:
            state = "elevated" if f[support][1] >= z_min else "not elevated"
            reasons.append(
                f"{ch}: {_SUPPORT_TEXT[support]} {_show(support, *f[support])} ({state})"
            )
        reasons += [f"{ch}: {_show(k, *vz)}" for k, vz in _by_z(impulsive)]
        return _Verdict(label, zf, True, tuple(reasons))

    if elevated_env or (impulsive and rising_env):
        lines = elevated_env or rising_env
        top = _by_z(lines)
        # The FTF line ranks the evidence only when nothing else does (module docstring).
        strength = next((vz[1] for k, vz in top if k != "env_ftf_g"), top[0][1][1])
        head = (
            f"{ch}: envelope lines elevated but none stands out "
            f"(≥ {STAND_OUT:g}× every other defect line)"
            if elevated_env
            else f"{ch}: {', '.join(k for k, _ in _by_z(impulsive))} elevated, "
            f"envelope lines rising, none standing out"
        )
        reasons = [head, *(f"{ch}: {_show(k, *vz)}" for k, vz in top[:3])]
        reasons += [f"{ch}: {_show(k, *vz)}" for k, vz in _by_z(impulsive)[:2]]
        return _Verdict("bearing_uncertain", strength, False, tuple(reasons))
    return None


def _running_speed(ch: str, f: dict[str, tuple[float, float]], z_min: float) -> _Verdict | None:
    o = {k: f[k] for k in _ORDERS if k in f}
    up = {k for k, (_, zk) in o.items() if zk >= z_min}
    if not up:
        return None

    def line(k: str) -> str:
        return f"{ch}: {_ORDER_TEXT[k]} {_show(k, *o[k])}"

    if {"order_0_5x_g", "order_3x_g"} <= up or len(up) >= 3:
        keys = [k for k in _ORDERS if k in up]
        why = (
            "sub-harmonic 0.5× and 3× both elevated"
            if {"order_0_5x_g", "order_3x_g"} <= up
            else f"{len(keys)} order lines elevated"
        )
        strength = max(o[k][1] for k in keys)
        return _Verdict("looseness", strength, True, (f"{ch}: {why}", *map(line, keys)))

    if "order_2x_g" in up and "order_1x_g" in o and o["order_2x_g"][0] >= o["order_1x_g"][0]:
        v2, v1 = o["order_2x_g"][0], o["order_1x_g"][0]
        ratio = v2 / v1 if v1 > 0 else math.inf
        return _Verdict(
            "misalignment",
            o["order_2x_g"][1],
            True,
            (
                f"{ch}: 2× {_show('order_2x_g', *o['order_2x_g'])}, {ratio:.1f}× the 1× line",
                line("order_1x_g"),
            ),
        )

    if "order_1x_g" in up:
        v1, z1 = o["order_1x_g"]
        rivals = {k: o[k][0] for k in ("order_2x_g", "order_3x_g") if k in o}
        if all(v1 >= DOMINANT_1X * vk for vk in rivals.values()):
            if rivals:
                k, vk = max(rivals.items(), key=lambda kv: kv[1])
                ratio = v1 / vk if vk > 0 else math.inf
                why = f", {ratio:.1f}× the {_ORDER_TEXT[k]} line"
            else:
                why = " (no 2×/3× line to compare with)"
            return _Verdict(
                "unbalance", z1, True, (f"{ch}: 1× {_show('order_1x_g', v1, z1)}{why}",)
            )
    return None


def _unknown_reasons(
    channels: dict[str, dict[str, tuple[float, float]]], z_min: float
) -> tuple[str, ...]:
    flat = [
        (f"{ch}.{k}" if ch else k, k, vz) for ch, fs in channels.items() for k, vz in fs.items()
    ]
    if not flat:
        return ("no finite feature values",)
    up = sorted((t for t in flat if t[2][1] >= z_min), key=lambda t: -t[2][1])
    if not up:
        q, k, (vk, zk) = max(flat, key=lambda t: t[2][1])
        return (f"no feature elevated (z ≥ {z_min:g}); highest {q} {_fmt(k, vk)}, z={zk:+.1f}",)
    shown = ", ".join(f"{q} z={zk:+.1f}" for q, _, (_, zk) in up[:3])
    return (f"elevated but matching no fault signature: {shown}",)


# --------------------------------------------------------------------------- helpers


def _check(
    names: Sequence[str], values: npt.ArrayLike, z: npt.ArrayLike
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    v = np.asarray(values, dtype=np.float64).reshape(-1)
    zz = np.asarray(z, dtype=np.float64).reshape(-1)
    if not len(names) == v.size == zz.size:
        raise ValueError(f"{len(names)} names, {v.size} values and {zz.size} z-scores differ")
    return v, zz


def _by_z(d: dict[str, tuple[float, float]]) -> list[tuple[str, tuple[float, float]]]:
    return sorted(d.items(), key=lambda kv: -kv[1][1])


def _fmt(feature: str, value: float) -> str:
    if feature.endswith("_g"):
        return f"{value:.3g} g"
    if feature.endswith("_mm_s"):
        return f"{value:.3g} mm/s"
    return f"{value:.3g}"


def _show(feature: str, value: float, zv: float) -> str:
    return f"{feature} {_fmt(feature, value)}, z={zv:+.1f}"
