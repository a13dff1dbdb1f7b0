"""BM25's retrieval quality over the test products, judged by the independent ESCI judge.

    python bench/bm25_eval.py [--catalog ../shared/data/catalog.csv] [--per-category 3] [--seed 1000]
        [--out bench/results/bm25_eval.json]

Queries: every handwritten query plus the generated evaluation queries (``python -m dashclip.evaluate
judgments``' defaults: 3 per category path of the test split, seed 1000). Every test product is
scored by ``dashclip.retrieval.BM25Index`` over ``product_search_text``; the judge
(``dashclip.judge``, which does not depend on BM25's tokenizer) grades every (query, product) pair.
Reports ``dashclip.eval_queries``' metrics per query source: the figure to compare when the shared
tokenizer (``dashclip.lexical``) changes.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from bench.machine import cpu_model  # noqa: E402
DEFAULT_CATALOG = REPO.parent / "shared" / "data" / "catalog.csv"
HANDWRITTEN = REPO / "dashclip" / "resources" / "handwritten_queries.csv"
RESULTS = REPO / "bench" / "results" / "bm25_eval.json"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--catalog", default=str(DEFAULT_CATALOG))
    ap.add_argument("--per-category", type=int, default=3)
    ap.add_argument("--seed", type=int, default=1000)
    ap.add_argument("--out", default=str(RESULTS))
    args = ap.parse_args(argv)

    import numpy as np

    from dashclip import columns as C
    from dashclip.catalog import load_products
    from dashclip.embed import read_queries
    from dashclip.eval_queries import mean_metrics
    from dashclip.io import write_json_atomic
    from dashclip.judge import Judge
    from dashclip.queries import generate_queries
    from dashclip.retrieval import BM25Index, product_search_text

    t0 = time.perf_counter()
    prods = load_products(args.catalog)
    test = prods[prods[C.SPLIT] == "test"].reset_index(drop=True)
    hand = read_queries(HANDWRITTEN)[0]
    gen = generate_queries(test, args.per_category, 0.1, seed=args.seed, prefix="eval")
    judge, bm25 = Judge(test), BM25Index(product_search_text(test))
    report = {}
    for source, qs in (("handwritten", hand), ("generated", gen)):
        texts = qs[C.QUERY].tolist()
        labels = judge.grade_matrix(texts)
        keep = (labels >= 2).any(1)  # queries with a relevant test product, as `evaluate judgments` keeps
        scores = np.stack([bm25.scores(q) for q in texts])
        report[source] = {"queries": int(keep.sum()), **{k: round(v, 4) for k, v in
                                                         mean_metrics(scores[keep], labels[keep]).items()}}
    report.update({
        "setup": {"catalog": str(args.catalog), "test_products": len(test), "per_category": args.per_category,
                  "seed": args.seed, "judge": "dashclip.judge.Judge"},
        "seconds": round(time.perf_counter() - t0, 1),
        "machine": {"cpu": cpu_model(), "platform": platform.platform()},
        "command": "python bench/bm25_eval.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "date": datetime.now(timezone.utc).strftime("%Y-%m-%d"),
    })
    write_json_atomic(report, args.out)
    print(json.dumps({k: report[k] for k in ("handwritten", "generated")}, indent=1))
    print(f"wrote {args.out}")
    return 0



if __name__ == "__main__":
    sys.exit(main())
