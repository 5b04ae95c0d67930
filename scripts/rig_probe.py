"""Issue 18's "recordings we do not have", probed with a generator of its own.

    .venv/bin/python scripts/rig_probe.py [--rigs cwru,mfpt,...] [--seeds 2] [--keep DIR]

The generator here is **deliberately independent of pdm's simulator** (``pdm.sim`` and
``pdm-edge simulate``): nothing is imported from ``pdm``, the bearing kinematics are written
out again below, and the signal model differs on purpose where the simulator's assumptions
could be the ones the diagnosis shares. Every recording is then judged only through the
``pdm-edge`` commands the product owner runs (``diagnose --json`` with the quick flags;
``train`` on a rig's healthy snapshots and ``score`` on withheld healthy and fault snapshots),
and counted against issue 18's targets. Nothing here chooses a threshold.

The signal (per channel, in g):

* **impacts** at the defect rate with slip (the mean rate 0.5–2 % below kinematics) and a
  cumulative period jitter (1 % of a period; 2.5 % for "distributed" damage), amplitudes
  random ± 30 %, and for distributed/weak damage impacts missed at random (30 %);
* **several resonances** (2–3 modes a rig, each impact exciting them with random weights)
  and a transmission path per channel;
* **load zone**: an inner-race defect turns with the shaft through the load zone
  (Stribeck's load distribution, ε = 0.5, exponent 1.5 for balls and 1.1 for rollers), a
  rolling element's defect with the cage; an outer-race defect sits where it is — inside
  the load zone (no modulation) or, on one rig, just outside it (weak impacts, no modulation);
* a **ball** defect strikes both races: impacts at 2 × BSF, the inner-race strike weaker;
* a **cage** defect: weak impacts at FTF and the 1× amplitude modulated at FTF;
* the machine: 1× (from strong to almost absent across rigs, ± 15 % between a rig's
  recordings) and 2×, an electrical 2 × line tone and
  its pull modulating the structure's noise, a gear mesh with ± 1× sidebands, a DC offset
  (a MEMS axis reads 1 g), white and low-frequency noise, and ADC quantisation (12 or 16 bits);
* non-round sample rates (48828, 97656, 25600, 64000, 20000, 50000, 12000 Hz), snapshots of
  1–1.3 s (IMS, XJTU) and longer files.

Rigs (analogues of the public ones; the geometry is the public one, the rest invented):
CWRU drive end (6205, 12 and 48 kHz, loads 0–3 hp = 1797–1730 r/min) and fan end (6203);
MFPT (NICE bearing, 25 Hz, healthy at 97656 Hz, faults at 48828 Hz, outer race under loads);
IMS (Rexnord ZA-2115, 2000 r/min, 20 kHz, 1 s snapshots, two channels); Paderborn (6203 at
1500 and 900 r/min, 64 kHz, weak less periodic pitting); XJTU-SY (LDK UER204, 2100–2400
r/min, 25.6 kHz, horizontal + vertical, 1.28 s); JNU (a cylindrical roller bearing, 600–1000
r/min, 50 kHz); and a healthy gearbox-motor rig (only healthy running).
"""

from __future__ import annotations

import argparse
import collections
import json
import math
import re
import shutil
import subprocess
import sys
import tempfile
import zlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import diagnosis_outside as outside  # scripts/: the targets as the project counts them
import numpy as np

ROOT = Path(__file__).resolve().parent.parent
PDM = [sys.executable, "-m", "pdm.cli"]
G = 9.80665


# --------------------------------------------------------------------------- kinematics


def defect_orders(n: int, d: float, pitch: float, angle_deg: float) -> dict[str, float]:
    """Defect frequencies as multiples of the shaft rate (pure rolling, outer race fixed)."""
    r = d / pitch * math.cos(math.radians(angle_deg))
    return {"bpfo": n / 2 * (1 - r), "bpfi": n / 2 * (1 + r),
            "bsf": pitch / (2 * d) * (1 - r * r), "ftf": (1 - r) / 2}  # fmt: skip


def load_zone(theta: np.ndarray, exponent: float, eps: float = 0.5) -> np.ndarray:
    """Stribeck's load distribution around the race, 1 at the load's centre (θ = 0)."""
    q = 1 - (1 - np.cos(theta)) / (2 * eps)
    return np.where(q > 0, np.clip(q, 0, None) ** exponent, 0.0)


