"""The Streamlit dashboard in a real headless Chromium, on a history filled by a real replay.

One module fixture replays ``fixtures/outer_race.csv.gz`` through ``pipelines/demo.toml`` into a
temporary data directory, starts ``streamlit run dashboards/app.py`` on a free loopback port and
opens every page of the app's navigation (the links in the sidebar or top bar, found in the
rendered app) with Selenium. A page counts as rendered when the script run has finished, no
spinner or skeleton is left and every chart has drawn its canvas/SVG. Each page is saved as a
full-page screenshot in ``artifacts/screenshots/<page>.png`` (git-ignored) and then checked for
exceptions and error boxes. A page whose "Machine" selectbox opens on another machine is shown a
second time with the replayed one chosen (``<page>-demo-pump.png``), so its charts are drawn too.

Then, in the same browser: the machine page's spectra at 1280 × 800 (the narrowest layout the
cursor labels are placed for) and the commissioning page run on the outer-race fixture at
1920 × 1080 and 1280 × 800 — the deciding window's spectra with BPFO marked, the diagnosis,
the what-if grid (``commissioning-<width>.png``). Look at the screenshots.

Needs Debian's ``chromium`` and ``chromium-driver`` (``/usr/bin/chromium``,
``/usr/bin/chromedriver``; ``scripts/setup-test-servers.sh`` installs them) and ``selenium``
(the ``test`` extra); skips with the reason when any of them, streamlit or the app is missing.
Selenium is given both paths and runs offline: Selenium Manager never downloads anything.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator

import pytest
from dashboard_browser import (
    MACHINE_ID,
    MACHINE_NAME,
    PAGE_RENDER_S,
    SCREENSHOTS,
    PageResult,
    Visit,
    browser,
    click_button,
    discover,
    full_page_png,
    open_page,
    page_name,
    pick,
    replay_into,
    serve,
    set_size,
    visit_page,
    wait_rendered,
)

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def visit(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Visit]:
    tmp = tmp_path_factory.mktemp("dashboard")
    data_dir = tmp / "data"
    data_dir.mkdir()
    alarm_state = replay_into(data_dir)
    started = time.monotonic()
    with serve(data_dir, tmp) as base, browser(tmp) as driver:
        server_start_s = time.monotonic() - started
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        driver.get(base + "/")
        state = wait_rendered(driver, PAGE_RENDER_S)
        if state != "ready":
            pytest.fail(f"the dashboard did not render ({state})")
        pages: list[PageResult] = []
        names: set[str] = set()
        for url, label in discover(driver, base):
            name = page_name(url, label, base)
            while name in names:
                name += "-"
            names.add(name)
            pages.append(visit_page(driver, url, label, name))
            # A page that opens on another machine (with no data): also with ours.
            try:
                pages.append(visit_page(driver, url, label, f"{name}-{MACHINE_ID}", MACHINE_ID))
            except LookupError:
                pass
        print(f"dashboard: streamlit healthy after {server_start_s:.1f} s")
        for p in pages:
            print(
                f"dashboard page {p.name!r} ({p.label or '-'}): {p.seconds:.1f} s, "
                f"{p.rendered}, {p.charts} charts, {p.screenshot}"
            )
        yield Visit(data_dir, alarm_state, base, pages, driver)


# --- the tests ---------------------------------------------------------------------------------


def test_every_page_renders_without_errors(visit: Visit) -> None:
    assert visit.pages, "no pages found"
    problems = []
    for p in visit.pages:
        if p.rendered != "ready":
            problems.append(f"{p.name}: not rendered within {PAGE_RENDER_S:.0f} s ({p.rendered})")
        problems += [f"{p.name}: exception: {text}" for text in p.exceptions]
        problems += [f"{p.name}: error: {text}" for text in p.errors]
        assert p.screenshot is not None and p.screenshot.stat().st_size > 10_000, p.name
    if problems:
        pytest.fail("\n".join(problems))
    # The wall screen has its own URL, listed in the navigation.
    wall = next(p for p in visit.pages if p.name == "wall-screen")
    assert wall.url.rstrip("/").endswith("/overview"), wall.url


def test_overview_shows_the_machine_and_its_state(visit: Visit) -> None:
    overview = next(
        (p for p in visit.pages if "overview" in f"{p.name} {p.label}".lower()), visit.pages[0]
    )
    assert MACHINE_NAME in overview.text, f"{overview.name}: {overview.text[:1500]}"
    # The replay ends tripped: the overview says so (TRIP, Trip, tripped, …).
    state = visit.alarm_state
    assert re.search(rf"\b{re.escape(state)}", overview.text, re.IGNORECASE), (
        f"{overview.name} does not show the state {state!r}: {overview.text[:1500]}"
    )


def test_machine_page_charts_the_replayed_history(visit: Visit) -> None:
    machine_pages = [p for p in visit.pages if "machine" in f"{p.name} {p.label}".lower()]
    if not machine_pages:
        pytest.skip("the dashboard has no machine page")
    charted = [p for p in machine_pages if p.charts and MACHINE_ID in (p.machine or p.text)]
    seen = [(p.name, p.machine, p.charts) for p in machine_pages]
    assert charted, f"no machine page charts {MACHINE_ID} (page, machine shown, charts): {seen}"


# Width of each spectrum's drawing (its canvas or SVG) on the page, CSS px.
CHART_WIDTHS_JS = """
return Array.from(document.querySelectorAll('[data-testid="stVegaLiteChart"]')).map(c => {
  const el = c.querySelector('canvas, svg');
  const title = (c.getAttribute('aria-label') || c.innerText || '').slice(0, 60);
  return {w: el ? el.getBoundingClientRect().width : 0, title: title};
});
"""


def test_machine_spectra_at_1280(visit: Visit) -> None:
    """At 1280 × 800 every spectrum is drawn at least as wide as the cursor labels were
    placed for (so they cannot overlap); the capture's envelope shows BPFO."""
    from pdm.dashboard.cursors import MIN_PLOT_PX

    driver = visit.driver
    set_size(driver, 1280, 800)
    try:
        found = open_page(driver, f"{visit.base_url}/machine")
        assert not found["exceptions"] and not found["errors"], found
        full_page_png(driver, SCREENSHOTS / "machine-1280.png")
        widths = [c["w"] for c in driver.execute_script(CHART_WIDTHS_JS)]
        assert len(widths) == 11, widths
        spectra = [widths[i] for i in (4, 5, 9, 10)]  # stored and capture spectra
        # the plot area is the drawing less its y axis (~60 px) and legend padding
        assert all(w - 70 >= MIN_PLOT_PX for w in spectra), spectra
        text = driver.execute_script(
            "return document.querySelector('[data-testid=\"stMain\"]').innerText"
        )
        assert "Motor DE · horizontal" in text and "x_g" not in text.replace("x_g =", "")
    finally:
        set_size(driver, 1920, 1080)


@pytest.mark.parametrize("size", [(1920, 1080), (1280, 800)])
def test_commissioning_on_the_outer_race_fault(visit: Visit, size: tuple[int, int]) -> None:
    driver = visit.driver
    set_size(driver, *size)
    try:
        open_page(driver, f"{visit.base_url}/commissioning")
        pick(driver, "Fixture", "outer_race.csv.gz")
        click_button(driver, "Replay")
        found = driver.execute_script(
            "return {text: document.querySelector('[data-testid=\"stMain\"]').innerText,"
            " errors: Array.from(document.querySelectorAll("
            '\'[data-testid="stAlertContentError"], [data-testid="stException"]\'))'
            ".map(e => e.innerText)}"
        )
        full_page_png(driver, SCREENSHOTS / f"commissioning-{size[0]}.png")
        assert not found["errors"], found["errors"]
        text = found["text"]
        assert "Spectra of the deciding window" in text
        assert "Window 55 at 2026-01-01 00:00:04.400 UTC" in text
        assert "outer-race bearing defect" in text
        assert "Settings compared" in text and "healthy.csv.gz" in text
        assert not re.search(r"\b17672\d{14}\b", text)  # no nanosecond times
    finally:
        set_size(driver, 1920, 1080)
