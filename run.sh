#!/usr/bin/env bash
# Quick start, command 1: set up (once) and run the appliance on the embedded default.
# It replays a fixture through the demo pipeline and prints what it found, then runs the
# service — the simulator feeding the demo machine, an outer-race fault growing from 2 min on,
# history in the embedded SQLite store var/history.db — and the dashboard on
# http://127.0.0.1:8501 (control API on 127.0.0.1:8470). Ctrl-C stops both.
# Extra arguments go to `pdm-edge run` (e.g. --listen 127.0.0.1:8471 for a real stream).
set -euo pipefail
cd "$(dirname "$0")"
. ./scripts/setup-venv.sh
.venv/bin/pdm-edge demo
echo
.venv/bin/pdm-edge run pipelines/demo.toml --data-dir var --simulate --fault bpfo:0.3@120+600 "$@" &
service=$!
.venv/bin/pdm-edge dashboard --data-dir var --api http://127.0.0.1:8470 &
dashboard=$!
trap 'kill -TERM "$service" "$dashboard" 2>/dev/null; wait "$service" "$dashboard" 2>/dev/null' INT TERM EXIT
echo "pdm-edge: dashboard on http://127.0.0.1:8501 — Ctrl-C stops the service and the dashboard"
wait -n "$service" "$dashboard"
