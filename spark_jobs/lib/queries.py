"""Query embedding job: a query table (query_id, query) -> query tower -> committed table.

Validation follows ``dashclip.embed.read_queries``: text normalised, empty ids or queries and
repeated ids (the first valid row wins) go to the rejects table. Incremental and committed like
the product table; the content hash is the SHA-256 of the normalised query text.
"""

from __future__ import annotations

import json
import logging
import time
from datetime import datetime, timezone
from functools import partial
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
import pandas as pd
from pyspark.sql import DataFrame, SparkSession, Window
from pyspark.sql import functions as F

from dashclip import columns as C
from dashclip.catalog import normalize_text
from spark_jobs.lib import columns as S
from spark_jobs.lib import table
from spark_jobs.lib.config import InferenceConfig, QueryJobConfig
from spark_jobs.lib.incremental import (assemble, committed, end_if_unchanged, existing_partition, fingerprint,
                                        split_increment, stage_and_commit, valid_from_setting)
from spark_jobs.lib.products import model_version_of
from spark_jobs.lib.reading import is_local, read_strings, with_source_row
from spark_jobs.lib.workers import embedder

log = logging.getLogger(__name__)

TABLE_COLUMNS = [C.QUERY_ID, C.QUERY, C.EMBEDDING, C.CONTENT_HASH, C.EVENT_TIMESTAMP]
REJECT_COLUMNS = [C.SOURCE_ROW, C.QUERY_ID, C.REJECT_FIELD, C.REJECT_REASON]
EMBEDDED_SCHEMA = f"{C.QUERY_ID} string, {C.QUERY} string, {C.EMBEDDING} array<float>, {C.CONTENT_HASH} string"


def _normalize(s: pd.Series) -> pd.Series:
    return s.map(normalize_text)


def validate(raw: DataFrame) -> DataFrame:
    """``_ok`` rows (query_id, query, content_hash) and rejects (field, reason) in one frame."""
    norm = F.pandas_udf(_normalize, "string")
    df = raw.select(C.SOURCE_ROW, norm(C.QUERY_ID).alias(C.QUERY_ID), norm(C.QUERY).alias(C.QUERY))
    valid = (F.col(C.QUERY_ID) != "") & (F.col(C.QUERY) != "")
    rank = F.row_number().over(Window.partitionBy(C.QUERY_ID, valid).orderBy(C.SOURCE_ROW))
    df = df.withColumn("_rank", rank)
    field = (F.when(F.col(C.QUERY_ID) == "", C.QUERY_ID).when(F.col(C.QUERY) == "", C.QUERY)
             .when(F.col("_rank") > 1, C.QUERY_ID))
    reason = (F.when(F.col(C.QUERY_ID) == "", "empty query_id").when(F.col(C.QUERY) == "", "empty query")
              .when(F.col("_rank") > 1, "duplicate query_id"))
    return (df.withColumn(C.REJECT_FIELD, field).withColumn(C.REJECT_REASON, reason)
            .withColumn(S.ROW_OK, F.col(C.REJECT_REASON).isNull())
            .withColumn(C.CONTENT_HASH, F.sha2(F.col(C.QUERY), 256)).drop("_rank"))


def _embed_partition(batches: Iterator[pd.DataFrame], cfg_json: str, counter) -> Iterator[pd.DataFrame]:
    cfg = InferenceConfig.model_validate_json(cfg_json)
    for pdf in batches:
        if not len(pdf):
            continue
        emb = embedder("query", cfg).embed(pdf[C.QUERY].tolist())
        if counter is not None:
            counter.add(len(pdf))
        yield pd.DataFrame({C.QUERY_ID: pdf[C.QUERY_ID].to_numpy(), C.QUERY: pdf[C.QUERY].to_numpy(),
                            C.EMBEDDING: list(emb.astype(np.float32)), C.CONTENT_HASH: pdf[C.CONTENT_HASH].to_numpy()})


def embed(todo: DataFrame, cfg: InferenceConfig, partitions: int, counter=None) -> DataFrame:
    fn = partial(_embed_partition, cfg_json=cfg.model_dump_json(), counter=counter)
    return todo.select(C.QUERY_ID, C.QUERY, C.CONTENT_HASH).repartition(partitions).mapInPandas(fn, EMBEDDED_SCHEMA)


def run(spark: SparkSession, cfg: QueryJobConfig, before_commit: Callable[[], None] | None = None) -> dict:
    """Embed a query table into ``cfg.out`` under the table's writer lock; returns the run report."""
    out, run_id = table.local_path(cfg.out), table.new_run_id()
    with table.writer_lock(out, cfg.lock_wait_s, run_id):
        return _run(spark, cfg, out, run_id, before_commit)


def _run(spark: SparkSession, cfg: QueryJobConfig, out: Path, run_id: str,
         before_commit: Callable[[], None] | None) -> dict:
    t0, run_ts = time.perf_counter(), datetime.now(timezone.utc)
    recovered = table.recover(out)
    version = model_version_of(cfg.inference.checkpoint)
    sc = spark.sparkContext
    spark.conf.set("spark.sql.execution.arrow.maxRecordsPerBatch", str(cfg.inference.rows_per_arrow_batch))
    n_tasks = cfg.inference.partitions or sc.defaultParallelism

    fp = None
    if not (cfg.full or cfg.revalidate) and is_local(cfg.queries):
        path = table.local_path(cfg.queries)
        settings = {"job": "embed_queries", "model_version": version, **valid_from_setting(cfg.valid_from)}
        fp = fingerprint([path], settings) if path.is_file() else None
    done = committed(out, version)
    unchanged = end_if_unchanged(out, done, fp, run_id, t0, json.loads(cfg.model_dump_json()))
    if unchanged is not None:
        return unchanged
    raw = with_source_row(read_strings(spark, cfg.queries, (C.QUERY_ID, C.QUERY)))
    validated = validate(raw).persist()
    counts = dict(validated.groupBy(S.ROW_OK).count().collect())  # one job: accepted and rejected
    n_ok, rows_in = counts.get(True, 0), sum(counts.values())
    accepted = validated.filter(F.col(S.ROW_OK)).select(C.QUERY_ID, C.QUERY, C.CONTENT_HASH)
    existing = None if done.damage else existing_partition(spark, out, version, C.QUERY_ID)
    inc = split_increment(accepted, existing, C.QUERY_ID, cfg.full)
    counter = sc.accumulator(0)  # rows embedded; an empty increment loads no model
    result = assemble(embed(inc.todo, cfg.inference, n_tasks, counter), inc.reused, TABLE_COLUMNS, run_ts, cfg.valid_from)
    rejects = validated.filter(~F.col(S.ROW_OK)).select(*REJECT_COLUMNS).orderBy(C.SOURCE_ROW)

    def report() -> dict:
        return {"job": "embed_queries", "run_id": run_id, "model_version": version,
                "event_timestamp": run_ts.isoformat(), "rows_in": rows_in, "rows_out": n_ok,
                "rows_rejected": rows_in - n_ok, "rows_embedded": int(counter.value), "rows_reused": n_ok - int(counter.value),
                "recovered": recovered, "repaired": done.damage, "input_fingerprint": fp, "seconds": {"total": round(time.perf_counter() - t0, 3)},
                "config": json.loads(cfg.model_dump_json())}

    report = stage_and_commit(out, run_id, version, result, rejects, report, before_commit)
    validated.unpersist()
    log.info("embed_queries %s: %s", version, {k: v for k, v in report.items() if k.startswith("rows_")})
    return report
