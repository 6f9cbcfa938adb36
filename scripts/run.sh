#!/usr/bin/env bash
# The main job: a local Kafka broker, the airgrid worker, simulated stations and grid workers,
# with live output. Ctrl-C stops everything it started. Arguments go to `airgrid demo`.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh
exec .venv/bin/airgrid demo "$@"
