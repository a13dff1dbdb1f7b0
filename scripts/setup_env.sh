#!/usr/bin/env bash
# Create (or reuse) the project virtualenv at .venv and install the project with every extra at
# the tested versions: pip install -c constraints.txt -e ".[dev]".
# Idempotent: a stamp holding the hash of pyproject.toml and constraints.txt skips the install
# when neither changed.
#   PYTHON=/path/to/python3.11   the interpreter for a new .venv (default: the first of python3.11,
#                                python3.12, python3 that pyproject's requires-python accepts)
#   TORCH_INDEX_URL=URL          where torch comes from when pip has no torch wheel on disk
#                                (default: PyTorch's CPU index; e.g. .../whl/cu128 for a CUDA build)
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="$ROOT/.venv"
REQ_PY="$(sed -n 's/^requires-python *= *"\(.*\)"/\1/p' "$ROOT/pyproject.toml")"
TORCH_REQ="$(grep -o '"torch==[^"]*"' "$ROOT/pyproject.toml" | tr -d '"')"

die() { echo "[setup] error: $*" >&2; exit 1; }

sha256() {  # of stdin; sha256sum is GNU coreutils (Linux), shasum ships with macOS
  if command -v sha256sum >/dev/null 2>&1; then sha256sum; else shasum -a 256; fi | cut -d' ' -f1
}

python_ok() {  # does interpreter $1 satisfy requires-python (e.g. ">=3.11,<3.13")?
  "$1" - "$REQ_PY" >/dev/null 2>&1 <<'PY'
import operator, re, sys
ops = {">=": operator.ge, "<=": operator.le, ">": operator.gt, "<": operator.lt, "==": operator.eq, "!=": operator.ne}
for spec in sys.argv[1].split(","):
    op, ver = re.fullmatch(r"\s*(>=|<=|==|!=|>|<)\s*([0-9.]+)\s*", spec).groups()
    want = tuple(int(x) for x in ver.split("."))
    if not ops[op](sys.version_info[:len(want)], want):
        sys.exit(1)
PY
}

py_version() { "$1" -c 'import platform; print("Python", platform.python_version())' 2>/dev/null || echo "not a working Python"; }

if [ -x "$VENV/bin/python" ]; then
  python_ok "$VENV/bin/python" || die "$VENV has $(py_version "$VENV/bin/python"); this project needs $REQ_PY: remove $VENV and rerun (PYTHON=... picks the interpreter)"
else
  if [ -n "${PYTHON:-}" ]; then CANDIDATES=("$PYTHON"); else CANDIDATES=(python3.11 python3.12 python3); fi
  PY=""
  for c in "${CANDIDATES[@]}"; do
    if command -v "$c" >/dev/null 2>&1 && python_ok "$c"; then PY="$c"; break; fi
  done
  [ -n "$PY" ] || die "no Python $REQ_PY found (tried: ${CANDIDATES[*]}$( [ -n "${PYTHON:-}" ] && echo ", which is $(py_version "$PYTHON")")); install one or set PYTHON=/path/to/python3.11"
  echo "[setup] creating virtualenv at $VENV ($(py_version "$PY"))"
  "$PY" -m venv "$VENV"
fi
VPY="$VENV/bin/python"

STAMP="$VENV/.dashclip-installed"
WANT="$(cat "$ROOT/pyproject.toml" "$ROOT/constraints.txt" | sha256)"
if [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$WANT" ]; then
  echo "[setup] environment up to date ($VENV)"
  exit 0
fi
echo "[setup] installing the tested dependency set into $VENV (first run takes a few minutes)"
"$VPY" -m pip install -q --upgrade pip
# torch first: once installed it satisfies the project's torch pin, so the main install keeps that
# build (on Linux, PyPI's default torch wheel is a CUDA build with ~3 GB of nvidia-* packages).
# A wheel pip finds on disk (its find-links) wins; otherwise the build from TORCH_INDEX_URL.
if "$VPY" -m pip install -q --no-index --no-deps "$TORCH_REQ" >/dev/null 2>&1; then
  echo "[setup] torch: $TORCH_REQ from a wheel on disk (or already installed)"
else
  INDEX="${TORCH_INDEX_URL:-https://download.pytorch.org/whl/cpu}"
  echo "[setup] torch: $TORCH_REQ from $INDEX"
  "$VPY" -m pip install -q --index-url "$INDEX" "$TORCH_REQ"
fi
"$VPY" -m pip install -q -c "$ROOT/constraints.txt" -e "$ROOT[dev]"
echo "$WANT" > "$STAMP"
echo "[setup] done"
