"""The stage-1 and stage-2 figures of a pipeline run, beside their baselines, in one file.

    python bench/encoders.py [--run-dir runs/pipeline] [--variant NAME=STAGE1_DIR ...]

Reads the run's checkpoints and held-out evaluation sets (``bash scripts/run_pipeline.sh`` makes
them) and re-measures, in this one run:
- stage 1 on the held-out test split (``dashclip.evaluate products``): category probe on the full
  and image-only product embeddings against the off-the-shelf towers, title→image Recall@k
  against chance;
- stage 2 on the generated and the handwritten query sets (``dashclip.evaluate queries``):
  nDCG@10 and relevance AUC against BM25 and MiniLM zero-shot;
- with ``--variant``: the image-only category probe of each given stage-1 checkpoint on the
  *validation* split (probe fitted on the training split), which is how stage-1 options are
  compared without looking at the test split; the off-the-shelf image features on that split too.
- with ``--stage2-variant NAME=STAGE2_DIR``: each stage-2 checkpoint's validation nDCG@10 (queries
  from the validation products, annotator-judged) and teacher agreement, from its own record.
Training times and the teacher's agreement come from the checkpoints' own records. Writes
bench/results/encoders.json.
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

RESULTS = REPO / "bench" / "results" / "encoders.json"


def validation_probes(variants: dict[str, str], catalog: Path, cache_dir: Path) -> dict:
    """Image-only (text withheld) and full-product category probes on the validation split."""
    import numpy as np
    import torch

    from dashclip import columns as C
    from dashclip.catalog import load_products
    from dashclip.eval_products import baseline_features, probe_accuracy
    from dashclip.model import DashCLIP
    from dashclip.inference import embed_cached
    from dashclip.trunk_cache import build_trunk_cache

    products = load_products(catalog)
    split, y = products[C.SPLIT].to_numpy(), products[C.CATEGORY].to_numpy()
    tr, va = (torch.as_tensor(np.nonzero(split == s)[0]) for s in ("train", "val"))

    def probe(a, b) -> float:
        return round(100 * probe_accuracy(a, y[tr.numpy()], b, y[va.numpy()]), 2)

    out, base = {}, None
    for name, ckpt in variants.items():
        model = DashCLIP.from_pretrained(ckpt)
        cache = build_trunk_cache(model, products, cache_dir=cache_dir, progress=False)
        full = [embed_cached(model, cache, i)["product"].numpy() for i in (tr, va)]
        img_only = [embed_cached(model, cache, i, image_only=True) for i in (tr, va)]
        out[name] = {"checkpoint": ckpt, "model_version": model.model_version, "text_less": model.cfg.text_less,
                     "train_config": {k: v for k, v in model.meta["train_config"].items() if k != "catalog"},
                     "probe_full": probe(*full),
                     "probe_image_only": probe(*(e["product"].numpy() for e in img_only)),
                     "probe_image_embedding": probe(*(e["image"].numpy() for e in img_only))}
        if base is None:
            feats = [baseline_features(model, cache, i)["image"] for i in (tr, va)]
            base = probe(*feats)
    return {"split": "validation", "products": int(len(va)), "probe_fitted_on": "training split",
            "off_the_shelf_image_probe": base, "variants": out}


def stage2_records(dirs: dict[str, str]) -> dict:
    """What each stage-2 checkpoint recorded: best validation nDCG@10, teacher agreement, settings."""
    out = {}
    for name, d in dirs.items():
        meta = json.loads((Path(d) / "meta.json").read_text())
        s, tc = meta["summary"], meta["train_config"]
        out[name] = {"checkpoint": d, "model_version": meta["model_version"], "stage1_version": meta.get("stage1_version"),
                     "best_val_ndcg@10": s["best_val_ndcg@10"], "val_queries": s["val_queries"],
                     "teacher_agreement_heldout_seed": s.get("teacher_agreement"),
                     "teacher": {k: tc[k] for k in ("seed_budget", "teacher_epochs", "teacher_lr")},
                     "label_s": s["label_s"], "train_s": s["train_s"]}
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--run-dir", default="runs/pipeline")
    ap.add_argument("--cache-dir", default=str(REPO / "runs" / "cache"),
                    help="trunk-feature cache of the training runs (built there when missing)")
    ap.add_argument("--variant", action="append", default=[], metavar="NAME=STAGE1_DIR",
                    help="a stage-1 checkpoint to probe on the validation split (repeatable)")
    ap.add_argument("--stage2-variant", action="append", default=[], metavar="NAME=STAGE2_DIR",
                    help="a stage-2 checkpoint whose validation record to list beside the run's (repeatable)")
    args = ap.parse_args(argv)
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    run = Path(args.run_dir)
    catalog = run / "ingest" / "products.parquet"
    need = [catalog, run / "stage1" / "meta.json", run / "stage2" / "meta.json"] + [
        run / "eval" / s / f for s in ("generated", "handwritten") for f in ("products.parquet", "judgments.csv")]
    missing = [str(p) for p in need if not p.exists()]
    if missing:
        print(f"error: {missing[0]} not found; run `bash scripts/run_pipeline.sh` first (RUN_DIR={run})", file=sys.stderr)
        return 2
    variants = dict(v.split("=", 1) for v in args.variant)
    s2_variants = dict(v.split("=", 1) for v in args.stage2_variant)

    from dashclip.eval_products import evaluate_products
    from dashclip.eval_queries import SYSTEMS, evaluate_queries

    t0 = time.perf_counter()
    s1_meta = json.loads((run / "stage1" / "meta.json").read_text())
    s2_meta = json.loads((run / "stage2" / "meta.json").read_text())
    prod = evaluate_products(run / "stage2", catalog)
    d = prod["dashclip"]
    best_base = max(prod["baseline_image"]["probe_acc"], prod["baseline_text"]["probe_acc"],
                    prod["baseline_image+text"]["probe_acc"])
    stage1 = {
        "setting": prod["setting"], "test_products": prod["test_products"], "categories": prod["categories"],
        "model_version": prod["model_version"], "report": {k: prod[k] for k in prod if k.startswith(("dashclip", "baseline"))},
        "image_only_minus_off_the_shelf_image_points": round(100 * (d["probe_acc_image_only"] - prod["baseline_image"]["probe_acc"]), 2),
        "full_minus_best_baseline_points": round(100 * (d["probe_acc"] - best_base), 2),
        "title_to_image_R@10_over_chance": round(d["title_to_image"]["R@10"] / prod["baseline_title_to_image_chance"]["R@10"], 1),
        "train_s": s1_meta["summary"]["train_s"], "cache_s": s1_meta["summary"]["cache_s"],
        "targets": {"image_only_minus_off_the_shelf_image_points": ">= 5", "full_minus_best_baseline_points": ">= 0",
                    "train_s": "< 1800"},
    }
    stage2 = {"model_version": s2_meta["model_version"], "train_s": s2_meta["summary"]["train_s"],
              "label_s": s2_meta["summary"]["label_s"], "teacher_agreement": s2_meta["summary"]["teacher_agreement"],
              "targets": {"ndcg@10_minus_best_baseline": ">= 0.10", "auc_minus_best_baseline": "> 0"}, "query_sets": {}}
    for name in ("generated", "handwritten"):
        full = evaluate_queries(run / "stage2", run / "eval" / name / "products.parquet",
                                run / "eval" / name / "judgments.csv")
        r = {**full["annotator"], "queries": full["queries"], "text_channel": full["text_channel"]}
        best = {m: max(r["bm25"][m], r["minilm_zero_shot"][m]) for m in ("ndcg@10", "auc_relevant")}
        systems = [s for s in SYSTEMS if s in r]
        stage2["query_sets"][name] = {
            "queries": r.get("queries"), "text_channel": r.get("text_channel"), **{s: r[s] for s in systems},
            "ndcg@10_minus_best_baseline": round(r["dashclip"]["ndcg@10"] - best["ndcg@10"], 4),
            "auc_minus_best_baseline": round(r["dashclip"]["auc_relevant"] - best["auc_relevant"], 4),
            "independent_judge": full["independent_judge"]}
        if "dashclip_shared" in r:  # the shared space alone (the served embedding adds the text channel)
            stage2["query_sets"][name]["shared_ndcg@10_minus_best_baseline"] = round(
                r["dashclip_shared"]["ndcg@10"] - best["ndcg@10"], 4)
    payload = {"stage1": stage1, "stage2": stage2,
               "validation_probes": validation_probes(variants, catalog, Path(args.cache_dir)) if variants else None,
               "stage2_validation": stage2_records({"pipeline_stage2": str(run / "stage2"), **s2_variants}),
               "seconds": round(time.perf_counter() - t0, 1),
               "machine": f"{platform.machine()} {os.cpu_count()} CPU cores, {platform.python_version()}, CPU torch",
               "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
               "command": "python bench/encoders.py " + " ".join(sys.argv[1:] if argv is None else argv)}
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(payload, indent=2, default=str) + "\n")
    print(json.dumps({"stage1": {k: stage1[k] for k in ("image_only_minus_off_the_shelf_image_points",
                                                         "full_minus_best_baseline_points", "title_to_image_R@10_over_chance",
                                                         "train_s")},
                      "stage2": {n: {k: v for k, v in q.items() if k.endswith("best_baseline")}
                                 for n, q in stage2["query_sets"].items()},
                      "validation_probes": None if not variants else {
                          "off_the_shelf_image": payload["validation_probes"]["off_the_shelf_image_probe"],
                          **{n: v["probe_image_only"] for n, v in payload["validation_probes"]["variants"].items()}}},
                     indent=2))
    print(f"wrote {RESULTS}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
