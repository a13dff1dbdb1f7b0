"""Per-request cost of the ads server, stage by stage, in CPU milliseconds (in process).

    python bench/serve_breakdown.py [--requests 500] [--candidates 100] [--products 10000] [--dim 640]

A scratch Feast store on $REDIS_URL (synthetic embedding and stats tables, materialized by our
engine), an HNSW index over the products, and a LightGBM ranker with the real feature list and
the default training parameters, trained on random rows (its trees have the real ranker's size
up to early stopping). For each request the stages of `RankService.rank` run one after another,
each timed with the thread's CPU clock and the wall clock:
retrieval (query embedding lookup + ANN search), lookup (product, consumer and query embeddings),
stats (stats views), features (similarity features + feature matrix), scoring (LightGBM),
serialisation (the response model to JSON). Then the whole `rank` + serialisation is timed alone,
and the ratio of that to the sum of the stages is reported. HTTP and uvicorn are not in these
figures (bench/serve_load.py measures the server end to end). Writes bench/results/serve_breakdown.json.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # `python bench/serve_breakdown.py` from the root
from bench.common import drop_project, machine, scratch_store, write  # noqa: E402
from features import columns as FC  # noqa: E402
from features.materialize import ENGINE_TYPE  # noqa: E402
from features.retriever import FaissRetriever, RetrieverConfig  # noqa: E402
from features.synthetic import T0, write_stats, write_tables  # noqa: E402
from ranking import columns as R  # noqa: E402
from ranking.model import LGBParams, Ranker, RankerConfig, fit_binary  # noqa: E402
from ranking.online import RankService  # noqa: E402
from ranking.serve import Ad, RankResponse  # noqa: E402


def _ranker(version: str) -> Ranker:
    feats = list(R.EMBEDDING_FEATURES)
    rng = np.random.default_rng(0)
    X = pd.DataFrame(rng.random((20000, len(feats))), columns=feats)
    y = (X[FC.COS_QUERY_PRODUCT] + 0.3 * X[feats[0]] + 0.5 * rng.random(len(X)) > 1.0).to_numpy(float)
    p = LGBParams()
    return Ranker({t: fit_binary(X[:15000], y[:15000], X[15000:], y[15000:], p) for t in R.TASKS},
                  RankerConfig(name="with_embeddings", features=feats, model_version=version, params=p))


class _Clock:
    def __init__(self):
        self.cpu, self.wall = {}, {}

    def __call__(self, name, fn, *a, **kw):
        c, w = time.thread_time(), time.perf_counter()
        out = fn(*a, **kw)
        self.cpu.setdefault(name, []).append(time.thread_time() - c)
        self.wall.setdefault(name, []).append(time.perf_counter() - w)
        return out


def _serialise(svc: RankService, r) -> bytes:
    ads = [Ad(product_id=p, rank=i + 1, score=float(s), pctr=float(c), pcvr=float(v), known=bool(f))
           for i, (p, s, c, v, f) in enumerate(zip(r.product_ids, r.score, r.pctr, r.pcvr, r.product_found))]
    return RankResponse(ads=ads, model_version=svc.model_version, retrieval=r.retrieval, unknown={k: v for k, v in r.missing.items() if v},
                        query_source=r.query_source, latency_ms=0.0).model_dump_json().encode()


def staged(svc: RankService, clock: _Clock, consumer: str, query_id: str, k: int = 10) -> bytes:
    """`RankService.rank` without candidate ids (retrieval by the index), one timed stage at a time."""
    from ranking.online import Ranked

    pids = clock("retrieval", svc._retrieve, query_id, "", svc.lookup.deadline())
    req = clock("lookup", svc.lookup.lookup, consumer, pids, query_id=query_id)
    cats = [svc.categories.get(p, "") for p in pids]
    uniq = sorted(set(cats))
    stats = clock("stats", svc.stats.fetch, [(FC.PRODUCT_ENTITY, pids), (FC.CONSUMER_ENTITY, [consumer]), (FC.CATEGORY_ENTITY, uniq)])
    X = clock("features", svc._features, req, stats, cats, uniq)
    pred = clock("scoring", svc.ranker.predict, X, svc.ranker.features)
    order = np.argsort(-pred["score"], kind="stable")[:k]
    r = Ranked([pids[i] for i in order], pred["ctr"][order], pred["cvr"][order], pred["score"][order], req.product_found[order],
               req.consumer_found, req.query_found, req.query_source, "faiss", req.missing)
    return clock("serialisation", _serialise, svc, r)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--requests", type=int, default=500)
    ap.add_argument("--candidates", type=int, default=100)
    ap.add_argument("--products", type=int, default=10000)
    ap.add_argument("--dim", type=int, default=640)
    ap.add_argument("--note", default="")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        t = write_tables(root / "data", ("v1",), n_products=args.products, n_queries=500, n_consumers=500, d=args.dim)
        write_stats(root / "data", t.product_ids, t.consumer_ids, categories=("A", "B", "C"))
        store = scratch_store(root, root / "data", ENGINE_TYPE)
        try:
            store.materialize(T0 - timedelta(days=2), T0 + timedelta(days=5))
            retriever = FaissRetriever.from_table(root / "data" / FC.PRODUCT_EMBEDDINGS_TABLE, "v1", RetrieverConfig(kind="hnsw"))
            cats = {p: "ABC"[i % 3] for i, p in enumerate(t.product_ids)}
            svc = RankService(store, _ranker("v1"), "v1", cats, retriever=retriever, retrieve_k=args.candidates)
            rng = np.random.default_rng(0)
            reqs = [(t.consumer_ids[rng.integers(500)], t.query_ids[rng.integers(500)]) for _ in range(args.requests)]
            warm = _Clock()
            for c, q in reqs[:50]:
                staged(svc, warm, c, q)
            clock = _Clock()
            for c, q in reqs:
                staged(svc, clock, c, q)
            whole = _Clock()
            for c, q in reqs:
                whole("request", lambda c=c, q=q: _serialise(svc, svc.rank(c, "", None, 10, query_id=q)))
        finally:
            drop_project(store.project)
    ms = {s: round(1000 * float(np.mean(v)), 4) for s, v in clock.cpu.items()}
    wall = {s: round(1000 * float(np.mean(v)), 4) for s, v in clock.wall.items()}
    total_cpu, total_wall = 1000 * float(np.mean(whole.cpu["request"])), 1000 * float(np.mean(whole.wall["request"]))
    res = {"what": "RankService.rank stages in process (no HTTP), retrieval by HNSW, mean per request",
           "requests": args.requests, "candidates": args.candidates, "products": args.products, "dim": args.dim,
           "cpu_ms": ms, "wall_ms": wall, "sum_of_stages_cpu_ms": round(sum(ms.values()), 4),
           "request_cpu_ms": round(total_cpu, 4), "request_wall_ms": round(total_wall, 4),
           "request_over_sum_of_stages_cpu": round(total_cpu / sum(ms.values()), 3),
           "requests_per_cpu_second": round(1000 / total_cpu, 1),
           "ranker_trees": {k: int(b.num_trees()) for k, b in svc.ranker.boosters.items()}, "machine": machine(args.note)}
    write("serve_breakdown", res)


if __name__ == "__main__":
    main()