# --------------------------------------------------------------------------- the signal


@dataclass(frozen=True)
class Rig:
    name: str
    geometry: tuple[int, float, float, float]  # N, d mm, pitch mm, angle °
    fs: float
    rpms: tuple[float, ...]  # running speeds (loads) of its recordings
    modes: tuple[tuple[float, float, float], ...]  # (Hz, damping ratio, gain)
    noise: float  # white noise rms, g
    duration: float  # s
    severities: tuple[float, ...]  # impact peak / noise rms
    faults: tuple[str, ...] = ("bpfo", "bpfi", "bsf")
    channels: tuple[float, ...] = (1.0,)  # each channel's path gain
    fault_fs: float = 0.0  # faults recorded at another rate (MFPT)
    roller: bool = False
    one_x_g: float = 0.02  # 1× amplitude, g (0-peak)
    line_hz: float = 0.0  # mains, for the 2 × line pull
    gear_teeth: int = 0
    dc_g: float = 0.0
    bits: int = 16
    full_scale_g: float = 50.0
    distributed: bool = False  # weak, less periodic damage
    outer_outside_zone: bool = False
    flag: str = "nominal"  # how the user gives the speed: nominal | rpm
    snapshots: int = 3  # healthy snapshots to train on (each ``duration``, at every speed)
    train_flags: tuple[str, ...] = ()  # the window a user would give ``train`` and ``score``
    what: str = ""


def impacts(
    rng: np.random.Generator, dur: float, rate: float, jitter: float, miss: float
) -> np.ndarray:
    """Impact times: cumulative jittered periods at ``rate`` Hz, a fraction ``miss`` dropped."""
    n = int(dur * rate * 1.2) + 4
    periods = (1 / rate) * (1 + jitter * rng.standard_normal(n))
    t = rng.uniform(0, 1 / rate) + np.concatenate(
        [[0.0], np.cumsum(np.clip(periods, 0.2 / rate, None))]
    )
    t = t[t < dur]
    return t[rng.random(t.size) >= miss]


def ringing(fs: float, modes: Sequence[tuple[float, float, float]]) -> np.ndarray:
    """(modes, L) impulse responses, each a damped sine of unit peak."""
    L = int(fs * max(6 / (2 * math.pi * z * f) for f, z, _g in modes)) + 1
    t = np.arange(L) / fs
    return np.array(
        [g * np.exp(-z * 2 * math.pi * f * t) * np.sin(2 * math.pi * f * math.sqrt(1 - z * z) * t)
         for f, z, g in modes]
    )  # fmt: skip


def convolve(a: np.ndarray, k: np.ndarray, n: int) -> np.ndarray:
    m = 1 << math.ceil(math.log2(n + k.size))
    return np.fft.irfft(np.fft.rfft(a, m) * np.fft.rfft(k, m), m)[:n]


