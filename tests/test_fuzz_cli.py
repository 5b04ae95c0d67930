"""The commands on hostile files, run as a user runs them: one line, exit 2, bounded memory.

Each case starts ``pdm-edge`` as a subprocess with its address space capped (RLIMIT_AS,
:data:`MEMORY_CAP`) and a time limit, and expects exit status 2 with exactly one line on
stderr, ``pdm-edge: error: …``, naming the file (and line where there is one) — never a
traceback, never a hang (``check /dev/zero`` read for ever; ``features /dev/zero`` grew to
6 GB). Then the "absurd cell" case (issue 16, item 13): a finite value no sensor gives
(1e30 g, 1e300) makes its windows invalid, alike in ``features``, ``score`` and the
service's sensor health, with no numpy warning printed.
"""

from __future__ import annotations

import gzip
import json
import math
import os
import resource
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from conftest import FIXTURES, PIPELINES, REPO

DEMO = PIPELINES / "demo.toml"
MODEL = REPO / "models" / "demo-pump"
#: Address space allowed to one command: numpy, scipy and onnxruntime map ~1 GB of it at
#: import; the old reader took 6 GB of /dev/zero.
MEMORY_CAP = 3 << 30


def _cap() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (MEMORY_CAP, MEMORY_CAP))


def pdm(*args: str | Path, cwd: Path, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONWARNINGS"}
    return subprocess.run(
        [sys.executable, "-m", "pdm.cli", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=cwd,
        env=env,
        stdin=subprocess.DEVNULL,
        preexec_fn=_cap,
    )


def one_line_error(proc: subprocess.CompletedProcess[str], *says: str) -> str:
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert len(lines) == 1 and lines[0].startswith("pdm-edge: error: "), proc.stderr[-2000:]
    for s in says:
        assert s in lines[0], lines[0]
    return lines[0]


def _healthy_rows(n: int) -> list[str]:
    with gzip.open(FIXTURES / "healthy.csv.gz", "rt") as f:
        lines = f.read().splitlines()
    return lines[: 3 + n]  # two comments, the header, n rows


@pytest.fixture(scope="module")
def hostile(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder of hostile files (made once)."""
    d = tmp_path_factory.mktemp("hostile")
    with open(d / "zeros.csv", "wb") as f:
        f.truncate(64 << 20)  # 64 MiB of NUL bytes, no line break (sparse: costs no disk)
    (d / "garbage.csv").write_bytes(np.random.default_rng(7).bytes(200_000))
    os.mkfifo(d / "fifo.csv")
    rows = _healthy_rows(20000)
    (d / "far.csv").write_text(
        "\n".join(["# start_time=9999-12-31T00:00:00Z", rows[0], *rows[2:]]) + "\n"
    )
    (d / "deep.toml").write_text("schema_version = 1\nx = " + "[" * 5000 + "]" * 5000 + "\n")
    (d / "bigint.toml").write_text("schema_version = 1\n\n[machine]\nid = " + "7" * 5000 + "\n")
    (d / "garbage.toml").write_bytes(np.random.default_rng(8).bytes(5000))
    bad_model = d / "model"
    shutil.copytree(MODEL, bad_model)
    card = json.loads((bad_model / "model.json").read_text())
    card["onnx"]["file"] = "/dev/zero"
    (bad_model / "model.json").write_text(json.dumps(card))
    nan_model = d / "nan-model"  # a danger threshold no score ever reaches
    shutil.copytree(MODEL, nan_model)
    card = json.loads((nan_model / "model.json").read_text())
    card["score"]["danger"] = math.nan
    (nan_model / "model.json").write_text(json.dumps(card))
    demo = DEMO.read_text()
    for name, path in (("nan-model.toml", nan_model), ("model-file.toml", d / "garbage.csv")):
        (d / name).write_text(demo.replace('path = "../models/demo-pump"', f'path = "{path}"'))
    return d


CASES: list[tuple[str, list[str], tuple[str, ...]]] = [
    ("features-dev-zero", ["features", "/dev/zero", "--fs", "1000"], ("/dev/zero: not a regular file",)),
    ("features-zeros", ["features", "zeros.csv", "--fs", "1000"], ("zeros.csv:1: line longer than",)),
    ("features-garbage", ["features", "garbage.csv", "--fs", "1000"], ("garbage.csv",)),
    ("features-fifo", ["features", "fifo.csv", "--fs", "1000"], ("fifo.csv: not a regular file",)),
    ("features-urandom", ["features", "/dev/urandom", "--fs", "1000"], ("not a regular file",)),
    ("features-far", ["features", "far.csv", "-p", str(DEMO)], ("far.csv:1: start_time:", "1900-2199")),
    ("score-far", ["score", "far.csv", "-p", str(DEMO)], ("far.csv:1:", "1900-2199")),
    ("replay-far", ["replay", "far.csv", "-p", str(DEMO), "--data-dir", "var"], ("far.csv:1:", "1900-2199")),
    ("score-zeros", ["score", "zeros.csv", "--model", str(MODEL)], ("zeros.csv:1: line longer than",)),
    ("score-model-dev-zero", ["score", str(FIXTURES / "healthy.csv.gz"), "-p", str(DEMO), "--model", "model"], ("onnx.file",)),
    ("replay-start-year-1", ["replay", str(FIXTURES / "healthy.csv.gz"), "-p", str(DEMO), "--data-dir", "var", "--start", "0001-01-01T00:00:00"], ("start_time", "1900-2199")),
    ("check-dev-zero", ["check", "/dev/zero"], ("/dev/zero: larger than 1,048,576 bytes",)),
    ("check-urandom", ["check", "/dev/urandom"], ("larger than",)),
    ("check-deep", ["check", "deep.toml"], ("deep.toml:2: TOML nested too deeply",)),
    ("check-bigint", ["check", "bigint.toml"], ("bigint.toml:4: TOML value not accepted",)),
    ("check-garbage", ["check", "garbage.toml"], ("garbage.toml",)),
    ("check-directory", ["check", "."], ("cannot read pipeline file",)),
    # check said "present" / "absent: teach-in learns 60 s first" and exit 0 for these:
    ("check-model-danger-nan", ["check", "nan-model.toml"], ("nan-model/model.json: thresholds alert 1 / danger nan",)),
    ("check-model-path-a-file", ["check", "model-file.toml"], ("garbage.csv: exists and is not a directory",)),
]  # fmt: skip


@pytest.mark.fuzz
@pytest.mark.parametrize(("args", "says"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_a_hostile_file_is_one_line_and_exit_2(
    hostile: Path, args: list[str], says: tuple[str, ...]
) -> None:
    one_line_error(pdm(*args, cwd=hostile), *says)


# --------------------------------------------------------------------------- absurd cells


ABSURD_ROWS = {3 * 2048 + 7000: "1e30", 8 * 2048 + 8000: "1e300"}  # data row -> x_g cell


@pytest.fixture(scope="module")
def absurd(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The healthy fixture's first 40,000 rows with x_g = 1e30 and 1e300 in two rows."""
    d = tmp_path_factory.mktemp("absurd")
    rows = _healthy_rows(40000)
    head, data = rows[:3], rows[3:]
    for i, cell in ABSURD_ROWS.items():
        data[i] = f"{cell},{data[i].split(',')[1]}"
    (d / "absurd.csv").write_text("\n".join(head + data) + "\n")
    return d


def _windows_hit(row: int, hop: int = 2048, n: int = 8192) -> set[int]:
    return {w for w in range(0, row // hop + 1) if w * hop <= row < w * hop + n}


def test_an_absurd_cell_invalidates_its_windows_in_features_and_score(absurd: Path) -> None:
    """1e30 g used to give `valid: true` with null features and nine numpy warnings from
    `features`, while `score` called the same windows invalid."""
    hit = set().union(*(_windows_hit(i) for i in ABSURD_ROWS))
    feats = pdm("features", "absurd.csv", "-p", DEMO, cwd=absurd)
    assert feats.returncode == 0, feats.stderr
    assert len(feats.stderr.strip().splitlines()) == 1, feats.stderr  # the summary, no warning
    assert f"{len(hit)} invalid" in feats.stderr
    rows = [json.loads(line) for line in feats.stdout.splitlines()]
    invalid = {r["window"] for r in rows if not r["valid"]}
    assert invalid == hit
    assert all(r["rms_g"] is None for r in rows if not r["valid"])
    assert all(r["rms_g"] is not None for r in rows if r["valid"])
    score = pdm("score", "absurd.csv", "-p", DEMO, cwd=absurd)
    assert score.returncode == 0 and "Warning" not in score.stderr, score.stderr
    scored = [json.loads(line) for line in score.stdout.splitlines()]
    assert {r["window"] for r in scored if not r["valid"]} == hit
    assert all(r["score"] is None for r in scored if not r["valid"])


@pytest.mark.parametrize("value", [1e30, 3e20, 1e7, 1e300, np.inf, np.nan])
def test_the_service_path_agrees_extraction_and_sensor_health(value: float) -> None:
    """The service's batched extraction (extract_many) and sensor health (fed the
    extraction's min/max/sum) see the same window as not a measurement; no warning."""
    import warnings

    from pdm.alarms.health import check_windows
    from pdm.config import load_pipeline
    from pdm.dsp.features import extract_many
    from pdm.dsp.windows import Windower
    from pdm.processing import build_extractor
    from pdm.sources.base import Chunk

    pl = load_pipeline(DEMO)
    fs = 25600.0
    ex = build_extractor(pl, fs)
    t = np.arange(8192 * 2) / fs
    x = 0.05 * np.sin(2 * np.pi * 160 * t) + 0.01 * np.random.default_rng(1).standard_normal(t.size)
    data = np.stack([x, x], axis=1)
    data[9000, 0] = value  # inside the second window only
    windower = Windower(8192, 8192, [1.0, 1.0])
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # any numpy warning fails the test
        wins, _ = windower.push(Chunk(data, fs, 0.0, ("x_g", "y_g")))
        (frames,) = extract_many([(ex, [w.data for w in wins])])
        stats = np.concatenate([f.stats for f in frames])
        health = check_windows(np.stack([w.data for w in wins]), fs, [16.0, 16.0], stats=stats)
    assert [f.valid for f in frames] == [True, False]
    assert np.isnan(frames[1].values).all() and np.isfinite(frames[0].values[:, :7]).all()
    assert [h.ok for h in health[0]] == [True, True]
    assert health[1][0].faults == ("nan",) and health[1][1].ok
    if np.isfinite(value) and abs(value) < 3.4e38:
        assert "beyond ±1e+06 g (not a measurement)" in health[1][0].detail
    else:
        assert "not finite" in health[1][0].detail


def test_a_big_but_physical_sample_stays_a_measurement() -> None:
    """5e5 g (a shock sensor's range) is below the limit: the window stays valid."""
    from pdm.config import load_pipeline
    from pdm.processing import build_extractor

    ex = build_extractor(load_pipeline(DEMO), 25600.0)
    x = np.zeros((2, 8192), dtype=np.float32)
    x[:, ::7] = 1.0
    x[0, 100] = 5e5
    frame: Any = ex.extract_windows([x])[0]
    assert frame.valid and np.isfinite(frame.values[:, :7]).all()


# --------------------------------------------------------------------------- output files


def test_an_html_page_replaces_a_link_and_a_directory_is_refused_before_any_work(
    tmp_path: Path,
) -> None:
    """`score --html page.html`, page.html a symbolic link: the page was written into what it
    pointed at; --html naming a directory was refused only after every window was scored."""
    target = tmp_path / "precious.txt"
    target.write_text("precious")
    (tmp_path / "page.html").symlink_to(target)
    args = ["score", FIXTURES / "healthy.csv.gz", "--model", MODEL, "-p", DEMO, "--html"]
    proc = pdm(*args, "page.html", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert target.read_text() == "precious"
    page = tmp_path / "page.html"
    assert not page.is_symlink() and page.read_text().startswith("<!DOCTYPE html>")
    (tmp_path / "adir.html").mkdir()
    proc = pdm(*args, "adir.html", cwd=tmp_path)
    one_line_error(proc, "--html adir.html: is a directory")
    assert proc.stdout == ""  # refused before the first window was scored


@pytest.mark.parametrize(
    ("out", "says"),
    [
        ("stuff", "a directory of other things (no model.json); refusing to replace it"),
        ("notes.txt", "exists and is not a directory"),
        (".", "a directory of other things"),
    ],
    ids=["directory-of-things", "file", "cwd"],
)
def test_train_force_never_replaces_what_is_not_a_model(
    tmp_path: Path, out: str, says: str
) -> None:
    """`train --out DIR --force` moved DIR aside and deleted it, whatever it held."""
    (tmp_path / "stuff").mkdir()
    (tmp_path / "stuff" / "thesis.tex").write_text("years of work")
    (tmp_path / "notes.txt").write_text("notes")
    proc = pdm(
        "train", FIXTURES / "healthy.csv.gz", "-p", DEMO, "--out", out, "--force", cwd=tmp_path
    )
    one_line_error(proc, says)
    assert (tmp_path / "stuff" / "thesis.tex").read_text() == "years of work"
    assert (tmp_path / "notes.txt").read_text() == "notes"


@pytest.mark.parametrize(
    "text",
    ["[]", '{"mark_ns": "1767225601840000000"}', '{"mark_ns": true, "alarm": null}', "[" * 100_000],
    ids=["a-list", "mark-a-string", "mark-a-bool", "deep"],
)
def test_a_damaged_replay_checkpoint_starts_the_file_over(tmp_path: Path, text: str) -> None:
    """A replay checkpoint that is not what replay writes was an AttributeError or TypeError
    traceback on the next replay of the same file."""
    args = ["replay", FIXTURES / "healthy.csv.gz", "-p", DEMO, "--data-dir", "var"]
    first = pdm(*args, cwd=tmp_path)
    assert first.returncode == 0, first.stderr[-2000:]
    (ckpt,) = (tmp_path / "var" / "replay").glob("*.json")
    ckpt.write_text(text)
    again = pdm(*args, cwd=tmp_path)
    assert again.returncode == 0, again.stderr[-2000:]
    assert json.loads(ckpt.read_text())["complete"] is True  # replayed whole, saved anew


@pytest.mark.parametrize(
    ("files", "says"),
    [
        ([], "de12k: the CWRU evaluation needs normal_*.csv, IR007_0hp.csv"),
        (["de12k/normal_0hp.csv"], "de12k: the CWRU evaluation needs IR007_0hp.csv, OR007at6"),
    ],
    ids=["empty-de12k", "normal-only"],
)
def test_evaluate_on_an_incomplete_dataset_is_one_line_before_any_work(
    tmp_path: Path, files: list[str], says: str
) -> None:
    """An empty de12k/ was a StopIteration traceback; one with the normal recording only
    trained a model before 'IR007_0hp.csv: cannot read'."""
    (tmp_path / "ds" / "de12k").mkdir(parents=True)
    for name in files:
        (tmp_path / "ds" / name).write_text("DE_g,FE_g\n0.0,0.0\n")
    one_line_error(pdm("evaluate", "--dataset", "ds", cwd=tmp_path), says)
