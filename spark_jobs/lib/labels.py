"""Teacher labelling job: query-product pairs -> the stage-2 teacher -> committed label table.

extract  ``read_strings``   pairs (query_id, query, product_id and the product's catalog text columns)
transform ``validate``      the product text the teacher reads (``teacher_product_text``), the content
                            hash of (query, product text, teacher version); empty fields and repeated
                            (query_id, product_id) pairs (the first row wins) go to the rejects table
          ``label``         ``dashclip.teacher.teacher_labels``, the function stage 2 labels with, on a
                            teacher loaded once per Python worker (``workers.teacher``)
load     ``run``            incremental by content hash (a pair whose query and product text are
                            unchanged keeps its label), staged, committed under the writer lock

The table is partitioned by the teacher's version (``model_version=teacher-...``); stage 2 reads
it with ``--labels DIR`` (``dashclip.stage2.labels_from_table``).
"""

from __future__ import annotations

import json
import logging
import time
from datetime import datetime, timezone
from functools import partial
from pathlib import Path
from typing import Callable, Iterator

import pandas as pd
from pyspark.sql import DataFrame, SparkSession, Window
from pyspark.sql import functions as F

from dashclip import columns as C
from dashclip.teacher import PAIR_HASH_SEP, teacher_product_text, verify_teacher
from spark_jobs.lib import columns as S
from spark_jobs.lib import table
from spark_jobs.lib.config import InferenceConfig, LabelJobConfig
from spark_jobs.lib.incremental import (assemble, committed, end_if_unchanged, existing_partition, fingerprint,
                                        split_increment, stage_and_commit)
from spark_jobs.lib.reading import is_local, read_strings, with_source_row
from spark_jobs.lib.workers import teacher

log = logging.getLogger(__name__)

PRODUCT_TEXT = "product_text"  # internal: what the teacher reads about the product
PAIR_REQUIRED = (C.QUERY_ID, C.QUERY, C.PRODUCT_ID)
PAIR_TEXT = (C.TITLE, C.DESCRIPTION, C.CATEGORY, *C.ATTRIBUTES)
TABLE_COLUMNS = [C.QUERY_ID, C.QUERY, C.PRODUCT_ID, C.LABEL, C.CONTENT_HASH, C.EVENT_TIMESTAMP]
REJECT_COLUMNS = [C.SOURCE_ROW, C.QUERY_ID, C.PRODUCT_ID, C.REJECT_FIELD, C.REJECT_REASON]
LABELLED_SCHEMA = (f"{C.QUERY_ID} string, {C.QUERY} string, {C.PRODUCT_ID} string, {C.LABEL} double, "
                   f"{C.CONTENT_HASH} string")


def teacher_version_of(checkpoint: str) -> str:
    """The teacher's version, checked on the driver without loading it (one line when damaged)."""
    return verify_teacher(checkpoint)["model_version"]


def _product_text(*cols: pd.Series) -> pd.Series:
    frame = pd.concat(cols, axis=1, keys=PAIR_TEXT)
    return pd.Series([teacher_product_text(r) for r in frame.to_dict("records")], index=frame.index)


def validate(raw: DataFrame, version: str) -> DataFrame:
    """``_ok`` rows (ids, query, product text, content hash) and rejects (field, reason) in one frame."""
    text = F.pandas_udf(_product_text, "string")
    df = raw.select(C.SOURCE_ROW, *PAIR_REQUIRED, text(*PAIR_TEXT).alias(PRODUCT_TEXT))
    empty = [(C.QUERY_ID, "empty query_id"), (C.QUERY, "empty query"), (C.PRODUCT_ID, "empty product_id"),
             (PRODUCT_TEXT, "no product text (title, description, category, attributes)")]
    valid = F.lit(True)
    for c, _ in empty:
        valid = valid & (F.trim(F.col(c)) != "")
    rank = F.row_number().over(Window.partitionBy(C.QUERY_ID, C.PRODUCT_ID, valid).orderBy(C.SOURCE_ROW))
    df = df.withColumn("_rank", rank)
    checks = [(F.trim(F.col(c)) == "", C.TITLE if c == PRODUCT_TEXT else c, why) for c, why in empty]
    checks.append((F.col("_rank") > 1, C.PRODUCT_ID, "duplicate (query_id, product_id) pair"))
    field, reason = F.when(checks[0][0], checks[0][1]), F.when(checks[0][0], checks[0][2])
    for cond, name, why in checks[1:]:  # the first failing check names the row's field and reason
        field, reason = field.when(cond, name), reason.when(cond, why)
    hashed = F.sha2(F.concat_ws(PAIR_HASH_SEP, F.col(C.QUERY), F.col(PRODUCT_TEXT), F.lit(version)), 256)
    return (df.withColumn(C.REJECT_FIELD, field).withColumn(C.REJECT_REASON, reason)
            .withColumn(S.ROW_OK, F.col(C.REJECT_REASON).isNull())
            .withColumn(C.CONTENT_HASH, hashed).drop("_rank"))


