#!/usr/bin/env bash
# The main job, end to end on the shipped data (../shared/data, or $DASHCLIP_DATA):
# ingest -> stage 1 -> stage 2 -> evaluation -> Spark embedding -> simulation + ranker + lift
# report -> feast apply/materialize -> ads server + a sample request.
# Idempotent: creates the environment when needed; checkpoints trained with the same settings are
# reused (--reuse), everything else is rewritten under $RUN_DIR.
# FAST=1: the documented faster setting (smaller training; Spark, simulation, ranker and server
# on a 1,000-product slice of the catalog; a small simulation).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
DATA="${DASHCLIP_DATA:-$ROOT/../shared/data}"
RUN_DIR="${RUN_DIR:-$ROOT/runs/pipeline}"
CATALOG="$DATA/catalog.csv"
FAST="${FAST:-0}"
[ -f "$CATALOG" ] || { echo "error: catalog not found at $CATALOG (set DASHCLIP_DATA)" >&2; exit 1; }

bash scripts/setup_env.sh
source scripts/ensure_services.sh
export OMP_WAIT_POLICY=PASSIVE TOKENIZERS_PARALLELISM=false HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
export PYSPARK_PYTHON="$ROOT/.venv/bin/python"
PY="$ROOT/.venv/bin/python"
mkdir -p "$RUN_DIR"
RUN_DIR="$(cd "$RUN_DIR" && pwd)"  # absolute: feast resolves paths from feature_repo/
T0=$(date +%s)
step() { echo; echo "== $1  ($(( $(date +%s) - T0 )) s)"; }

S1_CFG=(); S2_CFG=(); RANK_FAST=(); SPARK_CATALOG="$CATALOG"; RANK_PRODUCTS="$RUN_DIR/ingest"
if [ "$FAST" = "1" ]; then
  S1_CFG=(--config configs/fast_stage1.json); S2_CFG=(--config configs/fast_stage2.json); RANK_FAST=(--fast)
fi

step "1. ingest catalog"
"$PY" -m dashclip.catalog ingest --catalog "$CATALOG" --out "$RUN_DIR/ingest"

step "2. stage 1: continual pretraining of the product encoder"
"$PY" -m dashclip.train stage1 --out "$RUN_DIR/stage1" --catalog "$RUN_DIR/ingest/products.parquet" --reuse "${S1_CFG[@]}"

step "3. stage 2: relevance labels and query encoder"
"$PY" -m dashclip.train stage2 --checkpoint "$RUN_DIR/stage1" --out "$RUN_DIR/stage2" \
  --catalog "$RUN_DIR/ingest/products.parquet" --reuse "${S2_CFG[@]}"

step "4. evaluation on held-out products and queries"
"$PY" -m dashclip.evaluate products --checkpoint "$RUN_DIR/stage2" --catalog "$RUN_DIR/ingest/products.parquet" \
  --out "$RUN_DIR/eval/products"
"$PY" -m dashclip.evaluate judgments --catalog "$RUN_DIR/ingest/products.parquet" --split test \
  --exclude-queries "$RUN_DIR/stage2/train_queries.csv" --out "$RUN_DIR/eval/generated"
"$PY" -m dashclip.evaluate judgments --catalog "$RUN_DIR/ingest/products.parquet" --split test \
  --queries dashclip/resources/handwritten_queries.csv --out "$RUN_DIR/eval/handwritten"
for set in generated handwritten; do
  "$PY" -m dashclip.evaluate queries --checkpoint "$RUN_DIR/stage2" --catalog "$RUN_DIR/eval/$set/products.parquet" \
    --judgments "$RUN_DIR/eval/$set/judgments.csv" --out "$RUN_DIR/eval/$set"
done

step "5. Spark batch inference (product and query embedding tables)"
FEATURE_DATA="$RUN_DIR/feature_data"
if [ "$FAST" = "1" ]; then  # a 1,000-product slice for Spark, the simulation, ranker and server
  SPARK_CATALOG="$RUN_DIR/spark_demo_catalog.csv"
  RANK_PRODUCTS="$RUN_DIR/spark_demo_ingest"
  "$PY" - "$CATALOG" "$SPARK_CATALOG" <<'PY'
