#!/usr/bin/env bash
# The whole test suite: unit tests, then integration and end-to-end tests on a real Kafka broker
# (started by the tests), real worker processes, SQLite, PostgreSQL, kcat and Prometheus.
# Installs (Debian packages) and starts what is missing. Arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh
bash scripts/ensure_prometheus.sh >&2
bash scripts/ensure_tools.sh >&2
eval "$(bash scripts/ensure_postgres.sh)"
exec .venv/bin/python -m pytest "$@"
