"""Candidate retrieval: a faiss index over product embeddings, exact or approximate.

`FaissRetriever.from_table(path, model_version=...)` builds from the Spark embedding table
(parquet, `product_id`, `embedding`, `model_version`); `search(queries, k)` returns the top-k
product ids and cosine scores. Vectors are L2-normalised, so inner product is cosine. Kinds:
`flat` (exact), `hnsw` (graph, default approximate) and `ivf` (inverted lists). `save(dir)` writes
`index.faiss`, `ids.parquet` and `retriever.json` (the config that built it); `load(dir)` reads
them back.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Literal

import faiss
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
import pyarrow.parquet as pq
from pydantic import BaseModel, ConfigDict, Field

from dashclip.columns import EMBEDDING, MODEL_VERSION, PRODUCT_ID


class RetrieverConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", protected_namespaces=())

    kind: Literal["flat", "hnsw", "ivf"] = "hnsw"
    hnsw_m: int = Field(32, ge=4)  # graph degree
    hnsw_ef_construction: int = Field(200, ge=8)
    hnsw_ef_search: int = Field(128, ge=8)
    ivf_nlist: int | None = Field(None, ge=1)  # None: 4 * sqrt(n)
    ivf_nprobe: int = Field(16, ge=1)
    model_version: str | None = None
    dim: int | None = None
    count: int | None = None


def _unit(x: np.ndarray) -> np.ndarray:
    x = np.ascontiguousarray(x, dtype=np.float32)
    if x.ndim == 1:
        x = x[None, :]
    x = x.copy()
    faiss.normalize_L2(x)
    return x


class FaissRetriever:
    def __init__(self, index: faiss.Index, ids: np.ndarray, config: RetrieverConfig):
        self.index, self.ids, self.config = index, ids, config
        self._apply_search_params()

    @classmethod
    def build(cls, embeddings: np.ndarray, ids, config: RetrieverConfig | None = None) -> "FaissRetriever":
        cfg = (config or RetrieverConfig()).model_copy()
        x = _unit(embeddings)  # (n, d)
        n, d = x.shape
        ids = np.asarray(ids, dtype=object)
        if len(ids) != n:
            raise ValueError(f"{len(ids)} ids for {n} embeddings")
        if cfg.kind == "flat":
            index = faiss.IndexFlatIP(d)
        elif cfg.kind == "hnsw":
            index = faiss.IndexHNSWFlat(d, cfg.hnsw_m, faiss.METRIC_INNER_PRODUCT)
            index.hnsw.efConstruction = cfg.hnsw_ef_construction
        else:
            nlist = cfg.ivf_nlist or max(1, min(n // 39, int(4 * math.sqrt(n))))
            cfg.ivf_nlist = nlist
            index = faiss.IndexIVFFlat(faiss.IndexFlatIP(d), d, nlist, faiss.METRIC_INNER_PRODUCT)
            index.train(x)
        index.add(x)
        cfg.dim, cfg.count = d, n
        return cls(index, ids, cfg)

    @classmethod
    def from_table(cls, path: str | Path, model_version: str | None = None,
                   config: RetrieverConfig | None = None) -> "FaissRetriever":
        """Build from a parquet embedding table (file or model_version-partitioned folder)."""
        table = ds.dataset(str(path), format="parquet", partitioning="hive").to_table()
        if model_version is not None and MODEL_VERSION in table.column_names:
            table = table.filter(pc.equal(table.column(MODEL_VERSION).cast(pa.string()), str(model_version)))
        if table.num_rows == 0:
            raise ValueError(f"no embeddings in {path} for model_version={model_version!r}")
        emb = table.column(EMBEDDING).combine_chunks()
        lens = pc.list_value_length(emb)
        mm = pc.min_max(lens).as_py()
        if emb.null_count or mm["min"] != mm["max"]:
            raise ValueError(f"{path}: embeddings must be non-null and of one dimension (lengths {mm})")
        x = pc.list_flatten(emb).to_numpy(zero_copy_only=False).reshape(table.num_rows, -1)
        cfg = (config or RetrieverConfig()).model_copy(update={"model_version": model_version})
        return cls.build(x, table.column(PRODUCT_ID).to_numpy(zero_copy_only=False), cfg)

    def _apply_search_params(self) -> None:
        if self.config.kind == "hnsw":
            self.index.hnsw.efSearch = self.config.hnsw_ef_search
        elif self.config.kind == "ivf":
            self.index.nprobe = self.config.ivf_nprobe

    def search(self, queries: np.ndarray, k: int = 10) -> tuple[np.ndarray, np.ndarray]:
        """(m, d) or (d,) query embeddings -> ((m, k) product ids, (m, k) cosine); None/-inf pad."""
        q = _unit(queries)
        k = int(k)
        scores, idx = self.index.search(q, k)  # (m, k)
        ids = np.full(idx.shape, None, dtype=object)
        ok = idx >= 0
        ids[ok] = self.ids[idx[ok]]
        return ids, np.where(ok, scores, -np.inf)

    def search_indices(self, queries: np.ndarray, k: int = 10) -> np.ndarray:
        return self.index.search(_unit(queries), int(k))[1]

    def save(self, out_dir: str | Path) -> Path:
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        faiss.write_index(self.index, str(out / "index.faiss"))
        pq.write_table(pa.table({PRODUCT_ID: pa.array(self.ids.tolist(), pa.string())}), out / "ids.parquet")
        (out / "retriever.json").write_text(self.config.model_dump_json(indent=2))
        return out

    @classmethod
    def load(cls, out_dir: str | Path) -> "FaissRetriever":
        out = Path(out_dir)
        cfg = RetrieverConfig.model_validate(json.loads((out / "retriever.json").read_text()))
        index = faiss.read_index(str(out / "index.faiss"))
        ids = np.asarray(pq.read_table(out / "ids.parquet").column(PRODUCT_ID).to_pylist(), dtype=object)
        if index.ntotal != len(ids):
            raise ValueError(f"{out}: index holds {index.ntotal} vectors but ids.parquet {len(ids)} rows")
        return cls(index, ids, cfg)


def neighbour_recall_at_k(approx: np.ndarray, exact: np.ndarray, k: int = 10) -> float:
    """Mean fraction of the exact top-k found in the approximate top-k (row-aligned index arrays)."""
    hits = [len(set(a[:k].tolist()) & set(e[:k].tolist()) - {-1}) for a, e in zip(approx, exact)]
    return float(np.mean(hits) / k)
