"""The product and query embedding jobs in one process, for small data (the ranker's runs).

    embed_products(products_parquet, checkpoint, out, valid_from)
    embed_queries(queries_parquet, checkpoint, out, valid_from)

Same table, layout and commit as `spark_jobs.lib.products` / `queries` (writer lock, staging,
manifest, `_runs/` report), with the embeddings of `dashclip.inference` that the Spark jobs'
workers also use (a test holds Spark equal to the CLI path). Input rows are already validated
(ingested products, a query table); ids the committed partition holds keep their row, the others
are embedded.

``valid_from`` is the time the table's rows hold from (Feast reads ``event_timestamp`` as that):
new rows get it and committed rows stamped later get it too, so a log that starts before the
embedding run is joined with this model version's vectors throughout (one row per id; the
vectors do not change). Without it, new rows get the run time, as on Spark. Nothing is committed
when there is nothing to embed or re-stamp.
"""

from __future__ import annotations

import logging
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable

import pandas as pd
import pyarrow as pa
import pyarrow.dataset as ds

from dashclip import columns as C
from dashclip.checkpoint import verify_checkpoint
from spark_jobs.lib import table
from spark_jobs.lib.versions import register_model_version

log = logging.getLogger(__name__)

TS = pa.timestamp("us", tz="UTC")
PRODUCT_SCHEMA = pa.schema([(C.PRODUCT_ID, pa.string()), (C.EMBEDDING, pa.list_(pa.float32())),
                            (C.HAS_IMAGE, pa.bool_()), (C.CONTENT_HASH, pa.string()), (C.EVENT_TIMESTAMP, TS)])
QUERY_SCHEMA = pa.schema([(C.QUERY_ID, pa.string()), (C.QUERY, pa.string()), (C.EMBEDDING, pa.list_(pa.float32())),
                          (C.CONTENT_HASH, pa.string()), (C.EVENT_TIMESTAMP, TS)])


def _committed(out: Path, version: str, schema: pa.Schema) -> pd.DataFrame:
    """The committed partition, one row per id (the latest), in the table's columns."""
    key = schema.names[0]
    part = out / table.partition(version)
    if not table.has_rows(part):
        return schema.empty_table().to_pandas()
    data = ds.dataset(str(part), format="parquet")
    df = data.to_table(columns=[c for c in schema.names if c in data.schema.names]).to_pandas()
    df = df.reindex(columns=schema.names)
    return df.sort_values(C.EVENT_TIMESTAMP, kind="stable").drop_duplicates(key, keep="last").reset_index(drop=True)


def _run(out: str | Path, checkpoint: str | Path, wanted: pd.DataFrame, schema: pa.Schema, job: str,
         embed: Callable[[pd.DataFrame], pd.DataFrame], valid_from: pd.Timestamp | None) -> dict:
    """Embed the ids of ``wanted`` the committed partition lacks; re-stamp to ``valid_from``; commit."""
    t0, key = time.perf_counter(), schema.names[0]
    out, run_id = table.local_path(out), table.new_run_id()
    version = verify_checkpoint(checkpoint)["model_version"]
    stamp = pd.Timestamp(valid_from if valid_from is not None else datetime.now(timezone.utc))
    with table.writer_lock(out, 0.0, run_id):
        recovered = table.recover(out)
        have = _committed(out, version, schema)
        todo = wanted[~wanted[key].isin(set(have[key]))].reset_index(drop=True)
        late = pd.to_datetime(have[C.EVENT_TIMESTAMP], utc=True) > stamp
        report = {"job": job, "engine": "in-process", "model_version": version, "rows_in": len(wanted),
                  "rows_embedded": len(todo), "rows_restamped": int(late.sum() if valid_from is not None else 0),
                  "valid_from": stamp.isoformat(), "recovered": recovered}
        if not len(todo) and not report["rows_restamped"]:
            log.info("%s %s: every id is in %s; nothing to do", job, version, out)
            return {**report, "run_id": run_id, "unchanged": True}
        if valid_from is not None:
            have.loc[late.to_numpy(), C.EVENT_TIMESTAMP] = stamp
        new = embed(todo).assign(**{C.EVENT_TIMESTAMP: stamp}) if len(todo) else None
        rows = pd.concat([have] + ([new] if new is not None else []), ignore_index=True)
        rows[C.EVENT_TIMESTAMP] = pd.DatetimeIndex(pd.to_datetime(rows[C.EVENT_TIMESTAMP], utc=True)).as_unit("us")
        tbl = pa.Table.from_pandas(rows[schema.names], schema=schema, preserve_index=False)
        report = table.commit_partition(out, run_id, version, tbl, {**report, "seconds": round(time.perf_counter() - t0, 3)})
    log.info("%s %s: %d embedded, %d re-stamped, %d rows in %s", job, version, len(todo), report["rows_restamped"],
             tbl.num_rows, out)
    return report


def embed_products(products: str | Path, checkpoint: str | Path, out: str | Path,
                   valid_from: pd.Timestamp | None = None, progress: bool = False) -> dict:
    """Product embeddings of an ingested products parquet file (`dashclip.catalog`) into ``out``."""
    from dashclip.inference import ProductEmbedder

    def embed(todo: pd.DataFrame) -> pd.DataFrame:
        log.info("embedding %d products with %s", len(todo), checkpoint)
        emb = ProductEmbedder(checkpoint).embed_products(todo, progress=progress)
        return pd.DataFrame({C.PRODUCT_ID: todo[C.PRODUCT_ID].to_numpy(), C.EMBEDDING: list(emb.astype("float32")),
                             C.HAS_IMAGE: todo[C.HAS_IMAGE].to_numpy(), C.CONTENT_HASH: todo[C.CONTENT_HASH].to_numpy()})

    report = _run(out, checkpoint, pd.read_parquet(products), PRODUCT_SCHEMA, "embed_catalog", embed, valid_from)
    register_model_version(table.local_path(out).parent, report["model_version"])  # as embed_catalog.py does
    return report


def embed_queries(queries: str | Path, checkpoint: str | Path, out: str | Path,
                  valid_from: pd.Timestamp | None = None, progress: bool = False) -> dict:
    """Query embeddings of a query table (query_id, query; parquet) into ``out``."""
    from dashclip.inference import QueryEmbedder

    def embed(todo: pd.DataFrame) -> pd.DataFrame:
        emb = QueryEmbedder(checkpoint).embed(todo[C.QUERY].tolist(), progress=progress)
        return pd.DataFrame({C.QUERY_ID: todo[C.QUERY_ID].to_numpy(), C.QUERY: todo[C.QUERY].to_numpy(),
                             C.EMBEDDING: list(emb.astype("float32")),
                             C.CONTENT_HASH: todo[C.QUERY].map(_sha256).to_numpy()})

    wanted = pd.read_parquet(queries, columns=[C.QUERY_ID, C.QUERY]).drop_duplicates(C.QUERY_ID)
    return _run(out, checkpoint, wanted, QUERY_SCHEMA, "embed_queries", embed, valid_from)


def _sha256(text: str) -> str:
    import hashlib

    return hashlib.sha256(str(text).encode()).hexdigest()
