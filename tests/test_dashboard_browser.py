"""The Streamlit dashboard in a real headless Chromium, on a history filled by a real replay.

One module fixture replays ``fixtures/outer_race.csv.gz`` through ``pipelines/demo.toml`` into a
temporary data directory, starts ``streamlit run dashboards/app.py`` on a free loopback port and
opens every page of the app's navigation (the links in the sidebar or top bar, found in the
rendered app) with Selenium. A page counts as rendered when the script run has finished, no
spinner or skeleton is left and every chart has drawn its canvas/SVG. Each page is saved as a
full-page screenshot in ``artifacts/screenshots/<page>.png`` (git-ignored) and then checked for
exceptions and error boxes. A page whose "Machine" selectbox opens on another machine is shown a
second time with the replayed one chosen (``<page>-demo-pump.png``), so its charts are drawn too.

Needs Debian's ``chromium`` and ``chromium-driver`` (``/usr/bin/chromium``,
``/usr/bin/chromedriver``; ``scripts/setup-test-servers.sh`` installs them) and ``selenium``
(the ``test`` extra); skips with the reason when any of them, streamlit or the app is missing.
Selenium is given both paths and runs offline: Selenium Manager never downloads anything.
"""

from __future__ import annotations

import base64
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

pytestmark = pytest.mark.browser

REPO = Path(__file__).resolve().parents[1]
APP = REPO / "dashboards" / "app.py"
CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
SCREENSHOTS = REPO / "artifacts" / "screenshots"
MACHINE_ID = "demo-pump"  # pipelines/demo.toml, the machine the replay fills
MACHINE_NAME = "Demo pump"  # its name = "Demo pump, simulated"

SERVER_START_S = 40.0  # streamlit up and /_stcore/health answering
PAGE_RENDER_S = 20.0  # one page: script run finished and charts drawn
MAX_SCREENSHOT_HEIGHT = 12000
# Same-origin links that are not pages (media, static files, Streamlit's own endpoints).
NOT_PAGES = ("/media/", "/app/static/", "/_stcore/", "/component/")

# True once the app has finished a script run over a live connection, nothing is still loading
# and every chart has drawn. data-test-script-state is "initial" until the first run starts.
READY_JS = """
const app = document.querySelector('[data-testid="stApp"]');
if (!app) return 'no stApp';
if (app.getAttribute('data-test-connection-state') !== 'CONNECTED') return 'connecting';
if (app.getAttribute('data-test-script-state') !== 'notRunning') return 'script running';
if (document.querySelector('[data-testid="stStatusWidgetRunningIcon"],'
    + '[data-testid="stStatusWidgetRunningManIcon"]')) return 'status widget running';
if (document.querySelector('[data-testid="stAppSkeleton"], [data-testid="stSpinner"]'))
  return 'spinner';
for (const c of document.querySelectorAll('[data-testid="stVegaLiteChart"]'))
  if (!c.querySelector('canvas, svg')) return 'vega chart not drawn';
for (const c of document.querySelectorAll('[data-testid="stPlotlyChart"]'))
  if (!c.querySelector('.main-svg, canvas')) return 'plotly chart not drawn';
for (const c of document.querySelectorAll('[data-testid="stDeckGlJsonChart"]'))
  if (!c.querySelector('canvas')) return 'map not drawn';
for (const img of document.querySelectorAll('[data-testid="stMain"] img'))
  if (!img.complete) return 'image loading';
return 'ready';
"""

# Navigation links: sidebar (st.navigation / pages/), top bar, st.page_link and plain same-origin
# links in the sidebar (an app that navigates with ?page=).
LINKS_JS = """
const sel = '[data-testid="stSidebarNavLink"], [data-testid="stTopNavLink"],'
  + ' [data-testid="stTopNavDropdownLink"], [data-testid="stPageLink-NavLink"],'
  + ' [data-testid="stSidebar"] a[href]';
return Array.from(document.querySelectorAll(sel)).map(
  a => ({href: a.href, label: (a.textContent || '').trim()}));
"""

PAGE_HEIGHT_JS = """
const els = [document.documentElement, document.body].concat(Array.from(document.querySelectorAll(
  '[data-testid="stMain"], [data-testid="stAppViewContainer"], [data-testid="stSidebarContent"],'
  + ' [data-testid="stMainBlockContainer"]')));
return Math.max(...els.map(e => e.scrollHeight));
"""

