#!/usr/bin/env bash
# Create (or reuse) the project virtualenv at .venv and install the pinned dependencies.
# Idempotent: a stamp holding the hash of pyproject.toml skips the install when nothing changed.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="$ROOT/.venv"
PY="${PYTHON:-python3}"

if [ ! -x "$VENV/bin/python" ]; then
  echo "[setup] creating virtualenv at $VENV"
  "$PY" -m venv "$VENV"
fi
STAMP="$VENV/.dashclip-installed"
WANT="$(sha256sum "$ROOT/pyproject.toml" | cut -d' ' -f1)"
if [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$WANT" ]; then
  echo "[setup] environment up to date ($VENV)"
  exit 0
fi
echo "[setup] installing pinned dependencies into $VENV (first run takes a few minutes)"
"$VENV/bin/python" -m pip install -q --upgrade pip
# torch first, pinned: a looser requirement elsewhere would otherwise pull CUDA wheels.
"$VENV/bin/python" -m pip install -q "torch==2.13.0"
"$VENV/bin/python" -m pip install -q -e "$ROOT"
echo "$WANT" > "$STAMP"
echo "[setup] done"
