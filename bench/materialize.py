"""Materialization throughput into Redis: our engine vs Feast's stock local engine, same run.

    python bench/materialize.py [--sizes catalog,200000] [--dim 256]
    python bench/materialize.py --served-rows 200000 --served-dim 640   # served vectors only

Tables: the shipped catalog's product ids (embeddings from the Spark job's table when
`--embeddings` points at one, else random unit vectors of the same shape) and a 200k-row table.
Each engine materializes the product embedding view into a fresh Feast project; the time is the
wall clock of `FeatureStore.materialize` (what `feast materialize` runs). A sample of keys is
compared byte for byte between the two.

Served vectors (`--served-rows`, on a private redis-server this script starts and flushes): the
product embedding view at the served dimension, written by our engine (`materialize_view`, the
write path of `feast materialize` without Feast's planning) beside a raw redis-py pipeline sending
the same HSETs (same keys, fields and bytes: the practical limit), for float32, float16 and int8
storage, with Redis `MEMORY USAGE` per product. Writes bench/results/materialize.json.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import redis

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # `python bench/materialize.py` from the root
from bench.common import RESULTS, WINDOW, DATA_CSV, drop_project, machine, redis_url, scratch_store, write
from features import columns as C
from features.repo import open_repo_store
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
    store = scratch_store(root, data_dir, engine)
    t = time.perf_counter()
    store.materialize(T0 - WINDOW, T0 + WINDOW, feature_views=[VIEW])
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


def _private_redis(workdir: Path):
    import shutil
    import socket
    import subprocess

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    proc = subprocess.Popen([shutil.which("redis-server"), "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                             "--appendonly", "no", "--dir", str(workdir)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    client = redis.Redis(port=port)
    for _ in range(200):
        try:
            client.ping()
            return proc, port
        except redis.ConnectionError:
            time.sleep(0.05)
    proc.terminate()
    raise RuntimeError(f"redis-server did not answer on port {port}")


def bench_served(rows: int, dim: int, chunk_rows: int) -> dict:
    """Our engine vs a raw redis-py pipeline writing the same HSETs, per storage dtype."""
    from features import redis_format as F
    from features.materialize import encode_features, materialize_view, read_latest

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        proc, port = _private_redis(root)
        try:
            ids = [f"p{i}" for i in range(rows)]
            mat = unit_vectors(np.random.default_rng(0), rows, dim)
            write_partition(root / "data", C.PRODUCT_EMBEDDINGS_TABLE, "v1", product_table(ids, mat, T0))
            store = open_repo_store(root / "data", root, project="bench", redis_url=f"redis://127.0.0.1:{port}",
                                    model_versions=("v1",))
            cfg = store.config
            fv = store.get_feature_view(VIEW)
            client = redis.Redis(port=port)
            keys = F.entity_keys(C.PRODUCT_ID, ids, "bench")
            tsf, embf = F.ts_field(VIEW), F.feature_field(VIEW, "embedding")
            ts_blob = F.encode_timestamps(np.array([int(T0.timestamp() * 1e6)]))[0]
            out = {"rows": rows, "dim": dim, "chunk_rows": chunk_rows, "redis": f"private redis-server "
                   f"{client.info('server')['redis_version']} on loopback", "dtypes": {}}
            table, _ = read_latest(cfg, fv, T0 - WINDOW, T0 + WINDOW)
            for dtype in ("float32", "float16", "int8"):
                fields = encode_features(fv, table, dtype)  # the bytes both paths write, encoded beforehand for raw
                flat = [[x for name, vals in fields for x in (name, vals[i])] for i in range(rows)]
                client.flushdb()
                t = time.perf_counter()
                for off in range(0, rows, chunk_rows):
                    with client.pipeline(transaction=False) as pipe:
                        for i in range(off, min(rows, off + chunk_rows)):
                            pipe.execute_command("HSET", keys[i], tsf, ts_blob, *flat[i])
                        pipe.execute()
                raw_s = time.perf_counter() - t
                raw_sample = client.hgetall(keys[rows // 2])
                client.flushdb()
                t = time.perf_counter()
                rep = materialize_view(cfg, fv, T0 - WINDOW, T0 + WINDOW, chunk_rows=chunk_rows, client=client, vector_dtype=dtype)
                ours_s = time.perf_counter() - t
                same = client.hgetall(keys[rows // 2]) == raw_sample
                t = time.perf_counter()
                again = materialize_view(cfg, fv, T0 - WINDOW, T0 + WINDOW, chunk_rows=chunk_rows, client=client, vector_dtype=dtype)
                rerun_s = time.perf_counter() - t
                sample = keys[:: max(1, rows // 500)]
                mem = [client.memory_usage(k) for k in sample]
                used = client.info("memory")["used_memory"]
                client.flushdb()
                empty = client.info("memory")["used_memory"]
                out["dtypes"][dtype] = {
                    "value_bytes": len(dict(fields)[embf][0]), "ours_s": round(ours_s, 3), "ours_rows_per_s": round(rows / ours_s),
                    "raw_pipeline_s": round(raw_s, 3), "raw_rows_per_s": round(rows / raw_s),
                    "ours_over_raw_time": round(ours_s / raw_s, 3), "identical_bytes_sample": same,
                    "rows_written": rep.rows_written, "rerun_s": round(rerun_s, 3), "rerun_rows_skipped": again.rows_skipped_not_newer,
                    "memory_usage_per_product": round(float(np.mean(mem)), 1),
                    "used_memory_per_product": round((used - empty) / rows, 1)}
                print(dtype, out["dtypes"][dtype], flush=True)
            return out
        finally:
            proc.terminate()
            proc.wait(timeout=10)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="catalog,200000")
    ap.add_argument("--dim", type=int, default=256)
    ap.add_argument("--embeddings", type=Path, default=None, help="product embedding parquet of the catalog")
    ap.add_argument("--served-rows", type=int, default=0, help="rows of the served-vector comparison (0: skip it)")
    ap.add_argument("--served-dim", type=int, default=640)
    ap.add_argument("--chunk-rows", type=int, default=5000)
    ap.add_argument("--note", default="")
    args = ap.parse_args()
    if args.served_rows:
        served = bench_served(args.served_rows, args.served_dim, args.chunk_rows)
        prev = json.loads((RESULTS / "materialize.json").read_text()) if (RESULTS / "materialize.json").exists() else {}
        prev["served_vectors"] = {**served, "machine": machine(args.note), "target_rows_per_s": 100000}
        write("materialize", prev)
        return
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
