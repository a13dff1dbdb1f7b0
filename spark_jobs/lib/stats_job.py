"""The ranker's statistics tables on Spark: `spark_jobs.lib.stats` (the definition) per entity.

Spark reads the event-log folder (`dashclip.events`), puts each event on its day and computes the
global rates; each product's, category's and consumer's rows (a consumer's purchases beside its
events) come from the same pandas functions the in-process job calls on the whole log, so a test
holds the two engines' tables equal. A table has one row per entity and day: it is collected and
written as the single file its view reads (`stats.write_table`).
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

import numpy as np
import pandas as pd
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from dashclip import columns as C
from dashclip import events as E
from spark_jobs.lib import columns as FC
from spark_jobs.lib import stats as ST
from spark_jobs.lib import table
from spark_jobs.lib.config import StatsJobConfig
from spark_jobs.lib.incremental import parse_time

log = logging.getLogger(__name__)

_FLAGS = (ST.IMPRESSIONS, ST.CLICKS, ST.CONVERSIONS)
_EVENT_COLUMNS = [E.REQUEST_ID, C.PRODUCT_ID, E.CONSUMER_ID, C.CATEGORY, C.EVENT_TIMESTAMP]
_VALUES = {
    FC.PRODUCT_STATS_TABLE: (C.PRODUCT_ID, [FC.PRODUCT_IMPRESSIONS, FC.PRODUCT_CLICKS, FC.PRODUCT_CONVERSIONS,
                                            FC.PRODUCT_CTR, FC.PRODUCT_CVR]),
    FC.CATEGORY_STATS_TABLE: (FC.CATEGORY_ID, [FC.CATEGORY_IMPRESSIONS, FC.CATEGORY_CTR, FC.CATEGORY_CVR]),
    FC.CONSUMER_STATS_TABLE: (E.CONSUMER_ID, [FC.CONSUMER_ORDERS, FC.CONSUMER_CTR, FC.CONSUMER_DAYS_SINCE_LAST_ORDER]),
}


def _schema(name: str) -> str:
    key, values = _VALUES[name]
    return ", ".join([f"{key} string", f"{C.EVENT_TIMESTAMP} timestamp", *[f"{v} double" for v in values]])


def _typed(df: pd.DataFrame, name: str) -> pd.DataFrame:
    """A group's rows in the Spark schema (counts as doubles: the sentinel rows are null)."""
    return df.astype({v: "float64" for v in _VALUES[name][1]})


def events(spark: SparkSession, logs: Path, start: pd.Timestamp, days: int) -> DataFrame:
    """Impressions, clicks and conversions with their flags and day (as `stats.read_events`)."""
    keys = [E.REQUEST_ID, C.PRODUCT_ID]
    info = spark.read.parquet(table.uri(logs / E.IMPRESSIONS_TABLE)).select(*_EVENT_COLUMNS)
    parts = [info.select("*", *[F.lit(1.0 if k == ST.IMPRESSIONS else 0.0).alias(k) for k in _FLAGS])]
    for name, col in ((E.CLICKS_TABLE, ST.CLICKS), (E.CONVERSIONS_TABLE, ST.CONVERSIONS)):
        ev = spark.read.parquet(table.uri(logs / name)).select(*keys, C.EVENT_TIMESTAMP)
        ev = ev.join(info.drop(C.EVENT_TIMESTAMP), keys, "left").select(*_EVENT_COLUMNS)
        parts.append(ev.select("*", *[F.lit(1.0 if k == col else 0.0).alias(k) for k in _FLAGS]))
    start_us = int(ST.micros([start])[0])
    day = F.floor((F.unix_micros(C.EVENT_TIMESTAMP) - F.lit(start_us)) / F.lit(86_400 * 10**6)).cast("long")
    ev = parts[0].unionByName(parts[1]).unionByName(parts[2]).withColumn(E.DAY, day)
    return ev.filter((F.col(E.DAY) >= 0) & (F.col(E.DAY) < days))


def _no_events() -> pd.DataFrame:
    return pd.DataFrame({E.CONSUMER_ID: pd.Series(dtype=object), E.DAY: pd.Series(dtype=np.int64),
                         **{k: pd.Series(dtype=float) for k in _FLAGS}})


def _no_purchases() -> pd.DataFrame:
    return pd.DataFrame({E.CONSUMER_ID: pd.Series(dtype=object),
                         C.EVENT_TIMESTAMP: pd.Series(dtype="datetime64[us, UTC]")})


def _tables(ev: DataFrame, purchases: DataFrame, ends: pd.DatetimeIndex, window_days: float) -> dict[str, DataFrame]:
    """The three tables as Spark frames, each entity's rows from `stats`' functions."""
    sums = ev.agg(*[F.sum(k).alias(k) for k in _FLAGS]).first().asDict()
    g_ctr, g_cvr = ST.priors(pd.DataFrame({k: [float(sums[k] or 0.0)] for k in _FLAGS}))
    p, c, u = FC.PRODUCT_STATS_TABLE, FC.CATEGORY_STATS_TABLE, FC.CONSUMER_STATS_TABLE

    def products(pdf):
        return _typed(ST.product_stats(pdf, ends, g_ctr, g_cvr), p)

    def categories(pdf):
        return _typed(ST.category_stats(pdf, ends, g_ctr, g_cvr), c)

    def consumers(evs, pur):  # a consumer without events (or purchases) gets an empty side
        evs = evs if len(evs) else _no_events()
        pur = pur if len(pur) else _no_purchases()
        return _typed(ST.consumer_stats(evs, pur[[E.CONSUMER_ID, C.EVENT_TIMESTAMP]], ends, g_ctr, window_days), u)

    return {p: ev.groupBy(C.PRODUCT_ID).applyInPandas(products, _schema(p)),
            c: ev.groupBy(C.CATEGORY).applyInPandas(categories, _schema(c)),
            u: ev.groupBy(E.CONSUMER_ID).cogroup(purchases.groupBy(E.CONSUMER_ID)).applyInPandas(consumers, _schema(u))}


def run(spark: SparkSession, cfg: StatsJobConfig) -> dict:
    """The three stats tables of ``cfg.logs`` into ``cfg.out``; returns the run report."""
    t0, logs, out = time.perf_counter(), table.local_path(cfg.logs), table.local_path(cfg.out)
    start = pd.Timestamp(parse_time(cfg.start))
    ev = events(spark, logs, start, cfg.days)
    purchases = spark.read.parquet(table.uri(logs / E.PURCHASES_TABLE)).select(E.CONSUMER_ID, C.EVENT_TIMESTAMP)
    out.mkdir(parents=True, exist_ok=True)
    rows = {}
    for name, frame in _tables(ev, purchases, ST.day_ends(start, cfg.days), cfg.window_days).items():
        df = frame.toPandas()
        df[C.EVENT_TIMESTAMP] = pd.to_datetime(df[C.EVENT_TIMESTAMP], utc=True)
        key = _VALUES[name][0]
        ST.write_table(df.sort_values([key, C.EVENT_TIMESTAMP], kind="stable").reset_index(drop=True), out / name)
        rows[name] = len(df)
    report = {"job": "feature_stats", "rows_out": rows, "seconds": {"total": round(time.perf_counter() - t0, 3)},
              "config": json.loads(cfg.model_dump_json())}
    log.info("feature_stats: %s", rows)
    return report
