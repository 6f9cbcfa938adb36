#!/usr/bin/env bash
# The venv of bench.run's Quix Streams peer (.cache/venv-quix); fast when nothing changed.
# Quix Streams caps pydantic below the version airgrid pins, so it cannot share airgrid's .venv:
# the peer runs as a subprocess with this venv's interpreter (bench/peers/quix_app.py).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
venv=.cache/venv-quix
req=bench/requirements-quix.txt
stamp=$venv/.bench-installed
want=$(sha256sum "$req" | cut -c1-16)
if [ ! -x "$venv/bin/python" ]; then
  echo "==> creating $venv" >&2
  "$PY" -m venv "$venv"
fi
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
  echo "==> installing Quix Streams for the bench into $venv (first run: about a minute)" >&2
  "$venv/bin/python" -m pip install --quiet --upgrade pip >&2
  "$venv/bin/python" -m pip install --quiet -r "$req" >&2
  echo "$want" > "$stamp"
fi