# The "Machine" selectbox of a page: its shown value, or null when the page has none.
MACHINE_SELECT_JS = """
for (const box of document.querySelectorAll('[data-testid="stSelectbox"]')) {
  const label = box.querySelector('[data-testid="stWidgetLabel"]');
  if (label && label.textContent.trim() === 'Machine') {
    const input = box.querySelector('input[role="combobox"]');  // 1.67: a react-aria ComboBox
    if (input) return input.value;
    const value = box.querySelector('[data-baseweb="select"]');  // older: a baseweb Select
    return value ? value.textContent.trim() : '';
  }
}
return null;
"""

PROBLEMS_JS = """
const texts = sel => Array.from(document.querySelectorAll(sel)).map(
  e => (e.innerText || e.textContent || '').trim().slice(0, 600));
const main = document.querySelector('[data-testid="stMain"]') || document.body;
return {
  exceptions: texts('[data-testid="stException"]'),
  errors: texts('[data-testid="stAlertContentError"]'),
  warnings: texts('[data-testid="stAlertContentWarning"]'),
  charts: document.querySelectorAll('[data-testid="stVegaLiteChart"], [data-testid="stPlotlyChart"],'
    + ' [data-testid="stDeckGlJsonChart"], [data-testid="stPyplot"]').length
    + Array.from(document.querySelectorAll('[data-testid="stMain"] canvas')).filter(
      c => !c.closest('[data-testid="stDataFrame"], [data-testid="stVegaLiteChart"],'
        + ' [data-testid="stPlotlyChart"], [data-testid="stDeckGlJsonChart"]')).length,
  title: document.title,
  text: main.innerText || '',
};
"""


@dataclass
class PageResult:
    name: str
    label: str
    url: str
    seconds: float = 0.0
    rendered: str = ""  # "ready", or what was still pending at the time-out
    screenshot: Path | None = None
    exceptions: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    charts: int = 0
    text: str = ""
    machine: str | None = None  # the value of the page's "Machine" selectbox, if it has one


@dataclass
class Visit:
    history: Path
    alarm_state: str
    base_url: str
    server_log: Path
    pages: list[PageResult]
    server_start_s: float


# --- requirements ------------------------------------------------------------------------------


def _require() -> Any:
    """The selenium webdriver module; skips with the reason when anything needed is missing."""
    setup = "scripts/setup-test-servers.sh"
    if not CHROMIUM.is_file() or not CHROMEDRIVER.is_file():
        missing = [str(p) for p in (CHROMIUM, CHROMEDRIVER) if not p.is_file()]
        pytest.skip(
            f"{' and '.join(missing)} not found (Debian's chromium and chromium-driver; "
            f"{setup} installs them)"
        )
    try:
        from selenium import webdriver
    except ImportError:
        pytest.skip("selenium is not installed (pip install -c constraints.txt -e '.[test]')")
    try:
        import streamlit  # noqa: F401
    except ImportError:
        pytest.skip("streamlit is not installed")
    if not APP.is_file():
        pytest.skip(f"the dashboard app {APP.relative_to(REPO)} does not exist")
    return webdriver


# --- the app on a real history -----------------------------------------------------------------


def _replay(data_dir: Path) -> str:
    """Fill ``data_dir`` with a real replay; the alarm state it ends in."""
    cmd = [sys.executable, "-m", "pdm.cli", "replay", "fixtures/outer_race.csv.gz"]
    cmd += ["-p", "pipelines/demo.toml", "--data-dir", str(data_dir), "--actions", "live"]
    out = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, f"replay failed ({out.returncode}):\n{out.stderr[-3000:]}"
    report = json.loads(out.stdout.strip().splitlines()[-1])
    assert report["rows_written"] > 0 and report["all_delivered"], report
    return str(report["alarm_state"])


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _tail(path: Path, n: int = 4000) -> str:
    try:
        return path.read_text(errors="replace")[-n:]
    except OSError:
        return ""


def _wait_healthy(proc: subprocess.Popen[bytes], url: str, log: Path) -> None:
    # No proxy for loopback, whatever the environment says.
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    deadline = time.monotonic() + SERVER_START_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"streamlit exited with {proc.returncode}:\n{_tail(log)}")
        try:
            with opener.open(f"{url}/_stcore/health", timeout=2) as r:
                if r.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.2)
    pytest.fail(f"streamlit not healthy after {SERVER_START_S:.0f} s:\n{_tail(log)}")


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


