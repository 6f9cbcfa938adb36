#!/usr/bin/env bash
# Create .venv and install airgrid with its pinned dependencies; fast when nothing changed.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if ! "$PY" -c 'import sys; sys.exit(0 if (3, 11) <= sys.version_info[:2] < (3, 13) else 1)'; then
  echo "airgrid needs Python 3.11 or 3.12 (found: $("$PY" --version 2>&1)); set PYTHON=..." >&2
  exit 1
fi
command -v java >/dev/null || { echo "airgrid's local Kafka needs Java 17+ (java not found)" >&2; exit 1; }
command -v mvn >/dev/null || { echo "airgrid's local Kafka needs Maven (mvn not found)" >&2; exit 1; }
if [ ! -x .venv/bin/python ]; then
  echo "==> creating .venv"
  "$PY" -m venv .venv
fi
stamp=.venv/.airgrid-installed
want=$(cat pyproject.toml | sha256sum | cut -c1-16)
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
  echo "==> installing airgrid and its pinned dependencies into .venv (first run: about a minute)"
  .venv/bin/python -m pip install --quiet --upgrade pip
  .venv/bin/python -m pip install --quiet -e ".[dev]"
  echo "$want" > "$stamp"
fi
