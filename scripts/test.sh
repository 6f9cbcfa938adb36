#!/usr/bin/env bash
# The whole test suite: unit tests, then integration and end-to-end tests on a real Kafka broker
# (started by the tests), real worker processes, SQLite, PostgreSQL and Prometheus.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh
if [ -f scripts/ensure_services.sh ]; then bash scripts/ensure_services.sh; fi
exec .venv/bin/python -m pytest "$@"