# --- the browser -------------------------------------------------------------------------------


def _driver(webdriver: Any, tmp: Path) -> Any:
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for arg in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-proxy-server",  # the app is on loopback
        "--window-size=1920,1080",
        f"--user-data-dir={tmp / 'chromium-profile'}",
    ):
        options.add_argument(arg)
    # An explicit driver path: Selenium Manager is skipped (and SE_OFFLINE forbids downloads).
    service = Service(str(CHROMEDRIVER), log_output=str(tmp / "chromedriver.log"))
    driver = webdriver.Chrome(options=options, service=service)
    driver.set_window_size(1920, 1080)
    driver.set_page_load_timeout(30)
    return driver


def _ready_state(driver: Any) -> str:
    try:
        return str(driver.execute_script(READY_JS))
    except Exception as exc:  # the page is being replaced under us
        return f"script error: {type(exc).__name__}"


def _wait_rendered(driver: Any, timeout: float) -> str:
    """'ready' once the page is rendered (twice in a row), else what it was still waiting for."""
    deadline = time.monotonic() + timeout
    state, ready_seen = "not loaded", 0
    while time.monotonic() < deadline:
        state = _ready_state(driver)
        ready_seen = ready_seen + 1 if state == "ready" else 0
        if ready_seen >= 2:
            return state
        time.sleep(0.15)
    return state


def _full_page_png(driver: Any, path: Path) -> None:
    """The whole page, not just the viewport: Streamlit scrolls inside stMain, so grow the
    viewport to the content's height for the capture."""
    height = int(driver.execute_script(PAGE_HEIGHT_JS) or 1080)
    height = max(1080, min(height, MAX_SCREENSHOT_HEIGHT))
    metrics = {"width": 1920, "height": height, "deviceScaleFactor": 1, "mobile": False}
    driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", metrics)
    try:
        time.sleep(0.3)  # let the layout (and any chart sized to its container) settle
        shot = driver.execute_cdp_cmd("Page.captureScreenshot", {"format": "png"})
        path.write_bytes(base64.b64decode(shot["data"]))
    finally:
        driver.execute_cdp_cmd("Emulation.clearDeviceMetricsOverride", {})


def _page_name(url: str, label: str, base: str) -> str:
    parts = urlsplit(url)
    query = parse_qs(parts.query)
    path = parts.path[len(urlsplit(base).path) :].strip("/")
    raw = (query.get("page") or [""])[0] or path or label
    name = re.sub(r"[^a-z0-9]+", "-", raw.lower()).strip("-")
    return name or "index"


