"""Helpers for the dashboard's real-browser tests: a Streamlit server on loopback, headless
Chromium through Selenium (offline: both binaries given, Selenium Manager never downloads),
waiting for a page to render, full-page screenshots, choosing in a selectbox.

Used by ``tests/dashboard/test_dashboard_browser.py`` and ``tests/dashboard/test_dashboard_screens.py``.
"""

from __future__ import annotations

import base64
import contextlib
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
    pages: list[PageResult]
    driver: Any = None  # still open while the module's tests run


# --- requirements ------------------------------------------------------------------------------


def require() -> Any:
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


def replay_into(data_dir: Path) -> str:
    """Fill ``data_dir`` with a real replay; the alarm state it ends in."""
    cmd = [sys.executable, "-m", "pdm.cli", "replay", "fixtures/outer_race.csv.gz"]
    cmd += ["-p", "pipelines/demo.toml", "--data-dir", str(data_dir), "--actions", "live"]
    out = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, f"replay failed ({out.returncode}):\n{out.stderr[-3000:]}"
    report = json.loads(out.stdout.strip().splitlines()[-1])
    assert report["rows_written"] > 0 and report["all_delivered"], report
    return str(report["alarm_state"])


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def tail(path: Path, n: int = 4000) -> str:
    try:
        return path.read_text(errors="replace")[-n:]
    except OSError:
        return ""


def wait_healthy(proc: subprocess.Popen[bytes], url: str, log: Path) -> None:
    # No proxy for loopback, whatever the environment says.
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    deadline = time.monotonic() + SERVER_START_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"streamlit exited with {proc.returncode}:\n{tail(log)}")
        try:
            with opener.open(f"{url}/_stcore/health", timeout=2) as r:
                if r.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.2)
    pytest.fail(f"streamlit not healthy after {SERVER_START_S:.0f} s:\n{tail(log)}")


