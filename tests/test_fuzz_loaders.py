"""Fuzzing the file loaders: CSV recordings, pipeline TOML, model cards (``model.json``).

Every input is hostile until checked. Hypothesis builds inputs that are *almost* right
(a real pipeline or card with one value replaced, a CSV with a bad cell, a far date, a
stray byte) as well as plain garbage, and each loader must either accept the input or
raise the project's own one-line error (:class:`pdm.errors.PdmError`): never another
exception, never memory beyond a bound (tracemalloc, per example).

The budget is the ``fuzz`` profile of tests/conftest.py: short by default, long with
``PDM_FUZZ_PROFILE=long`` (see the README). The deterministic cases below (unmarked)
are the findings that the fuzzing and the issue's repros turned up, kept as regressions.
"""

from __future__ import annotations

import gzip
import json
import math
import os
import shutil
import tracemalloc
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from conftest import FIXTURES, PIPELINES, REPO, fuzz_settings
from hypothesis import given
from hypothesis import strategies as st

from pdm.config import check_pipeline, load_pipeline, pipeline_from_flags
from pdm.errors import ConfigError, InputError, ModelError, PdmError
from pdm.scoring.card import pipeline_from_card, read_card
from pdm.scoring.runtime import Model
from pdm.sources.csv import MAX_CHANNELS, TIME_RANGE_S, CsvRecording

DEMO_TOML = PIPELINES / "demo.toml"
DEMO_MODEL = REPO / "models" / "demo-pump"
#: Peak Python heap allowed while one small input is loaded. The inputs are a few kB:
#: anything near this is memory growing with something other than the input.
HEAP_LIMIT = 64 << 20


def bounded(fn: Callable[[], Any], limit: int = HEAP_LIMIT) -> Any:
    """Run ``fn`` under tracemalloc; fail when its peak heap exceeds ``limit``. Only a
    :class:`PdmError` may come out of it (anything else, a warning included, fails the
    test, and Hypothesis shrinks the input that raised it)."""
    tracemalloc.start()
    try:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("error")  # a numpy warning is a finding too
                return fn()
        except PdmError as exc:
            msg = str(exc)
            assert msg and "\n" not in msg, f"not one line: {msg!r}"
            return exc
        finally:
            peak = tracemalloc.get_traced_memory()[1]
            assert peak < limit, f"peak heap {peak / 2**20:.1f} MiB for a small input"
    finally:
        tracemalloc.stop()


# --------------------------------------------------------------------------- CSV recordings

_WEIRD_CELLS = [
    "", " ", "nan", "NaN", "inf", "-inf", "1e999", "-0", "0,5", "1_000", "0x10", "1e30",
    "-1e30", "3.4e39", "1e308", "\x00", "é", "\ufeff1", '"1"', "1;2", "+", ".", "e5",
    "9" * 400, "2026-01-01T00:00:00Z", "9999-12-31T23:59:59Z", "1900-01-01T00:00:00",
    "2262-04-11T23:47:16.854775807Z", "0001-01-01T00:00:00Z", "2026-02-30T00:00:00",
]  # fmt: skip
_cells = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True, width=64).map(repr),
    st.integers(-(10**30), 10**30).map(str),
    st.sampled_from(_WEIRD_CELLS),
    st.text(max_size=6),
)
_names = st.one_of(
    st.sampled_from(["time", "t", "timestamp", "x_g", "y_g", "a", "b", "Zeit", "", "x"]),
    st.text(min_size=0, max_size=5),
)


