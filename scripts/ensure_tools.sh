#!/usr/bin/env bash
# Command-line tools the tests use beside Python: kcat (a non-Python Kafka subscriber).
set -euo pipefail
if ! command -v kcat >/dev/null; then
  echo "ensure_tools: installing Debian's kcat package" >&2
  started=$(date +%s)
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >&2
  apt-get install -y -qq kcat >&2
  echo "ensure_tools: installed in $(( $(date +%s) - started ))s" >&2
fi
echo "ensure_tools: $(command -v kcat) ($(kcat -V 2>&1 | head -1))" >&2
