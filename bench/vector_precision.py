"""What storing served vectors as float16 or int8 changes downstream, beside float32.

    python bench/vector_precision.py [--requests 2000] [--candidates 100] [--work runs/bench_retrieval]

On the catalog embedding table of bench/retrieval.py (deterministic stand-in embeddings at the
served dimension): requests of one text query, one consumer profile (mean of 5 products) and 100
candidates (the query's exact top 100 over the catalog: the slate the server ranks). Each product
vector goes through the Redis encoding (`redis_format.encode_vectors` / `decode_float_lists`), and so do the query and
consumer vectors;
the similarity features the ranker reads are recomputed and compared with float32's:
- feature drift: max and mean absolute change of every similarity feature;
- ranking: top-10 overlap and nDCG@10 of the order by cos_query_product against float32's order
  (float32's cosines as the gains; float32 itself scores below 1 only through tied cosines);
- AUC: of cos_query_product (the strongest similarity feature) against clicks drawn once from
  float32's cosines, its change being the bound on a ranker's AUC change through that feature;
- ranker AUC: a LightGBM ranker (ranking.model.fit_binary, default LGBParams) over the eight
  similarity features, trained on the first 70% of the requests (last 15% of those for early
  stopping) with clicks drawn once from float32's query and consumer cosines, and scored on the
  other 30%: trained and served on each dtype's vectors, and float32-trained but served on each
  dtype (a store switched to float16 under a ranker trained on float32 frames).
Writes bench/results/vector_precision.json.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import faiss
import numpy as np
from sklearn.metrics import ndcg_score, roc_auc_score

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # `python bench/vector_precision.py` from the root
from bench.common import write  # noqa: E402
from bench.machine import cpu_model  # noqa: E402
from bench.retrieval import CATALOG_VERSION, catalog_table  # noqa: E402
from features import columns as C  # noqa: E402
from features import redis_format as F  # noqa: E402
from features.retriever import read_embeddings  # noqa: E402
from features.similarity import similarity_features  # noqa: E402
from ranking.model import LGBParams, fit_binary  # noqa: E402


def ranker_aucs(feats_by_dtype: dict[str, dict], cos_q: np.ndarray, cos_c: np.ndarray, rng: np.random.Generator) -> dict:
    """Test AUC of rankers trained per dtype, and of the float32 ranker served on each dtype."""
    import pandas as pd

    n, k = cos_q.shape
    logit = 30 * (cos_q - np.median(cos_q, 1, keepdims=True)) + 20 * (cos_c - np.median(cos_c, 1, keepdims=True))
    y = (rng.random((n, k)) < 0.3 / (1 + np.exp(-logit))).ravel().astype(float)  # clicks from float32's cosines
    req = np.repeat(np.arange(n), k)
    tr, va, te = req < int(0.55 * n), (req >= int(0.55 * n)) & (req < int(0.7 * n)), req >= int(0.7 * n)
    frames = {d: pd.DataFrame({f: v for f, v in f_.items()}) for d, f_ in feats_by_dtype.items()}
    models = {d: fit_binary(X[tr], y[tr], X[va], y[va], LGBParams()) for d, X in frames.items()}
    auc = {d: roc_auc_score(y[te], models[d].predict(X[te], num_threads=1)) for d, X in frames.items()}
    served = {d: roc_auc_score(y[te], models["float32"].predict(X[te], num_threads=1)) for d, X in frames.items()}
    return {"click_rate": round(float(y.mean()), 4), "test_rows": int(te.sum()),
            "trees": {d: int(m.num_trees()) for d, m in models.items()},
            "trained_and_served": {d: {"auc": round(float(a), 6), "auc_change": round(float(a - auc["float32"]), 6)}
                                   for d, a in auc.items()},
            "float32_ranker_served": {d: {"auc": round(float(a), 6), "auc_change": round(float(a - served["float32"]), 6)}
                                      for d, a in served.items()}}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--requests", type=int, default=2000)
    ap.add_argument("--candidates", type=int, default=100)
    ap.add_argument("--dim", type=int, default=640)
    ap.add_argument("--work", default="runs/bench_retrieval")
    args = ap.parse_args()
    table, emb, df = catalog_table(Path(args.work), args.dim)
    _, x = read_embeddings(table, CATALOG_VERSION)
    rng = np.random.default_rng(3)
    picks = df.iloc[rng.integers(0, len(df), args.requests)]
    q = emb.text([t if i % 2 else c.replace(">", " ") for i, (t, c) in enumerate(zip(picks["title"], picks["category"]))])
    _, slates = faiss.knn(q, x, args.candidates, metric=faiss.METRIC_INNER_PRODUCT)  # (R, K)
    buyers = x[rng.integers(0, len(x), (args.requests, 5))].mean(1)  # (R, d) consumer profiles
    n, k = slates.shape
    group = np.repeat(np.arange(n), k)
    found = np.ones(n * k, bool)
    stored = {d: F.decode_float_lists(F.encode_vectors(x, d))[0] for d in F.VECTOR_DTYPES}  # what a lookup returns

    def stored_as(v, d):
        return F.decode_float_lists(F.encode_vectors(v, d))[0]

    def feats(mat):  # query and consumer vectors come from the store too
        return similarity_features(mat[slates.ravel()], found, np.repeat(stored_as(q, d_now), k, 0), found,
                                   np.repeat(stored_as(buyers, d_now), k, 0), found, group)

    d_now = "float32"
    ref = feats(stored["float32"])
    cos_ref = ref[C.COS_QUERY_PRODUCT].reshape(n, k)
    p = 1 / (1 + np.exp(-40 * (cos_ref - np.median(cos_ref, axis=1, keepdims=True))))
    clicks = rng.random(p.shape) < p * 0.3  # (R, K) clicks drawn once from float32's cosines
    auc_ref = roc_auc_score(clicks.ravel(), cos_ref.ravel())
    ndcg_ref = ndcg_score(np.clip(cos_ref, 0, None), cos_ref, k=10)  # below 1 only through tied cosines
    out = {"products": len(x), "dim": int(x.shape[1]), "requests": n, "candidates": k,
           "embedding": f"{CATALOG_VERSION} (bench/retrieval.py: hashed TF-IDF text + image thumbnail)", "dtypes": {}}
    all_feats = {}
    for d in F.VECTOR_DTYPES:
        d_now = d
        got = all_feats[d] = feats(stored[d])
        cos = got[C.COS_QUERY_PRODUCT].reshape(n, k)
        top_ref, top = np.argsort(-cos_ref, 1)[:, :10], np.argsort(-cos, 1, kind="stable")[:, :10]
        overlap = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(top_ref, top)])
        auc = roc_auc_score(clicks.ravel(), cos.ravel())
        out["dtypes"][d] = {
            "value_bytes": len(F.encode_vectors(x[:1], d)[0]),
            "vector_max_abs_error": float(np.abs(stored[d] - x).max()),
            "feature_drift": {f: {"max": float(np.nanmax(np.abs(got[f] - ref[f]))), "mean": float(np.nanmean(np.abs(got[f] - ref[f])))}
                              for f in ref},
            "top10_overlap": round(float(overlap), 5),
            "ndcg_at_10_vs_float32": round(float(ndcg_score(np.clip(cos_ref, 0, None), cos, k=10)), 6),
            "ndcg_at_10_change": round(float(ndcg_score(np.clip(cos_ref, 0, None), cos, k=10) - ndcg_ref), 6),
            "auc_cos_query_product": round(float(auc), 6), "auc_change": round(float(auc - auc_ref), 6)}
        print(d, {kk: v for kk, v in out["dtypes"][d].items() if kk != "feature_drift"}, flush=True)
    out["ranker"] = ranker_aucs(all_feats, cos_ref, ref[C.COS_CONSUMER_PRODUCT].reshape(n, k), rng)
    print("ranker", out["ranker"], flush=True)
    out["machine"] = {"cpu": cpu_model(), "cpus": os.cpu_count()}
    out["target"] = "float16: nDCG@10 / AUC change (cos_query_product and the trained ranker's) within 0.002"
    write("vector_precision", out)


if __name__ == "__main__":
    main()