def recording(
    rig: Rig, kind: str, severity: float, seed: int, rpm: float, fs: float, dur: float
) -> np.ndarray:
    """(n, channels) acceleration in g, quantised, with its DC offset."""
    rng = np.random.default_rng(seed)
    n = round(fs * dur)
    t = np.arange(n) / fs
    fr = rpm / 60 * (1 + 0.002 * np.sin(2 * math.pi * 0.3 * t + rng.uniform(0, 6.3)))  # drift
    phase = 2 * math.pi * np.cumsum(fr) / fs
    o = defect_orders(*rig.geometry)
    frm = rpm / 60
    exponent = 1.1 if rig.roller else 1.5
    out = np.zeros((n, len(rig.channels)))
    bank = ringing(fs, rig.modes)
    shaft = np.zeros(n)
    # 1×: from strong to almost absent across rigs (the rig's own level, fixed by its name),
    # ± 15 % between its recordings (a machine's balance does not change between snapshots)
    level = 0.05 + 0.95 * np.random.default_rng(zlib.crc32(rig.name.encode())).random()
    one_x = rig.one_x_g * level * rng.uniform(0.85, 1.15)
    shaft += one_x * np.sin(phase + rng.uniform(0, 6.3))
    shaft += 0.35 * one_x * np.sin(2 * phase + rng.uniform(0, 6.3))
    struct_noise = rig.noise * 0.5 * rng.standard_normal(n)  # the structure's own noise band
    if rig.line_hz:
        f2 = 2 * rig.line_hz
        shaft += 0.3 * rig.noise * np.sin(2 * math.pi * f2 * t)
        struct_noise *= 1 + 0.4 * np.cos(2 * math.pi * f2 * t)
    if rig.gear_teeth:
        mesh = rig.gear_teeth * phase
        shaft += 0.5 * rig.noise * np.sin(mesh) * (1 + 0.3 * np.cos(phase))
        shaft += 0.2 * rig.noise * np.sin(2 * mesh + 1.0)
    train = np.zeros((len(rig.modes), n))
    if kind != "healthy":
        slip = rng.uniform(0.005, 0.02)
        jitter = 0.025 if rig.distributed else 0.01
        miss = 0.3 if rig.distributed else 0.0
        rate = {"bpfo": o["bpfo"], "bpfi": o["bpfi"], "bsf": 2 * o["bsf"], "ftf": o["ftf"]}[kind]
        # slip slows the cage: BPFO, BSF and FTF fall by it, BPFI = N·(fr − FTF) rises
        rate *= frm * (1 + slip * o["bpfo"] / o["bpfi"] if kind == "bpfi" else 1 - slip)
        times = impacts(rng, dur, rate, jitter, miss)
        amp = severity * rig.noise * (1 + rng.uniform(-0.3, 0.3, times.size))
        idx = np.minimum((times * fs).astype(int), n - 1)
        if kind == "bpfi":  # the defect turns with the shaft through the load zone
            amp *= 0.1 + 0.9 * load_zone(phase[idx] + rng.uniform(0, 6.3), exponent)
        elif kind == "bsf":  # the element turns with the cage; both races struck in turn
            cage = 2 * math.pi * o["ftf"] * frm * times + rng.uniform(0, 6.3)
            amp *= 0.15 + 0.85 * load_zone(cage, exponent)
            amp *= np.where(np.arange(times.size) % 2 == 0, 1.0, 0.55)
        elif kind == "bpfo" and rig.outer_outside_zone:
            amp *= 0.5
        elif kind == "ftf":
            amp *= 0.5
            shaft *= 1 + 0.3 * np.cos(2 * math.pi * o["ftf"] * frm * t)
        w = rng.uniform(0.7, 1.3, (len(rig.modes), times.size))
        for m in range(len(rig.modes)):
            np.add.at(train[m], idx, amp * w[m])
    resp = sum(convolve(train[m], bank[m], n) for m in range(len(rig.modes)))
    noise_ring = convolve(struct_noise, bank.sum(axis=0) / max(bank.shape[1], 1) ** 0.5, n)
    noise_ring *= rig.noise * 0.5 / max(float(np.std(noise_ring)), 1e-12)
    low = np.cumsum(rng.standard_normal(n)) / math.sqrt(fs)  # a random walk: 1/f² below ~1 Hz
    low -= np.linspace(low[0], low[-1], n)
    for c, gain in enumerate(rig.channels):
        path = gain * np.asarray(resp) + noise_ring
        out[:, c] = path + shaft * (1 if c == 0 else 0.7) + rig.noise * rng.standard_normal(n)
        out[:, c] += rig.dc_g + 0.02 * low
    lsb = 2 * rig.full_scale_g / 2**rig.bits
    return np.clip(np.round(out / lsb) * lsb, -rig.full_scale_g, rig.full_scale_g - lsb)


def write_csv(path: Path, x: np.ndarray) -> Path:
    names = ["horizontal", "vertical", "axial"][: x.shape[1]] if x.shape[1] > 1 else ["acc"]
    body = "\n".join(",".join(f"{v:.6g}" for v in row) for row in x)
    path.write_text(",".join(names) + "\n" + body + "\n")
    return path


# --------------------------------------------------------------------------- the rigs

CWRU_DE = (9, 7.94, 39.04, 0.0)
CWRU_FE = (9, 6.746, 28.50, 0.0)
NICE = (8, 0.235 * 25.4, 1.245 * 25.4, 0.0)
ZA2115 = (16, 0.331 * 25.4, 2.815 * 25.4, 15.17)
B6203 = (8, 6.746, 28.50, 0.0)
UER204 = (8, 7.92, 34.55, 0.0)
JNU_NU = (13, 7.5, 38.5, 0.0)

