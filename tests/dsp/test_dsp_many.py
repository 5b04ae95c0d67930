"""Machines at different speeds in one extraction pass (:func:`extract_many`): one FFT over
all their rows, and each machine's frames what its own extractor computes alone."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
import scipy.fft as sfft

from pdm.dsp.bearings import lookup_bearing
from pdm.dsp.features import (
    ENV_FEATURES,
    ChannelSpec,
    FeatureExtractor,
    FeatureFrame,
    extract_many,
)
from pdm.sources.simulator import FaultSpec, SimSpec, simulate

FS = 25600.0
N = 16384
BAND = (2000.0, 5000.0)


def windows(
    rpm: float, n_ch: int, n_win: int, seed: int, fault: str | None = None, bearing: str = "6205"
) -> np.ndarray:
    """(n_win, n_ch, N) g: a simulated machine at ``rpm`` with a clear 1x (a line for the
    speed search) and, with ``fault``, that defect of ``bearing``."""
    faults = (FaultSpec("unbalance", 0.3),) + ((FaultSpec(fault, 0.8),) if fault else ())
    spec = SimSpec(
        fs=FS, duration_s=n_win * N / FS, rpm=rpm, faults=faults, seed=seed,
        bearing=lookup_bearing(bearing), channels=tuple(f"c{c}_g" for c in range(n_ch)),
    )  # fmt: skip
    x = simulate(spec)[: n_win * N].astype(np.float32)
    return np.ascontiguousarray(x.reshape(n_win, N, n_ch).transpose(0, 2, 1))


def machine(n_ch: int, bearings: tuple[str | None, ...], **kw: Any) -> FeatureExtractor:
    kw.setdefault("envelope_band_hz", BAND)
    chans = [
        ChannelSpec(f"c{c}_g", lookup_bearing(b) if (b := bearings[c % len(bearings)]) else None)
        for c in range(n_ch)
    ]
    return FeatureExtractor(FS, N, chans, **kw)


def env_scale(passes: list[list[FeatureFrame]]) -> float:
    """The largest squared part of any envelope spectrum in ``passes``."""
    return max(float(np.nanmax(f.env_parts)) for frames in passes for f in frames if f.valid)


@pytest.fixture
def rfft_calls(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The rows of every ``scipy.fft.rfft`` of N-sample rows: the extractor's one FFT a pass
    (the automatic band's scorer transforms envelopes, shorter rows): the real function,
    counted."""
    calls: list[int] = []
    real: Callable[..., Any] = sfft.rfft

    def counting(x: Any, *args: Any, **kw: Any) -> Any:
        if np.shape(x)[-1] == N:
            calls.append(np.shape(x)[0])
        return real(x, *args, **kw)

    monkeypatch.setattr(sfft, "rfft", counting)
    return calls


def assert_frames_match(
    got: list[FeatureFrame], want: list[FeatureFrame], env_scale: float
) -> None:
    """Field by field: everything to the bit, but the band RMS (a BLAS product whose kernel
    depends on the number of rows) and the envelope (two rows share one complex FFT, and
    the partner of a machine's last row may be another's): float32 rounding there, of
    the pass's largest envelope line (``env_scale``, squared parts) for the envelope."""
    assert len(got) == len(want)
    for g, w in zip(got, want, strict=True):
        assert g.names == w.names and g.channels == w.channels and g.valid == w.valid
        assert g._extractor is w._extractor and g._env_plan == w._env_plan
        assert g.envelope_band_hz == w.envelope_band_hz
        assert g.envelope_band_key == w.envelope_band_key
        np.testing.assert_array_equal(g.shaft_speed_rpm, w.shaft_speed_rpm)  # NaN == NaN
        np.testing.assert_array_equal(g.spectrum, w.spectrum)
        np.testing.assert_array_equal(g.stats, w.stats)
        names = list(g.names)
        rounded = [c for c, name in enumerate(names) if name.startswith(("velocity_", "band_"))]
        rounded += [names.index(name) for name in ENV_FEATURES]
        exact = [c for c in range(len(names)) if c not in rounded]
        np.testing.assert_array_equal(g.values[:, exact], w.values[:, exact])
        np.testing.assert_allclose(g.values[:, rounded], w.values[:, rounded], rtol=2e-6)
        np.testing.assert_allclose(g.env_parts, w.env_parts, rtol=0, atol=1e-5 * env_scale)