@st.composite
def csv_bytes(draw: st.DrawFn) -> bytes:
    """Text shaped like a recording (comments, header, rows) with hostile parts, or bytes."""
    if draw(st.integers(0, 9)) == 0:
        return draw(st.binary(max_size=3000))
    delim = draw(st.sampled_from([",", ";", "\t"]))
    eol = draw(st.sampled_from(["\n", "\r\n", "\r"]))
    lines: list[str] = []
    for _ in range(draw(st.integers(0, 3))):
        key = draw(st.sampled_from(["sample_rate_hz", "start_time", "note", "fs"]))
        value = draw(st.one_of(_cells, st.sampled_from(["25600", "1000 Hz", "2026-01-01"])))
        lines.append(f"# {key}={value}")
    header = draw(st.lists(_names, min_size=1, max_size=5))
    lines.append(delim.join(header))
    n_fields = len(header)
    clean = draw(st.booleans())
    for i in range(draw(st.integers(0, 40))):
        if clean and draw(st.integers(0, 5)):
            # mostly well-formed numeric rows, a time column stepping regularly
            row = [repr(i * 0.001 + 1e-4 * k) for k in range(n_fields)]
        else:
            row = draw(st.lists(_cells, min_size=0, max_size=n_fields + 2))
        lines.append(delim.join(row))
    text = eol.join(lines) + draw(st.sampled_from(["", eol, eol * 3]))
    encoding = draw(st.sampled_from(["utf-8", "utf-8-sig", "cp1252", "latin-1"]))
    data = text.encode(encoding, errors="replace")
    if draw(st.integers(0, 4)) == 0:  # a stray byte somewhere
        at = draw(st.integers(0, len(data)))
        data = data[:at] + draw(st.binary(min_size=1, max_size=4)) + data[at:]
    if draw(st.integers(0, 5)) == 0:
        data = gzip.compress(data)
        if draw(st.booleans()):
            data = data[: draw(st.integers(0, len(data)))]  # truncated gzip
    return data


def _read_checked(path: Path, **kw: Any) -> None:
    chunk_rows = kw.get("chunk_rows", 65536)
    with CsvRecording(path, **kw) as rec:
        assert 0 < len(rec.channels) <= MAX_CHANNELS
        for c in rec.chunks():
            assert 0 < c.n_samples <= chunk_rows
            assert c.data.shape == (c.n_samples, len(rec.channels))
            assert TIME_RANGE_S[0] <= c.t0 < TIME_RANGE_S[1]
            assert math.isfinite(c.fs) and c.fs > 0
            bad = ~np.isfinite(c.data)
            if kw.get("on_bad_data", "error") == "error":
                assert not bad.any()
            else:
                assert not np.isinf(c.data).any() and int(bad.sum()) == c.bad_samples


@pytest.mark.fuzz
@fuzz_settings()
@given(
    data=csv_bytes(),
    name=st.sampled_from(["rec.csv", "rec.csv.gz", "rec.txt"]),
    fs=st.sampled_from([None, 1.0, 12000.0, 25600.0]),
    on_bad_data=st.sampled_from(["error", "invalidate"]),
    chunk_rows=st.sampled_from([1, 3, 65536]),
    sidecar=st.one_of(st.none(), st.binary(max_size=200), st.sampled_from(["[" * 3000, "{}"])),
)
def test_fuzz_csv_reader(
    tmp_path_factory: pytest.TempPathFactory,
    data: bytes,
    name: str,
    fs: float | None,
    on_bad_data: str,
    chunk_rows: int,
    sidecar: bytes | str | None,
) -> None:
    d = tmp_path_factory.mktemp("csv")
    p = d / name
    p.write_bytes(data)
    if sidecar is not None:
        (d / "rec.json").write_bytes(sidecar.encode() if isinstance(sidecar, str) else sidecar)
    bounded(lambda: _read_checked(p, fs=fs, on_bad_data=on_bad_data, chunk_rows=chunk_rows))
    shutil.rmtree(d)


# --------------------------------------------------------------------------- pipeline TOML

_toml_scalars = st.one_of(
    st.integers(-(10**20), 10**20).map(str),
    st.floats(allow_nan=True, allow_infinity=True).map(
        lambda f: "nan" if math.isnan(f) else ("inf" if f > 0 else "-inf") if math.isinf(f) else repr(f)
    ),
    st.text(max_size=12).map(json.dumps),  # a TOML basic string (JSON escapes are TOML's)
    st.sampled_from([
        "true", "false", "0", "-1", "1e400", "0x7fffffff", "1979-05-27", "9999-12-31T23:59:59Z",
        "07:32:00", '"6205"', '"auto"', '"g"', '"m/s2"', "[]", "{}", '"../../etc"', "'''x'''",
        "1" * 5000, "[" * 400 + "]" * 400, "{a=" * 200 + "1" + "}" * 200, '"' + "x" * 5000 + '"',
    ]),
)  # fmt: skip
_toml_values = st.recursive(
    _toml_scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4).map(lambda xs: "[" + ", ".join(xs) + "]"),
        st.dictionaries(
            st.sampled_from(["a", "low_hz", "high_hz", "column", "unit"]), inner, max_size=3
        ).map(lambda d: "{" + ", ".join(f"{k} = {v}" for k, v in d.items()) + "}"),
    ),
    max_leaves=8,
)


