"""The consumer profile, defined once: the mean product embedding of a consumer's purchases in
(T - WINDOW_DAYS, T], one term per purchase (repeat purchases weigh more), valid from T.

`window_means` is the definition; the Spark job (`spark_jobs.lib.profiles`, per consumer) and the
in-process job below (`write_consumer_profiles`, for small data such as the ranker's simulated
logs) both call it, and a test holds their tables equal. Purchases of products without an
embedding are skipped. The in-process job can also give listed consumers without a purchase in
the window a null profile as of T (an older profile must not outlive its window, and Feast needs
a row before each event).
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.dataset as ds
import scipy.sparse as sp

from dashclip import columns as C
from dashclip.events import CONSUMER_ID
from spark_jobs.lib import table
from spark_jobs.lib.columns import N_PURCHASES

log = logging.getLogger(__name__)

WINDOW_DAYS = 84.0  # the DashCLIP paper's profile window; also the consumer order-count window (stats)
TABLE_COLUMNS = [CONSUMER_ID, C.EMBEDDING, N_PURCHASES, C.EVENT_TIMESTAMP]
SCHEMA = pa.schema([(CONSUMER_ID, pa.string()), (C.EMBEDDING, pa.list_(pa.float32())), (N_PURCHASES, pa.int64()),
                    (C.EVENT_TIMESTAMP, pa.timestamp("us", tz="UTC"))])


def micros(ts) -> np.ndarray:
    """Timestamps (tz-aware or UTC-naive) -> int64 microseconds since the epoch."""
    return pd.DatetimeIndex(pd.to_datetime(ts, utc=True)).as_unit("us").asi8


def window_means(codes: np.ndarray, n_consumers: int, ts_us: np.ndarray, emb: np.ndarray, t_us: int,
                 window_days: float = WINDOW_DAYS) -> tuple[np.ndarray, np.ndarray]:
    """Purchases (consumer code, time in µs, (m, d) float32 product embedding) -> the profiles as of
    ``t_us``: ((n_consumers, d) float32 means, (n_consumers,) int64 purchase counts; 0 = no profile)."""
    win = int(window_days * 86400e6)
    inside = np.flatnonzero((ts_us <= t_us) & (ts_us > t_us - win))
    W = sp.csr_matrix((np.ones(inside.size), (codes[inside], np.arange(inside.size))), shape=(n_consumers, inside.size))
    n = np.asarray(W.sum(axis=1)).ravel()
    mean = (W @ emb[inside]) / np.maximum(n, 1)[:, None]
    return mean.astype(np.float32), n.astype(np.int64)


def latest_embeddings(folder: str | Path, model_version: str, key: str) -> pd.DataFrame:
    """Latest row per id of one model version of an embedding table ({key}, embedding,
    event_timestamp); empty when the partition holds none."""
    path = Path(folder) / table.partition(model_version)
    if not table.has_rows(path):
        return pd.DataFrame(columns=[key, C.EMBEDDING, C.EVENT_TIMESTAMP])
    df = ds.dataset(str(path), format="parquet").to_table(columns=[key, C.EMBEDDING, C.EVENT_TIMESTAMP]).to_pandas()
    return df.sort_values(C.EVENT_TIMESTAMP, kind="stable").drop_duplicates(key, keep="last").reset_index(drop=True)


def _empty() -> pd.DataFrame:
    return SCHEMA.empty_table().to_pandas()


def consumer_profiles(purchases: pd.DataFrame, products: pd.DataFrame, as_of: list[pd.Timestamp],
                      window_days: float = WINDOW_DAYS, consumer_ids=None) -> pd.DataFrame:
    """Profile rows (consumer_id, embedding, n_purchases, event_timestamp = T) per snapshot T.

    purchases: consumer_id, product_id, event_timestamp; products: product_id, embedding. Without
    ``consumer_ids`` only consumers with a purchase in the window get a row (as the Spark job);
    with them, each listed consumer gets one per snapshot (a null embedding when it has none).
    """
    emb = dict(zip(products[C.PRODUCT_ID], products[C.EMBEDDING]))
    pur = purchases[purchases[C.PRODUCT_ID].isin(emb.keys())]
    if (pur.empty and consumer_ids is None) or not emb:
        return _empty()
    d = len(next(iter(emb.values())))
    E = (np.stack([np.asarray(emb[p], dtype=np.float32) for p in pur[C.PRODUCT_ID]]) if len(pur)
         else np.zeros((0, d), np.float32))  # (m, d)
    everyone = pur[CONSUMER_ID].to_numpy() if consumer_ids is None else np.r_[pur[CONSUMER_ID].to_numpy(), consumer_ids]
    cons = np.unique(everyone)
    codes = np.searchsorted(cons, pur[CONSUMER_ID].to_numpy())
    pts = micros(pur[C.EVENT_TIMESTAMP])
    frames = []
    for t in as_of:
        mean, n = window_means(codes, len(cons), pts, E, int(micros([t])[0]), window_days)
        keep = np.flatnonzero(n > 0) if consumer_ids is None else np.arange(len(cons))
        vecs = [v if k > 0 else None for v, k in zip(mean[keep], n[keep])]
        frames.append(pd.DataFrame({CONSUMER_ID: cons[keep], C.EMBEDDING: vecs, N_PURCHASES: n[keep],
                                    C.EVENT_TIMESTAMP: pd.Timestamp(t)}))
    out = pd.concat(frames, ignore_index=True)
    out[C.EVENT_TIMESTAMP] = pd.DatetimeIndex(out[C.EVENT_TIMESTAMP]).as_unit("us")
    return out


def _other_snapshots(part: Path, as_of: list[pd.Timestamp]) -> pa.Table | None:
    """The committed rows of times other than ``as_of`` (daily runs build a history)."""
    if not table.has_rows(part):
        return None
    old = ds.dataset(str(part), format="parquet").to_table(columns=TABLE_COLUMNS).cast(SCHEMA)
    times = pa.array(micros(as_of), pa.int64()).cast(pa.timestamp("us", tz="UTC"))
    return old.filter(~ds.field(C.EVENT_TIMESTAMP).isin(times))


def write_consumer_profiles(purchases: str | Path, embeddings: str | Path, out: str | Path, model_version: str,
                            as_of: list[pd.Timestamp], consumer_ids=None, window_days: float = WINDOW_DAYS) -> dict:
    """The consumer profile table from a purchases parquet file (event-log schema) and a product
    embedding table, in one process: snapshots ``as_of`` replace their rows, other times are kept,
    committed as the Spark job commits (``table.commit_partition``); returns the run report."""
    out, run_id = table.local_path(out), table.new_run_id()
    pur = pd.read_parquet(purchases, columns=[CONSUMER_ID, C.PRODUCT_ID, C.EVENT_TIMESTAMP])
    products = latest_embeddings(embeddings, model_version, C.PRODUCT_ID)
    prof = pa.Table.from_pandas(consumer_profiles(pur, products, as_of, window_days, consumer_ids)[TABLE_COLUMNS],
                                schema=SCHEMA, preserve_index=False)
    with table.writer_lock(out, 0.0, run_id):
        recovered = table.recover(out)
        old = _other_snapshots(out / table.partition(model_version), as_of)
        rows = prof if old is None else pa.concat_tables([prof, old])
        report = table.commit_partition(out, run_id, model_version, rows, {
            "job": "consumer_profiles", "engine": "in-process", "window_days": window_days,
            "as_of": [pd.Timestamp(t).isoformat() for t in as_of], "rows_in": len(pur), "recovered": recovered})
    log.info("consumer_profiles %s: %d rows into %s", model_version, rows.num_rows, out)
    return report