def stop_server(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


# --- the browser -------------------------------------------------------------------------------


def make_driver(webdriver: Any, tmp: Path) -> Any:
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


def ready_state(driver: Any) -> str:
    try:
        return str(driver.execute_script(READY_JS))
    except Exception as exc:  # the page is being replaced under us
        return f"script error: {type(exc).__name__}"


def wait_rendered(driver: Any, timeout: float) -> str:
    """'ready' once the page is rendered (twice in a row), else what it was still waiting for."""
    deadline = time.monotonic() + timeout
    state, ready_seen = "not loaded", 0
    while time.monotonic() < deadline:
        state = ready_state(driver)
        ready_seen = ready_seen + 1 if state == "ready" else 0
        if ready_seen >= 2:
            return state
        time.sleep(0.15)
    return state


def full_page_png(driver: Any, path: Path) -> None:
    """The whole page, not just the viewport: Streamlit scrolls inside stMain, so grow the
    viewport to the content's height for the capture (at the window's width)."""
    size = driver.get_window_size()
    width, view = int(size["width"]), int(size["height"])
    height = int(driver.execute_script(PAGE_HEIGHT_JS) or view)
    height = max(view, min(height, MAX_SCREENSHOT_HEIGHT))
    metrics = {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": False}
    driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", metrics)
    try:
        time.sleep(0.3)  # let the layout (and any chart sized to its container) settle
        shot = driver.execute_cdp_cmd("Page.captureScreenshot", {"format": "png"})
        path.write_bytes(base64.b64decode(shot["data"]))
    finally:
        driver.execute_cdp_cmd("Emulation.clearDeviceMetricsOverride", {})


def page_name(url: str, label: str, base: str) -> str:
    """A file name for a page: its navigation label (``wall-screen``), else its path."""
    parts = urlsplit(url)
    query = parse_qs(parts.query)
    path = parts.path[len(urlsplit(base).path) :].strip("/")
    raw = label or (query.get("page") or [""])[0] or path
    name = re.sub(r"[^a-z0-9]+", "-", raw.lower()).strip("-")
    return name or "index"


def discover(driver: Any, base: str) -> list[tuple[str, str]]:
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


def pick_machine(driver: Any, machine: str) -> bool:
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
    while time.monotonic() < deadline and ready_state(driver) == "ready":
        time.sleep(0.05)
    return True


def visit_page(
    driver: Any, url: str, label: str, name: str, machine: str | None = None
) -> PageResult:
    result = PageResult(name, label, url)
    started = time.monotonic()
    if machine is None:
        driver.get(url)
    elif not pick_machine(driver, machine):
        raise LookupError(machine)
    result.rendered = wait_rendered(driver, PAGE_RENDER_S)
    result.seconds = time.monotonic() - started
    result.screenshot = SCREENSHOTS / f"{name}.png"
    full_page_png(driver, result.screenshot)
    found = driver.execute_script(PROBLEMS_JS)
    result.exceptions = list(found["exceptions"])
    result.errors = list(found["errors"])
    result.warnings = list(found["warnings"])
    result.charts = int(found["charts"])
    result.text = str(found["text"])
    result.machine = driver.execute_script(MACHINE_SELECT_JS)
    return result


def screen_png(driver: Any, path: Path) -> None:
    """The viewport only, as a wall screen shows it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    shot = driver.execute_cdp_cmd("Page.captureScreenshot", {"format": "png"})
    path.write_bytes(base64.b64decode(shot["data"]))


def set_size(driver: Any, width: int, height: int) -> None:
    """The viewport exactly ``width`` × ``height`` CSS px (headless window chrome aside)."""
    driver.set_window_size(width, height)
    metrics = {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": False}
    driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", metrics)


@contextlib.contextmanager
def serve(data_dir: Path, tmp: Path, *args: str) -> Iterator[str]:
    """``streamlit run dashboards/app.py -- --data-dir DIR ARGS`` on a free loopback port,
    served as ``pdm-edge dashboard`` serves it; yields its base URL."""
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    log = tmp / f"streamlit-{port}.log"
    cmd = [sys.executable, "-m", "streamlit", "run", str(APP.relative_to(REPO))]
    cmd += ["--server.port", str(port), "--server.address", "127.0.0.1"]
    from pdm.dashboard.launch import STREAMLIT_OPTIONS

    cmd += STREAMLIT_OPTIONS
    cmd += ["--server.fileWatcherType", "none", "--", "--data-dir", str(data_dir), *args]
    env = {**os.environ, "PDM_EDGE_DATA": str(data_dir)}
    env.pop("PDM_DASHBOARD_STORE", None)
    env.pop("PDM_DASHBOARD_API", None)
    with open(log, "wb") as log_file:
        proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=log_file, stderr=subprocess.STDOUT)
    try:
        wait_healthy(proc, base, log)
        yield base
    finally:
        stop_server(proc)


@contextlib.contextmanager
def browser(tmp: Path, width: int = 1920, height: int = 1080) -> Iterator[Any]:
    """Headless Chromium at ``width`` × ``height``; skips when it cannot run here."""
    webdriver = require()
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("SE_OFFLINE", "true")  # Selenium Manager, should anything call it
        driver = make_driver(webdriver, tmp)
    try:
        set_size(driver, width, height)
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(tmp / "chromium-profile", ignore_errors=True)


def open_page(driver: Any, url: str, timeout: float = PAGE_RENDER_S) -> dict[str, Any]:
    """Load ``url``, wait until rendered; what :data:`PROBLEMS_JS` finds there."""
    driver.get(url)
    state = wait_rendered(driver, timeout)
    assert state == "ready", f"{url}: not rendered within {timeout:.0f} s ({state})"
    found: dict[str, Any] = driver.execute_script(PROBLEMS_JS)
    return found


def pick(driver: Any, label: str, text: str) -> None:
    """Choose the option containing ``text`` in the selectbox labelled ``label``, and wait
    for the re-run it starts."""
    from selenium.webdriver.common.by import By

    for box in driver.find_elements(By.CSS_SELECTOR, '[data-testid="stSelectbox"]'):
        labels = box.find_elements(By.CSS_SELECTOR, '[data-testid="stWidgetLabel"]')
        if labels and labels[0].text.strip() == label:
            box.find_elements(
                By.CSS_SELECTOR, 'button[aria-haspopup="listbox"], [data-baseweb="select"]'
            )[0].click()
            time.sleep(0.3)
            break
    else:
        raise LookupError(label)
    options = [
        o for o in driver.find_elements(By.CSS_SELECTOR, '[role="option"]') if text in o.text
    ]
    if not options:
        raise LookupError(text)
    options[0].click()
    rerun(driver)


def click_button(driver: Any, text: str) -> None:
    """Click the (first) button whose text is ``text`` and wait for the re-run."""
    from selenium.webdriver.common.by import By

    for b in driver.find_elements(By.CSS_SELECTOR, "button"):
        if b.text.strip() == text:
            b.click()
            rerun(driver)
            return
    raise LookupError(text)


def rerun(driver: Any, timeout: float = 60.0) -> None:
    """Wait for a re-run started by an interaction to begin, then to finish."""
    deadline = time.monotonic() + 3
    while time.monotonic() < deadline and ready_state(driver) == "ready":
        time.sleep(0.05)
    state = wait_rendered(driver, timeout)
    assert state == "ready", f"the page did not settle within {timeout:.0f} s ({state})"
