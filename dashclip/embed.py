"""Batch embedding of products and queries with a DashCLIP checkpoint.

    python -m dashclip.embed products --checkpoint DIR --catalog PATH --out DIR   (or: dashclip embed ...)
    python -m dashclip.embed queries  --checkpoint DIR --queries PATH --out DIR

writes ``DIR/product_embeddings.parquet`` / ``DIR/query_embeddings.parquet``. Products are
validated exactly as ingestion does (``dashclip.catalog``); rejected rows go to
``DIR/<name>.rejects.parquet`` and never stop the run. The embeddings come from
``dashclip.inference`` (``ProductEmbedder``, ``QueryEmbedder``), as in the Spark jobs and the online path.
"""

from __future__ import annotations

if __name__ == "__main__":  # the command line lives in dashclip.cli: parsed (and --help answered) before torch loads
    from dashclip.cli import embed_main

    raise SystemExit(embed_main())

import logging
import os
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa

from dashclip import columns as C
from dashclip.catalog import IngestConfig, ingest_frame, normalize_text, read_catalog
from dashclip.inference import ProductEmbedder, QueryEmbedder
from dashclip.io import write_parquet_atomic

log = logging.getLogger(__name__)


def embedding_table(ids: list[str], emb: np.ndarray, id_col: str, extra: dict | None = None) -> pd.DataFrame:
    """A frame whose embedding column is list<float32> in parquet."""
    df = pd.DataFrame({id_col: ids})
    for k, v in (extra or {}).items():
        df[k] = v
    df[C.EMBEDDING] = list(np.asarray(emb, dtype=np.float32))
    return df


def write_embedding_parquet(df: pd.DataFrame, path: str | os.PathLike) -> None:
    """Parquet with ``embedding`` as list<float32> (pandas would infer list<double> for empty frames)."""
    fields = []
    for col in df.columns:
        if col == C.EMBEDDING:
            fields.append(pa.field(col, pa.list_(pa.float32())))
        else:
            fields.append(pa.field(col, pa.Schema.from_pandas(df[[col]], preserve_index=False).field(col).type))
    schema = pa.schema(fields)
    # every row rejected: an empty table of the same schema (arrow cannot convert an empty float column to lists)
    table = schema.empty_table() if df.empty else pa.Table.from_pandas(df, schema=schema, preserve_index=False)
    write_parquet_atomic(table, path)


def embed_frame(emb: ProductEmbedder, raw: pd.DataFrame, base_dir: str | os.PathLike, progress: bool = False,
                cfg: IngestConfig | None = None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Validate + embed a raw catalog frame; returns (table, rejects)."""
    res = ingest_frame(raw, Path(base_dir), cfg, progress=progress)
    prods = res.products
    vecs = emb.embed_products(prods, progress=progress)
    table = embedding_table(prods[C.PRODUCT_ID].tolist(), vecs, C.PRODUCT_ID,
                            {C.HAS_IMAGE: prods[C.HAS_IMAGE].to_numpy(), C.MODEL_VERSION: emb.model_version})
    table[C.CONTENT_HASH] = prods[C.CONTENT_HASH].to_numpy()
    return table, res.rejects


def read_queries(path: str | os.PathLike) -> tuple[pd.DataFrame, pd.DataFrame]:
    """A query file (``query_id, query``; CSV or parquet) -> (clean, rejects)."""
    path = Path(path)
    df = pd.read_parquet(path) if path.suffix.lower() in (".parquet", ".pq") else pd.read_csv(
        path, dtype=str, keep_default_na=False)
    df.columns = [str(c).strip().lower() for c in df.columns]
    missing = [c for c in (C.QUERY_ID, C.QUERY) if c not in df.columns]
    if missing:
        raise ValueError(f"query file {path}: missing column(s) {missing}; found {list(df.columns)}")
    rejects, keep, seen = [], [], set()
    for i, (qid, q) in enumerate(zip(df[C.QUERY_ID].astype(str), df[C.QUERY].astype(str))):
        qid, q = normalize_text(qid), normalize_text(q)
        reason = field = None
        if not qid:
            field, reason = C.QUERY_ID, "empty query_id"
        elif not q:
            field, reason = C.QUERY, "empty query"
        elif qid in seen:
            field, reason = C.QUERY_ID, "duplicate query_id"
        if reason:
            rejects.append({C.SOURCE_ROW: i, C.QUERY_ID: qid, C.REJECT_FIELD: field, C.REJECT_REASON: reason})
            continue
        seen.add(qid)
        keep.append({C.QUERY_ID: qid, C.QUERY: q})
    return (pd.DataFrame(keep, columns=[C.QUERY_ID, C.QUERY]),
            pd.DataFrame(rejects, columns=[C.SOURCE_ROW, C.QUERY_ID, C.REJECT_FIELD, C.REJECT_REASON]))


def rejects_path(out: str | os.PathLike) -> Path:
    out = Path(out)
    return out.with_name(out.stem + ".rejects.parquet")


def _write_outputs(table: pd.DataFrame, rejects: pd.DataFrame, out: str, model_version: str, t0: float) -> int:
    write_embedding_parquet(table, out)
    write_parquet_atomic(rejects, rejects_path(out))
    print(f"rows out: {len(table)}  rows rejected: {len(rejects)}  model_version: {model_version}  "
          f"({time.perf_counter() - t0:.1f} s)")
    print(f"wrote {out} and {rejects_path(out)}")
    return 0


def _cmd_products(args) -> int:
    t0 = time.perf_counter()
    emb = ProductEmbedder(args.checkpoint, device=args.device, batch_size=args.batch_size)
    catalog = Path(args.catalog)
    table, rejects = embed_frame(emb, read_catalog(catalog), catalog.resolve().parent, progress=True)
    return _write_outputs(table, rejects, args.out, emb.model_version, t0)


def _cmd_queries(args) -> int:
    t0 = time.perf_counter()
    emb = QueryEmbedder(args.checkpoint, device=args.device, batch_size=args.batch_size)
    queries, rejects = read_queries(args.queries)
    vecs = emb.embed(queries[C.QUERY].tolist(), progress=True)
    table = embedding_table(queries[C.QUERY_ID].tolist(), vecs, C.QUERY_ID,
                            {C.QUERY: queries[C.QUERY].to_numpy(), C.MODEL_VERSION: emb.model_version})
    return _write_outputs(table, rejects, args.out, emb.model_version, t0)


PRODUCTS_FILE, QUERIES_FILE = "product_embeddings.parquet", "query_embeddings.parquet"


def main(argv: list[str] | None = None) -> int:
    """``python -m dashclip.embed ...`` (the parser is ``dashclip.cli.embed_main``)."""
    from dashclip.cli import embed_main

    return embed_main(argv)


def run_cli(args) -> int:
    """``products`` / ``queries`` after parsing: ``args.out`` is the output folder."""
    from dashclip.cli import out_file

    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    args.out = str(out_file(args.out, PRODUCTS_FILE if args.cmd == "products" else QUERIES_FILE, (".parquet", ".pq")))
    return _cmd_products(args) if args.cmd == "products" else _cmd_queries(args)