def test_machines_at_any_speed_share_one_pass_and_get_their_own_features(
    rfft_calls: list[int],
) -> None:
    """Fixed speeds, speeds searched in different ranges, an unknown speed, different
    bearings and channel counts: one FFT, and each job's frames as its own extractor's."""
    fleet = [  # (extractor, windows)
        (machine(3, ("6205",), rpm=990.0), windows(990.0, 3, 2, seed=1)),
        (machine(3, ("6206", None), rpm=1480.0), windows(1480.0, 3, 1, seed=2)),
        (machine(2, ("6205",), rpm=1780.0), windows(1780.0, 2, 1, seed=3)),
        (
            machine(3, ("6310",), rpm=2960.0),
            windows(2960.0, 3, 1, seed=4, fault="bpfo", bearing="6310"),
        ),
        (machine(3, ("6205",), rpm_range=(1300.0, 1600.0)), windows(1450.0, 3, 2, seed=5)),
        (machine(1, ("6310",), rpm_range=(2700.0, 3200.0)), windows(2950.0, 1, 1, seed=6)),
        (machine(6, ("6205", "6206"), rpm_range=(900.0, 1100.0)), windows(1020.0, 6, 1, seed=7)),
        (machine(3, ("6205",), rpm=1480.0), windows(1480.0, 3, 1, seed=8, fault="bpfi")),
        (machine(3, ("6205",)), windows(1480.0, 3, 1, seed=9)),  # speed unknown
    ]
    # An invalid window among the searched machine's: no speed, every feature NaN.
    fleet[4][1][1, 2, 100] = np.nan
    assert len({ex.batch_key for ex, _x in fleet}) == 1
    assert len({ex.env_max_hz for ex, _x in fleet}) > 1  # envelopes of different lengths
    got = extract_many([(ex, x) for ex, x in fleet])
    rows = sum(x.shape[0] * x.shape[1] for _ex, x in fleet)
    assert rfft_calls == [-(-rows // 4) * 4]  # one FFT over every row (padded to fours)
    for (ex, x), frames in zip(fleet, got, strict=True):
        assert_frames_match(frames, ex.extract_batch(x), env_scale(got))

    speeds = [[f.shaft_speed_rpm for f in frames] for frames in got]
    assert speeds[0] == [990.0, 990.0] and speeds[1] == [1480.0]
    # The searched machines found their own speeds, each in its own range.
    for j, true_rpm in ((4, 1450.0), (5, 2950.0), (6, 1020.0)):
        ok = [s for s, f in zip(speeds[j], got[j], strict=True) if f.valid]
        assert ok and all(abs(s - true_rpm) < 0.005 * true_rpm for s in ok), (j, speeds[j])
    assert [f.valid for f in got[4]] == [True, False] and np.isnan(speeds[4][1])
    unknown = got[8][0]  # speed unknown: NaN, and every line with it
    assert np.isnan(speeds[8][0]) and unknown.valid
    assert np.all(np.isnan(unknown.values[:, [unknown.names.index(e) for e in ENV_FEATURES]]))

    def line(j: int, name: str) -> float:
        frame = got[j][0]
        return float(np.nanmax(frame.values[:, frame.names.index(name)]))

    # Each fault stays with its machine: BPFO on the 2960 r/min one, BPFI on job 7.
    assert line(3, "env_bpfo_g") > 5 * max(line(j, "env_bpfo_g") for j in (0, 1, 2, 7))
    assert line(7, "env_bpfi_g") > 5 * max(line(j, "env_bpfi_g") for j in (0, 1, 2, 3))


def test_machines_with_other_dsp_settings_run_in_passes_of_their_own(
    rfft_calls: list[int],
) -> None:
    """Another envelope band, another RMS band or another tolerance makes another pass;
    the automatic band is never shared."""
    base = machine(3, ("6205",), rpm=1480.0)
    others = [
        machine(3, ("6205",), rpm=990.0, envelope_band_hz=(1500.0, 5000.0)),
        machine(3, ("6205",), rpm_range=(1300.0, 1600.0), bands=[("high", 1000.0, 10000.0)]),
        machine(3, ("6205",), rpm=1480.0, slip_tolerance=0.05),
        machine(3, ("6205",), rpm=1480.0, envelope_band_hz="auto"),
    ]
    assert all(o.batch_key != base.batch_key for o in others) and others[3].batch_key is None
    jobs = [(ex, windows(1480.0, 3, 1, seed=s)) for s, ex in enumerate([base, *others])]
    got = extract_many(jobs)
    assert rfft_calls == [4] * 5  # each alone: 3 rows, padded to 4
    for (ex, x), frames in zip(jobs, got, strict=True):
        assert_frames_match(frames, ex.extract_batch(x), env_scale(got))
    assert got[1][0].envelope_band_hz != got[0][0].envelope_band_hz


def test_a_shared_pass_hands_out_arrays_no_later_pass_writes() -> None:
    """The frames of a shared pass keep their numbers through later passes of other windows
    (the pass writes each part's speeds and lines into slices of its own arrays, and reuses
    only scratch it hands out nothing of): the service keeps a round's frames while the
    next rounds run."""
    fleet = [
        machine(3, ("6205",), rpm=990.0),
        machine(3, ("6206",), rpm_range=(1300.0, 1600.0)),
        machine(2, ("6310",), rpm=2960.0),
    ]
    rpms = (990.0, 1450.0, 2960.0)
    first = extract_many(
        [
            (ex, windows(r, len(ex.channels), 1, seed=j))
            for j, (ex, r) in enumerate(zip(fleet, rpms, strict=True))
        ]
    )
    kept = [
        [
            (
                f.values.copy(),
                f.spectrum.copy(),
                f.env_parts.copy(),
                np.copy(f.stats),
                f.shaft_speed_rpm,
            )
            for f in frames
        ]
        for frames in first
    ]
    for seed in (10, 11):  # other windows, through the same extractors and alone
        extract_many(
            [
                (ex, windows(r, len(ex.channels), 1, seed=seed))
                for ex, r in zip(fleet, rpms, strict=True)
            ]
        )
        fleet[1].extract_batch(windows(1450.0, 3, 2, seed=seed))
    for frames, want in zip(first, kept, strict=True):
        for f, (values, spec, env, stats, rpm) in zip(frames, want, strict=True):
            np.testing.assert_array_equal(f.values, values)
            np.testing.assert_array_equal(f.spectrum, spec)
            np.testing.assert_array_equal(f.env_parts, env)
            np.testing.assert_array_equal(f.stats, stats)
            assert f.shaft_speed_rpm == rpm
