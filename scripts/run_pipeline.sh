#!/usr/bin/env bash
# The main job, end to end on the shipped data (../shared/data, or $DASHCLIP_DATA):
# ingest -> stage 1 -> stage 2 -> evaluation -> Spark embedding -> simulation + ranker + lift
# report -> feast apply/materialize -> ads server + a sample request.
# Idempotent: creates the environment when needed; checkpoints trained with the same settings are
# reused (--reuse), everything else is rewritten under $RUN_DIR.
# FAST=1: the documented faster setting (smaller training; Spark, simulation, ranker and server
# on a 1,000-product slice of the catalog; a small simulation).
# Own data (docs/own_data.md): CATALOG=, QUERIES= (query log), JUDGMENTS= (human seed for stage 2),
# LOGS= (ads logs folder for the ranker), LABELLER=llm (an LLM grades stage 2's pairs; DASHCLIP_LLM_*).
# Every given input is checked first; a step that needs
# something not given is skipped with a one-line reason.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
abs() { case "$1" in /*|"") echo "$1" ;; *) echo "$PWD/$1" ;; esac; }  # the caller's relative paths
CATALOG="$(abs "${CATALOG:-}")"; QUERIES="$(abs "${QUERIES:-}")"; JUDGMENTS="$(abs "${JUDGMENTS:-}")"
LOGS="$(abs "${LOGS:-}")"
cd "$ROOT"
DATA="${DASHCLIP_DATA:-$ROOT/../shared/data}"
RUN_DIR="${RUN_DIR:-$ROOT/runs/pipeline}"
CATALOG="${CATALOG:-$DATA/catalog.csv}"
FAST="${FAST:-0}"
[ -f "$CATALOG" ] || { echo "error: catalog not found at $CATALOG (set CATALOG or DASHCLIP_DATA)" >&2; exit 1; }
OWN_CATALOG=0
[ "$(cd "$(dirname "$CATALOG")" && pwd)/$(basename "$CATALOG")" = "$(cd "$DATA" 2>/dev/null && pwd)/catalog.csv" ] || OWN_CATALOG=1
skip() { echo "skipped: $1"; }

PY="$ROOT/.venv/bin/python"
[ -x "$PY" ] || bash scripts/setup_env.sh  # the check runs before any (re)install when it can
echo "== 0. input check"
CHECK=(--catalog "$CATALOG")
[ -n "$QUERIES" ] && CHECK+=(--queries "$QUERIES")
[ -n "$JUDGMENTS" ] && CHECK+=(--judgments "$JUDGMENTS")
[ -n "$LOGS" ] && CHECK+=(--logs "$LOGS")
PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}" "$PY" -m dashclip.inputs check "${CHECK[@]}" \
  || { echo "error: fix the inputs above; nothing was trained" >&2; exit 2; }
bash scripts/setup_env.sh
source scripts/ensure_services.sh
export OMP_WAIT_POLICY=PASSIVE TOKENIZERS_PARALLELISM=false HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
export PYSPARK_PYTHON="$ROOT/.venv/bin/python"
mkdir -p "$RUN_DIR"
RUN_DIR="$(cd "$RUN_DIR" && pwd)"  # absolute: feast resolves paths from feature_repo/
T0=$(date +%s)
step() { echo; echo "== $1  ($(( $(date +%s) - T0 )) s)"; }

S1_CFG=(); S2_CFG=(); RANK_FAST=(); SPARK_CATALOG="$CATALOG"; RANK_PRODUCTS="$RUN_DIR/ingest"
S2_DATA=(); RANK_DATA=()
[ -n "$QUERIES" ] && S2_DATA+=(--queries "$QUERIES")
[ -n "$JUDGMENTS" ] && S2_DATA+=(--seed-judgments "$JUDGMENTS")
[ -n "${LABELLER:-}" ] && S2_DATA+=(--labeller "$LABELLER")
[ -n "$LOGS" ] && RANK_DATA+=(--logs "$LOGS")
[ -n "$LOGS" ] && [ -n "$QUERIES" ] && RANK_DATA+=(--queries "$QUERIES")
if [ "$FAST" = "1" ]; then
  S1_CFG=(--config configs/fast_stage1.json); S2_CFG=(--config configs/fast_stage2.json); RANK_FAST=(--fast)
fi

step "1. ingest catalog"
"$PY" -m dashclip.catalog ingest --catalog "$CATALOG" --out "$RUN_DIR/ingest"

step "2. stage 1: continual pretraining of the product encoder"
"$PY" -m dashclip.train stage1 --out "$RUN_DIR/stage1" --catalog "$RUN_DIR/ingest/products.parquet" --reuse "${S1_CFG[@]}"

step "3. stage 2: relevance labels and query encoder"
"$PY" -m dashclip.train stage2 --checkpoint "$RUN_DIR/stage1" --out "$RUN_DIR/stage2" \
  --catalog "$RUN_DIR/ingest/products.parquet" --reuse "${S2_CFG[@]}" "${S2_DATA[@]}"

step "4. evaluation on held-out products and queries"
"$PY" -m dashclip.evaluate products --checkpoint "$RUN_DIR/stage2" --catalog "$RUN_DIR/ingest/products.parquet" \
  --out "$RUN_DIR/eval/products"
SETS=()
if [ -n "$JUDGMENTS" ]; then
  skip "evaluation on generated queries: the rule annotator would judge them; the human seed's held-out part is in the stage-2 summary"
else
  "$PY" -m dashclip.evaluate judgments --catalog "$RUN_DIR/ingest/products.parquet" --split test \
    --exclude-queries "$RUN_DIR/stage2/train_queries.csv" --out "$RUN_DIR/eval/generated"
  SETS+=(generated)
fi
if [ "$OWN_CATALOG" = "1" ]; then
  skip "evaluation on the handwritten queries: they describe the shipped catalog, not $CATALOG"
else
  "$PY" -m dashclip.evaluate judgments --catalog "$RUN_DIR/ingest/products.parquet" --split test \
    --queries dashclip/resources/handwritten_queries.csv --out "$RUN_DIR/eval/handwritten"
  SETS+=(handwritten)
fi
for set in "${SETS[@]}"; do
  READ=(); [ "$set" = handwritten ] && READ=(--read-judgments dashclip/resources/handwritten_read_judgments.csv)
  "$PY" -m dashclip.evaluate queries --checkpoint "$RUN_DIR/stage2" --catalog "$RUN_DIR/eval/$set/products.parquet" \
    --judgments "$RUN_DIR/eval/$set/judgments.csv" --out "$RUN_DIR/eval/$set" "${READ[@]}"
done

step "5. Spark batch inference (product and query embedding tables)"
FEATURE_DATA="$RUN_DIR/feature_data"
if [ "$FAST" = "1" ] && [ "$OWN_CATALOG" = "1" ]; then
  skip "the FAST 1,000-product slice: a user's catalog is embedded whole"
elif [ "$FAST" = "1" ]; then  # a 1,000-product slice for Spark, the simulation, ranker and server
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
  --catalog "$SPARK_CATALOG" --image-root "$(dirname "$CATALOG")" --out "$FEATURE_DATA/product_embeddings"
.venv/bin/spark-submit --master 'local[2]' spark_jobs/embed_queries.py --checkpoint "$RUN_DIR/stage2" \
  --queries "$RUN_DIR/stage2/train_queries.csv" --out "$FEATURE_DATA/query_embeddings"

RANKER=1
if [ -z "$LOGS" ] && [ "$OWN_CATALOG" = "1" ]; then
  RANKER=0
  step "6-8. ranker, feature store and ads server"
  skip "no ads logs given (LOGS=): the simulated traffic's click truth comes from rules written for the shipped catalog"
fi
if [ "$RANKER" = "1" ]; then  # steps 6-8 (not indented: the here-documents below end at column 0)
if [ -n "$LOGS" ]; then
  step "6. ranker training and report on the ads logs in $LOGS"
  REQUESTS="$LOGS"  # the sample request's consumer comes from the logged impressions
else
  step "6. simulated traffic, ranker training and lift report (SIMULATED)"
  REQUESTS="$RUN_DIR/ranker/sim"
fi
"$PY" -m ranking.train --checkpoint "$RUN_DIR/stage2" --catalog "$RANK_PRODUCTS" --out "$RUN_DIR/ranker" \
  --feature-data "$FEATURE_DATA" "${RANK_FAST[@]}" "${RANK_DATA[@]}"

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
"$PY" - "$PORT" "$REQUESTS" "$RUN_DIR/stage2/train_queries.csv" "$RUN_DIR/sample_response.json" "$OWN_CATALOG" <<'PY'
import json, sys, time
import httpx, pandas as pd
from dashclip.inputs import find_table, read_table
port, folder, queries, out, own = sys.argv[1:6]
url = f"http://127.0.0.1:{port}"
for _ in range(240):
    try:
        if httpx.get(f"{url}/health", timeout=1).status_code == 200:
            break
    except httpx.HTTPError:
        pass
    time.sleep(0.5)
consumer = str(read_table(find_table(folder, "requests") or find_table(folder, "impressions"))["consumer_id"].iloc[0])
query = str(pd.read_csv(queries, dtype=str)["query"].iloc[0]) if own == "1" else "black casual shoes for men"
body = {"consumer_id": consumer, "query": query, "k": 5}
r = httpx.post(f"{url}/rank", json=body, timeout=30)
print("POST /rank", json.dumps(body), "->", r.status_code)
print(json.dumps(r.json(), indent=1)[:1500])
open(out, "w").write(json.dumps({"request": body, "status": r.status_code, "response": r.json()}, indent=1))
r.raise_for_status()
PY
kill $SERVER 2>/dev/null || true
fi  # RANKER

step "done"
cat <<EOF
clean products:        $RUN_DIR/ingest/products.parquet (rejects: $RUN_DIR/ingest/rejects.parquet)
stage-1 checkpoint:    $RUN_DIR/stage1 (curve: $RUN_DIR/stage1/training_curve.png)
stage-2 checkpoint:    $RUN_DIR/stage2 (labels: $RUN_DIR/stage2/labels.parquet)
product evaluation:    $RUN_DIR/eval/products/products.md
query evaluation:      ${SETS[*]/#/$RUN_DIR/eval/} (queries.md in each; none when every set was skipped)
embedding tables:      $FEATURE_DATA/product_embeddings, $FEATURE_DATA/query_embeddings
ranker + report:       $([ "$RANKER" = "1" ] && echo "$RUN_DIR/ranker/models, $RUN_DIR/ranker/report.md ($([ -n "$LOGS" ] && echo "logs: $LOGS" || echo simulated))" || echo "skipped (no ads logs)")
sample ad response:    $([ "$RANKER" = "1" ] && echo "$RUN_DIR/sample_response.json" || echo skipped)
total: $(( $(date +%s) - T0 )) s
EOF
