"""Product embedding job: catalog -> validated rows + rejects -> product tower -> committed table.

extract  ``read_spark_catalog`` any catalog in the canonical format, with its 0-based ``source_row``
transform ``validate``      ``dashclip.catalog.ingest_frame`` per partition (rows of one product id
                            share a partition, so "first accepted row wins" holds globally)
          ``embed``         the product tower, loaded once per Python worker (``workers.embedder``)
load     ``run``            incremental by (content hash, model version), staged, then committed
                            under the table's writer lock; an unchanged input fingerprint ends the
                            run early when the committed table is intact (``incremental``)
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
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from dashclip import columns as C
from dashclip.catalog import (REJECT_COLUMNS, IngestConfig, image_root, ingest_frame, is_url, normalize_text, read_catalog,
                              resolve_image)
from dashclip.checkpoint import verify_checkpoint
from dashclip.image_source import within
from spark_jobs.lib.versions import register_model_version
from spark_jobs.lib import columns as S
from spark_jobs.lib import table
from spark_jobs.lib.config import CatalogJobConfig, InferenceConfig
from spark_jobs.lib.incremental import (assemble, committed, end_if_unchanged, existing_partition, fingerprint,
                                        split_increment, stage_and_commit, valid_from_setting)
from spark_jobs.lib.reading import is_local, local_dir_of, read_strings, with_source_row
from spark_jobs.lib.workers import embedder

log = logging.getLogger(__name__)

TABLE_COLUMNS = [C.PRODUCT_ID, C.EMBEDDING, C.HAS_IMAGE, C.CONTENT_HASH, C.EVENT_TIMESTAMP]
_KEPT = [C.PRODUCT_ID, C.TITLE, C.DESCRIPTION, C.CATEGORY, C.IMAGE_PATH, C.HAS_IMAGE, C.CONTENT_HASH]
VALIDATED_SCHEMA = (
    f"{S.ROW_OK} boolean, {C.SOURCE_ROW} long, {C.PRODUCT_ID} string, {C.TITLE} string, {C.DESCRIPTION} string, "
    f"{C.CATEGORY} string, {C.IMAGE_PATH} string, {C.HAS_IMAGE} boolean, {C.CONTENT_HASH} string, "
    f"{C.REJECT_FIELD} string, {C.REJECT_VALUE} string, {C.REJECT_REASON} string"
)
EMBEDDED_SCHEMA = f"{C.PRODUCT_ID} string, {C.EMBEDDING} array<float>, {C.HAS_IMAGE} boolean, {C.CONTENT_HASH} string"
_DUPLICATE = "duplicate product_id"


def model_version_of(checkpoint: str) -> str:
    """The checkpoint's model version, checked on the driver without loading the model (a damaged
    or changed checkpoint fails here with one line, not in every task)."""
    return verify_checkpoint(checkpoint)["model_version"]


def read_spark_catalog(spark: SparkSession, uri: str) -> DataFrame:
    """Canonical catalog columns as strings plus ``_row_error`` and ``source_row``."""
    return with_source_row(read_strings(spark, uri, C.CATALOG_REQUIRED, C.CATALOG_OPTIONAL, row_errors=True))


# --- validation ---------------------------------------------------------------------------------
def _validate_partition(batches: Iterator[pd.DataFrame], base_dir: str, ingest_json: str) -> Iterator[pd.DataFrame]:
    """All rows of a partition at once (duplicates may sit in different Arrow batches)."""
    frames = [b for b in batches if len(b)]
    if not frames:
        return
    raw = pd.concat(frames, ignore_index=True).sort_values(C.SOURCE_ROW, kind="stable").reset_index(drop=True)
    res = ingest_frame(raw[[*C.CATALOG_COLUMNS, C.ROW_ERROR]], Path(base_dir),
                       IngestConfig.model_validate_json(ingest_json), progress=False)
    rows = raw[C.SOURCE_ROW].to_numpy()  # ingest numbers rows within the partition: map back
    ok = res.products[_KEPT].copy()
    ok.insert(0, C.SOURCE_ROW, rows[res.products[C.SOURCE_ROW].to_numpy()])
    ok.insert(0, S.ROW_OK, True)
    rej = res.rejects.copy()
    rej[C.SOURCE_ROW] = rows[rej[C.SOURCE_ROW].to_numpy()]
    winner = dict(zip(ok[C.PRODUCT_ID], ok[C.SOURCE_ROW]))
    dup = rej[C.REJECT_REASON].str.startswith(_DUPLICATE)
    rej.loc[dup, C.REJECT_REASON] = [f"{_DUPLICATE} (first accepted at row {winner[p]})" for p in rej.loc[dup, C.PRODUCT_ID]]
    rej.insert(0, S.ROW_OK, False)
    out = pd.concat([ok, rej], ignore_index=True)
    for col in (C.TITLE, C.DESCRIPTION, C.CATEGORY, C.IMAGE_PATH, C.CONTENT_HASH,
                C.REJECT_FIELD, C.REJECT_VALUE, C.REJECT_REASON):
        out[col] = out[col].astype(object).where(out[col].notna(), None)
    out[C.HAS_IMAGE] = out[C.HAS_IMAGE].astype("boolean").fillna(False).astype(bool)
    yield out[[f.split()[0] for f in VALIDATED_SCHEMA.split(", ")]]


def _normalize(ids: pd.Series) -> pd.Series:
    return ids.map(normalize_text)


def validate(raw: DataFrame, base_dir: str, ingest: IngestConfig, partitions: int) -> DataFrame:
    """Accepted rows (``_ok``) and rejects in one frame; the caller persists it."""
    keyed = raw.withColumn(S.PID_KEY, F.pandas_udf(_normalize, "string")(F.col(C.PRODUCT_ID)))
    keyed = keyed.repartition(partitions, S.PID_KEY).drop(S.PID_KEY)
    fn = partial(_validate_partition, base_dir=base_dir, ingest_json=ingest.model_dump_json())
    return keyed.mapInPandas(fn, VALIDATED_SCHEMA)


# --- embedding ----------------------------------------------------------------------------------
def _embed_partition(batches: Iterator[pd.DataFrame], cfg_json: str, counter) -> Iterator[pd.DataFrame]:
    cfg = InferenceConfig.model_validate_json(cfg_json)
    for pdf in batches:
        if not len(pdf):
            continue
        emb = embedder("product", cfg).embed_products(pdf.reset_index(drop=True))
        if counter is not None:
            counter.add(len(pdf))
        yield pd.DataFrame({C.PRODUCT_ID: pdf[C.PRODUCT_ID].to_numpy(), C.EMBEDDING: list(emb.astype(np.float32)),
                            C.HAS_IMAGE: pdf[C.HAS_IMAGE].to_numpy(), C.CONTENT_HASH: pdf[C.CONTENT_HASH].to_numpy()})


def embed(todo: DataFrame, cfg: InferenceConfig, partitions: int, counter=None) -> DataFrame:
    """Product embeddings of validated rows; ``counter`` (an accumulator) counts rows embedded."""
    fn = partial(_embed_partition, cfg_json=cfg.model_dump_json(), counter=counter)
    return todo.select(*_KEPT).repartition(partitions).mapInPandas(fn, EMBEDDED_SCHEMA)


# --- the job --------------------------------------------------------------------------------------
def local_catalog(cfg: CatalogJobConfig, need_rows: bool) -> tuple[Path, pd.DataFrame] | None:
    """A local catalog file read on the driver as ``dashclip.catalog`` reads it, so a CSV that cannot
    be read as a whole (empty, not UTF-8, an unterminated quote) stops the job with ingestion's
    one-line error. Read for the fingerprint (``need_rows``) or a CSV's check; None otherwise."""
    if not is_local(cfg.catalog):
        return None
    path = Path(table.local_path(cfg.catalog))
    if not path.is_file() or not (need_rows or path.suffix.lower() in (".csv", ".tsv", ".txt")):
        return None
    return path, read_catalog(path)


