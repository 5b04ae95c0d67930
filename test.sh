#!/usr/bin/env bash
# Quick start, command 2: set up (once) and run the whole test suite, lint and type checks.
# Extra arguments go to pytest (e.g. ./test.sh -k csv).
set -euo pipefail
cd "$(dirname "$0")"
PDM_EXTRAS=test . ./scripts/setup-venv.sh
# InfluxDB 1.x and VictoriaMetrics for the `influxdb` tests; warns (and those tests skip) on failure.
./scripts/setup-test-servers.sh
.venv/bin/ruff check .
.venv/bin/mypy
# One process by default. `./test.sh -n auto --dist loadscope` spreads whole modules over one
# pytest-xdist worker per core, the slow ones first (tests/conftest.py): ~40 % less time. It is
# opt-in until it has had more green full runs (README.md, "Test suite time"): the flaky test it
# exposed was the control API's fault, fixed in ef315e0.
exec .venv/bin/python -m pytest "$@"
