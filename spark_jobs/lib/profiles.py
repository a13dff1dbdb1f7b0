"""Consumer profiles on Spark: `spark_jobs.lib.consumer_profile` (the definition) per consumer.

For every snapshot time T (``as_of``), a consumer with at least one purchase in (T - window, T]
whose product has an embedding gets ``embedding`` = the window mean of those products' embeddings
(`consumer_profile.window_means`), ``n_purchases`` and ``event_timestamp = T`` — the time the
profile is valid from, which is what Feast's point-in-time joins read. Snapshots for other times
already in the table are kept, so daily runs build a history and a rerun for the same T replaces
its rows (no duplicates). Purchases with an empty id, an unreadable timestamp or a product without
an embedding go to the rejects table.
"""

from __future__ import annotations

import json
import logging
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from dashclip import columns as C
from spark_jobs.lib import columns as S
from spark_jobs.lib import consumer_profile as CP
from spark_jobs.lib import table
from spark_jobs.lib.config import ProfileJobConfig
from spark_jobs.lib.incremental import parse_time, stage_and_commit
from spark_jobs.lib.reading import read_strings, with_source_row

log = logging.getLogger(__name__)

TABLE_COLUMNS = CP.TABLE_COLUMNS
PROFILE_SCHEMA = (f"{S.CONSUMER_ID} string, {C.EMBEDDING} array<float>, {S.N_PURCHASES} long, "
                  f"{C.EVENT_TIMESTAMP} timestamp")
REJECT_COLUMNS = [C.SOURCE_ROW, S.CONSUMER_ID, C.PRODUCT_ID, C.REJECT_FIELD, C.REJECT_VALUE, C.REJECT_REASON]


def model_versions(embeddings: Path) -> list[str]:
    prefix = f"{C.MODEL_VERSION}="
    return sorted(p.name[len(prefix):] for p in embeddings.glob(prefix + "*") if table.has_rows(p))


def pick_model_version(embeddings: Path, wanted: str | None) -> str:
    found = model_versions(embeddings)
    if wanted:
        if wanted not in found:
            raise ValueError(f"--model-version {wanted!r}: not in {embeddings} (found {found})")
        return wanted
    if len(found) != 1:
        raise ValueError(f"--embeddings {embeddings}: {len(found)} model versions {found}; pass --model-version")
    return found[0]


def check_purchases(raw: DataFrame, products: DataFrame) -> DataFrame:
    """Purchases with a parsed ``timestamp`` and the product's embedding, and rejects (``_ok`` false)."""
    ts = F.expr(f"try_cast({S.TIMESTAMP} AS TIMESTAMP)")  # ANSI mode: a bad value must not fail the job
    df = raw.withColumn("_ts", ts).join(products.withColumn("_known", F.lit(True)), C.PRODUCT_ID, "left")
    checks = [
        (F.trim(S.CONSUMER_ID) == "", S.CONSUMER_ID, "empty consumer_id"),
        (F.trim(C.PRODUCT_ID) == "", C.PRODUCT_ID, "empty product_id"),
        (F.col("_ts").isNull(), S.TIMESTAMP, "not a timestamp"),
        (F.col("_known").isNull(), C.PRODUCT_ID, "no embedding for this product in the model version"),
    ]
    field, reason, value = F.lit(None), F.lit(None), F.lit(None)
    for cond, f, r in reversed(checks):  # the first failing check names the row's problem
        field, reason = F.when(cond, f).otherwise(field), F.when(cond, r).otherwise(reason)
        value = F.when(cond, F.col(f).cast("string")).otherwise(value)
    return (df.withColumn(C.REJECT_FIELD, field).withColumn(C.REJECT_REASON, reason)
            .withColumn(C.REJECT_VALUE, value).withColumn(S.ROW_OK, F.col(C.REJECT_REASON).isNull())
            .withColumn(S.TIMESTAMP, F.col("_ts")).drop("_ts", "_known"))