RIGS = (
    Rig("cwru12", CWRU_DE, 12000, (1797, 1772, 1750, 1730), ((3100, 0.05, 1), (4300, 0.04, 0.6)),
        0.04, 5, (6, 15), faults=("bpfo", "bpfi", "bsf"), line_hz=60, bits=16,
        train_flags=("--window", "4096", "--overlap", "0.9375"), what="CWRU drive end 6205, 12 kHz, 0–3 hp, nominal 1797"),
    Rig("cwru48", CWRU_DE, 48000, (1797, 1730), ((3100, 0.05, 1), (12500, 0.03, 0.8),
        (17000, 0.03, 0.5)), 0.04, 3, (6, 15), line_hz=60, faults=("bpfo", "bpfi", "bsf", "ftf"),
        train_flags=("--window", "16384", "--overlap", "0.9375"), what="CWRU drive end 6205, 48 kHz"),
    Rig("cwruFE", CWRU_FE, 12000, (1797, 1750), ((2600, 0.05, 1), (3900, 0.04, 0.7)), 0.03, 5,
        (6, 15), line_hz=60, train_flags=("--window", "4096", "--overlap", "0.9375"), what="CWRU fan end 6203, 12 kHz"),
    Rig("mfpt", NICE, 97656, (1500, 1500, 1500), ((3200, 0.04, 1), (7800, 0.03, 0.7),
        (14500, 0.03, 0.5)), 0.05, 3, (4, 8, 16), fault_fs=48828, flag="rpm", dc_g=0.0,
        what="MFPT NICE, 25 Hz, healthy 97656 Hz / faults 48828 Hz, loads as severities"),
    Rig("ims", ZA2115, 20000, (2000,), ((3400, 0.04, 1), (7200, 0.03, 0.6)), 0.06, 1.0, (5, 12),
        channels=(1.0, 0.6), flag="rpm", snapshots=30, bits=12, train_flags=("--overlap", "0.9"), full_scale_g=10,
        what="IMS ZA-2115, 2000 r/min, 20 kHz, 1 s snapshots, 2 channels, 12 bits"),
    Rig("pu1500", B6203, 64000, (1500,), ((4500, 0.05, 1), (11000, 0.04, 0.8), (23000, 0.03, 0.4)),
        0.05, 4, (3, 6), distributed=True, line_hz=50, dc_g=1.0, bits=16, full_scale_g=16,
        what="Paderborn-like 6203, 1500 r/min, 64 kHz, weak distributed pitting, MEMS 1 g"),
    Rig("pu900", B6203, 64000, (900,), ((4500, 0.05, 1), (11000, 0.04, 0.8)), 0.05, 4, (3, 6),
        distributed=True, line_hz=50, outer_outside_zone=True,
        what="Paderborn-like 6203, 900 r/min, 64 kHz, outer race outside the load zone"),
    Rig("xjtu", UER204, 25600, (2100, 2250, 2400), ((3000, 0.04, 1), (9000, 0.03, 0.7)), 0.05,
        1.28, (5, 12), channels=(1.0, 0.5), snapshots=12, one_x_g=0.15, train_flags=("--overlap", "0.9"),
        what="XJTU-SY UER204, 2100–2400 r/min, 25.6 kHz, 1.28 s, horizontal + vertical"),
    Rig("jnu", JNU_NU, 50000, (600, 800, 1000), ((3800, 0.05, 1), (8500, 0.04, 0.6)), 0.03, 4,
        (5, 12), roller=True, gear_teeth=23, what="JNU-like roller bearing, 600–1000 r/min, 50 kHz, gear mesh"),
    Rig("other", (9, 12.7, 65.0, 0.0), 50000, (1485,), ((2900, 0.05, 1), (6100, 0.04, 0.8)), 0.03,
        2, (), faults=(), line_hz=50, gear_teeth=31, one_x_g=0.08, dc_g=1.0, bits=12,
        full_scale_g=16, snapshots=4, what="healthy gearbox-motor, 50 kHz, 12 bits, MEMS"),
)  # fmt: skip


# --------------------------------------------------------------------------- commands


class CommandFailed(RuntimeError):
    pass


def pdm_edge(*args: str) -> subprocess.CompletedProcess[str]:
    p = subprocess.run([*PDM, *args], cwd=ROOT, capture_output=True, text=True, check=False)
    if p.returncode != 0:
        raise CommandFailed(
            f"pdm-edge {' '.join(args[:12])} … → exit {p.returncode}: {p.stderr.strip()[-2000:]}"
        )
    return p