def _label_partition(batches: Iterator[pd.DataFrame], cfg_json: str, counter) -> Iterator[pd.DataFrame]:
    from dashclip.teacher import teacher_labels

    cfg = InferenceConfig.model_validate_json(cfg_json)
    for pdf in batches:
        if not len(pdf):
            continue
        model = teacher(cfg)
        gpu = next(model.parameters()).device.type == "cuda"
        grades = teacher_labels(model, pdf[C.QUERY].tolist(), pdf[PRODUCT_TEXT].tolist(),
                                batch_size=cfg.gpu_batch_size if gpu else cfg.batch_size,
                                bf16=True if cfg.amp is None else cfg.amp)
        if counter is not None:
            counter.add(len(pdf))
        yield pd.DataFrame({C.QUERY_ID: pdf[C.QUERY_ID].to_numpy(), C.QUERY: pdf[C.QUERY].to_numpy(),
                            C.PRODUCT_ID: pdf[C.PRODUCT_ID].to_numpy(), C.LABEL: grades.astype("float64"),
                            C.CONTENT_HASH: pdf[C.CONTENT_HASH].to_numpy()})


def label(todo: DataFrame, cfg: InferenceConfig, partitions: int, counter=None) -> DataFrame:
    fn = partial(_label_partition, cfg_json=cfg.model_dump_json(), counter=counter)
    cols = (C.QUERY_ID, C.QUERY, C.PRODUCT_ID, PRODUCT_TEXT, C.CONTENT_HASH)
    return todo.select(*cols).repartition(partitions).mapInPandas(fn, LABELLED_SCHEMA)


def run(spark: SparkSession, cfg: LabelJobConfig, before_commit: Callable[[], None] | None = None) -> dict:
    """Label a pair table into ``cfg.out`` under the table's writer lock; returns the run report."""
    out, run_id = table.local_path(cfg.out), table.new_run_id()
    with table.writer_lock(out, cfg.lock_wait_s, run_id):
        return _run(spark, cfg, out, run_id, before_commit)


def _run(spark: SparkSession, cfg: LabelJobConfig, out: Path, run_id: str,
         before_commit: Callable[[], None] | None) -> dict:
    t0, run_ts = time.perf_counter(), datetime.now(timezone.utc)
    recovered = table.recover(out)
    version = teacher_version_of(cfg.inference.checkpoint)
    sc = spark.sparkContext
    spark.conf.set("spark.sql.execution.arrow.maxRecordsPerBatch", str(cfg.inference.rows_per_arrow_batch))
    n_tasks = cfg.inference.partitions or sc.defaultParallelism
    # settings that change the labels: the precision asked for (the device is found per task)
    settings = {"job": "label_pairs", "model_version": version, "amp": cfg.inference.amp}

    fp = None
    if not (cfg.full or cfg.revalidate) and is_local(cfg.pairs):
        path = table.local_path(cfg.pairs)
        fp = fingerprint([path], settings) if path.is_file() else None
    done = committed(out, version)
    unchanged = end_if_unchanged(out, done, fp, run_id, t0, json.loads(cfg.model_dump_json()))
    if unchanged is not None:
        unchanged["rows_labelled"] = unchanged.pop("rows_embedded")  # this job's name for the rows it computed
        table.save_report(out, unchanged)
        return unchanged
    raw = with_source_row(read_strings(spark, cfg.pairs, PAIR_REQUIRED, PAIR_TEXT))
    validated = validate(raw, version).persist()
    counts = dict(validated.groupBy(S.ROW_OK).count().collect())  # one job: accepted and rejected
    n_ok, rows_in = counts.get(True, 0), sum(counts.values())
    accepted = validated.filter(F.col(S.ROW_OK)).select(C.QUERY_ID, C.QUERY, C.PRODUCT_ID, PRODUCT_TEXT, C.CONTENT_HASH)
    existing = None if done.damage else existing_partition(spark, out, version, C.CONTENT_HASH)
    inc = split_increment(accepted, existing, C.CONTENT_HASH, cfg.full, carried=(C.LABEL,))
    counter = sc.accumulator(0)  # pairs labelled; an empty increment loads no teacher
    result = assemble(label(inc.todo, cfg.inference, n_tasks, counter), inc.reused, TABLE_COLUMNS, run_ts)
    rejects = validated.filter(~F.col(S.ROW_OK)).select(*REJECT_COLUMNS).orderBy(C.SOURCE_ROW)

    def report() -> dict:
        n = int(counter.value)
        return {"job": "label_pairs", "run_id": run_id, "model_version": version,
                "event_timestamp": run_ts.isoformat(), "rows_in": rows_in, "rows_out": n_ok,
                "rows_rejected": rows_in - n_ok, "rows_labelled": n, "rows_reused": n_ok - n,
                "recovered": recovered, "repaired": done.damage, "input_fingerprint": fp,
                "seconds": {"total": round(time.perf_counter() - t0, 3)}, "config": json.loads(cfg.model_dump_json())}

    report = stage_and_commit(out, run_id, version, result, rejects, report, before_commit)
    validated.unpersist()
    log.info("label_pairs %s: %s", version, {k: v for k, v in report.items() if k.startswith("rows_")})
    return report
