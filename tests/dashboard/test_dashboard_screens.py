"""The wall screen and the alarm list of a plant, in real headless Chromium, looked at.

A plant of seven machines (``tests/dashboard_plant.py``: one in each state, data arriving
every second through the real history and alarm state stores) is served by the real
dashboard. The wall screen (``/overview``) is captured at 1920 × 1080 (``wall-1920.png``),
at 1280 × 800 (``wall-1280.png``) and scaled down to what the eye resolves from 5 m
(``wall-5m.png``, below); the alarms page with the service up to date
(``alarms-plant.png``) and with the service configured but unreachable
(``wall-unreachable.png``, ``alarms-unreachable.png``). Look at the screenshots.

Readable from 5 m on a 55″ screen, from first principles: a 55″ 16:9 screen is 1218 mm
wide, so at 1920 px one CSS px is 0.634 mm; 1 arcmin at 5 m is 1.45 mm = 2.3 px. A letter
of 20/20 acuity subtends 5 arcmin; text read at a glance wants ≥ 3× that. The state word's
capitals (≈ 0.7 em) must subtend ≥ 15 arcmin, the machine's name, "since", the badge and
the stale note ≥ 2× (10 arcmin); the reason and the facts are read up close. Scaled to
1 px per arcmin (the screen subtends 834 arcmin across at 5 m), a screenshot shows what a
20/20 eye can resolve; ``wall-5m.png`` is scaled further, to 480 px (20/35 vision).
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from dashboard_browser import (
    SCREENSHOTS,
    browser,
    open_page,
    screen_png,
    serve,
    set_size,
)
from dashboard_plant import MACHINES, NEVER, Plant

pytestmark = pytest.mark.browser

SCREEN_MM = 1218.0  # width of a 55″ 16:9 screen
DISTANCE_MM = 5000.0
CAP = 0.7  # capital height / font size (Source Sans, Streamlit's font)
ARCMIN_PER_PX_1920 = math.degrees(math.atan(SCREEN_MM / 1920 / DISTANCE_MM)) * 60

# One entry per tile: machine, classes, frame colour, bounds and font sizes of its parts.
TILES_JS = """
const px = (el, sel) => { const e = el.querySelector(sel);
  return e ? parseFloat(getComputedStyle(e).fontSize) : 0; };
const tiles = Array.from(document.querySelectorAll('.pdm-t')).map(t => {
  const r = t.getBoundingClientRect();
  const badge = t.querySelector('.pdm-badge, .pdm-ack');
  return {machine: t.dataset.machine, cls: t.className, state: t.dataset.state,
    border: getComputedStyle(t).borderTopColor, background: getComputedStyle(t).backgroundColor,
    x: r.x, y: r.y, w: r.width, h: r.height,
    word: px(t, '.pdm-t-state'), name: px(t, '.pdm-t-name'), since: px(t, '.pdm-t-since'),
    old: px(t, '.pdm-t-old'), badge: badge ? parseFloat(getComputedStyle(badge).fontSize) : 0,
    badge_h: badge ? badge.getBoundingClientRect().height : 0,
    text: t.innerText,
    overflow: Array.from(t.querySelectorAll('.pdm-t-name, .pdm-t-state, .pdm-t-since'))
      .filter(e => e.scrollWidth > e.clientWidth + 1 || e.getBoundingClientRect().bottom
        > r.bottom + 1).map(e => e.className)};
});
const nd = document.querySelector('.pdm-nodata');
return {tiles: tiles, never: nd ? {text: nd.innerText,
    size: parseFloat(getComputedStyle(nd).fontSize), h: nd.getBoundingClientRect().height} : null,
  scroll: document.querySelector('[data-testid="stMain"]').scrollHeight,
  view: [window.innerWidth, window.innerHeight],
  sidebar: !!document.querySelector('[data-testid="stSidebar"]:not([style*="none"])')
    && getComputedStyle(document.querySelector('[data-testid="stSidebar"]')).display !== 'none'};