def _profile_group(pdf: pd.DataFrame, as_of_us: list[int], window_days: float) -> pd.DataFrame:
    """One consumer's purchases (timestamp, embedding) -> its profile row per snapshot with a purchase."""
    ts = CP.micros(pdf[S.TIMESTAMP])
    emb = np.stack(pdf[C.EMBEDDING].to_numpy()).astype(np.float32)
    codes = np.zeros(len(pdf), dtype=np.int64)
    rows = []
    for t in as_of_us:
        mean, n = CP.window_means(codes, 1, ts, emb, t, window_days)
        if n[0] > 0:
            rows.append((pdf[S.CONSUMER_ID].iat[0], mean[0], int(n[0]), t))
    out = pd.DataFrame(rows, columns=TABLE_COLUMNS)
    out[C.EVENT_TIMESTAMP] = pd.to_datetime(out[C.EVENT_TIMESTAMP].astype(np.int64), unit="us", utc=True)
    return out


def profiles(purchases: DataFrame, as_of: list[datetime], window_days: float) -> DataFrame:
    """(consumer_id, timestamp, embedding) purchases -> one profile row per consumer and snapshot."""
    as_of_us = [int(x) for x in CP.micros(as_of)]

    def fn(pdf):  # a plain function: Spark reads a callable's type hints, a partial has none to read
        return _profile_group(pdf, as_of_us, window_days)

    return (purchases.select(S.CONSUMER_ID, S.TIMESTAMP, C.EMBEDDING).groupBy(S.CONSUMER_ID)
            .applyInPandas(fn, PROFILE_SCHEMA))


def run(spark: SparkSession, cfg: ProfileJobConfig, before_commit: Callable[[], None] | None = None) -> dict:
    """Consumer profiles into ``cfg.out`` under the table's writer lock; returns the run report."""
    out, run_id = table.local_path(cfg.out), table.new_run_id()
    with table.writer_lock(out, cfg.lock_wait_s, run_id):
        return _run(spark, cfg, out, run_id, before_commit)


def _run(spark: SparkSession, cfg: ProfileJobConfig, out: Path, run_id: str,
         before_commit: Callable[[], None] | None) -> dict:
    t0 = time.perf_counter()
    emb_dir = table.local_path(cfg.embeddings)
    recovered = table.recover(out)
    version = pick_model_version(emb_dir, cfg.model_version)
    as_of = [parse_time(t) for t in cfg.as_of] or [datetime.now(timezone.utc).replace(microsecond=0)]

    products = spark.read.parquet(table.uri(emb_dir / table.partition(version)))
    products = products.select(C.PRODUCT_ID, C.EMBEDDING)
    raw = with_source_row(read_strings(spark, cfg.purchases, (S.CONSUMER_ID, C.PRODUCT_ID, S.TIMESTAMP)))
    checked = check_purchases(raw, products.dropDuplicates([C.PRODUCT_ID])).persist()
    counts = dict(checked.groupBy(S.ROW_OK).count().collect())  # one job: accepted and rejected
    n_ok, rows_in = counts.get(True, 0), sum(counts.values())
    result = profiles(checked.filter(F.col(S.ROW_OK)), as_of, cfg.window_days)
    part = out / table.partition(version)
    if table.has_rows(part):  # keep the snapshots of other times
        snaps = spark.createDataFrame([(t,) for t in as_of], f"{C.EVENT_TIMESTAMP} timestamp")
        old = spark.read.parquet(table.uri(part)).join(F.broadcast(snaps), C.EVENT_TIMESTAMP, "left_anti")
        result = result.unionByName(old.select(*TABLE_COLUMNS))
    rejects = checked.filter(~F.col(S.ROW_OK)).select(*REJECT_COLUMNS).orderBy(C.SOURCE_ROW)
    staged = table.staging(out, run_id) / table.partition(version)

    def report() -> dict:
        return {"job": "consumer_profiles", "run_id": run_id, "model_version": version,
                "as_of": [t.isoformat() for t in as_of], "window_days": cfg.window_days,
                "rows_in": rows_in, "rows_used": n_ok, "rows_rejected": rows_in - n_ok,
                "rows_out": spark.read.parquet(table.uri(staged)).count(),
                "recovered": recovered, "seconds": {"total": round(time.perf_counter() - t0, 3)},
                "config": json.loads(cfg.model_dump_json())}

    report = stage_and_commit(out, run_id, version, result, rejects, report, before_commit)
    checked.unpersist()
    log.info("consumer_profiles %s: %s", version, {k: v for k, v in report.items() if k.startswith("rows_")})
    return report
