"""``streamlit run dashboards/app.py -- [ARGS]`` from a checkout: runs pdm/dashboard/app.py."""

import runpy
from pathlib import Path

runpy.run_path(
    str(Path(__file__).resolve().parents[1] / "pdm/dashboard/app.py"), run_name="__main__"
)