"""

# The worst first: trips (unacknowledged, fresh before stale), danger, sensor fault, alert, ok.
ORDER = ["bfp-1", "cnv-5", "cwp-2", "agi-7", "fan-3", "cmp-4"]


def _rgb(hex_colour: str) -> str:
    h = hex_colour.lstrip("#")
    return "rgb({}, {}, {})".format(*(int(h[i : i + 2], 16) for i in (0, 2, 4)))


@dataclass
class Served:
    plant: Plant
    base: str
    driver: Any
    tmp: Path


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    tmp = tmp_path_factory.mktemp("plant")
    plant = Plant(tmp).start()
    try:
        args = ("--pipelines", str(plant.pipelines))
        with serve(plant.data_dir, tmp, *args) as base, browser(tmp) as driver:
            SCREENSHOTS.mkdir(parents=True, exist_ok=True)
            yield Served(plant, base, driver, tmp)
    finally:
        plant.stop()


def _wall(driver: Any, base: str, size: tuple[int, int], name: str) -> dict[str, Any]:
    set_size(driver, *size)
    found = open_page(driver, f"{base}/overview")
    assert not found["exceptions"] and not found["errors"], found
    time.sleep(2.5)  # one refresh of the fragment, drawn at this size
    screen_png(driver, SCREENSHOTS / name)
    got: dict[str, Any] = driver.execute_script(TILES_JS)
    return got


def _arcmin(font_px: float, width_px: int) -> float:
    """The capital height of ``font_px`` text on a ``width_px`` wide 55″ screen, arcmin at 5 m."""
    return CAP * font_px * (1920 / width_px) * ARCMIN_PER_PX_1920


@pytest.mark.parametrize("size", [(1920, 1080), (1280, 800)])
def test_wall_screen_worst_first_and_readable_from_5_m(
    served: Served, size: tuple[int, int]
) -> None:
    got = _wall(served.driver, served.base, size, f"wall-{size[0]}.png")
    tiles = got["tiles"]
    assert [t["machine"] for t in tiles] == ORDER
    assert not got["sidebar"]
    # The tiles fill the screen and nothing scrolls.
    width, height = got["view"]
    covered = sum(t["w"] * t["h"] for t in tiles) / (width * height)
    assert covered > 0.75, covered
    assert got["scroll"] <= height + 2, (got["scroll"], height)
    assert all(t["y"] + t["h"] <= height for t in tiles)
    by = {t["machine"]: t for t in tiles}
    # TRIP filled in the brightest red, with the flashing badge; the stale trip only framed.
    assert "filled" in by["bfp-1"]["cls"] and "unack" in by["bfp-1"]["cls"]
    assert by["bfp-1"]["background"] == _rgb("#e00000")
    assert "UNACKNOWLEDGED" in by["bfp-1"]["text"] and "since" in by["bfp-1"]["text"]
    stale = by["cnv-5"]
    assert "frame" in stale["cls"] and stale["border"] == _rgb("#e00000")
    assert stale["background"] != _rgb("#e00000") and "NO DATA FOR 2 h" in stale["text"]
    assert "ack M. Keller" in by["cwp-2"]["text"] and "(20 min)" in by["cwp-2"]["text"]
    assert "SENSOR FAULT" in by["agi-7"]["text"]
    # Never had data: named small below, not a tile.
    assert got["never"] is not None and NEVER["mix-6"] in got["never"]["text"]
    assert got["never"]["h"] < 0.05 * height
    # From 5 m: the state word ≥ 15 arcmin, the name, since, badge and stale note ≥ 10.
    for t in tiles:
        assert not t["overflow"], (t["machine"], t["overflow"])
        assert t["badge_h"] <= 1.6 * t["badge"], (t["machine"], "the badge is cut in two lines")
        assert _arcmin(t["word"], width) >= 15, (t["machine"], t["word"])
        for part in ("name", "since", "badge", "old"):
            if t[part]:
                assert _arcmin(t[part], width) >= 10, (t["machine"], part, t[part])


def test_wall_screen_scaled_to_5_m(served: Served) -> None:
    """The 1920 × 1080 capture at the resolution of the eye from 5 m (for looking at)."""
    from PIL import Image

    src = SCREENSHOTS / "wall-1920.png"
    if not src.is_file():
        _wall(served.driver, served.base, (1920, 1080), "wall-1920.png")
    with Image.open(src) as im:
        eye = round(1920 * ARCMIN_PER_PX_1920)  # px across = arcmin across at 5 m
        im.resize((eye, round(eye * 9 / 16)), Image.Resampling.LANCZOS).save(
            SCREENSHOTS / "wall-5m-2020.png"
        )
        im.resize((480, 270), Image.Resampling.LANCZOS).save(SCREENSHOTS / "wall-5m.png")
    assert 800 < eye < 870


def test_alarm_list_refreshes_on_its_own(served: Served) -> None:
    """A new alarm written by the service appears on an open alarms page without a reload."""
    driver = served.driver
    set_size(driver, 1920, 1080)
    found = open_page(driver, f"{served.base}/alarms")
    assert not found["exceptions"] and not found["errors"], found
    text = found["text"]
    assert "Boiler feed pump 1" in text or "bfp-1" in text
    assert "No machine is in a latched state" not in text and "No alarm:" not in text
    served.plant.escalate("cmp-4", "danger")
    deadline = time.monotonic() + 20
    seen = ""
    while time.monotonic() < deadline:
        seen = driver.execute_script(
            "return document.querySelector('[data-testid=\"stMain\"]').innerText"
        )
        chip = driver.execute_script(
            "const c = document.querySelector('.pdm-now [data-machine=\"cmp-4\"]');"
            "return c ? c.dataset.state : null"
        )
        if chip == "danger":
            break
        time.sleep(0.5)
    else:
        pytest.fail(f"cmp-4 not shown in danger within 20 s:\n{seen[:2000]}")
    screen_png(driver, SCREENSHOTS / "alarms-plant.png")


def test_service_unreachable_says_unknown_never_all_clear(served: Served) -> None:
    import socket

    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{sock.getsockname()[1]}"
    plant = served.plant
    args = ("--pipelines", str(plant.pipelines), "--api", dead)
    with serve(plant.data_dir, served.tmp, *args) as base:
        got = _wall(served.driver, base, (1920, 1080), "wall-unreachable.png")
        for t in got["tiles"]:
            assert "frame" in t["cls"] and "filled" not in t["cls"], t["machine"]
            assert t["background"] not in (_rgb("#1e8e3e"), _rgb("#e00000")), t["machine"]
        assert all("UNKNOWN" in t["text"] for t in got["tiles"])
        trip = next(t for t in got["tiles"] if t["machine"] == "bfp-1")
        assert trip["border"] == _rgb("#e00000")  # the last saved state, as a frame
        found = open_page(served.driver, f"{base}/alarms")
        time.sleep(1.5)  # the alarm list's grid draws on a canvas after the run
        screen_png(served.driver, SCREENSHOTS / "alarms-unreachable.png")
        assert not found["exceptions"], found
        assert any("unknown — service unreachable" in e for e in found["errors"])
        assert any("Last state saved" in w for w in found["warnings"])
        green = served.driver.execute_script(
            "return document.querySelectorAll('[data-testid=\"stAlertContentSuccess\"]').length"
        )
        assert green == 0
        chips = served.driver.execute_script(
            "return Array.from(document.querySelectorAll('.pdm-now > div')).map("
            "c => [c.dataset.machine, getComputedStyle(c).borderTopColor])"
        )
        assert len(chips) == len(MACHINES), chips
        assert all(colour != _rgb("#1e8e3e") for _m, colour in chips), chips
        assert "No alarm" not in found["text"]
