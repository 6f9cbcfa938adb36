#!/usr/bin/env bash
# Install the real services and tools the tests use, when missing (Debian packages).
set -euo pipefail
cd "$(dirname "$0")"
bash ensure_prometheus.sh
