"""Small synthetic embedding and stats tables in the Spark jobs' layout, for tests and benchmarks.

Random unit vectors, not model output: they exercise the plumbing (schemas, partitions, time
travel), never the quality of the embeddings.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from dashclip.columns import CONTENT_HASH, EMBEDDING, EVENT_TIMESTAMP, HAS_IMAGE, MODEL_VERSION, PRODUCT_ID, QUERY, QUERY_ID
from features import columns as C
from spark_jobs.lib.versions import register_model_version

T0 = pd.Timestamp("2025-01-01", tz="UTC")


def unit_vectors(rng: np.random.Generator, n: int, d: int) -> np.ndarray:
    x = rng.standard_normal((n, d)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def _emb_array(mat: np.ndarray) -> pa.Array:
    n, d = mat.shape
    return pa.FixedSizeListArray.from_arrays(pa.array(mat.ravel(), pa.float32()), d).cast(pa.list_(pa.float32()))


def _ts(values) -> pa.Array:
    return pa.array(pd.DatetimeIndex(values).as_unit("us"), pa.timestamp("us", tz="UTC"))


def write_partition(data_dir: Path, table: str, version: str, tbl: pa.Table, name: str = "part-0.parquet") -> Path:
    out = Path(data_dir) / table / f"{MODEL_VERSION}={version}"
    out.mkdir(parents=True, exist_ok=True)
    pq.write_table(tbl, out / name)
    return out / name


@dataclass
class Tables:
    products: dict[str, np.ndarray]  # version -> (n, d) latest embedding per product
    product_ids: list[str]
    queries: dict[str, np.ndarray]
    query_ids: list[str]
    consumers: dict[str, np.ndarray]
    consumer_ids: list[str]


def product_table(ids: list[str], mat: np.ndarray, ts) -> pa.Table:
    n = len(ids)
    return pa.table({
        PRODUCT_ID: pa.array(ids, pa.string()),
        EMBEDDING: _emb_array(mat),
        HAS_IMAGE: pa.array(np.arange(n) % 3 != 0),
        CONTENT_HASH: pa.array([f"h{i:08x}" for i in range(n)], pa.string()),
        EVENT_TIMESTAMP: _ts(ts if not isinstance(ts, pd.Timestamp) else [ts] * n),
    })


def write_tables(data_dir: Path, versions=("v1",), n_products=200, n_queries=20, n_consumers=10, d=32,
                 seed=0, ts: pd.Timestamp = T0) -> Tables:
    """Product, query and consumer embedding tables for each version, one row per entity at `ts`."""
    rng = np.random.default_rng(seed)
    pids = [f"p{i}" for i in range(n_products)]
    qids = [f"q{i}" for i in range(n_queries)]
    cids = [f"c{i}" for i in range(n_consumers)]
    out = Tables({}, pids, {}, qids, {}, cids)
    for v in versions:
        p, q, c = unit_vectors(rng, n_products, d), unit_vectors(rng, n_queries, d), unit_vectors(rng, n_consumers, d)
        write_partition(data_dir, C.PRODUCT_EMBEDDINGS_TABLE, v, product_table(pids, p, ts))
        write_partition(data_dir, C.QUERY_EMBEDDINGS_TABLE, v, pa.table({
            QUERY_ID: qids, QUERY: [f"query text {i}" for i in range(n_queries)], EMBEDDING: _emb_array(q),
            EVENT_TIMESTAMP: _ts([ts] * n_queries)}))
        write_partition(data_dir, C.CONSUMER_EMBEDDINGS_TABLE, v, pa.table({
            C.CONSUMER_ID: cids, EMBEDDING: _emb_array(c), EVENT_TIMESTAMP: _ts([ts] * n_consumers)}))
        out.products[v], out.queries[v], out.consumers[v] = p, q, c
        register_model_version(data_dir, v)  # as the product embedding job does at its commit
    return out


def write_stats(data_dir: Path, product_ids, consumer_ids, categories=("A", "B"), days=3, seed=0, t0=T0) -> None:
    """Daily stats rows (the ranking issue writes the real ones from the simulated logs)."""
    rng = np.random.default_rng(seed)
    stamps = [t0 + pd.Timedelta(days=i) for i in range(days)]

    def frame(key, ids, cols):
        rows = [{key: k, EVENT_TIMESTAMP: t, **{c: f(rng) for c, f in cols.items()}} for t in stamps for k in ids]
        df = pd.DataFrame(rows)
        df[EVENT_TIMESTAMP] = pd.to_datetime(df[EVENT_TIMESTAMP], utc=True).dt.as_unit("us")
        return df

    imp = lambda r: int(r.integers(10, 1000))  # noqa: E731
    rate = lambda r: float(r.random())  # noqa: E731
    frame(PRODUCT_ID, product_ids, {C.PRODUCT_IMPRESSIONS: imp, C.PRODUCT_CLICKS: imp, C.PRODUCT_CONVERSIONS: imp,
                                    C.PRODUCT_CTR: rate, C.PRODUCT_CVR: rate}).to_parquet(Path(data_dir) / C.PRODUCT_STATS_TABLE)
    frame(C.CATEGORY_ID, list(categories), {C.CATEGORY_IMPRESSIONS: imp, C.CATEGORY_CTR: rate, C.CATEGORY_CVR: rate}
          ).to_parquet(Path(data_dir) / C.CATEGORY_STATS_TABLE)
    frame(C.CONSUMER_ID, consumer_ids, {C.CONSUMER_ORDERS: imp, C.CONSUMER_CTR: rate, C.CONSUMER_DAYS_SINCE_LAST_ORDER: rate}
          ).to_parquet(Path(data_dir) / C.CONSUMER_STATS_TABLE)
