#!/usr/bin/env bash
# Quick start, command 1: set up (once) and run the main job on the embedded default.
# Today the main job replays a fixture recording through pipelines/demo.toml and
# prints what it found; extra arguments go to `pdm-edge demo`.
set -euo pipefail
cd "$(dirname "$0")"
. ./scripts/setup-venv.sh
exec .venv/bin/pdm-edge demo "$@"
