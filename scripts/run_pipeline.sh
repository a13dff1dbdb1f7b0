#!/usr/bin/env bash
# The main job, end to end on the shipped data (../shared/data, or $DASHCLIP_DATA).
# Idempotent: creates the environment when needed and rewrites the outputs under $RUN_DIR.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
DATA="${DASHCLIP_DATA:-$ROOT/../shared/data}"
RUN_DIR="${RUN_DIR:-$ROOT/runs/pipeline}"
CATALOG="$DATA/catalog.csv"
[ -f "$CATALOG" ] || { echo "error: catalog not found at $CATALOG (set DASHCLIP_DATA)" >&2; exit 1; }

bash scripts/setup_env.sh
export OMP_WAIT_POLICY=PASSIVE TOKENIZERS_PARALLELISM=false HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
PY="$ROOT/.venv/bin/python"
mkdir -p "$RUN_DIR"

echo "== 1. ingest catalog"
"$PY" -m dashclip.catalog ingest --catalog "$CATALOG" --out "$RUN_DIR/ingest"

echo
echo "== results"
echo "clean products:   $RUN_DIR/ingest/products.parquet"
echo "rejected rows:    $RUN_DIR/ingest/rejects.parquet"
echo "ingest report:    $RUN_DIR/ingest/ingest_report.json"