@dataclass
class Rec:
    rig: str
    name: str
    truth: str
    path: Path
    rpm: float
    fs: float
    withheld: bool = True
    diag: tuple[str, float, float] = ("", 0.0, 0.0)
    score: tuple[str, int, int] | None = None
    notes: list[str] = field(default_factory=list)


def condition(rig: Rig, rpm: float) -> float:
    """The nominal speed a user states for a recording at ``rpm``: the rig's top speed
    where every load is within the ± 5 % ``--nominal-rpm`` searches (CWRU's 0–3 hp), else
    the recording's own speed condition (XJTU's 2100/2250/2400, JNU's 600–1000)."""
    top = max(rig.rpms)
    return top if min(rig.rpms) >= 0.95 * top else rpm


def quick_flags(rig: Rig, rpm: float, fs: float) -> list[str]:
    geom = ",".join(f"{v:g}" for v in rig.geometry)
    speed = (
        ["--rpm", f"{rpm:g}"]
        if rig.flag == "rpm"
        else ["--nominal-rpm", f"{condition(rig, rpm):g}"]
    )
    return ["--fs", f"{fs:g}", *speed, "--bearing-geometry", geom]


def diagnose_all(recs: Sequence[Rec], flags: Sequence[str]) -> None:
    p = pdm_edge("diagnose", "--json", *flags, *(str(r.path) for r in recs))
    rows = [json.loads(x) for x in p.stdout.splitlines() if x.strip()]
    by_file: dict[str, list[dict]] = collections.defaultdict(list)
    for row in rows:
        by_file[row["file"]].append(row)
    for r in recs:
        got = by_file.get(str(r.path)) or by_file.get(r.path.name) or []
        if not got:
            r.notes.append("no diagnose row")
            continue
        deciding = next((x for x in got if x["channel"] == got[0].get("machine_channel")), got[0])
        r.diag = (
            got[0]["machine_diagnosis"],
            got[0]["machine_confidence"],
            deciding["shaft_speed_rpm"],
        )
        for x in got:
            for line in x.get("evidence", []):
                if "nan" in line.lower() or "inf " in line.lower():
                    r.notes.append(f"evidence: {line}")


def score_all(model: Path, recs: Sequence[Rec], flags: Sequence[str]) -> None:
    pat = re.compile(
        r"^(?P<file>.+): diagnosis (?P<diag>\S+) .*; (?P<alert>\d+)/(?P<n>\d+) windows alerting"
    )
    p = pdm_edge("score", "-m", str(model), *flags, *(str(r.path) for r in recs))
    got = [m for m in map(pat.match, p.stderr.splitlines()) if m]
    if len(got) != len(recs):
        raise CommandFailed(f"score printed {len(got)} summaries for {len(recs)} files")
    for r, m in zip(recs, got, strict=True):
        r.score = (m["diag"], int(m["alert"]), int(m["n"]))