@st.composite
def pipeline_text(draw: st.DrawFn) -> str:
    """The demo pipeline with a few values replaced, lines dropped, garbage inserted."""
    lines = DEMO_TOML.read_text().splitlines()
    for _ in range(draw(st.integers(1, 4))):
        i = draw(st.integers(0, len(lines) - 1))
        op = draw(st.integers(0, 5))
        line = lines[i]
        if op <= 2 and "=" in line and not line.lstrip().startswith(("#", "{")):
            key = line.split("=", 1)[0]
            lines[i] = f"{key}= {draw(_toml_values)}"
        elif op == 3:
            del lines[i]
        elif op == 4:
            lines.insert(
                i, draw(st.sampled_from(["[machine]", "[[sensors]]", "[alarms]", "x = 1"]))
            )
        else:
            lines[i] = line[: draw(st.integers(0, len(line)))] + draw(st.text(max_size=5))
    return "\n".join(lines) + "\n"


def _load_and_check(path: Path) -> None:
    pl = load_pipeline(path)
    assert pl.machine.id
    check_pipeline(path)  # `pdm-edge check`: derives bearing lines, zones, bands


@pytest.mark.fuzz
@fuzz_settings()
@given(text=st.one_of(pipeline_text(), st.text(max_size=400)), as_bytes=st.booleans())
def test_fuzz_pipeline_loader(
    tmp_path_factory: pytest.TempPathFactory, text: str, as_bytes: bool
) -> None:
    d = tmp_path_factory.mktemp("toml")
    p = d / "pipe.toml"
    # The model path must resolve as in pipelines/ (the file is checked, not loaded).
    text = text.replace('"../models/demo-pump"', json.dumps(str(DEMO_MODEL)))
    p.write_bytes(
        text.encode("utf-8", errors="surrogatepass")
        if as_bytes
        else text.encode("utf-8", "replace")
    )
    bounded(lambda: _load_and_check(p))
    shutil.rmtree(d)


@pytest.mark.fuzz
@fuzz_settings()
@given(
    fs=st.one_of(st.none(), st.floats(allow_nan=True, allow_infinity=True)),
    window=st.one_of(st.none(), st.integers(-5, 2**23)),
    overlap=st.one_of(st.none(), st.floats(allow_nan=True, allow_infinity=True)),
    rpm=st.one_of(st.none(), st.floats(allow_nan=True, allow_infinity=True)),
    bearing=st.one_of(st.none(), st.sampled_from(["6205", "", "x", "6205 "]), st.text(max_size=6)),
    geometry=st.one_of(st.none(), st.text(max_size=20), st.sampled_from(["9,7.94,39.04,0", "0,0,0,0", "9,40,39,0", "1e400,1,2,3"])),
    band=st.one_of(st.none(), st.sampled_from(["auto", "2000,6000", "6000,2000", "1,2,3", "nan,1"]), st.text(max_size=10)),
    columns=st.one_of(st.none(), st.lists(st.text(max_size=4), max_size=3)),
)  # fmt: skip
def test_fuzz_quick_flags(
    fs: float | None,
    window: int | None,
    overlap: float | None,
    rpm: float | None,
    bearing: str | None,
    geometry: str | None,
    band: str | None,
    columns: list[str] | None,
) -> None:
    """The quick flags of ``features``/``train``/``score`` build a pipeline too."""
    bounded(
        lambda: pipeline_from_flags(
            fs=fs, columns=columns, window=window, overlap=overlap, rpm=rpm, bearing=bearing,
            bearing_geometry=geometry, iso_group=None, foundation=None, envelope_band=band,
        )
    )  # fmt: skip


# --------------------------------------------------------------------------- model cards

_json_leaf = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(10**25), 10**25),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=8),
    st.sampled_from(["model.onnx", "../model.onnx", "/dev/zero", ".", "", "x" * 300, "NaN"]),
    st.builds(list),
    st.builds(dict),
)
_json_values = st.recursive(
    _json_leaf,
    lambda inner: st.one_of(
        st.lists(inner, min_size=1, max_size=4),
        st.dictionaries(st.text(max_size=6), inner, min_size=1, max_size=4),
    ),
    max_leaves=10,
)


