"""Loading a pipeline leaves its relay alone (docs/alarms.md, "Checked at load"; issue 16 item 16).

The docs used to warn that `pdm-edge check` turned an energised Modbus coil off; the check only
parses the relay URL now. A real pymodbus server holds the coil energised while the commands
that only read a pipeline run as subprocesses.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.relay
def test_commands_that_only_read_a_pipeline_leave_an_energised_coil_on(
    tmp_path: Path, modbus_server
) -> None:
    text = (REPO / "pipelines" / "demo.toml").read_text()
    text = text.replace('path = "../models/demo-pump"', f'path = "{REPO}/models/demo-pump"')
    pl = tmp_path / "pump.toml"
    pl.write_text(
        text.replace(
            "\n[alarms]\n",
            f'\n[alarms]\nrelay = "modbus://127.0.0.1:{modbus_server.port}?coil=0"\n',
        )
    )
    for cmd in (
        ["check", str(pl)],
        ["features", str(REPO / "fixtures" / "healthy.csv.gz"), "-p", str(pl)],
    ):
        modbus_server.set_coil(0, True)
        run = subprocess.run(
            [sys.executable, "-m", "pdm.cli", *cmd], capture_output=True, cwd=REPO, timeout=120
        )
        assert run.returncode == 0, run.stderr
        assert modbus_server.coil(0) is True, cmd[0]
