"""Labelling with the teacher in bfloat16 vs float32: speed and how much the labels move.

    python bench/teacher_bf16.py [--stage2-dir runs/pipeline/stage2] [--products runs/pipeline/ingest/products.parquet]
        [--epochs 2] [--pairs 5000]

Stage 2 labels tens of thousands of mined pairs with the cross-encoder teacher; that pass is a
third of its time on this CPU. This bench trains a teacher (float32, as stage 2 does) on the
seed labels of a stage-2 run (80% of the seed queries; the rest held out), then labels the
held-out seed pairs and ``--pairs`` of the run's teacher-labelled pairs twice: in float32 and under
bfloat16 autocast, alternating, and reports rows/s of each, the speed-up, the largest and mean
change of the grade probabilities and of the expected grade (the soft label stage 2 uses), how
often the argmax grade changes, and both precisions' agreement with the held-out seed labels.
Writes bench/results/teacher_bf16.json.
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
RESULTS = REPO / "bench" / "results" / "teacher_bf16.json"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--stage2-dir", default=str(REPO / "runs" / "pipeline" / "stage2"))
    ap.add_argument("--products", default=str(REPO / "runs" / "pipeline" / "ingest" / "products.parquet"))
    ap.add_argument("--epochs", type=int, default=2, help="teacher epochs (stage 2 trains more; 2 keeps this short)")
    ap.add_argument("--pairs", type=int, default=5000)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args(argv)
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    s2 = Path(args.stage2_dir)
    for f in (s2 / "seed_labels.parquet", s2 / "labels.parquet", Path(args.products)):
        if not f.exists():
            print(f"error: {f} not found; run stage 2 (or the pipeline) first", file=sys.stderr)
            return 2

    import numpy as np
    import pandas as pd
    import torch

    from dashclip import columns as C
    from dashclip.config import TextTowerConfig
    from dashclip.teacher import CrossEncoder, agreement, bf16_supported, teacher_product_text, train_teacher

    torch.set_num_threads(args.threads)
    products = pd.read_parquet(args.products)
    text = dict(zip(products[C.PRODUCT_ID], (teacher_product_text(r) for r in products.to_dict("records"))))
    seed = pd.read_parquet(s2 / "seed_labels.parquet")
    rng = np.random.default_rng(0)
    qids = seed[C.QUERY_ID].unique()
    held = set(rng.permutation(qids)[: max(1, len(qids) // 5)])
    fit, test = seed[~seed[C.QUERY_ID].isin(held)], seed[seed[C.QUERY_ID].isin(held)]
    teacher = CrossEncoder(TextTowerConfig(), max_length=64)
    t0 = time.perf_counter()
    train_teacher(teacher, fit[C.QUERY].tolist(), [text[p] for p in fit[C.PRODUCT_ID]], fit[C.LABEL].to_numpy(),
                  epochs=args.epochs, lr=1e-4, progress=False)
    train_s = time.perf_counter() - t0
    pool = pd.read_parquet(s2 / "labels.parquet")
    pool = pool[pool["source"] == "teacher"].sample(min(args.pairs, len(pool)), random_state=0)
    q = test[C.QUERY].tolist() + pool[C.QUERY].tolist()
    p = [text[x] for x in test[C.PRODUCT_ID]] + [text[x] for x in pool[C.PRODUCT_ID]]

    probs, secs = {}, {"fp32": [], "bf16": []}
    for name in ("fp32", "bf16", "fp32", "bf16"):  # alternating, so drift in machine load hits both
        s = time.perf_counter()
        probs[name] = teacher.predict(q, p, bf16=name == "bf16")
        secs[name].append(time.perf_counter() - s)
    a, b = probs["fp32"], probs["bf16"]
    grades = np.arange(4)
    n_test = len(test)
    y = test[C.LABEL].to_numpy()
    best = {k: min(v) for k, v in secs.items()}
    payload = {
        "bf16_supported_here": bf16_supported(torch.device("cpu")),
        "pairs_labelled": len(q), "threads": args.threads,
        "rows_per_s": {k: round(len(q) / v, 1) for k, v in best.items()},
        "speedup_bf16_over_fp32": round(best["fp32"] / best["bf16"], 2),
        "max_abs_prob_change": float(np.abs(a - b).max()),
        "mean_abs_expected_grade_change": float(np.abs(a @ grades - b @ grades).mean()),
        "argmax_grade_changed_share": float((a.argmax(1) != b.argmax(1)).mean()),
        "heldout_seed_agreement": {"fp32": agreement(a[:n_test], y), "bf16": agreement(b[:n_test], y)},
        "teacher": {"seed_pairs_fitted": len(fit), "epochs": args.epochs, "train_s": round(train_s, 1)},
        "source": str(s2),
        "machine": f"{platform.machine()} {os.cpu_count()} CPU cores, {platform.python_version()}, CPU torch",
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "command": "python bench/teacher_bf16.py " + " ".join(sys.argv[1:] if argv is None else argv),
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(payload, indent=2) + "\n")
    print(json.dumps(payload, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
