"""Batch embedding of products and queries with a DashCLIP checkpoint.

    python -m dashclip.embed products --checkpoint DIR --catalog PATH --out DIR   (or: dashclip embed ...)
    python -m dashclip.embed queries  --checkpoint DIR --queries PATH --out DIR

writes ``DIR/product_embeddings.parquet`` / ``DIR/query_embeddings.parquet``. Products are
validated exactly as ingestion does (``dashclip.catalog``); rejected rows go to
``DIR/<name>.rejects.parquet`` and never stop the run. The importable ``ProductEmbedder`` and
``QueryEmbedder`` are what Spark workers and the online path load (once per process).
"""

from __future__ import annotations

if __name__ == "__main__":  # the command line lives in dashclip.cli: parsed (and --help answered) before torch loads
    from dashclip.cli import embed_main

    raise SystemExit(embed_main())

import logging
import os
import re
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import torch
from tqdm import tqdm

from dashclip import columns as C
from dashclip.catalog import IngestConfig, ingest_frame, normalize_text, read_catalog
from dashclip.data import ProductDataset, product_loader
from dashclip.io import write_parquet_atomic
from dashclip.model import DashCLIP

log = logging.getLogger(__name__)


def pick_device(device: str | None = None) -> torch.device:
    """``auto`` (or None): CUDA when present, else the CPU; ``cpu``, ``cuda`` or ``cuda:N`` as named
    (ValueError in one line when CUDA is named and absent)."""
    if device in (None, "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = str(device)  # a name or a torch.device
    if not re.fullmatch(r"cpu|mps|cuda(:\d+)?", device):
        raise ValueError(f"device {device!r}: expected auto, cpu, cuda or cuda:N")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"device {device!r}: no CUDA device is available here (torch {torch.__version__}); "
                         f"use auto or cpu")
    return torch.device(device)


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


@torch.no_grad()
def text_channel_embeddings(model: DashCLIP, texts: list[str], batch_size: int = 128) -> torch.Tensor:
    """(N, H) text-channel embeddings of ``texts`` (zeros for empty ones), on the model's device."""
    out = []
    device = next(model.parameters()).device
    for s in range(0, len(texts), batch_size):
        tok = model.tokenize(list(texts[s:s + batch_size]))
        out.append(model.text_channel(tok["input_ids"].to(device), tok["attention_mask"].to(device)))
    return torch.cat(out) if out else torch.zeros(0, model.text_tower.hidden, device=device)


class _Embedder:
    def __init__(self, checkpoint: str | os.PathLike, device: str | None = None, batch_size: int = 64,
                 threads: int | None = None, amp: bool | None = None):
        if threads:
            torch.set_num_threads(threads)
        self.device = pick_device(device)
        self.model = DashCLIP.from_pretrained(checkpoint).to(self.device).eval()
        self.model_version: str = self.model.model_version
        self.meta: dict = self.model.meta
        self.batch_size = batch_size
        self.amp = (self.device.type == "cuda") if amp is None else amp

    def _autocast(self):
        return torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.amp)

    def _with_channel(self, shared: torch.Tensor, texts: list[str]) -> torch.Tensor:
        """The served embedding: the shared-space one plus the text channel of ``texts`` (when on)."""
        if self.model.cfg.text_channel <= 0:
            return shared
        channel = text_channel_embeddings(self.model, texts, batch_size=max(1, len(texts)))
        return self.model.with_text_channel(shared.float(), channel.float())


class ProductEmbedder(_Embedder):
    """Product tower: image + text -> the served product embedding (B, ``model.out_dim``)."""

    def embed_products(self, products: pd.DataFrame, progress: bool = False, workers: int = 0,
                       with_text: bool = True) -> np.ndarray:
        """Embeddings for an ingested products frame (``image_path``, ``has_image``, ``title``...)."""
        m = self.meta
        ds = ProductDataset(products, image_size=m["image_size"], mean=tuple(m["image_mean"]),
                            std=tuple(m["image_std"]), with_text=with_text)
        out = np.zeros((len(ds), m["embed_dim"]), dtype=np.float32)
        loader = product_loader(ds, batch_size=self.batch_size, workers=workers)
        with torch.inference_mode(), self._autocast():
            for b in tqdm(loader, desc="embed products", disable=not progress, unit="batch"):
                tok = self.model.tokenize(b["text"])
                e = self.model.encode_products(b["image"].to(self.device), b["has_image"].to(self.device),
                                               tok["input_ids"].to(self.device), tok["attention_mask"].to(self.device))
                out[b["index"].numpy()] = self._with_channel(e, b["channel_text"]).float().cpu().numpy()
        return out

    def embed_frame(self, raw: pd.DataFrame, base_dir: str | os.PathLike, progress: bool = False,
                    cfg: IngestConfig | None = None) -> tuple[pd.DataFrame, pd.DataFrame]:
        """Validate + embed a raw catalog frame; returns (table, rejects)."""
        res = ingest_frame(raw, Path(base_dir), cfg, progress=progress)
        prods = res.products
        emb = self.embed_products(prods, progress=progress)
        table = embedding_table(prods[C.PRODUCT_ID].tolist(), emb, C.PRODUCT_ID,
                                {C.HAS_IMAGE: prods[C.HAS_IMAGE].to_numpy(), C.MODEL_VERSION: self.model_version})
        table[C.CONTENT_HASH] = prods[C.CONTENT_HASH].to_numpy()
        return table, res.rejects


class QueryEmbedder(_Embedder):
    """Query tower: text -> the served query embedding (B, ``model.out_dim``), in the product space."""

    def embed(self, queries: list[str], progress: bool = False) -> np.ndarray:
        out = np.zeros((len(queries), self.meta["embed_dim"]), dtype=np.float32)
        with torch.inference_mode(), self._autocast():
            for s in tqdm(range(0, len(queries), self.batch_size), desc="embed queries", disable=not progress):
                texts = [normalize_text(q) for q in queries[s:s + self.batch_size]]
                tok = self.model.tokenize(texts)
                e = self.model.encode_queries(tok["input_ids"].to(self.device), tok["attention_mask"].to(self.device))
                out[s:s + len(e)] = self._with_channel(e, texts).float().cpu().numpy()
        return out

    __call__ = embed


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
    table, rejects = emb.embed_frame(read_catalog(catalog), catalog.resolve().parent, progress=True)
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
        torch.set_num_threads(args.threads)
    args.out = str(out_file(args.out, PRODUCTS_FILE if args.cmd == "products" else QUERIES_FILE, (".parquet", ".pq")))
    return _cmd_products(args) if args.cmd == "products" else _cmd_queries(args)