import sys, pandas as pd
from pathlib import Path
src, dst = Path(sys.argv[1]), Path(sys.argv[2])
df = pd.read_csv(src, dtype=str, keep_default_na=False).iloc[::10]
df["image"] = [str((src.parent / p).resolve()) if p else "" for p in df["image"]]
df.to_csv(dst, index=False)
PY
  # the slice lives outside the data folder its images are in: that folder is their image root
  "$PY" -m dashclip.catalog ingest --catalog "$SPARK_CATALOG" --image-root "$DATA" --out "$RANK_PRODUCTS"
fi
.venv/bin/spark-submit --master 'local[2]' spark_jobs/embed_catalog.py --checkpoint "$RUN_DIR/stage2" \
  --catalog "$SPARK_CATALOG" --image-root "$DATA" --out "$FEATURE_DATA/product_embeddings"
.venv/bin/spark-submit --master 'local[2]' spark_jobs/embed_queries.py --checkpoint "$RUN_DIR/stage2" \
  --queries "$RUN_DIR/stage2/train_queries.csv" --out "$FEATURE_DATA/query_embeddings"

step "6. simulated traffic, ranker training and lift report (SIMULATED)"
"$PY" -m ranking.train --checkpoint "$RUN_DIR/stage2" --catalog "$RANK_PRODUCTS" --out "$RUN_DIR/ranker" \
  --feature-data "$FEATURE_DATA" "${RANK_FAST[@]}"

step "7. feast apply + materialize (Redis online store)"
export DASHCLIP_FEATURE_DATA="$FEATURE_DATA"
eval "$("$PY" -m features.store env)"
(cd feature_repo && "$ROOT/.venv/bin/feast" apply && "$ROOT/.venv/bin/feast" materialize 2000-01-01T00:00:00 "$(date -u +%FT%T)")

step "8. ads server and a sample request"
PORT="${PORT:-8765}"
"$PY" -m ranking.serve --ranker "$RUN_DIR/ranker/models/with_embeddings" --checkpoint "$RUN_DIR/stage2" \
  --feature-repo feature_repo --catalog "$RANK_PRODUCTS" --port "$PORT" > "$RUN_DIR/serve.log" 2>&1 &
SERVER=$!
trap 'kill $SERVER 2>/dev/null || true' EXIT
"$PY" - "$PORT" "$RUN_DIR/ranker/sim/requests.parquet" "$RUN_DIR/sample_response.json" <<'PY'
import json, sys, time
import httpx, pandas as pd
port, requests, out = sys.argv[1], sys.argv[2], sys.argv[3]
url = f"http://127.0.0.1:{port}"
for _ in range(240):
    try:
        if httpx.get(f"{url}/health", timeout=1).status_code == 200:
            break
    except httpx.HTTPError:
        pass
    time.sleep(0.5)
consumer = str(pd.read_parquet(requests)["consumer_id"].iloc[0])
body = {"consumer_id": consumer, "query": "black casual shoes for men", "k": 5}
r = httpx.post(f"{url}/rank", json=body, timeout=30)
print("POST /rank", json.dumps(body), "->", r.status_code)
print(json.dumps(r.json(), indent=1)[:1500])
open(out, "w").write(json.dumps({"request": body, "status": r.status_code, "response": r.json()}, indent=1))
r.raise_for_status()
PY
kill $SERVER 2>/dev/null || true

step "done"
cat <<EOF
clean products:        $RUN_DIR/ingest/products.parquet (rejects: $RUN_DIR/ingest/rejects.parquet)
stage-1 checkpoint:    $RUN_DIR/stage1 (curve: $RUN_DIR/stage1/training_curve.png)
stage-2 checkpoint:    $RUN_DIR/stage2 (labels: $RUN_DIR/stage2/labels.parquet)
product evaluation:    $RUN_DIR/eval/products/products.md
query evaluation:      $RUN_DIR/eval/generated/queries.md, $RUN_DIR/eval/handwritten/queries.md
embedding tables:      $FEATURE_DATA/product_embeddings, $FEATURE_DATA/query_embeddings
ranker + lift report:  $RUN_DIR/ranker/models, $RUN_DIR/ranker/report.md (simulated)
sample ad response:    $RUN_DIR/sample_response.json
total: $(( $(date +%s) - T0 )) s
EOF
