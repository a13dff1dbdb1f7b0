"""The ranker's statistics tables from an event-log folder (`dashclip.events`), defined once.

    write_stats(logs_dir, data_dir, start, days)      in one process (small data)
    spark-submit spark_jobs/feature_stats.py ...     on Spark (`stats_job`), the same functions per entity

writes under the feature data folder (schemas in `features.definitions`), one row per entity and
day of the logged period [start, start + days), ``event_timestamp`` = the end of the day:

- `product_stats.parquet`: cumulative impressions, clicks, conversions; CTR and CVR smoothed
  towards the global rate (`PRIOR_WEIGHT` pseudo-impressions / clicks);
- `category_stats.parquet`: cumulative impressions, smoothed CTR and CVR;
- `consumer_stats.parquet`: purchases (organic and ad) in the trailing profile window
  (`consumer_profile.WINDOW_DAYS`), smoothed CTR, days since the last purchase.

Every entity also gets a null row at `start` ("no statistics yet"): Feast's file offline store
drops an entity row whose matching feature rows all lie after it instead of returning nulls.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd

from dashclip import columns as C
from dashclip import events as E
from spark_jobs.lib import columns as FC
from spark_jobs.lib.consumer_profile import WINDOW_DAYS, micros

log = logging.getLogger(__name__)

PRIOR_WEIGHT = 20.0
DAY = pd.Timedelta(days=1)
IMPRESSIONS, CLICKS, CONVERSIONS = "_impressions", "_clicks", "_conversions"  # the events frame's 0/1 flags
_COUNTS = (FC.PRODUCT_IMPRESSIONS, FC.PRODUCT_CLICKS, FC.PRODUCT_CONVERSIONS, FC.CATEGORY_IMPRESSIONS, FC.CONSUMER_ORDERS)


def _smoothed(num: np.ndarray, den: np.ndarray, prior: float) -> np.ndarray:
    return (num + PRIOR_WEIGHT * prior) / (den + PRIOR_WEIGHT)


def _daily_cumulative(frame: pd.DataFrame, key: str, values: list[str], n_days: int) -> tuple[np.ndarray, dict]:
    """Per key and day, cumulative sums of `values` -> (keys, {value: (n_keys, n_days)})."""
    keys, codes = np.unique(frame[key].to_numpy(), return_inverse=True)
    out = {}
    for v in values:
        m = np.zeros((len(keys), n_days))
        np.add.at(m, (codes, frame[E.DAY].to_numpy()), frame[v].to_numpy(dtype=float))
        out[v] = np.cumsum(m, axis=1)
    return keys, out


def _rows(key: str, keys: np.ndarray, ends: pd.DatetimeIndex, cols: dict[str, np.ndarray], keep: np.ndarray) -> pd.DataFrame:
    """(n_keys, n_days) matrices -> long rows (key, event_timestamp, ...) where keep."""
    ki, di = np.nonzero(keep)
    df = pd.DataFrame({key: keys[ki], C.EVENT_TIMESTAMP: ends[di]})
    for name, m in cols.items():
        df[name] = m[ki, di]
    return df


def with_days(ev: pd.DataFrame, start: pd.Timestamp, days: int) -> pd.DataFrame:
    """Event rows with their 0-based day of the log, those outside [start, start + days) dropped."""
    day = (ev[C.EVENT_TIMESTAMP] - start) // DAY
    return ev.assign(**{E.DAY: day.astype(np.int64)}).loc[lambda d: (d[E.DAY] >= 0) & (d[E.DAY] < days)]


def read_events(logs_dir: str | Path, start: pd.Timestamp, days: int) -> pd.DataFrame:
    """Impressions, clicks and conversions, each on the day it happened (a conversion an hour after
    a late click belongs to the next day's statistics, so no row counts an event from its future)."""
    logs_dir = Path(logs_dir)
    keys = [E.REQUEST_ID, C.PRODUCT_ID]
    info = pd.read_parquet(logs_dir / E.IMPRESSIONS_TABLE, columns=keys + [E.CONSUMER_ID, C.CATEGORY, C.EVENT_TIMESTAMP])
    parts = [info.assign(**{IMPRESSIONS: 1.0, CLICKS: 0.0, CONVERSIONS: 0.0})]
    for name, col in ((E.CLICKS_TABLE, CLICKS), (E.CONVERSIONS_TABLE, CONVERSIONS)):
        ev = pd.read_parquet(logs_dir / name, columns=keys + [C.EVENT_TIMESTAMP])
        ev = ev.merge(info.drop(columns=C.EVENT_TIMESTAMP), on=keys, how="left")
        parts.append(ev.assign(**{IMPRESSIONS: 0.0, CLICKS: 0.0, CONVERSIONS: 0.0, col: 1.0}))
    return with_days(pd.concat(parts, ignore_index=True), start, days)


def day_ends(start: pd.Timestamp, days: int) -> pd.DatetimeIndex:
    return pd.DatetimeIndex([pd.Timestamp(start) + d * DAY for d in range(1, days + 1)]).as_unit("us")


def priors(ev: pd.DataFrame) -> tuple[float, float]:
    """The global CTR and CVR of the log, the rates the entities' rates are smoothed towards."""
    return ev[CLICKS].sum() / max(ev[IMPRESSIONS].sum(), 1.0), ev[CONVERSIONS].sum() / max(ev[CLICKS].sum(), 1.0)


def product_stats(ev: pd.DataFrame, ends: pd.DatetimeIndex, g_ctr: float, g_cvr: float) -> pd.DataFrame:
    """Rows of the products in ``ev`` (all of a product's events, any set of products)."""
    keys, m = _daily_cumulative(ev, C.PRODUCT_ID, [IMPRESSIONS, CLICKS, CONVERSIONS], len(ends))
    return _with_sentinels(_rows(C.PRODUCT_ID, keys, ends, {
        FC.PRODUCT_IMPRESSIONS: m[IMPRESSIONS].astype(np.int64), FC.PRODUCT_CLICKS: m[CLICKS].astype(np.int64),
        FC.PRODUCT_CONVERSIONS: m[CONVERSIONS].astype(np.int64),
        FC.PRODUCT_CTR: _smoothed(m[CLICKS], m[IMPRESSIONS], g_ctr),
        FC.PRODUCT_CVR: _smoothed(m[CONVERSIONS], m[CLICKS], g_cvr)}, m[IMPRESSIONS] > 0), ends[0] - DAY)


def category_stats(ev: pd.DataFrame, ends: pd.DatetimeIndex, g_ctr: float, g_cvr: float) -> pd.DataFrame:
    """Rows of the categories in ``ev`` (all of a category's events, any set of categories)."""
    keys, m = _daily_cumulative(ev, C.CATEGORY, [IMPRESSIONS, CLICKS, CONVERSIONS], len(ends))
    return _with_sentinels(_rows(FC.CATEGORY_ID, keys, ends, {
        FC.CATEGORY_IMPRESSIONS: m[IMPRESSIONS].astype(np.int64),
        FC.CATEGORY_CTR: _smoothed(m[CLICKS], m[IMPRESSIONS], g_ctr),
        FC.CATEGORY_CVR: _smoothed(m[CONVERSIONS], m[CLICKS], g_cvr)}, m[IMPRESSIONS] > 0), ends[0] - DAY)


def stats_tables(logs_dir: str | Path, start: pd.Timestamp, days: int,
                 window_days: float = WINDOW_DAYS) -> dict[str, pd.DataFrame]:
    """The three stats tables (one row per entity and day of the log, at the end of the day)."""
    ev = read_events(logs_dir, pd.Timestamp(start), days)
    ends = day_ends(start, days)
    g_ctr, g_cvr = priors(ev)
    purchases = pd.read_parquet(Path(logs_dir) / E.PURCHASES_TABLE, columns=[E.CONSUMER_ID, C.EVENT_TIMESTAMP])
    return {FC.PRODUCT_STATS_TABLE: product_stats(ev, ends, g_ctr, g_cvr),
            FC.CATEGORY_STATS_TABLE: category_stats(ev, ends, g_ctr, g_cvr),
            FC.CONSUMER_STATS_TABLE: consumer_stats(ev, purchases, ends, g_ctr, window_days)}


def _with_sentinels(df: pd.DataFrame, start: pd.Timestamp) -> pd.DataFrame:
    """A null row per entity at the start of the log (see the module docstring)."""
    key = df.columns[0]
    first = df.drop_duplicates(key)[[key]].assign(**{C.EVENT_TIMESTAMP: start})
    return pd.concat([first, df], ignore_index=True)


def consumer_stats(imp: pd.DataFrame, purchases: pd.DataFrame, ends: pd.DatetimeIndex, g_ctr: float,
                   window_days: float = WINDOW_DAYS) -> pd.DataFrame:
    """Rows of the consumers in ``imp`` or ``purchases`` (all of a consumer's events and purchases)."""
    n_days = len(ends)
    keys = np.unique(np.r_[imp[E.CONSUMER_ID].to_numpy(), purchases[E.CONSUMER_ID].to_numpy()])
    codes = pd.Categorical(imp[E.CONSUMER_ID], keys).codes
    _, m = _daily_cumulative(imp.assign(**{E.CONSUMER_ID: codes}), E.CONSUMER_ID, [IMPRESSIONS, CLICKS], n_days)
    full = {k: np.zeros((len(keys), n_days)) for k in m}
    for k in m:
        full[k][np.unique(codes)] = m[k]
    pc = pd.Categorical(purchases[E.CONSUMER_ID], keys).codes
    pts, e = micros(purchases[C.EVENT_TIMESTAMP]), micros(ends)
    win = int(window_days * 86400e6)
    orders = np.zeros((len(keys), n_days), dtype=np.int64)
    last = np.full((len(keys), n_days), np.nan)
    for d, t in enumerate(e):  # per day, vectorised over purchases
        ok = pts <= t
        orders[:, d] = np.bincount(pc[ok & (pts > t - win)], minlength=len(keys))
        latest = np.full(len(keys), np.iinfo(np.int64).min)
        np.maximum.at(latest, pc[ok], pts[ok])
        last[:, d] = np.where(latest > np.iinfo(np.int64).min, (t - latest) / 86400e6, np.nan)
    return _with_sentinels(_rows(E.CONSUMER_ID, keys, ends, {
        FC.CONSUMER_ORDERS: orders, FC.CONSUMER_CTR: _smoothed(full[CLICKS], full[IMPRESSIONS], g_ctr),
        FC.CONSUMER_DAYS_SINCE_LAST_ORDER: last}, np.ones((len(keys), n_days), dtype=bool)), ends[0] - DAY)


def write_stats(logs_dir: str | Path, data_dir: str | Path, start: pd.Timestamp, days: int,
                window_days: float = WINDOW_DAYS) -> dict[str, Path]:
    """The three stats tables of an event-log folder, written under ``data_dir``; returns their paths."""
    data_dir = Path(data_dir)
    data_dir.mkdir(parents=True, exist_ok=True)
    paths = {}
    for name, df in stats_tables(logs_dir, start, days, window_days).items():
        paths[name] = write_table(df, data_dir / name)
    return paths


def write_table(df: pd.DataFrame, path: Path) -> Path:
    """One stats table as the views read it: microsecond UTC times, nullable Int64 counts."""
    df = df.copy()
    df[C.EVENT_TIMESTAMP] = pd.DatetimeIndex(df[C.EVENT_TIMESTAMP]).as_unit("us")
    for col in _COUNTS:
        if col in df:  # Int64 in the view schema; nullable because of the sentinel rows
            df[col] = df[col].astype("Int64")
    df.to_parquet(path, index=False)
    log.info("wrote %s: %d rows", path, len(df))
    return path
