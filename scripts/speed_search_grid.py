"""Issue 18, as a measurement: the per-window speed found on simulated machines over a wide
seeded grid, in bins of the 3rd harmonic (within 0.5: every order and defect line read from
it falls in its own bin).

    .venv/bin/python scripts/speed_search_grid.py [CONFIGS]                   # this checkout
    git worktree add --detach /tmp/pdm-old 80959fc
    PYTHONPATH=/tmp/pdm-old .venv/bin/python scripts/speed_search_grid.py     # an older one

CONFIGS (default 600) seeded draws of: rate 10-100 kHz, window 4096-32768, speed 600-6000
r/min, 1-3 channels, unbalance, misalignment or looseness 0.05-0.5 g (half with a bearing
fault ringing a resonance at 0.15-0.4 fs), noise 0.01-0.1 g, the nominal speed up to 4 % off
and searched within ±5 % of it; three windows each. Printed: the share within half a bin,
over all windows and over those holding at least four revolutions. With ``-v`` each window
beyond half a bin.
"""

import sys

import numpy as np

from pdm.dsp.bearings import lookup_bearing
from pdm.dsp.features import ChannelSpec, FeatureExtractor
from pdm.sources.simulator import FaultSpec, SimSpec, simulate

N_CFG = int(sys.argv[1]) if len(sys.argv) > 1 and sys.argv[1] != "-v" else 600
rng = np.random.default_rng(18)
errs = []
revs = []
for i in range(N_CFG):
    fs = float(rng.choice([10000.0, 12000.0, 20000.0, 25600.0, 48000.0, 51200.0, 100000.0]))
    n = int(rng.choice([4096, 8192, 16384, 32768]))
    rpm = float(rng.uniform(600, 6000))
    kind = str(rng.choice(["unbalance", "misalignment", "looseness"]))
    amp = float(rng.uniform(0.05, 0.5))
    noise = float(rng.uniform(0.01, 0.1))
    faults = [FaultSpec(kind, amp)]
    if rng.random() < 0.5:
        faults.append(
            FaultSpec(str(rng.choice(["bpfo", "bpfi", "bsf"])), float(rng.uniform(0.2, 2.0)))
        )
    nch = int(rng.integers(1, 4))
    res = float(rng.uniform(0.15, 0.4)) * fs
    spec = SimSpec(
        fs=fs,
        duration_s=3 * n / fs,
        rpm=rpm,
        channels=tuple(f"c{c}" for c in range(nch)),
        noise_rms_g=noise,
        resonance_hz=res,
        faults=tuple(faults),
        seed=i,
    )
    x = simulate(spec).T.astype(np.float32)
    nominal = rpm * (1 + rng.uniform(-0.04, 0.04))
    fx = FeatureExtractor(
        fs,
        n,
        [ChannelSpec(f"c{c}", lookup_bearing("6205")) for c in range(nch)],
        rpm_range=(0.95 * nominal, 1.05 * nominal),
        envelope_band_hz=(0.1 * fs, 0.3 * fs),
    )
    wins = np.stack([x[:, k * n : (k + 1) * n] for k in range(3)])
    for f in fx.extract_batch(wins):
        e = (f.shaft_speed_rpm - rpm) / 60 / (fs / n / 3)  # in bins of the 3rd harmonic
        errs.append(e)
        revs.append(rpm / 60 * n / fs)
        if abs(e) > 0.5 and "-v" in sys.argv:
            print(
                f"cfg {i}: fs={fs} n={n} rpm={rpm:.1f} nom={nominal:.1f} {kind} amp={amp:.2f} noise={noise:.3f} faults={[x.kind for x in faults]} nch={nch} got={f.shaft_speed_rpm:.1f} err3x={e:+.2f}"
            )
errs = np.abs(np.array(errs))
revs = np.array(revs)
ok4 = revs >= 4
print(
    f"windows >=4 revolutions {ok4.sum()}: within half a 3x bin {np.mean(errs[ok4] <= 0.5):.4f}, p99 {np.quantile(errs[ok4], 0.99):.3f}, max {errs[ok4].max():.2f}"
)
print(
    f"windows {len(errs)}: within half a 3x bin {np.mean(errs <= 0.5):.4f}, median {np.median(errs):.3f}, p99 {np.quantile(errs, 0.99):.3f}, max {errs.max():.2f} bins of 3x"
)
