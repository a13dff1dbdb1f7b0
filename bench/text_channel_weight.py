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
    from dashclip import columns as C
    from dashclip.catalog import load_products
    from dashclip.eval_queries import baseline_scores, dashclip_embeddings, judgment_matrix, mean_metrics, read_judgments

    products = load_products(catalog).reset_index(drop=True)
    qs, labels, _ = judgment_matrix(products, read_judgments(judgments))
    queries = qs[C.QUERY].tolist()
    e = dashclip_embeddings(model, products, queries, cache_dir, channel=True)

    def metrics(scores) -> dict:
        m = mean_metrics(scores, labels)
        return {k: round(m[k], 4) for k in ("ndcg@10", "auc_relevant")}

    # exactly what with_text_channel serves at each weight (b = 0: the shared space alone)
    by_weight = {str(b): metrics((model.with_text_channel(e["q_shared"], e["q_chan"], weight=b)
                                  @ model.with_text_channel(e["p_shared"], e["p_chan"], weight=b).T).numpy())
                 for b in weights}
    return {"catalog": str(catalog), "judgments": str(judgments), "products": len(products), "queries": len(qs),
            "by_weight": by_weight,
            **{name: metrics(scores) for name, scores in baseline_scores(products, queries, model.cfg.text).items()}}


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