def catalog_fingerprint(cfg: CatalogJobConfig, local: tuple[Path, pd.DataFrame] | None, base_dir: str,
                        version: str) -> str | None:
    """Input fingerprint of a local catalog file: its bytes, every image it references (read as
    validation reads them: only inside the image root, regular files, under the byte cap), the model
    version and ingest settings (see ``incremental``). None where that cannot be done on the driver
    cheaply: a remote or folder catalog, or image URLs."""
    if local is None:
        return None
    path, raw = local
    refs = raw[C.IMAGE].str.strip()
    refs = refs[refs != ""]
    if refs.map(is_url).any():
        return None
    images = [resolve_image(r, Path(base_dir)) for r in refs]
    root = image_root(Path(base_dir), cfg.ingest)
    settings = {"job": "embed_catalog", "model_version": version, "base_dir": base_dir,
                "ingest": json.loads(cfg.ingest.model_dump_json()), **valid_from_setting(cfg.valid_from)}
    readable = None if cfg.ingest.allow_images_outside_root else (lambda p: within(p, root))
    return fingerprint([path], settings, images, cfg.ingest.max_image_bytes, readable)


def run(spark: SparkSession, cfg: CatalogJobConfig, before_commit: Callable[[], None] | None = None) -> dict:
    """Embed a catalog into ``cfg.out``; returns the run report (also saved under ``_runs/``).

    The table's writer lock is held from recovery to commit (``table.writer_lock``). ``before_commit``
    runs after the staged output is complete and before the commit (tests use it to simulate a
    crash, or a second writer, there).
    """
    out, run_id = table.local_path(cfg.out), table.new_run_id()
    with table.writer_lock(out, cfg.lock_wait_s, run_id):
        return _run(spark, cfg, out, run_id, before_commit)


