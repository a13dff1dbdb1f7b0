"""ANN retrieval beside exact search: recall@10, single-query latency, build time, index bytes.

    python bench/retrieval.py [--synthetic-n 1000000] [--dim 640] [--queries 1000]

Three data sets, each searched by the exact (flat) index and the approximate kinds:
- catalog: the shipped catalog (../shared/data) embedded at the served dimension by a cheap
  deterministic stand-in for the product tower (hashed word TF-IDF of title, category, colour,
  gender, usage and description through a sparse random projection, plus a random projection of
  a 12x12 colour thumbnail of the image), written as an embedding table and indexed by the batch
  step (`features.build_index`); queries are text-only embeddings of product titles and category
  paths. Recall counts ties (duplicate products are frequent in this catalog).
- clustered: a synthetic set of `--synthetic-n` unit vectors with structure (a mixture of 1 per
  1,000 clusters in a 64-d latent space, projected to the served dimension with isotropic noise);
  queries are fresh draws from the same mixture.
- isotropic: the set the earlier benchmark used (independent random unit vectors, queries = a
  product + N(0, 0.05^2) per coordinate): the case no index can serve.
Latency is one query per call on one thread (as a server request searches). Writes
bench/results/retrieval.json.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import faiss
import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # `python bench/retrieval.py` from the root
from bench.common import DATA_CSV, write  # noqa: E402
from features import build_index as B  # noqa: E402
from features import columns as C  # noqa: E402
from features.retriever import FaissRetriever, RetrieverConfig, neighbour_recall_at_k, read_embeddings, recall_at_k_ties  # noqa: E402
from features.synthetic import T0, product_table, write_partition  # noqa: E402

CATALOG_VERSION = "hash640"


def _text(df: pd.DataFrame, with_description: bool = True) -> list[str]:
    cols = ["title", "category", "color", "gender", "usage"] + (["description"] if with_description else [])
    return df[cols].fillna("").astype(str).agg(" ".join, axis=1).str.replace(">", " ").tolist()


def _thumbs(paths: list[Path]) -> np.ndarray:
    from PIL import Image

    out = np.zeros((len(paths), 12 * 12 * 3), np.float32)
    for i, p in enumerate(paths):
        with Image.open(p) as im:
            im.draft("RGB", (48, 48))  # JPEG decodes at 1/8 scale: the thumbnail costs little
            out[i] = np.asarray(im.convert("RGB").resize((12, 12)), np.float32).ravel() / 255.0
    return out - out.mean(0)


class HashEmbedder:
    """Deterministic text (+ image thumbnail) embedding at `dim`: a stand-in for the product tower."""

    def __init__(self, dim: int, seed: int = 0):
        from sklearn.feature_extraction.text import HashingVectorizer
        from sklearn.random_projection import SparseRandomProjection

        self.dim, self.rng = dim, np.random.default_rng(seed)
        self.vec = HashingVectorizer(n_features=2**18, ngram_range=(1, 2), alternate_sign=False, norm="l2")
        self.proj = SparseRandomProjection(dim, dense_output=True, random_state=seed).fit(self.vec.transform(["fit"]))
        self.img = self.rng.standard_normal((12 * 12 * 3, dim)).astype(np.float32)

    def text(self, texts: list[str]) -> np.ndarray:
        t = np.asarray(self.proj.transform(self.vec.transform(texts)), np.float32)
        return t / np.maximum(np.linalg.norm(t, axis=1, keepdims=True), 1e-9)

    def products(self, df: pd.DataFrame, root: Path) -> np.ndarray:
        t = self.text(_text(df))
        im = _thumbs([root / p for p in df["image"]]) @ self.img
        im /= np.maximum(np.linalg.norm(im, axis=1, keepdims=True), 1e-9)
        x = 0.85 * t + 0.15 * im
        return x / np.linalg.norm(x, axis=1, keepdims=True)


def catalog_table(root: Path, dim: int) -> tuple[Path, HashEmbedder, pd.DataFrame]:
    df = pd.read_csv(DATA_CSV, dtype=str)
    emb = HashEmbedder(dim)
    table = root / C.PRODUCT_EMBEDDINGS_TABLE
    if not (table / f"model_version={CATALOG_VERSION}").exists():
        x = emb.products(df, DATA_CSV.parent)
        write_partition(root, C.PRODUCT_EMBEDDINGS_TABLE, CATALOG_VERSION, product_table(df["product_id"].tolist(), x, T0))
    return table, emb, df


def clustered(n: int, dim: int, n_queries: int, seed: int = 0, latent: int = 64) -> tuple[np.ndarray, np.ndarray]:
    """(n, dim) products and (n_queries, dim) queries from one mixture; unit vectors."""
    rng = np.random.default_rng(seed)
    k = max(10, n // 1000)
    centres = rng.standard_normal((k, latent)).astype(np.float32)
    w = rng.standard_normal((latent, dim)).astype(np.float32) / np.sqrt(latent)

    def draw(m: int) -> np.ndarray:
        out = np.empty((m, dim), np.float32)
        for s in range(0, m, 100_000):  # chunks keep the temporaries small
            e = min(m, s + 100_000)
            z = centres[rng.integers(0, k, e - s)] + 0.6 * rng.standard_normal((e - s, latent)).astype(np.float32)
            x = z @ w + 0.35 * rng.standard_normal((e - s, dim)).astype(np.float32)
            out[s:e] = x / np.linalg.norm(x, axis=1, keepdims=True)
        return out

    return draw(n), draw(n_queries)


def isotropic(n: int, dim: int, n_queries: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, dim)).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    q = x[rng.integers(0, n, n_queries)] + 0.05 * rng.standard_normal((n_queries, dim)).astype(np.float32)
    return x, q / np.linalg.norm(q, axis=1, keepdims=True)


def _latency(r: FaissRetriever, q: np.ndarray, k: int = 10) -> dict:
    """Wall and CPU milliseconds per single-query search (CPU time is what the query costs; wall
    time also holds waits for a core on a shared machine)."""
    for v in q[:50]:
        r.search(v, k)
    wall, cpu = [], []
    for v in q:
        s, c = time.perf_counter(), time.thread_time()
        r.search(v, k)
        cpu.append(time.thread_time() - c)
        wall.append(time.perf_counter() - s)
    a, b = np.asarray(wall) * 1000, np.asarray(cpu) * 1000
    return {"p50_ms": round(float(np.percentile(a, 50)), 4), "p99_ms": round(float(np.percentile(a, 99)), 4),
            "mean_ms": round(float(a.mean()), 4), "cpu_mean_ms": round(float(b.mean()), 4),
            "cpu_p99_ms": round(float(np.percentile(b, 99)), 4)}


SWEEP = {"hnsw": ("hnsw_ef_search", (64, 128, 256)), "ivf": ("ivf_nprobe", (8, 16, 32, 64)),
         "ivfpq": ("refine_k_factor", (10, 20, 40))}


def _sweep(r: FaissRetriever, x: np.ndarray, q: np.ndarray, scores: np.ndarray, k: int) -> list[dict]:
    """Recall and latency at several search settings of one built index (no rebuild)."""
    field, values = SWEEP[r.config.kind]
    base, out = getattr(r.config, field), []
    for v in values:
        setattr(r.config, field, v)
        r._apply_search_params()
        got = r.search_indices(q, k)
        out.append({field: v, "recall_at_10": round(recall_at_k_ties(x, q, got, scores, k), 4), **_latency(r, q[:300])})
    setattr(r.config, field, base)
    r._apply_search_params()
    return out


class _Exact:
    """Flat search over an array (faiss.knn), searched like a FaissRetriever."""

    def __init__(self, x: np.ndarray, ids: np.ndarray):
        self.x, self.ids = x, ids

    def search(self, v: np.ndarray, k: int):
        return faiss.knn(np.ascontiguousarray(v[None], np.float32), self.x, k, metric=faiss.METRIC_INNER_PRODUCT)


def compare(x: np.ndarray, q: np.ndarray, configs: dict[str, RetrieverConfig], build_threads: int, k: int = 10) -> dict:
    ids = np.arange(len(x)).astype(str).astype(object)
    faiss.omp_set_num_threads(build_threads)
    t = time.perf_counter()
    scores, truth = faiss.knn(q, x, k, metric=faiss.METRIC_INNER_PRODUCT)  # exact ground truth (unit vectors)
    truth_s = time.perf_counter() - t
    faiss.omp_set_num_threads(1)
    exact = _Exact(x, ids)  # flat search over the same array, without another copy of it
    out = {"products": len(x), "dim": int(x.shape[1]), "queries": len(q), "k": k,
           "exact_top10_cosine_mean": [round(float(v), 4) for v in scores.mean(0)],
           "flat": {"recall_at_10": 1.0, "ground_truth_s": round(truth_s, 2), "index_bytes": int(x.nbytes),
                    **_latency(exact, q[: 1000 if len(x) <= 200_000 else 100])}}
    print("flat", out["flat"], flush=True)
    for name, cfg in configs.items():
        faiss.omp_set_num_threads(build_threads)
        t = time.perf_counter()
        r = FaissRetriever.build(x, ids, cfg)
        build_s = time.perf_counter() - t
        faiss.omp_set_num_threads(1)
        got = r.search_indices(q, k)
        out[name] = {"recall_at_10": round(recall_at_k_ties(x, q, got, scores, k), 4),
                     "recall_at_10_ids": round(neighbour_recall_at_k(got, truth, k), 4), "build_s": round(build_s, 2),
                     "index_bytes": r.nbytes(), **_latency(r, q), "config": r.config.model_dump(exclude_none=True)}
        out[name]["sweep"] = _sweep(r, x, q, scores, k)
        print(name, out[name], flush=True)
        del r
    return out


def bench_catalog(root: Path, dim: int, n_queries: int) -> dict:
    t = time.perf_counter()
    table, emb, df = catalog_table(root, dim)
    embed_s = time.perf_counter() - t
    rng = np.random.default_rng(2)
    picks = df.iloc[rng.integers(0, len(df), n_queries)]
    texts = [t if i % 2 else c.replace(">", " ") for i, (t, c) in enumerate(zip(picks["title"], picks["category"]))]
    q = emb.text(texts)  # text-only queries: titles and category paths
    ids, x = read_embeddings(table, CATALOG_VERSION)
    out = compare(x, q, {"hnsw": RetrieverConfig(kind="hnsw"), "ivf": RetrieverConfig(kind="ivf")}, build_threads=1)
    # the batch step and the memory-mapped load the server does, on the same table
    _, report = B.build_index(table, CATALOG_VERSION, RetrieverConfig(kind="hnsw"))
    t = time.perf_counter()
    served = B.load_index(table, CATALOG_VERSION, mmap=True)
    load_s = time.perf_counter() - t
    got = served.search_indices(q, 10)
    scores = faiss.knn(q, x, 10, metric=faiss.METRIC_INNER_PRODUCT)[0]
    out["served_index"] = {**report, "index": str(Path(report["index"]).relative_to(root)), "mmap_load_s": round(load_s, 4),
                           "recall_at_10": round(recall_at_k_ties(x, q, got, scores, 10), 4), **_latency(served, q)}
    out["embedding"] = {"model_version": CATALOG_VERSION, "what": "hashed TF-IDF text + image thumbnail, random projections",
                        "embed_s": round(embed_s, 1), "queries": "text-only: product titles and category paths"}
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dim", type=int, default=640, help="the served embedding dimension")
    ap.add_argument("--queries", type=int, default=1000)
    ap.add_argument("--synthetic-n", type=int, default=1_000_000)
    ap.add_argument("--nlist", type=int, default=1024, help="ivfpq lists at the synthetic size")
    ap.add_argument("--nprobe", type=int, default=16)
    ap.add_argument("--pq-m", type=int, default=160)
    ap.add_argument("--pq-nbits", type=int, default=4, choices=[4, 8])
    ap.add_argument("--refine", default="sq8", choices=["sq8", "fp16", "flat"])
    ap.add_argument("--k-factor", type=int, default=20)
    ap.add_argument("--build-threads", type=int, default=2)
    ap.add_argument("--hnsw-at-scale", action="store_true", help="also build HNSW at the synthetic size (slow)")
    ap.add_argument("--work", default=None, help="folder for the catalog embedding table (default: a temporary one)")
    ap.add_argument("--skip", default="", help="comma-separated sets to skip: catalog,clustered,isotropic")
    ap.add_argument("--note", default="")
    args = ap.parse_args()
    skip = set(filter(None, args.skip.split(",")))
    res = {}
    with tempfile.TemporaryDirectory() as tmp:
        if "catalog" not in skip:
            res["catalog"] = bench_catalog(Path(args.work or tmp), args.dim, args.queries)
    if "isotropic" not in skip:
        x, q = isotropic(9999, args.dim, args.queries)
        res["isotropic"] = compare(x, q, {"hnsw": RetrieverConfig(kind="hnsw")}, build_threads=1)
    if "clustered" not in skip:
        t = time.perf_counter()
        x, q = clustered(args.synthetic_n, args.dim, args.queries)
        gen_s = time.perf_counter() - t
        cfgs = {"ivfpq": RetrieverConfig(kind="ivfpq", ivf_nlist=args.nlist, ivf_nprobe=args.nprobe, pq_m=args.pq_m,
                                         pq_nbits=args.pq_nbits, refine=args.refine, refine_k_factor=args.k_factor)}
        if args.hnsw_at_scale:
            cfgs["hnsw"] = RetrieverConfig(kind="hnsw")
        res["clustered"] = {**compare(x, q, cfgs, args.build_threads), "generate_s": round(gen_s, 1)}
    cpu = next((ln.split(":", 1)[1].strip() for ln in open("/proc/cpuinfo") if ln.startswith("model name")), "")
    res["machine"] = {"cpu": cpu, "cpus": os.cpu_count(), "loadavg_1_5_15": [round(v, 2) for v in os.getloadavg()],
                      "faiss": faiss.__version__, "search_threads": 1, "build_threads": args.build_threads, "note": args.note}
    res["targets"] = {"catalog": "recall@10 >= 0.97 at <= 1 ms/query", "clustered_1M": "recall@10 >= 0.95 at <= 5 ms/query"}
    write("retrieval", res)


if __name__ == "__main__":
    main()
