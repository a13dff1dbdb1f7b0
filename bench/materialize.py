"""Materialization throughput into Redis: our engine vs Feast's stock local engine, same run.

    python bench/materialize.py [--sizes catalog,200000] [--dim 256]

Tables: the shipped catalog's product ids (embeddings from the Spark job's table when
`--embeddings` points at one, else random unit vectors of the same shape) and a 200k-row table.
Each engine materializes the product embedding view into a fresh Feast project; the time is the
wall clock of `FeatureStore.materialize` (what `feast materialize` runs). A sample of keys is
compared byte for byte between the two. Writes bench/results/materialize.json.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import redis

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # `python bench/materialize.py` from the root
from bench.common import WINDOW, DATA_CSV, drop_project, machine, redis_url, scratch_store, write
from features import columns as C
from features.definitions import build_definitions
from features.materialize import ENGINE_TYPE
from features.synthetic import T0, product_table, unit_vectors, write_partition

VIEW = C.embedding_view_name(C.PRODUCT_ENTITY, "v1")


def _table(data_dir: Path, ids: list[str], dim: int, embeddings: Path | None) -> str:
    if embeddings is not None:
        src = pq.read_table(embeddings)
        write_partition(data_dir, C.PRODUCT_EMBEDDINGS_TABLE, "v1", src.drop([c for c in ["model_version"] if c in src.column_names]))
        return f"embeddings from {embeddings}"
    mat = unit_vectors(np.random.default_rng(0), len(ids), dim)
    write_partition(data_dir, C.PRODUCT_EMBEDDINGS_TABLE, "v1", product_table(ids, mat, T0))
    return f"random unit vectors, {dim}-d"


def _run(root: Path, data_dir: Path, engine: str) -> tuple[float, str]:
    store = scratch_store(root, data_dir, engine, views=[VIEW])
    t = time.perf_counter()
    store.materialize(T0 - WINDOW, T0 + WINDOW)
    return time.perf_counter() - t, store.project


def _same_sample(a: str, b: str, n: int = 500) -> bool:
    r = redis.Redis.from_url(redis_url())
    keys = [k for _, k in zip(range(n), r.scan_iter(match=b"*" + a.encode(), count=1000))]
    return all(r.hgetall(k) == r.hgetall(k[: -len(a)] + b.encode()) for k in keys) and len(keys) > 0


def bench_size(name: str, ids: list[str], dim: int, embeddings: Path | None) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        source = _table(root / "data", ids, dim, embeddings)
        rows = pq.read_metadata(next((root / "data").rglob("*.parquet"))).num_rows
        ours_s, ours_p = _run(root, root / "data", ENGINE_TYPE)
        stock_s, stock_p = _run(root, root / "data", "local")
        same = _same_sample(ours_p, stock_p)
        drop_project(ours_p)
        drop_project(stock_p)
    res = {"table": name, "rows": rows, "dim": dim, "source": source,
           "ours_seconds": round(ours_s, 3), "stock_seconds": round(stock_s, 3),
           "ours_rows_per_s": round(rows / ours_s), "stock_rows_per_s": round(rows / stock_s),
           "speedup": round(stock_s / ours_s, 2), "identical_bytes_sample": same}
    print(res, flush=True)
    return res


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="catalog,200000")
    ap.add_argument("--dim", type=int, default=256)
    ap.add_argument("--embeddings", type=Path, default=None, help="product embedding parquet of the catalog")
    ap.add_argument("--note", default="")
    args = ap.parse_args()
    assert build_definitions  # the views benchmarked are the repo's own declarations
    load_before = machine(args.note)["loadavg_1_5_15"]
    results = []
    for size in args.sizes.split(","):
        if size == "catalog":
            ids = pd.read_csv(DATA_CSV, usecols=["product_id"], dtype=str)["product_id"].dropna().unique().tolist()
            results.append(bench_size("catalog", ids, args.dim, args.embeddings))
        else:
            results.append(bench_size(f"{int(size)}_rows", [f"p{i}" for i in range(int(size))], args.dim, None))
    write("materialize", {
        "what": "FeatureStore.materialize of the product embedding view (feast materialize), wall clock",
        "target_rows_per_s": 20000, "tables": results,
        "machine": {**machine(args.note), "loadavg_before": load_before},
    })


if __name__ == "__main__":
    main()