def _run(spark: SparkSession, cfg: CatalogJobConfig, out: Path, run_id: str,
         before_commit: Callable[[], None] | None) -> dict:
    t0, run_ts = time.perf_counter(), datetime.now(timezone.utc)
    recovered = table.recover(out)
    version = model_version_of(cfg.inference.checkpoint)
    base_dir = cfg.image_root or local_dir_of(cfg.catalog)
    sc = spark.sparkContext
    spark.conf.set("spark.sql.execution.arrow.maxRecordsPerBatch", str(cfg.inference.rows_per_arrow_batch))
    n_tasks = cfg.inference.partitions or sc.defaultParallelism

    shortcut = not (cfg.full or cfg.revalidate)
    local = local_catalog(cfg, need_rows=shortcut)
    fp = catalog_fingerprint(cfg, local, base_dir, version) if shortcut else None
    done = committed(out, version)
    unchanged = end_if_unchanged(out, done, fp, run_id, t0, json.loads(cfg.model_dump_json()))
    if unchanged is not None:
        return unchanged

    raw = read_spark_catalog(spark, cfg.catalog)
    n_val = cfg.inference.partitions or max(n_tasks, raw.rdd.getNumPartitions())
    validated = validate(raw, base_dir, cfg.ingest, n_val).persist()
    counts = dict(validated.groupBy(S.ROW_OK).count().collect())  # one job: accepted and rejected
    n_ok, rows_in = counts.get(True, 0), sum(counts.values())
    t_validated = time.perf_counter()

    accepted = validated.filter(F.col(S.ROW_OK)).drop(S.ROW_OK)
    existing = None if done.damage else existing_partition(spark, out, version, C.PRODUCT_ID)
    inc = split_increment(accepted, existing, C.PRODUCT_ID, cfg.full)
    counter = sc.accumulator(0)  # rows embedded; an empty increment loads no model
    result = assemble(embed(inc.todo, cfg.inference, n_tasks, counter), inc.reused, TABLE_COLUMNS, run_ts, cfg.valid_from)
    rejects = validated.filter(~F.col(S.ROW_OK)).select(*REJECT_COLUMNS).orderBy(C.SOURCE_ROW)

    def report() -> dict:
        return {
            "job": "embed_catalog", "run_id": run_id, "model_version": version,
            "event_timestamp": run_ts.isoformat(), "rows_in": rows_in, "rows_out": n_ok,
            "rows_rejected": rows_in - n_ok, "rows_embedded": int(counter.value), "rows_reused": n_ok - int(counter.value),
            "recovered": recovered, "repaired": done.damage, "input_fingerprint": fp,
            "seconds": {"validate": round(t_validated - t0, 3), "embed_write": round(time.perf_counter() - t_validated, 3)},
            "spark": {"master": sc.master, "default_parallelism": sc.defaultParallelism, "tasks": n_tasks},
            "config": json.loads(cfg.model_dump_json()),
        }

    report = stage_and_commit(out, run_id, version, result, rejects, report, before_commit)
    register_model_version(out.parent, version)  # the data folder's live versions, which `feast apply` declares
    validated.unpersist()
    report["seconds"]["total"] = round(time.perf_counter() - t0, 3)
    table.save_report(out, report)
    log.info("embed_catalog %s: rows in %d, out %d, rejected %d, embedded %d, reused %d (%.1f s)", version,
             rows_in, n_ok, report["rows_rejected"], report["rows_embedded"], report["rows_reused"],
             report["seconds"]["total"])
    return report
