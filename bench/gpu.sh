#!/usr/bin/env bash
# One-shot GPU benchmark: on a machine with a CUDA GPU, train stage 1 and stage 2 with the GPU
# profile (configs/gpu_stage1.json, configs/gpu_stage2.json, model dashclip-base-gpu) on the shipped
# catalog, label the stage-2 pairs with spark_jobs/label_pairs.py, embed the catalog with
# spark_jobs/embed_catalog.py on the GPU, evaluate, and write bench/results/gpu.json (items/s per
# step, GPU memory peak, device name, quality figures beside the CPU run's). See docs/gpu.md.
#
#   bash bench/gpu.sh                 # needs a CUDA GPU; refuses (exit 3) without one
#   CPU_SMOKE=1 bash bench/gpu.sh     # (or --dry-run) every step on a tiny model and a 300-product
#                                     # slice, on the CPU, into runs/gpu_smoke/gpu.json: proves the script
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
SMOKE="${CPU_SMOKE:-0}"
[ "${1:-}" = "--dry-run" ] && SMOKE=1
DATA="${DASHCLIP_DATA:-$ROOT/../shared/data}"
PY="${PYTHON:-$ROOT/.venv/bin/python}"
SPARK_SUBMIT="$(dirname "$PY")/spark-submit"
export OMP_WAIT_POLICY=PASSIVE TOKENIZERS_PARALLELISM=false HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}" PYSPARK_PYTHON="$PY"
[ -f "$DATA/catalog.csv" ] || { echo "error: catalog not found at $DATA/catalog.csv (set DASHCLIP_DATA)" >&2; exit 1; }

SMOKE_FLAG=()
if [ "$SMOKE" = "1" ]; then
  SMOKE_FLAG=(--smoke); RUN="${RUN_DIR:-$ROOT/runs/gpu_smoke}"; RESULT="$RUN/gpu.json"
  MASTER="local[1]"; PARTS=1; DEVICE=cpu
else
  RUN="${RUN_DIR:-$ROOT/runs/gpu}"; RESULT="$ROOT/bench/results/gpu.json"
  MASTER="local[4]"; PARTS=4; DEVICE=auto  # four tasks decode JPEGs and share the GPU
fi
"$PY" bench/gpu.py preflight "${SMOKE_FLAG[@]}"  # exits 3 without a GPU

rm -rf "$RUN" && mkdir -p "$RUN/eval"
RUN="$(cd "$RUN" && pwd)"
"$PY" bench/gpu.py configs --run-dir "$RUN" "${SMOKE_FLAG[@]}"
CATALOG="$DATA/catalog.csv"
if [ "$SMOKE" = "1" ]; then
  CATALOG="$RUN/catalog.csv"
  "$PY" bench/gpu.py subset --catalog "$DATA/catalog.csv" --out "$CATALOG" --rows 300
fi

MEM_PID=""
if [ "$SMOKE" != "1" ] && command -v nvidia-smi >/dev/null; then
  nvidia-smi --query-gpu=memory.used --format=csv,noheader,nounits -lms 250 > "$RUN/gpu_memory.txt" &
  MEM_PID=$!
fi
trap '[ -n "$MEM_PID" ] && kill "$MEM_PID" 2>/dev/null || true' EXIT
T_ALL=$(date +%s.%N)
step() {  # step NAME COMMAND...: run it, log it, record its wall seconds
  local name=$1; shift
  echo "== $name"
  local t0; t0=$(date +%s.%N)
  "$@" > "$RUN/$name.log" 2>&1 || { echo "error: step $name failed (exit $?); see $RUN/$name.log" >&2; tail -5 "$RUN/$name.log" >&2; exit 1; }
  printf '%s\t%s\n' "$name" "$(awk "BEGIN{print $(date +%s.%N) - $t0}")" >> "$RUN/steps.tsv"
}

step ingest "$PY" -m dashclip.catalog ingest --catalog "$CATALOG" --image-root "$DATA" --out "$RUN/ingest"
PRODUCTS="$RUN/ingest/products.parquet"
step stage1 "$PY" -m dashclip.train stage1 --out "$RUN/stage1" --catalog "$PRODUCTS" --config "$RUN/stage1.json"
step stage2 "$PY" -m dashclip.train stage2 --checkpoint "$RUN/stage1" --out "$RUN/stage2" --catalog "$PRODUCTS" \
  --config "$RUN/stage2.json"
step label_pairs "$SPARK_SUBMIT" --master "$MASTER" spark_jobs/label_pairs.py --checkpoint "$RUN/stage2/teacher" \
  --pairs "$RUN/stage2/pairs.parquet" --out "$RUN/tables/labels" --device "$DEVICE" --partitions "$PARTS" \
  --report "$RUN/label_pairs.json"
step embed_catalog "$SPARK_SUBMIT" --master "$MASTER" spark_jobs/embed_catalog.py --checkpoint "$RUN/stage2" \
  --catalog "$CATALOG" --image-root "$DATA" --out "$RUN/tables/products" --device "$DEVICE" --partitions "$PARTS" \
  --report "$RUN/embed_catalog.json"
step eval_products "$PY" -m dashclip.evaluate products --checkpoint "$RUN/stage2" --catalog "$PRODUCTS" \
  --device "$DEVICE" --out "$RUN/eval"
step eval_judgments "$PY" -m dashclip.evaluate judgments --catalog "$PRODUCTS" --split test \
  --exclude-queries "$RUN/stage2/train_queries.csv" --out "$RUN/eval/generated"
step eval_queries "$PY" -m dashclip.evaluate queries --checkpoint "$RUN/stage2" \
  --catalog "$RUN/eval/generated/products.parquet" --judgments "$RUN/eval/generated/judgments.csv" \
  --device "$DEVICE" --out "$RUN/eval/generated"
printf 'total\t%s\n' "$(awk "BEGIN{print $(date +%s.%N) - $T_ALL}")" >> "$RUN/steps.tsv"

[ -n "$MEM_PID" ] && kill "$MEM_PID" 2>/dev/null || true
"$PY" bench/gpu.py report --run-dir "$RUN" --out "$RESULT" "${SMOKE_FLAG[@]}"
echo "wrote $RESULT"
