"""A machine's own healthy spectra: lines it always has are not fault evidence.

Every machine has lines that are no defect: its structure rings, its motor pulls at twice
the line frequency and its slots, a pump's vanes pass, a coupling knocks. Some sit where a
bearing's kinematics put a defect line (the CWRU rig's healthy recording holds lines at
147.9 and 161.9 Hz; the drive end's BPFI is 162.1 Hz). Where a model exists, its healthy
training data say which lines those are.

:class:`BaselineBuilder` averages the healthy windows' acceleration and envelope power
spectra per channel (a plain mean, every window re-indexed onto the first window's shaft
orders, one envelope band: the one most windows used), and :class:`Baseline` keeps them in
shaft orders in the model card (``diagnosis_baseline``). When judging, the engine reads a
line's prominence against ``max(local floor, baseline)`` instead of the floor alone
(:func:`pdm.diagnosis.verdict.judge_channels`): a line the machine always had counts only by
what it grew. The baseline is read on the current bins twice — at the same shaft order
(lines locked to the shaft) and at the same frequency (structural and electrical lines are
not) — and the larger taken, each widened by a bin either side; only its lines are kept (bins over
twice their local median), its noise floor is not a line. Where the envelope band
differs from the baseline's (an automatic band that moved), the baseline is scaled by the
ratio of the two spectra's median levels: its lines are then judged by their prominence.

Pure numpy; the card's JSON is checked in :mod:`pdm.scoring.card` and here.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import numpy as np
import numpy.typing as npt
from scipy.ndimage import maximum_filter1d, median_filter

from pdm.diagnosis.average import ACC_TOP_ORDER, acc_power_scale, env_power_scale, reindex
from pdm.dsp.features import FeatureFrame

__all__ = ["BASELINE_VERSION", "MAX_BINS", "Baseline", "BaselineBuilder"]

F64 = npt.NDArray[np.float64]

BASELINE_VERSION = 1
#: Bins a stored spectrum may hold (a 262144-sample window's half spectrum).
MAX_BINS = 131073


@dataclass(frozen=True)
class Baseline:
    """Healthy averaged power spectra of a machine's channels, in shaft orders.

    Attributes
    ----------
    channels : channel names
    order_step : shaft orders per stored bin (``df / shaft frequency`` of the first window)
    shaft_hz : the shaft frequency the grid was made at, Hz
    acc : per channel, (n_acc,) averaged acceleration power, g² (amplitude² of a line)
    env : per channel, (n_env,) averaged envelope power, g², or an empty array
    envelope_band_hz : the demodulation band of ``env``, Hz, or None
    windows : healthy windows averaged
    """

    channels: tuple[str, ...]
    order_step: float
    shaft_hz: float
    acc: tuple[F64, ...]
    env: tuple[F64, ...]
    envelope_band_hz: tuple[float, float] | None
    windows: int

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready, four significant digits (the card's ``diagnosis_baseline``)."""

        def q(a: F64) -> list[float]:
            return [float(f"{v:.4g}") for v in a.tolist()]

        return {
            "version": BASELINE_VERSION,
            "order_step": self.order_step,
            "shaft_hz": self.shaft_hz,
            "envelope_band_hz": list(self.envelope_band_hz) if self.envelope_band_hz else None,
            "windows": self.windows,
            "channels": {
                name: {"acc_g2": q(a), "env_g2": q(e)}
                for name, a, e in zip(self.channels, self.acc, self.env, strict=True)
            },
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Baseline:
        """From :meth:`to_dict`'s form; ``ValueError`` naming the first problem."""
        if not isinstance(d, Mapping):
            raise ValueError("not an object")
        if d.get("version") != BASELINE_VERSION:
            raise ValueError(f"version {d.get('version')!r} is not {BASELINE_VERSION}")
        step, fr = d.get("order_step"), d.get("shaft_hz")
        for name, v in (("order_step", step), ("shaft_hz", fr)):
            if isinstance(v, bool) or not isinstance(v, int | float) or not 0 < v < 1e6:
                raise ValueError(f"{name}: {v!r} is not a positive number")
        band = d.get("envelope_band_hz")
        if band is not None and not (
            isinstance(band, list)
            and len(band) == 2
            and all(isinstance(x, int | float) and not isinstance(x, bool) for x in band)
        ):
            raise ValueError(f"envelope_band_hz: {band!r} is not [low, high]")
        windows = d.get("windows")
        if isinstance(windows, bool) or not isinstance(windows, int) or windows < 1:
            raise ValueError(f"windows: {windows!r} is not a positive integer")
        chans = d.get("channels")
        if not isinstance(chans, Mapping) or not chans:
            raise ValueError("channels: not a non-empty object")
        names, acc, env = [], [], []
        for name, ch in chans.items():
            if not isinstance(ch, Mapping):
                raise ValueError(f"channels.{name}: not an object")
            arrays = []
            for key in ("acc_g2", "env_g2"):
                v = ch.get(key)
                if not isinstance(v, list) or len(v) > MAX_BINS:
                    raise ValueError(f"channels.{name}.{key}: not a list of at most {MAX_BINS}")
                if not all(isinstance(x, int | float) and not isinstance(x, bool) for x in v):
                    raise ValueError(f"channels.{name}.{key}: not all numbers")
                a = np.asarray(v, dtype=np.float64)
                if not (np.isfinite(a).all() and (a >= 0).all()):
                    raise ValueError(f"channels.{name}.{key}: negative or not finite")
                arrays.append(a)
            names.append(str(name))
            acc.append(arrays[0])
            env.append(arrays[1])
        return cls(
            tuple(names),
            float(step),  # type: ignore[arg-type]
            float(fr),  # type: ignore[arg-type]
            tuple(acc),
            tuple(env),
            (float(band[0]), float(band[1])) if band else None,
            windows,
        )

    @cached_property
    def _lines(self) -> tuple[tuple[F64, ...], tuple[F64, ...]]:
        """The stored spectra's lines only (bins over twice their local median, half a shaft
        order each side); the rest 0: the healthy noise floor is the current one's business
        (its level depends on the window), not a line's."""
        fh = int(min(64, max(8, round(0.5 / self.order_step))))

        def lines(a: F64) -> F64:
            if a.size < 2 * fh + 1:
                return maximum_filter1d(a, size=3, mode="nearest") if a.size else a
            med = median_filter(a, size=2 * fh + 1, mode="nearest")
            # widened a bin either side: a line's bin moves with the speed and the rounding
            return maximum_filter1d(np.where(a > 2.0 * med, a, 0.0), size=3, mode="nearest")

        return tuple(lines(a) for a in self.acc), tuple(lines(e) for e in self.env)

    def aligned(
        self,
        channels: Sequence[str],
        df: float,
        shaft_hz: float,
        n_acc: int,
        n_env: int,
        band: tuple[float, float] | None,
        env_now: F64 | None,
    ) -> tuple[F64, F64]:
        """The baseline on the current bins: (C, n_acc) and (C, n_env) power, g² (zeros for a
        channel the baseline does not hold); see the module docstring.

        Parameters
        ----------
        channels : the rows wanted
        df, shaft_hz : the current bin spacing and shaft frequency, Hz
        n_acc, n_env : bins of the current acceleration and envelope averages
        band : the current envelope band
        env_now : (C, n_env) the current envelope power (levels a band change), or None
        """
        acc = np.zeros((len(channels), n_acc))
        env = np.zeros((len(channels), n_env))
        by = {c: i for i, c in enumerate(self.channels)}
        acc_lines, env_lines = self._lines
        order: F64 = np.arange(max(n_acc, n_env), dtype=np.float64) * (
            df / shaft_hz / self.order_step
        )
        same_hz: F64 = np.arange(max(n_acc, n_env), dtype=np.float64) * (
            df / (self.order_step * self.shaft_hz)
        )
        for r, name in enumerate(channels):
            i = by.get(name)
            if i is None:
                continue
            acc[r] = _on(acc_lines[i], order[:n_acc], same_hz[:n_acc])
            if self.env[i].size and n_env:
                e = _on(env_lines[i], order[:n_env], same_hz[:n_env])
                if band != self.envelope_band_hz and env_now is not None:
                    # Another band: its lines are judged by their prominence, not their level
                    # (per bin: the window's length is in both medians).
                    now = float(np.median(env_now[r])) * self.order_step * self.shaft_hz / df
                    then = float(np.median(self.env[i]))
                    e = e * (now / then) if then > 0 else np.zeros_like(e)
                env[r] = e
        return acc, env


def _on(stored: F64, at_order: F64, at_hz: F64) -> F64:
    """``stored`` read at fractional bins ``at_order`` and ``at_hz``, the larger of the two;
    0 beyond it."""
    if stored.size < 2:
        return np.zeros(at_order.size)
    grid = np.arange(stored.size, dtype=np.float64)
    a = np.interp(at_order, grid, stored, right=0.0)
    b = np.interp(at_hz, grid, stored, right=0.0)
    return np.maximum(a, b)


class BaselineBuilder:
    """Averages healthy windows' spectra into a :class:`Baseline` (module docstring).

    Parameters
    ----------
    n : window length, samples (sets the power scales)
    channels : the frames' channel names
    """

    def __init__(self, n: int, channels: Sequence[str]) -> None:
        self.n = int(n)
        self.channels = tuple(channels)
        self._acc: F64 | None = None
        self._count = 0
        self._ref_hz = math.nan
        self._df = math.nan
        self._acc_bins = 0
        #: band → [summed envelope power (C, n_env), windows]
        self._env: dict[tuple[float, float], list[Any]] = {}

    @property
    def windows(self) -> int:
        """Windows averaged so far."""
        return self._count

    def add(self, frame: FeatureFrame, fs: float) -> bool:
        """Average one window in (sample rate ``fs``, Hz); False when it cannot be used
        (invalid, no speed, other channels)."""
        fr = frame.shaft_speed_rpm / 60.0
        if not (frame.valid and math.isfinite(fr) and fr > 0) or frame.channels != self.channels:
            return False
        spec = frame.spectrum
        if self._count == 0:
            self._ref_hz = fr
            self._df = fs / self.n
            self._acc_bins = min(spec.shape[-1], math.ceil(ACC_TOP_ORDER * fr / self._df) + 80)
        v = spec[:, : self._acc_bins]
        acc = (v.real.astype(np.float64) ** 2 + v.imag.astype(np.float64) ** 2) * acc_power_scale(
            self.n
        )
        ratio = fr / self._ref_hz
        if abs(ratio - 1.0) * self._acc_bins > 0.25:
            acc = reindex(acc, ratio)
        self._acc = acc if self._acc is None else self._acc + acc
        if frame.env_parts is not None and frame.env_parts.size:
            parts = frame.env_parts.astype(np.float64)
            env = (parts[:, 0::2] + parts[:, 1::2]) * env_power_scale(self.n)
            if abs(ratio - 1.0) * env.shape[-1] > 0.25:
                env = reindex(env, ratio)
            key = tuple(float(x) for x in frame.envelope_band_hz)
            slot = self._env.get(key)  # type: ignore[arg-type]
            if slot is None or slot[0].shape != env.shape:
                self._env[key] = [env, 1]  # type: ignore[index]
            else:
                slot[0] += env
                slot[1] += 1
        self._count += 1
        return True

    def result(self) -> Baseline | None:
        """The baseline so far, or None before any window."""
        if self._acc is None or self._count == 0:
            return None
        acc = self._acc / self._count
        band: tuple[float, float] | None = None
        env: list[F64] = [np.zeros(0)] * len(self.channels)
        if self._env:
            band, (total, count) = max(self._env.items(), key=lambda kv: kv[1][1])
            env = list(total / count)
        return Baseline(
            self.channels,
            self._df / self._ref_hz,
            self._ref_hz,
            tuple(acc),
            tuple(env),
            band,
            self._count,
        )