def _paths(obj: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [prefix]
    if isinstance(obj, dict):
        for k, v in obj.items():
            out += _paths(v, (*prefix, k))
    elif isinstance(obj, list):
        for i, v in enumerate(obj[:6]):
            out += _paths(v, (*prefix, i))
    return out


@st.composite
def card_text(draw: st.DrawFn) -> str:
    """The demo model's card with one to three subtrees replaced, deleted or retyped."""
    card = json.loads((DEMO_MODEL / "model.json").read_text())
    for _ in range(draw(st.integers(1, 3))):
        paths = [p for p in _paths(card) if p]
        path = draw(st.sampled_from(paths))
        parent = card
        for k in path[:-1]:
            parent = parent[k]
        op = draw(st.integers(0, 4))
        if op == 0 and isinstance(parent, dict):
            del parent[path[-1]]
        elif op == 1 and isinstance(parent, list):
            parent.append(draw(_json_values))
        else:
            parent[path[-1]] = draw(_json_values)
    text = json.dumps(card)
    if draw(st.integers(0, 9)) == 0:
        text = text[: draw(st.integers(0, len(text)))]  # truncated
    return text


def _card_loaders(d: Path, pipeline: Any) -> None:
    for load in (
        lambda: Model.load(d, pipeline, 25600.0),
        lambda: Model.load(d),
        lambda: pipeline_from_card(read_card(d), where=str(d / "model.json")),
    ):
        try:
            load()
        except PdmError as exc:
            assert isinstance(exc, ModelError), repr(exc)
            assert "\n" not in str(exc)


@pytest.mark.fuzz
@fuzz_settings()
@given(text=card_text())
def test_fuzz_model_card_loader(tmp_path_factory: pytest.TempPathFactory, text: str) -> None:
    d = tmp_path_factory.mktemp("model")
    shutil.copy(DEMO_MODEL / "model.onnx", d / "model.onnx")
    (d / "model.json").write_text(text)
    pipeline = load_pipeline(DEMO_TOML)
    bounded(lambda: _card_loaders(d, pipeline))
    shutil.rmtree(d)


# --------------------------------------------------------------------------- regressions


def test_an_unchanged_demo_card_still_loads(tmp_path: Path) -> None:
    """The fuzz targets' seed: without a mutation everything loads (the test can fail)."""
    d = tmp_path / "m"
    shutil.copytree(DEMO_MODEL, d)
    model = Model.load(d, load_pipeline(DEMO_TOML), 25600.0)
    assert model.names and pipeline_from_card(read_card(d), where="x").machine.id
    load_pipeline(DEMO_TOML)
    with CsvRecording(FIXTURES / "healthy.csv.gz") as rec:
        assert sum(c.n_samples for c in rec.chunks()) > 0


def _edit_card(tmp_path: Path, edit: Callable[[dict[str, Any]], Any]) -> Path:
    d = tmp_path / "m"
    shutil.copytree(DEMO_MODEL, d)
    card = json.loads((d / "model.json").read_text())
    edit(card)
    (d / "model.json").write_text(json.dumps(card))
    return d


@pytest.mark.parametrize(
    ("edit", "says"),
    [
        (lambda c: c["onnx"].update(file="/dev/zero"), "onnx.file: String should match pattern"),
        (lambda c: c["onnx"].update(file="../demo-pump/model.onnx"), "onnx.file"),
        (lambda c: c["onnx"].update(file=["model.onnx"]), "onnx.file: Input should be a valid string"),
        (lambda c: c.update(onnx=[]), "onnx: Input should be a valid dictionary"),
        (lambda c: c["features"].append(7), "features.{n}: Input should be a valid dictionary"),
        (lambda c: c["preprocess"]["scale"].pop(), "preprocess.scale: {n_1} values for {n} features"),
        (lambda c: c["preprocess"].update(center="x"), "preprocess.center: Input should be a valid list"),
        (lambda c: c["dsp"].update(window_samples=2**40), "dsp.window_samples: Input should be less"),
        (lambda c: c["dsp"]["channels"][0].update(bearing=[1]), "dsp.channels.0.bearing"),
        (lambda c: c["dsp"]["speed"].update(search_rpm=[1]), "dsp.speed.search_rpm"),
        (lambda c: c["reference"].update(features=[1.0]), "reference.features: 1 values for {n}"),
        (lambda c: c["score"].update(danger="high"), "score.danger"),
        (lambda c: c.update(schema_version=True), "card schema_version True"),
    ],
    ids=[
        "onnx-device", "onnx-path", "onnx-list", "onnx-not-object", "feature-int", "scale-short",
        "center-str", "huge-window", "bearing-list", "search-rpm", "reference-short",
        "danger-str", "version-bool",
    ],
)  # fmt: skip
def test_a_malformed_card_is_one_located_line(
    tmp_path: Path, edit: Callable[[dict[str, Any]], Any], says: str
) -> None:
    """Found by the card fuzzing: each of these was a KeyError/TypeError/AttributeError
    traceback in Model.load or pipeline_from_card (and /dev/zero was read for ever)."""
    n = len(json.loads((DEMO_MODEL / "model.json").read_text())["features"])
    says = says.format(n=n, n_1=n - 1)
    d = _edit_card(tmp_path, edit)
    for load in (
        lambda: Model.load(d, load_pipeline(DEMO_TOML), 25600.0),
        lambda: pipeline_from_card(read_card(d), where="w"),
    ):
        with pytest.raises(ModelError) as info:
            load()
        assert str(info.value).startswith(f"{d / 'model.json'}: "), str(info.value)
        assert says in str(info.value)


@pytest.mark.parametrize(
    ("score", "shown"),
    [
        ({"danger": math.nan}, "danger nan"),
        ({"danger": math.inf}, "danger inf"),
        ({"danger": -5}, "danger -5"),
        ({"danger": 1.0}, "danger 1"),
        ({"danger": 10**400}, "danger inf"),
        ({"alert": 10**400}, "alert 100000000000..."),
        ({"alert": math.nan}, "alert nan"),
        ({"alert": 100.0}, "alert 100"),
    ],
    ids=["danger-nan", "danger-inf", "danger-negative", "danger-at-alert", "danger-huge-int", "alert-huge-int",
         "alert-nan", "alert-above-danger"],
)  # fmt: skip
def test_a_card_whose_thresholds_cannot_work_is_refused(
    tmp_path: Path, score: dict[str, Any], shown: str
) -> None:
    """Found by the files red team: these loaded, and a NaN danger never compared true (no
    window ever reached danger), a negative one made all 147 healthy windows "danger"; only
    a candidate upload's check refused them."""
    d = _edit_card(tmp_path, lambda c: c["score"].update(score))
    with pytest.raises(ModelError) as info:
        Model.load(d, load_pipeline(DEMO_TOML), 25600.0)
    msg = str(info.value)
    assert msg.startswith(f"{d / 'model.json'}: thresholds ") and shown in msg, msg


@pytest.mark.parametrize(
    "text", ["[" * 100_000, '{"schema_version": ' + "1" * 5000 + "}", "\xff\xfe",
             '{"schema_version": 1, "score": {"danger": 1.5, "danger": NaN}}'],
    ids=["deep", "huge-int", "not-utf8", "duplicate-key"],
)  # fmt: skip
def test_a_card_that_is_not_json_is_one_line(tmp_path: Path, text: str) -> None:
    d = tmp_path / "m"
    d.mkdir()
    (d / "model.json").write_bytes(
        text.encode("latin-1") if text.startswith("\xff") else text.encode()
    )
    with pytest.raises(ModelError) as info:
        read_card(d)
    assert str(info.value).startswith(f"{d / 'model.json'}") and "\n" not in str(info.value)
    if "danger" in text:
        assert str(info.value).endswith("not valid JSON: key 'danger' appears twice")


def test_a_card_that_is_a_fifo_is_refused_without_blocking(tmp_path: Path) -> None:
    d = tmp_path / "m"
    d.mkdir()
    os.mkfifo(d / "model.json")
    with pytest.raises(ModelError, match=r"model.json: not a regular file"):
        read_card(d)


def test_a_card_naming_a_fifo_is_refused_without_blocking(tmp_path: Path) -> None:
    d = _edit_card(tmp_path, lambda c: c["onnx"].update(file="graph"))
    os.mkfifo(d / "graph")
    with pytest.raises(ModelError, match=r"graph: not a regular file"):
        Model.load(d)


@pytest.mark.parametrize(
    ("text", "line", "says"),
    [
        ("schema_version = 1\nx = " + "[" * 5000 + "]" * 5000 + "\n", 2, "nested too deeply"),
        ("schema_version = 1\n[machine]\nid = {a = " * 1 + "{a=" * 3000 + "1" + "}" * 3001 + "\n", 3, "nested too deeply"),
        ("schema_version = 1\n\n[machine]\nid = " + "1" * 5000 + "\n", 4, "Exceeds the limit"),
        ('schema_version = 1\ns = "' + "[" * 5000 + '"\nx = [[1]]\ny = ' + "[" * 4000 + "]" * 4000, 4, "nested too deeply"),
    ],
    ids=["arrays", "inline-tables", "huge-int", "brackets-in-a-string"],
)  # fmt: skip
def test_a_hostile_toml_is_one_located_line(
    tmp_path: Path, text: str, line: int, says: str
) -> None:
    """The issue's repro (a TOML nested 5,000 deep) was a RecursionError traceback."""
    p = tmp_path / "deep.toml"
    p.write_text(text)
    with pytest.raises(ConfigError) as info:
        load_pipeline(p)
    assert str(info.value).startswith(f"{p}:{line}: ") and says in str(info.value)


@pytest.mark.parametrize("path", ["/dev/zero", "/dev/urandom"])
def test_a_pipeline_read_stops_at_its_size_cap(path: str) -> None:
    """`check /dev/zero` hung, reading for ever."""

    def load() -> None:
        with pytest.raises(ConfigError, match=r"larger than 1,048,576 bytes"):
            load_pipeline(path)

    bounded(load, limit=16 << 20)


def test_inputerror_is_a_pdmerror() -> None:
    # The CLI prints PdmError as one line and exits 2: the tests above rely on the tree.
    assert issubclass(InputError, PdmError) and issubclass(ModelError, PdmError)


# --------------------------------------------------------------------------- secret and key files


def _sign_with(key: str) -> None:
    from pdm.scoring.signing import sign_bundle

    sign_bundle(DEMO_MODEL, key)


def _verify_with(key: str) -> None:
    from pdm.scoring.signing import verify_signature

    verify_signature(DEMO_MODEL, [key])


def _api_token_from(path: str) -> None:
    from pdm.secrets import api_token

    os.environ["PDM_TEST_TOKEN_FILE"] = path
    try:
        api_token("PDM_TEST_TOKEN")
    finally:
        del os.environ["PDM_TEST_TOKEN_FILE"]


def _publish_secret_from(path: str) -> None:
    from pdm.publish.config import _file_secret

    _file_secret(path, "PDM_TEST_UNSET", "[publish.mqtt] password_file")


@pytest.mark.parametrize(
    ("read", "error"),
    [(_api_token_from, ConfigError), (_publish_secret_from, ConfigError),
     (_sign_with, ModelError), (_verify_with, ModelError)],
    ids=["api-token-file", "publish-secret-file", "private-key", "public-key"],
)  # fmt: skip
def test_a_secret_or_key_file_read_stops_at_its_cap(
    read: Callable[[str], None], error: type[PdmError]
) -> None:
    """Found by the files red team: PDM_API_TOKEN_FILE=/dev/zero (a key file, a publish
    password file) was read until memory ran out. The content is never shown."""

    def load() -> None:
        with pytest.raises(error, match=r"larger than 65,536 bytes") as info:
            read("/dev/zero")
        assert "\x00" not in str(info.value)

    bounded(load, limit=4 << 20)


def test_the_commissioning_page_skips_hostile_cards_in_the_models_folder(tmp_path: Path) -> None:
    """The dashboard's model list read every models/*/model.json whole with json.loads: a
    card nested 100,000 deep was a RecursionError on the page, a huge one read whole."""
    from pdm.dashboard.commissioning_inputs import list_models, training_files

    shutil.copytree(DEMO_MODEL, tmp_path / "good")
    (tmp_path / "deep").mkdir()
    (tmp_path / "deep" / "model.json").write_text("[" * 100_000)
    (tmp_path / "huge").mkdir()
    with open(tmp_path / "huge" / "model.json", "wb") as f:
        f.truncate(1 << 30)  # sparse: no disk
    got = bounded(lambda: list_models(load_pipeline(DEMO_TOML), tmp_path))
    assert [p.name for p in got if p.parent == tmp_path] == ["good"]
    assert bounded(lambda: training_files(tmp_path / "deep")) == []


@pytest.mark.parametrize("side", ["fifo", "deep", "dev-zero"])
def test_a_hostile_truth_sidecar_is_no_onset(tmp_path: Path, side: str) -> None:
    """`report FILE` reads FILE's .truth.json: a FIFO there blocked for ever, nesting
    100,000 deep was a RecursionError, a link to /dev/zero was read until memory ran out."""
    from pdm.dashboard.commissioning_inputs import truth_onset_s

    path = tmp_path / "rec.csv.gz"
    sidecar = tmp_path / "rec.truth.json"
    if side == "fifo":
        os.mkfifo(sidecar)
    elif side == "deep":
        sidecar.write_text('{"faults": ' + "[" * 100_000)
    else:
        sidecar.symlink_to("/dev/zero")
    assert bounded(lambda: truth_onset_s(path)) is None
