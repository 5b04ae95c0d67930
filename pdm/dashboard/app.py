"""The dashboard's Streamlit entry: ``streamlit run pdm/dashboard/app.py -- [--store URL] …``.

Started by ``pdm-edge dashboard`` (:mod:`pdm.dashboard.launch`). Everything is served from
the appliance: no web fonts, no CDN, nothing remote; the theme is injected CSS.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable
from pathlib import Path

import streamlit as st

# ``streamlit run`` puts this file's folder first on sys.path; its modules (data, models…)
# must only be imported as pdm.dashboard.*, never shadow top-level names.
_HERE = str(Path(__file__).resolve().parent)
sys.path[:] = [p for p in sys.path if str(Path(p or ".").resolve()) != _HERE]
_ROOT = str(Path(__file__).resolve().parents[2])  # a checkout without ``pip install``
if _ROOT not in sys.path:
    sys.path.append(_ROOT)

from pdm.dashboard.context import DashboardContext, load_context  # noqa: E402

CSS = """
<style>
:root { color-scheme: dark; }
html, body, .stApp, [data-testid="stAppViewContainer"], [data-testid="stHeader"] {
  background-color: #0b0c0e !important; color: #f1f3f4 !important;
  font-family: system-ui, -apple-system, "Segoe UI", Roboto, "DejaVu Sans", sans-serif;
}
[data-testid="stSidebar"], [data-testid="stSidebarContent"] { background-color: #16181c !important; }
[data-testid="stSidebar"] * , .stApp p, .stApp label, .stApp span, .stApp li,
.stApp h1, .stApp h2, .stApp h3, .stApp h4 { color: #f1f3f4 !important; }
.stApp a { color: #8ab4f8 !important; }
.stApp [data-baseweb="select"] > div, .stApp input, .stApp textarea {
  background-color: #202124 !important; color: #f1f3f4 !important; border-color: #5f6368 !important;
}
/* Only Streamlit's own buttons: the close icons of chips and the PIN's eye are buttons too. */
.stApp [data-testid^="stBaseButton"] { background-color: #202124 !important;
  color: #f1f3f4 !important; border: 1px solid #9aa0a6 !important; }
.stApp [data-testid^="stBaseButton-primary"] { background-color: #1a73e8 !important;
  border-color: #8ab4f8 !important; }
.stApp [data-testid^="stBaseButton"]:disabled { opacity: 0.45; }
[data-testid="stCaptionContainer"], .stApp small { color: #bdc1c6 !important; }
</style>
"""

PageFn = Callable[[DashboardContext], None]


def _context() -> DashboardContext:
    """The context, loaded once per browser session from the arguments after ``--``."""
    ctx = st.session_state.get("pdm_ctx")
    if not isinstance(ctx, DashboardContext):
        ctx = load_context(sys.argv[1:])
        st.session_state["pdm_ctx"] = ctx
    return ctx


def _optional(module: str, title: str) -> PageFn:
    """A page from ``pdm.dashboard.<module>`` when it can be imported, else "not available"."""

    def render(ctx: DashboardContext) -> None:
        try:
            mod = importlib.import_module(f"pdm.dashboard.{module}")
        except ImportError as exc:
            st.title(title)
            st.info(f"{title}: not available ({exc}).")
            return
        fn = getattr(mod, "render", None)
        if not callable(fn):
            st.title(title)
            st.info(f"{title}: not available (pdm.dashboard.{module} has no render()).")
            return
        fn(ctx)

    return render


def _page(fn: PageFn, ctx: DashboardContext, title: str, path: str, **kw: object) -> st.Page:
    def run() -> None:
        fn(ctx)

    run.__name__ = path
    return st.Page(run, title=title, url_path=path, **kw)  # type: ignore[arg-type]


def main() -> None:
    st.set_page_config(layout="wide", page_title="pdm-edge")
    st.markdown(CSS, unsafe_allow_html=True)
    ctx = _context()
    for problem in ctx.problems:
        st.warning(problem)
    from pdm.dashboard import machine, overview

    pages = [
        _page(overview.render, ctx, "Overview", "home", default=True),
        # The wall screen's own URL, /overview: kiosk (no sidebar), fills the screen.
        _page(overview.render_wall, ctx, "Wall screen", "overview"),
        _page(machine.render, ctx, "Machine", "machine"),
        _page(_optional("alarms", "Alarms"), ctx, "Alarms", "alarms"),
        _page(_optional("commissioning", "Commissioning"), ctx, "Commissioning", "commissioning"),
        _page(_optional("models", "Models"), ctx, "Models", "models"),
        _page(_optional("fleet", "Fleet"), ctx, "Fleet", "fleet"),
    ]
    st.navigation(pages).run()


main()
