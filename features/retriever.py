"""Candidate retrieval: a faiss index over product embeddings, exact or approximate.

`FaissRetriever.from_table(path, model_version=...)` builds from the Spark embedding table
(parquet, `product_id`, `embedding`, `model_version`); `search(queries, k)` returns the top-k
product ids and cosine scores. Vectors are L2-normalised, so inner product is cosine. Kinds:
`flat` (exact), `hnsw` (graph over full vectors, default approximate), `ivf` (inverted lists of
full vectors) and `ivfpq` (inverted lists of product-quantised codes, re-ranked on a compact copy
of the vectors: the kind for millions of products). `save(dir)` writes `index.faiss`,
`ids.parquet` and `retriever.json` (the config that built it); `load(dir, mmap=True)` maps the
index file instead of reading it into memory. `features.build_index` builds the index of a
committed table as a batch step and stores it next to the table.
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

INDEX_FILE, IDS_FILE, CONFIG_FILE = "index.faiss", "ids.parquet", "retriever.json"
_REFINE = {"sq8": "Refine(SQ8)", "fp16": "Refine(SQfp16)", "flat": "RFlat"}


class RetrieverConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", protected_namespaces=())

    kind: Literal["flat", "hnsw", "ivf", "ivfpq"] = "hnsw"
    hnsw_m: int = Field(32, ge=4)  # graph degree
    hnsw_ef_construction: int = Field(200, ge=8)
    hnsw_ef_search: int = Field(128, ge=8)
    ivf_nlist: int | None = Field(None, ge=1)  # None: 4 * sqrt(n), at least 39 training vectors per list
    ivf_nprobe: int = Field(32, ge=1)
    ivf_train_per_list: int = Field(64, ge=39)  # k-means training sample per list (faiss default 256: 4x slower)
    ivf_train_iters: int = Field(10, ge=1)
    pq_m: int | None = Field(None, ge=1)  # bytes per code at 8 bits; None: dim / 8 (must divide dim)
    pq_nbits: Literal[4, 8] = 8  # 4: faiss "fast scan" codes, searched with SIMD
    refine: Literal["none", "sq8", "fp16", "flat"] = "sq8"  # ivfpq: re-rank on vectors stored at this precision
    refine_k_factor: int = Field(8, ge=1)  # ivfpq: re-rank k * factor code-distance candidates
    model_version: str | None = None
    dim: int | None = None
    count: int | None = None
    source_run: str | None = None  # the committed run of the embedding table the index was built from

    def factory(self, n: int, d: int) -> str:
        """The faiss index_factory string for `n` vectors of dimension `d` (fills ivf_nlist/pq_m)."""
        if self.kind == "flat":
            return "Flat"
        if self.kind == "hnsw":
            return f"HNSW{self.hnsw_m}"
        self.ivf_nlist = self.ivf_nlist or max(1, min(n // 39, int(4 * math.sqrt(n))))
        if self.kind == "ivf":
            return f"IVF{self.ivf_nlist},Flat"
        self.pq_m = self.pq_m or max(1, d // 8)
        if d % self.pq_m:
            raise ValueError(f"pq_m: {self.pq_m} does not divide the embedding dimension {d}")
        fs = "fs" if self.pq_nbits == 4 else ""
        refine = "" if self.refine == "none" else "," + _REFINE[self.refine]
        return f"IVF{self.ivf_nlist},PQ{self.pq_m}x{self.pq_nbits}{fs}{refine}"


def _unit(x: np.ndarray) -> np.ndarray:
    x = np.ascontiguousarray(x, dtype=np.float32)
    if x.ndim == 1:
        x = x[None, :]
    x = x.copy()
    faiss.normalize_L2(x)
    return x


def read_embeddings(path: str | Path, model_version: str | None = None) -> tuple[np.ndarray, np.ndarray]:
    """((n,) product ids, (n, d) float32) of a parquet embedding table (file or partitioned folder)."""
    table = ds.dataset(str(path), format="parquet", partitioning="hive").to_table(columns=[PRODUCT_ID, EMBEDDING, MODEL_VERSION]
                                                                                 if model_version is not None else [PRODUCT_ID, EMBEDDING])
    if model_version is not None:
        table = table.filter(pc.equal(table.column(MODEL_VERSION).cast(pa.string()), str(model_version)))
    if table.num_rows == 0:
        raise ValueError(f"no embeddings in {path} for model_version={model_version!r}")
    emb = table.column(EMBEDDING).combine_chunks()
    lens = pc.list_value_length(emb)
    mm = pc.min_max(lens).as_py()
    if emb.null_count or mm["min"] != mm["max"]:
        raise ValueError(f"{path}: embeddings must be non-null and of one dimension (lengths {mm})")
    x = pc.list_flatten(emb).to_numpy(zero_copy_only=False).astype(np.float32, copy=False).reshape(table.num_rows, -1)
    return table.column(PRODUCT_ID).to_numpy(zero_copy_only=False), x


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
        index = faiss.index_factory(d, cfg.factory(n, d), faiss.METRIC_INNER_PRODUCT)
        if cfg.kind == "hnsw":
            index.hnsw.efConstruction = cfg.hnsw_ef_construction
        if cfg.kind in ("ivf", "ivfpq"):
            cp = faiss.extract_index_ivf(index).cp
            cp.max_points_per_centroid, cp.niter = cfg.ivf_train_per_list, cfg.ivf_train_iters
        if cfg.kind == "ivfpq" and cfg.pq_nbits == 8:
            # index_factory asks for polysemous training (a slow code permutation search that only
            # polysemous Hamming filtering uses, which this index never does)
            faiss.downcast_index(faiss.extract_index_ivf(index)).do_polysemous_training = False
        if not index.is_trained:
            index.train(x)
        index.add(x)
        cfg.dim, cfg.count = d, n
        return cls(index, ids, cfg)

    @classmethod
    def from_table(cls, path: str | Path, model_version: str | None = None,
                   config: RetrieverConfig | None = None) -> "FaissRetriever":
        """Build from a parquet embedding table (file or model_version-partitioned folder)."""
        ids, x = read_embeddings(path, model_version)
        cfg = (config or RetrieverConfig()).model_copy(update={"model_version": model_version})
        return cls.build(x, ids, cfg)

    def _apply_search_params(self) -> None:
        ps, c = faiss.ParameterSpace(), self.config
        params = {"hnsw": {"efSearch": c.hnsw_ef_search}, "ivf": {"nprobe": c.ivf_nprobe}, "ivfpq": {"nprobe": c.ivf_nprobe}}
        for name, value in params.get(c.kind, {}).items():
            ps.set_index_parameter(self.index, name, value)  # reaches through refine wrappers
        if isinstance(self.index, faiss.IndexRefine):
            self.index.k_factor = float(c.refine_k_factor)

    def search(self, queries: np.ndarray, k: int = 10) -> tuple[np.ndarray, np.ndarray]:
        """(m, d) or (d,) query embeddings -> ((m, k) product ids, (m, k) cosine); None/-inf pad."""
        scores, idx = self.index.search(_unit(queries), int(k))  # (m, k)
        ids = np.full(idx.shape, None, dtype=object)
        ok = idx >= 0
        ids[ok] = self.ids[idx[ok]]
        return ids, np.where(ok, scores, -np.inf)

    def search_indices(self, queries: np.ndarray, k: int = 10) -> np.ndarray:
        return self.index.search(_unit(queries), int(k))[1]

    def save(self, out_dir: str | Path) -> Path:
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        faiss.write_index(self.index, str(out / INDEX_FILE))
        pq.write_table(pa.table({PRODUCT_ID: pa.array(self.ids.tolist(), pa.string())}), out / IDS_FILE)
        (out / CONFIG_FILE).write_text(self.config.model_dump_json(indent=2))
        return out

    @classmethod
    def load(cls, out_dir: str | Path, mmap: bool = False) -> "FaissRetriever":
        """Read a saved index; `mmap`: map the index file read-only (pages load on first touch, and
        several server processes share them) instead of copying it into memory."""
        out = Path(out_dir)
        cfg = RetrieverConfig.model_validate(json.loads((out / CONFIG_FILE).read_text()))
        flags = faiss.IO_FLAG_MMAP_IFC | faiss.IO_FLAG_READ_ONLY if mmap else 0
        index = faiss.read_index(str(out / INDEX_FILE), flags)
        ids = pq.read_table(out / IDS_FILE).column(PRODUCT_ID).to_numpy(zero_copy_only=False).astype(object)
        if index.ntotal != len(ids):
            raise ValueError(f"{out}: index holds {index.ntotal} vectors but {IDS_FILE} {len(ids)} rows")
        return cls(index, ids, cfg)

    def nbytes(self) -> int:
        """Bytes of the serialised index (what the file holds, what a server maps)."""
        return int(faiss.serialize_index(self.index).size)


def neighbour_recall_at_k(approx: np.ndarray, exact: np.ndarray, k: int = 10) -> float:
    """Mean fraction of the exact top-k found in the approximate top-k (row-aligned index arrays)."""
    hits = [len(set(a[:k].tolist()) & set(e[:k].tolist()) - {-1}) for a, e in zip(approx, exact)]
    return float(np.mean(hits) / k)


def recall_at_k_ties(x: np.ndarray, queries: np.ndarray, approx: np.ndarray, exact_scores: np.ndarray,
                     k: int = 10, tol: float = 1e-5) -> float:
    """Recall@k that counts a tie as a hit: the fraction of the approximate top-k whose exact cosine
    reaches the k-th best exact cosine (duplicate products make id-based recall arbitrary)."""
    xu, qu = _unit(x), _unit(queries)
    a = approx[:, :k]  # (m, k)
    true = np.einsum("md,mkd->mk", qu, xu[np.maximum(a, 0)])  # (m, k) exact cosine of what was returned
    hit = (true >= exact_scores[:, k - 1 : k] - tol) & (a >= 0)
    return float(hit.mean())
