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
# pytest-xdist: whole modules (their module fixtures started once) spread over one worker per
# core, the slow ones first (tests/conftest.py). `./test.sh -n 0` runs in one process.
exec .venv/bin/python -m pytest -n auto --dist loadscope "$@"
