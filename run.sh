#!/usr/bin/env bash
# Quick start, command 1: set up (once) and run the main job on the embedded default.
# Today the main job replays a fixture recording through pipelines/demo.toml, prints
# what it found, and keeps the history (features, scores, spectra, transitions with
# their raw windows) in the embedded SQLite store var/history.db. Extra arguments go
# to `pdm-edge demo`.
set -euo pipefail
cd "$(dirname "$0")"
. ./scripts/setup-venv.sh
.venv/bin/pdm-edge demo "$@"
echo
echo "History → var/history.db (summary as JSON; see docs/history.md):"
exec .venv/bin/pdm-edge replay fixtures/outer_race.csv.gz -p pipelines/demo.toml --data-dir var