def _discover(driver: Any, base: str) -> list[tuple[str, str]]:
    """(url, label) of every page the navigation links to, in navigation order, root first."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    # "View N more" in a long sidebar navigation.
    for button in driver.find_elements(By.CSS_SELECTOR, '[data-testid="stSidebarNavViewButton"]'):
        if "more" in button.text.lower():
            button.click()
            time.sleep(0.3)
    links: list[dict[str, str]] = list(driver.execute_script(LINKS_JS))
    # Top navigation sections open a popover of links when clicked.
    for section in driver.find_elements(By.CSS_SELECTOR, '[data-testid="stTopNavSection"]'):
        try:
            section.click()
            time.sleep(0.3)
            links += driver.execute_script(LINKS_JS)
            driver.find_element(By.TAG_NAME, "body").send_keys(Keys.ESCAPE)
        except Exception:
            pass
    origin = "{0.scheme}://{0.netloc}".format(urlsplit(base))
    found: dict[str, str] = {}
    for link in links:
        url = link["href"].split("#", 1)[0]
        path = urlsplit(url).path
        if not url.startswith(origin) or path.startswith(NOT_PAGES) or url in found:
            continue
        found[url] = link["label"]
    if not any(url.rstrip("/") == base.rstrip("/") for url in found):
        found = {base + "/": "", **found}
    return list(found.items())


def _pick_machine(driver: Any, machine: str) -> bool:
    """Choose ``machine`` in the page's "Machine" selectbox when it shows another machine (not
    "(all)"); True once chosen and the page has re-run."""
    from selenium.webdriver.common.by import By

    shown = driver.execute_script(MACHINE_SELECT_JS)
    if shown is None or machine in shown or shown.startswith("("):
        return False
    for box in driver.find_elements(By.CSS_SELECTOR, '[data-testid="stSelectbox"]'):
        labels = box.find_elements(By.CSS_SELECTOR, '[data-testid="stWidgetLabel"]')
        if labels and labels[0].text.strip() == "Machine":
            openers = box.find_elements(
                By.CSS_SELECTOR, 'button[aria-haspopup="listbox"], [data-baseweb="select"]'
            )
            if not openers:
                return False
            openers[0].click()
            time.sleep(0.2)
            break
    options = [
        o for o in driver.find_elements(By.CSS_SELECTOR, '[role="option"]') if machine in o.text
    ]
    if not options:
        return False
    options[0].click()
    # The re-run starts a moment after the click: see it start, then wait for it to finish.
    deadline = time.monotonic() + 3
    while time.monotonic() < deadline and _ready_state(driver) == "ready":
        time.sleep(0.05)
    return True


def _visit(driver: Any, url: str, label: str, name: str, machine: str | None = None) -> PageResult:
    result = PageResult(name, label, url)
    started = time.monotonic()
    if machine is None:
        driver.get(url)
    elif not _pick_machine(driver, machine):
        raise LookupError(machine)
    result.rendered = _wait_rendered(driver, PAGE_RENDER_S)
    result.seconds = time.monotonic() - started
    result.screenshot = SCREENSHOTS / f"{name}.png"
    _full_page_png(driver, result.screenshot)
    found = driver.execute_script(PROBLEMS_JS)
    result.exceptions = list(found["exceptions"])
    result.errors = list(found["errors"])
    result.warnings = list(found["warnings"])
    result.charts = int(found["charts"])
    result.text = str(found["text"])
    result.machine = driver.execute_script(MACHINE_SELECT_JS)
    return result


@pytest.fixture(scope="module")
def visit(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Visit]:
    webdriver = _require()
    tmp = tmp_path_factory.mktemp("dashboard")
    data_dir = tmp / "data"
    data_dir.mkdir()
    alarm_state = _replay(data_dir)

    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    log = tmp / "streamlit.log"
    cmd = [sys.executable, "-m", "streamlit", "run", str(APP.relative_to(REPO))]
    cmd += ["--server.port", str(port), "--server.address", "127.0.0.1"]
    from pdm.dashboard.launch import STREAMLIT_OPTIONS

    cmd += STREAMLIT_OPTIONS  # as pdm-edge dashboard serves it
    cmd += ["--server.fileWatcherType", "none", "--", "--data-dir", str(data_dir)]
    env = {**os.environ, "PDM_EDGE_DATA": str(data_dir)}
    env.pop("PDM_DASHBOARD_STORE", None)
    started = time.monotonic()
    with open(log, "wb") as log_file:
        proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=log_file, stderr=subprocess.STDOUT)
    try:
        _wait_healthy(proc, base, log)
        server_start_s = time.monotonic() - started
        with pytest.MonkeyPatch.context() as mp:
            mp.setenv("SE_OFFLINE", "true")  # Selenium Manager, should anything call it
            driver = _driver(webdriver, tmp)
        try:
            SCREENSHOTS.mkdir(parents=True, exist_ok=True)
            driver.get(base + "/")
            state = _wait_rendered(driver, PAGE_RENDER_S)
            if state != "ready":
                pytest.fail(f"the dashboard did not render ({state}):\n{_tail(log)}")
            pages: list[PageResult] = []
            names: set[str] = set()
            for url, label in _discover(driver, base):
                name = _page_name(url, label, base)
                while name in names:
                    name += "-"
                names.add(name)
                pages.append(_visit(driver, url, label, name))
                # A page that opens on another machine (with no data): also with ours.
                try:
                    pages.append(_visit(driver, url, label, f"{name}-{MACHINE_ID}", MACHINE_ID))
                except LookupError:
                    pass
            print(f"dashboard: streamlit healthy after {server_start_s:.1f} s")
            for p in pages:
                print(
                    f"dashboard page {p.name!r} ({p.label or '-'}): {p.seconds:.1f} s, "
                    f"{p.rendered}, {p.charts} charts, {p.screenshot}"
                )
            yield Visit(data_dir, alarm_state, base, log, pages, server_start_s)
        finally:
            driver.quit()
    finally:
        _stop(proc)
        shutil.rmtree(tmp / "chromium-profile", ignore_errors=True)


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
        pytest.fail(
            "\n".join(problems) + f"\n--- streamlit log (tail) ---\n{_tail(visit.server_log)}"
        )


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
