"""The text channel's weight: served-embedding retrieval as the MiniLM share of the cosine varies.

    python bench/text_channel_weight.py --checkpoint runs/pipeline/stage2 \
        --set val=runs/pipeline/eval/val/products.parquet:runs/pipeline/eval/val/judgments.csv \
        [--set NAME=CATALOG:JUDGMENTS ...] [--weights 0,0.1,0.2,0.3,0.5,1]

The served embedding (``dashclip.embed``) is the shared-space embedding with the frozen MiniLM
sentence embedding of the product text (of the query) appended, scaled so that a query-product
cosine is (1 - b) cos_shared + b cos_text, b = ``text_channel``. This bench embeds each set once
and scores every weight b in the list from the same embeddings (the checkpoint's own ``b`` is
ignored), reporting nDCG@10 and relevance AUC per weight beside BM25 and MiniLM zero-shot, as
``dashclip.evaluate queries`` computes them. The weight is chosen on the ``val`` set (queries
from the validation products, none in training); other sets (a held-out test set, categories
never trained on) are reported at every weight for the record, not for choosing.

Make the validation set with ``python -m dashclip.evaluate judgments --catalog
runs/pipeline/ingest/products.parquet --split val --exclude-queries
runs/pipeline/stage2/train_queries.csv --out-dir runs/pipeline/eval/val``.
Writes bench/results/text_channel_weight.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

RESULTS = REPO / "bench" / "results" / "text_channel_weight.json"


def score_set(model, catalog: Path, judgments: Path, weights: list[float], cache_dir: str) -> dict:
    import numpy as np
    import pandas as pd
    import torch

    from dashclip import columns as C
    from dashclip.catalog import load_products
    from dashclip.data import channel_text
    from dashclip.embed import text_channel_embeddings
    from dashclip.eval_queries import minilm_scores, per_query_metrics, read_judgments
    from dashclip.retrieval import BM25Index, product_search_text
    from dashclip.stage1 import embed_cached
    from dashclip.stage2 import encode_queries
    from dashclip.trunk_cache import build_trunk_cache

    products = load_products(catalog).reset_index(drop=True)
    judg = read_judgments(judgments)
    pid_row = {p: i for i, p in enumerate(products[C.PRODUCT_ID])}
    judg = judg[judg[C.PRODUCT_ID].isin(pid_row)]
    qs = judg.drop_duplicates(C.QUERY_ID)[[C.QUERY_ID, C.QUERY]].reset_index(drop=True)
    qrow = {q: i for i, q in enumerate(qs[C.QUERY_ID])}
    labels = np.zeros((len(qs), len(products)), dtype=np.int64)
    labels[judg[C.QUERY_ID].map(qrow).to_numpy(), judg[C.PRODUCT_ID].map(pid_row).to_numpy()] = judg[C.LABEL].to_numpy()
    queries = qs[C.QUERY].tolist()

    cache = build_trunk_cache(model, products, cache_dir=cache_dir, progress=False)
    p_shared = embed_cached(model, cache, torch.arange(len(products)))["product"].float()
    q_shared = torch.from_numpy(encode_queries(model, queries)).float()
    p_chan = text_channel_embeddings(model, [channel_text(t, d, c) for t, d, c in
                                             zip(products[C.TITLE], products[C.DESCRIPTION], products[C.CATEGORY])])
    q_chan = text_channel_embeddings(model, queries)

    def metrics(scores: np.ndarray) -> dict:
        df = pd.DataFrame([per_query_metrics(scores[i], labels[i]) for i in range(len(qs))])
        return {"ndcg@10": round(float(df["ndcg@10"].mean()), 4), "auc_relevant": round(float(df["auc_relevant"].mean()), 4)}

    cfg0 = model.cfg
    by_weight = {}
    for b in weights:
        if b <= 0:
            scores = (q_shared @ p_shared.T).numpy()
        else:  # exactly what with_text_channel serves at this weight
            model.cfg = cfg0.model_copy(update={"text_channel": min(b, 0.999999)})
            scores = (model.with_text_channel(q_shared, q_chan) @ model.with_text_channel(p_shared, p_chan).T).numpy()
        by_weight[str(b)] = metrics(scores)
    model.cfg = cfg0
    texts = product_search_text(products)
    bm25 = BM25Index(texts)
    return {"catalog": str(catalog), "judgments": str(judgments), "products": len(products), "queries": len(qs),
            "by_weight": by_weight,
            "bm25": metrics(np.stack([bm25.scores(q) for q in queries])),
            "minilm_zero_shot": metrics(minilm_scores(queries, texts, model.cfg.text))}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--checkpoint", default=str(REPO / "runs" / "pipeline" / "stage2"))
    ap.add_argument("--set", action="append", required=True, metavar="NAME=CATALOG:JUDGMENTS")
    ap.add_argument("--weights", default="0,0.1,0.2,0.3,0.5,0.7,1")
    ap.add_argument("--cache-dir", default=str(REPO / "runs" / "cache"))
    args = ap.parse_args(argv)
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

    from dashclip.model import DashCLIP

    weights = [float(w) for w in args.weights.split(",")]
    model = DashCLIP.from_pretrained(args.checkpoint)
    t0 = time.perf_counter()
    sets = {}
    for spec in args.set:
        name, _, paths = spec.partition("=")
        catalog, _, judgments = paths.partition(":")
        if not (name and catalog and judgments):
            ap.error(f"--set {spec!r}: expected NAME=CATALOG:JUDGMENTS")
        for p in (catalog, judgments):
            if not Path(p).exists():
                print(f"error: {p} not found (see the module docstring for how to make it)", file=sys.stderr)
                return 2
        sets[name] = score_set(model, Path(catalog), Path(judgments), weights, args.cache_dir)
        best = max(sets[name]["by_weight"], key=lambda w: sets[name]["by_weight"][w]["ndcg@10"])
        print(f"{name}: " + ", ".join(f"b={w}: {m['ndcg@10']:.4f}" for w, m in sets[name]["by_weight"].items())
              + f" | best b={best} | BM25 {sets[name]['bm25']['ndcg@10']:.4f}, MiniLM {sets[name]['minilm_zero_shot']['ndcg@10']:.4f}")
    payload = {"checkpoint": args.checkpoint, "model_version": model.model_version,
               "checkpoint_text_channel": model.cfg.text_channel, "weights": weights, "sets": sets,
               "seconds": round(time.perf_counter() - t0, 1),
               "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
               "machine": f"{platform.machine()} {os.cpu_count()} CPU cores, {platform.python_version()}, CPU torch",
               "command": "python bench/text_channel_weight.py " + " ".join(sys.argv[1:] if argv is None else argv)}
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(payload, indent=2) + "\n")
    print(f"wrote {RESULTS}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
