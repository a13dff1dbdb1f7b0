"""The ranker's offline feature tables, written where the feature store reads them.

From the simulated logs (`ranking.simulator.SimLogs`), under the data folder
(`$DASHCLIP_FEATURE_DATA`; schemas in `features.definitions`):

- `product_stats.parquet`, `category_stats.parquet`, `consumer_stats.parquet`: one row per entity
  and day, `event_timestamp` = the end of the day; counts are cumulative over the log up to that
  moment, rates smoothed towards the global rate (`PRIOR_WEIGHT` pseudo-impressions / clicks);
  consumer orders count purchases (organic and ad) in the trailing `window_days`.
- `consumer_embeddings/model_version=<v>/part-sim.parquet`: daily consumer profiles, the mean
  product embedding of the consumer's purchases in the trailing 84 days (the DashCLIP paper;
  the same definition as `spark_jobs/consumer_profiles.py`, in pandas), valid from 00:00 UTC.
- `product_embeddings/` and `query_embeddings/`: reused when the Spark jobs wrote them for the
  model version; otherwise (and for simulator queries the table lacks) embedded here with
  `dashclip.embed`.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.dataset as ds
import scipy.sparse as sp

from dashclip import columns as DC
from dashclip.embed import embedding_table, write_embedding_parquet
from features import columns as FC
from ranking import columns as R
from ranking.simulator import SimConfig, SimLogs

log = logging.getLogger(__name__)

PRIOR_WEIGHT = 20.0
DAY = pd.Timedelta(days=1)


def _micros(ts) -> np.ndarray:
    """Timestamps (tz-aware or UTC-naive) -> int64 microseconds since the epoch."""
    return pd.DatetimeIndex(pd.to_datetime(ts, utc=True)).as_unit("us").asi8


def _smoothed(num: np.ndarray, den: np.ndarray, prior: float) -> np.ndarray:
    return (num + PRIOR_WEIGHT * prior) / (den + PRIOR_WEIGHT)


def _daily_cumulative(frame: pd.DataFrame, key: str, values: list[str], n_days: int) -> tuple[np.ndarray, dict]:
    """Per key and day, cumulative sums of `values` -> (keys, {value: (n_keys, n_days)})."""
    keys, codes = np.unique(frame[key].to_numpy(), return_inverse=True)
    out = {}
    for v in values:
        m = np.zeros((len(keys), n_days))
        np.add.at(m, (codes, frame[R.DAY].to_numpy()), frame[v].to_numpy(dtype=float))
        out[v] = np.cumsum(m, axis=1)
    return keys, out


def _rows(key: str, keys: np.ndarray, ends: pd.DatetimeIndex, cols: dict[str, np.ndarray], keep: np.ndarray) -> pd.DataFrame:
    """(n_keys, n_days) matrices -> long rows (key, event_timestamp, ...) where keep."""
    ki, di = np.nonzero(keep)
    df = pd.DataFrame({key: keys[ki], DC.EVENT_TIMESTAMP: ends[di]})
    for name, m in cols.items():
        df[name] = m[ki, di]
    return df


_IMP, _CLK, _CONV = "_impressions", "_clicks", "_conversions"


def _events(logs: SimLogs, cfg: SimConfig) -> pd.DataFrame:
    """Impressions, clicks and conversions, each on the day it happened (a conversion an hour after
    a late click belongs to the next day's statistics, so no row counts an event from its future)."""
    imp = logs.impressions
    keys = [R.REQUEST_ID, R.PRODUCT_ID]
    info = imp[keys + [R.CONSUMER_ID, R.CATEGORY, R.EVENT_TIMESTAMP]]
    parts = [info.assign(**{_IMP: 1.0, _CLK: 0.0, _CONV: 0.0})]
    for table, col in ((logs.clicks, _CLK), (logs.conversions, _CONV)):
        ev = table[keys + [DC.EVENT_TIMESTAMP]].merge(info.drop(columns=DC.EVENT_TIMESTAMP), on=keys, how="left")
        parts.append(ev.assign(**{_IMP: 0.0, _CLK: 0.0, _CONV: 0.0, col: 1.0}))
    ev = pd.concat(parts, ignore_index=True)
    day = (ev[DC.EVENT_TIMESTAMP] - cfg.start_ts) // DAY
    return ev.assign(**{R.DAY: day.astype(np.int64)}).loc[lambda d: (d[R.DAY] >= 0) & (d[R.DAY] < cfg.days)]


def stats_tables(logs: SimLogs, cfg: SimConfig, window_days: float = 84.0) -> dict[str, pd.DataFrame]:
    """The three stats tables (one row per entity and day of the log, at the end of the day)."""
    ev = _events(logs, cfg)
    n_days = cfg.days
    ends = pd.DatetimeIndex([cfg.day_start(d + 1) for d in range(n_days)]).as_unit("us")
    g_ctr = ev[_CLK].sum() / max(ev[_IMP].sum(), 1.0)
    g_cvr = ev[_CONV].sum() / max(ev[_CLK].sum(), 1.0)
    agg = [_IMP, _CLK, _CONV]
    out = {}
    keys, m = _daily_cumulative(ev, R.PRODUCT_ID, agg, n_days)
    out[FC.PRODUCT_STATS_TABLE] = _rows(R.PRODUCT_ID, keys, ends, {
        FC.PRODUCT_IMPRESSIONS: m[_IMP].astype(np.int64), FC.PRODUCT_CLICKS: m[_CLK].astype(np.int64),
        FC.PRODUCT_CONVERSIONS: m[_CONV].astype(np.int64),
        FC.PRODUCT_CTR: _smoothed(m[_CLK], m[_IMP], g_ctr),
        FC.PRODUCT_CVR: _smoothed(m[_CONV], m[_CLK], g_cvr)}, m[_IMP] > 0)
    keys, m = _daily_cumulative(ev, R.CATEGORY, agg, n_days)
    out[FC.CATEGORY_STATS_TABLE] = _rows(FC.CATEGORY_ID, keys, ends, {
        FC.CATEGORY_IMPRESSIONS: m[_IMP].astype(np.int64),
        FC.CATEGORY_CTR: _smoothed(m[_CLK], m[_IMP], g_ctr),
        FC.CATEGORY_CVR: _smoothed(m[_CONV], m[_CLK], g_cvr)}, m[_IMP] > 0)
    out[FC.CONSUMER_STATS_TABLE] = _consumer_stats(logs, ev, ends, g_ctr, window_days)
    return {name: _with_sentinels(df, cfg.start_ts) for name, df in out.items()}


def _with_sentinels(df: pd.DataFrame, start: pd.Timestamp) -> pd.DataFrame:
    """A null row per entity at the start of the log: "no statistics yet".

    Feast's file offline store drops an entity row whose matching feature rows all lie after it
    (instead of returning nulls), so every entity gets a row that precedes its first event.
    """
    key = df.columns[0]
    first = df.drop_duplicates(key)[[key]].assign(**{DC.EVENT_TIMESTAMP: start})
    return pd.concat([first, df], ignore_index=True)


def _consumer_stats(logs: SimLogs, imp: pd.DataFrame, ends: pd.DatetimeIndex, g_ctr: float,
                    window_days: float) -> pd.DataFrame:
    n_days = len(ends)
    keys = np.unique(np.r_[imp[R.CONSUMER_ID].to_numpy(), logs.purchases[R.CONSUMER_ID].to_numpy()])
    _, m = _daily_cumulative(imp.assign(**{R.CONSUMER_ID: pd.Categorical(imp[R.CONSUMER_ID], keys).codes}),
                             R.CONSUMER_ID, [_IMP, _CLK], n_days)
    full = {k: np.zeros((len(keys), n_days)) for k in m}
    present = np.unique(pd.Categorical(imp[R.CONSUMER_ID], keys).codes)
    for k in m:
        full[k][present] = m[k]
    pur = logs.purchases
    pc = pd.Categorical(pur[R.CONSUMER_ID], keys).codes
    pts = _micros(pur[DC.EVENT_TIMESTAMP])
    e = _micros(ends)
    win = int(window_days * 86400e6)
    orders = np.zeros((len(keys), n_days), dtype=np.int64)
    last = np.full((len(keys), n_days), np.nan)
    for d, t in enumerate(e):  # per day, vectorised over purchases
        ok = pts <= t
        inwin = ok & (pts > t - win)
        orders[:, d] = np.bincount(pc[inwin], minlength=len(keys))
        latest = np.full(len(keys), np.iinfo(np.int64).min)
        np.maximum.at(latest, pc[ok], pts[ok])
        last[:, d] = np.where(latest > np.iinfo(np.int64).min, (t - latest) / 86400e6, np.nan)
    return _rows(R.CONSUMER_ID, keys, ends, {
        FC.CONSUMER_ORDERS: orders, FC.CONSUMER_CTR: _smoothed(full[_CLK], full[_IMP], g_ctr),
        FC.CONSUMER_DAYS_SINCE_LAST_ORDER: last}, np.ones((len(keys), n_days), dtype=bool))


def write_stats(logs: SimLogs, cfg: SimConfig, data_dir: str | Path) -> dict[str, Path]:
    data_dir = Path(data_dir)
    data_dir.mkdir(parents=True, exist_ok=True)
    paths = {}
    for name, df in stats_tables(logs, cfg).items():
        df[DC.EVENT_TIMESTAMP] = pd.DatetimeIndex(df[DC.EVENT_TIMESTAMP]).as_unit("us")
        for col in (FC.PRODUCT_IMPRESSIONS, FC.PRODUCT_CLICKS, FC.PRODUCT_CONVERSIONS, FC.CATEGORY_IMPRESSIONS, FC.CONSUMER_ORDERS):
            if col in df:  # Int64 in the view schema; nullable because of the sentinel rows
                df[col] = df[col].astype("Int64")
        df.to_parquet(data_dir / name, index=False)
        paths[name] = data_dir / name
        log.info("wrote %s: %d rows", data_dir / name, len(df))
    return paths


# --- embeddings -----------------------------------------------------------------------------
def read_embeddings(data_dir: str | Path, table: str, version: str, key: str) -> pd.DataFrame:
    """Latest embedding per id of one model version ({key}, embedding, event_timestamp); empty if none."""
    path = Path(data_dir) / table / f"{DC.MODEL_VERSION}={version}"
    if not path.exists() or not any(path.glob("*.parquet")):
        return pd.DataFrame(columns=[key, DC.EMBEDDING, DC.EVENT_TIMESTAMP])
    df = ds.dataset(str(path), format="parquet").to_table(columns=[key, DC.EMBEDDING, DC.EVENT_TIMESTAMP]).to_pandas()
    return df.sort_values(DC.EVENT_TIMESTAMP, kind="stable").drop_duplicates(key, keep="last").reset_index(drop=True)


def consumer_profiles(purchases: pd.DataFrame, products: pd.DataFrame, as_of: list[pd.Timestamp],
                      window_days: float = 84.0, consumer_ids=None) -> pd.DataFrame:
    """Mean product embedding of each consumer's purchases in (T - window, T], one row per snapshot T.

    purchases: consumer_id, product_id, event_timestamp; products: product_id, embedding.
    Purchases of products without an embedding are skipped. Rows: consumer_id, embedding
    (float32 mean, as the Spark job writes it), n_purchases, event_timestamp = T. Consumers in
    `consumer_ids` without a purchase in the window get a null embedding (no profile as of T: an
    older profile must not outlive its window, and Feast needs a row before each event).
    """
    emb = dict(zip(products[DC.PRODUCT_ID], products[DC.EMBEDDING]))
    pur = purchases[purchases[R.PRODUCT_ID].isin(emb.keys())]
    if (pur.empty and consumer_ids is None) or not emb:
        return pd.DataFrame({R.CONSUMER_ID: pd.Series(dtype=object), DC.EMBEDDING: pd.Series(dtype=object),
                             "n_purchases": pd.Series(dtype=np.int64),
                             DC.EVENT_TIMESTAMP: pd.Series(dtype="datetime64[us, UTC]")})
    d = len(next(iter(emb.values())))  # no purchases (a log without them): every profile is null
    E = np.stack([np.asarray(emb[p], dtype=np.float32) for p in pur[R.PRODUCT_ID]]) if len(pur) else np.zeros((0, d), np.float32)  # (m, d)
    everyone = pur[R.CONSUMER_ID].to_numpy() if consumer_ids is None else np.r_[pur[R.CONSUMER_ID].to_numpy(), consumer_ids]
    cons = np.unique(everyone)
    codes = np.searchsorted(cons, pur[R.CONSUMER_ID].to_numpy())
    pts = _micros(pur[DC.EVENT_TIMESTAMP])
    win = int(window_days * 86400e6)
    frames = []
    for t in as_of:
        tu = int(_micros([t])[0])
        inside = np.flatnonzero((pts <= tu) & (pts > tu - win))
        W = sp.csr_matrix((np.ones(inside.size), (codes[inside], np.arange(inside.size))), shape=(len(cons), inside.size))
        n = np.asarray(W.sum(axis=1)).ravel()
        mean = (W @ E[inside]) / np.maximum(n, 1)[:, None]  # (consumers, d)
        keep = np.flatnonzero(n > 0) if consumer_ids is None else np.arange(len(cons))
        vecs = [v if k > 0 else None for v, k in zip(mean[keep].astype(np.float32), n[keep])]
        frames.append(pd.DataFrame({R.CONSUMER_ID: cons[keep], DC.EMBEDDING: vecs,
                                    "n_purchases": n[keep].astype(np.int64), DC.EVENT_TIMESTAMP: pd.Timestamp(t)}))
    out = pd.concat(frames, ignore_index=True)
    out[DC.EVENT_TIMESTAMP] = pd.DatetimeIndex(out[DC.EVENT_TIMESTAMP]).as_unit("us")
    return out


def write_partition(df: pd.DataFrame, data_dir: str | Path, table: str, version: str, name: str) -> Path:
    path = Path(data_dir) / table / f"{DC.MODEL_VERSION}={version}" / name
    df = df.copy()
    df[DC.EVENT_TIMESTAMP] = pd.DatetimeIndex(df[DC.EVENT_TIMESTAMP]).as_unit("us")
    write_embedding_parquet(df, path)
    log.info("wrote %s: %d rows", path, len(df))
    return path


def ensure_embeddings(data_dir: str | Path, products: pd.DataFrame, queries: pd.DataFrame, checkpoint: str | Path,
                      valid_from: pd.Timestamp, progress: bool = False) -> str:
    """Product and query embedding tables for the checkpoint's model version; returns the version.

    Rows already in the tables (the Spark jobs' output) are reused; missing products and
    queries are embedded here and written as `part-sim.parquet`, valid from `valid_from`.
    """
    from dashclip.embed import ProductEmbedder, QueryEmbedder

    qe = QueryEmbedder(checkpoint)
    version = qe.model_version
    have_p = read_embeddings(data_dir, FC.PRODUCT_EMBEDDINGS_TABLE, version, DC.PRODUCT_ID)
    _backfill(have_p, DC.PRODUCT_ID, data_dir, FC.PRODUCT_EMBEDDINGS_TABLE, version, valid_from)
    todo = products[~products[DC.PRODUCT_ID].isin(set(have_p[DC.PRODUCT_ID]))]
    if len(todo):
        log.info("embedding %d products with %s", len(todo), checkpoint)
        emb = ProductEmbedder(checkpoint).embed_products(todo.reset_index(drop=True), progress=progress)
        t = embedding_table(todo[DC.PRODUCT_ID].tolist(), emb, DC.PRODUCT_ID,
                            {DC.HAS_IMAGE: todo[DC.HAS_IMAGE].to_numpy(), DC.CONTENT_HASH: todo[DC.CONTENT_HASH].to_numpy()})
        write_partition(t.assign(**{DC.EVENT_TIMESTAMP: valid_from}), data_dir, FC.PRODUCT_EMBEDDINGS_TABLE, version, "part-sim.parquet")
    have_q = read_embeddings(data_dir, FC.QUERY_EMBEDDINGS_TABLE, version, DC.QUERY_ID)
    _backfill(have_q, DC.QUERY_ID, data_dir, FC.QUERY_EMBEDDINGS_TABLE, version, valid_from)
    todo_q = queries[~queries[DC.QUERY_ID].isin(set(have_q[DC.QUERY_ID]))]
    if len(todo_q):
        emb = qe.embed(todo_q[DC.QUERY].tolist(), progress=progress)
        t = embedding_table(todo_q[DC.QUERY_ID].tolist(), emb, DC.QUERY_ID, {DC.QUERY: todo_q[DC.QUERY].to_numpy()})
        write_partition(t.assign(**{DC.EVENT_TIMESTAMP: valid_from}), data_dir, FC.QUERY_EMBEDDINGS_TABLE, version, "part-sim.parquet")
    return version


def _backfill(have: pd.DataFrame, key: str, data_dir, table: str, version: str, valid_from: pd.Timestamp) -> None:
    """Rows the Spark jobs wrote after `valid_from` (their run time) get a copy valid from it.

    The simulated log may lie before the embedding run; the copy says these vectors of this model
    version were the ones in use over the simulated period. The later original stays the newest
    row, so materialization and online reads are unchanged.
    """
    if have.empty:
        return
    late = have[pd.to_datetime(have[DC.EVENT_TIMESTAMP], utc=True) > valid_from]
    if len(late):
        write_partition(late.assign(**{DC.EVENT_TIMESTAMP: valid_from}), data_dir, table, version, "part-sim-backfill.parquet")


def write_consumer_embeddings(logs: SimLogs, cfg: SimConfig, data_dir: str | Path, version: str,
                              consumer_ids, window_days: float = 84.0) -> Path:
    """Daily consumer profiles over the log and the days after it (the A/B period)."""
    prods = read_embeddings(data_dir, FC.PRODUCT_EMBEDDINGS_TABLE, version, DC.PRODUCT_ID)
    as_of = [cfg.day_start(d) for d in range(cfg.days + cfg.extra_days + 1)]
    prof = consumer_profiles(logs.purchases, prods, as_of, window_days, consumer_ids)
    return write_partition(prof, data_dir, FC.CONSUMER_EMBEDDINGS_TABLE, version, "part-sim.parquet")