def run_rig(rig: Rig, tmp: Path, seeds: int) -> list[Rec]:
    d = tmp / rig.name
    d.mkdir()
    ffs = rig.fault_fs or rig.fs  # MFPT: the user resamples the baseline to the faults' rate
    recs: list[Rec] = []
    conditions = sorted({condition(rig, r) for r in rig.rpms})
    train: dict[float, list[Path]] = collections.defaultdict(list)
    for cond in conditions:
        speeds = [r for r in rig.rpms if condition(rig, r) == cond]
        for i in range(rig.snapshots):
            rpm = speeds[i % len(speeds)] if len(speeds) > 1 else cond
            x = recording(rig, "healthy", 0, 1000 + i + int(cond), rpm, ffs, rig.duration)
            train[cond].append(write_csv(d / f"train{cond:g}_{i}.csv", x))
    for i in range(2 * seeds):
        rpm = rig.rpms[i % len(rig.rpms)]
        x = recording(rig, "healthy", 0, 2000 + i, rpm, rig.fs, rig.duration)
        recs.append(
            Rec(
                rig.name,
                f"healthy {i} @{rpm:g}",
                "healthy",
                write_csv(d / f"h{i}.csv", x),
                rpm,
                rig.fs,
            )
        )
        if rig.fault_fs:  # withheld healthy at the faults' rate too, for score
            x = recording(rig, "healthy", 0, 2500 + i, rpm, ffs, rig.duration)
            recs.append(Rec(rig.name, f"healthy {i} @{rpm:g} {ffs:g} Hz", "healthy",
                            write_csv(d / f"hf{i}.csv", x), rpm, ffs))  # fmt: skip
    for kind in rig.faults:
        for j, sev in enumerate(rig.severities):
            for s in range(seeds):
                rpm = rig.rpms[(s + j) % len(rig.rpms)]
                x = recording(
                    rig, kind, sev, 3000 + 100 * s + int(10 * sev), rpm, ffs, rig.duration
                )
                path = write_csv(d / f"{kind}_{sev:g}_{s}.csv", x)
                recs.append(Rec(rig.name, f"{kind} ×{sev:g} s{s} @{rpm:g}", kind, path, rpm, ffs))
    groups: dict[tuple[str, ...], list[Rec]] = collections.defaultdict(list)
    for r in recs:
        groups[tuple(quick_flags(rig, r.rpm, r.fs))].append(r)
    for flags, grp in groups.items():
        try:
            diagnose_all(grp, flags)
        except CommandFailed as e:
            for r in grp:
                r.notes.append(str(e)[-300:])
    # train per speed condition on its healthy snapshots; score what was recorded at its rate
    for cond in conditions:
        model = d / f"model{cond:g}"
        try:
            pdm_edge("train", *quick_flags(rig, cond, ffs), *rig.train_flags, "-o", str(model),
                     *map(str, train[cond]))  # fmt: skip
        except CommandFailed as e:
            for r in recs:
                if condition(rig, r.rpm) == cond:
                    r.notes.append(str(e)[-300:])
            continue
        sgroups: dict[tuple[str, ...], list[Rec]] = collections.defaultdict(list)
        for r in recs:
            if condition(rig, r.rpm) == cond and r.fs == ffs:
                sgroups[("--rpm", f"{r.rpm:g}") if rig.flag == "rpm" else ()].append(r)
        for f, grp in sgroups.items():
            try:
                score_all(model, grp, f)
            except CommandFailed as e:
                for r in grp:
                    r.notes.append(str(e)[-300:])
    return recs


# --------------------------------------------------------------------------- counts


def as_rows(recs: Sequence[Rec]) -> list[outside.Row]:
    """The recordings as ``scripts/diagnosis_outside.py``'s rows, to count them as it does."""
    rows = []
    for r in recs:
        row = outside.Row(r.rig, r.name, r.truth)
        if r.diag[0]:
            row.diagnose["quick"] = r.diag
        if r.score:
            row.score["model"] = (r.score[0], 0.0, 0.0, r.score[1], r.score[2])
        rows.append(row)
    return rows


def short(label: str) -> str:
    return label.replace("bearing_", "").replace("_race", "")


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    ap.add_argument("--rigs", default=",".join(r.name for r in RIGS))
    ap.add_argument("--seeds", type=int, default=1, help="recordings per (fault, severity)")
    ap.add_argument("--keep", type=Path)
    args = ap.parse_args(argv)
    want = args.rigs.split(",")
    tmp = Path(tempfile.mkdtemp(prefix="pdm-rigprobe-", dir=args.keep))
    print("| rig | what |\n|---|---|")
    for rig in RIGS:
        if rig.name in want:
            print(f"| {rig.name} | {rig.what} |")
    print("\n| rig | recording | truth | diagnose | score | notes |\n|---|---|---|---|---|---|")
    allrecs: list[Rec] = []
    for rig in (g for g in RIGS if g.name in want):
        recs = run_rig(rig, tmp, args.seeds)
        allrecs += recs
        for r in recs:
            sc = f"{short(r.score[0])}, {r.score[1]}/{r.score[2]}" if r.score else ""
            print(f"| {r.rig} | {r.name} | {r.truth} | {short(r.diag[0])} {r.diag[1]:.2f}, "
                  f"{r.diag[2]:.0f} r/min | {sc} | {'; '.join(r.notes)} |", flush=True)  # fmt: skip
    outside.print_tally("Against issue 18's targets (diagnose and score of every recording)",
                        as_rows(allrecs))  # fmt: skip
    if not args.keep:
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
