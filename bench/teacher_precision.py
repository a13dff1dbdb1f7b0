"""Labelling with the teacher in float32, bfloat16 and int8: speed and how much the labels move.

    python bench/teacher_precision.py [--stage2-dir runs/pipeline/stage2] [--products runs/pipeline/ingest/products.parquet]
        [--epochs 2] [--pairs 5000]

Stage 2 labels tens of thousands of mined pairs with the cross-encoder teacher; that pass is a
third of its time on this CPU. This bench trains a teacher (float32, as stage 2 does) on the
seed labels of a stage-2 run (80% of the seed queries; the rest held out), then labels the
held-out seed pairs and ``--pairs`` of the run's teacher-labelled pairs twice in each precision,
alternating: float32; bfloat16 autocast (only where the CPU has bf16 arithmetic, AVX512-BF16 or
AMX; elsewhere it is emulated and slower, and stage 2 does not use it); int8 (the linear layers
dynamically quantised, what stage 2 uses where bf16 is not available). It reports rows/s of each,
the speed-up over float32, the largest and mean change of the grade probabilities and of the
expected grade (the soft label stage 2 uses), how often the argmax grade changes, and each
precision's agreement with the held-out seed labels. Writes bench/results/teacher_precision.json
(bench/results/teacher_bf16.json holds the bf16 figures of an earlier machine that had AVX512-BF16).
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
from bench.machine import cpu_model  # noqa: E402
RESULTS = REPO / "bench" / "results" / "teacher_precision.json"


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

    has_bf16 = bf16_supported(torch.device("cpu"))
    names = ["fp32", "int8"] + (["bf16"] if has_bf16 else [])
    probs, secs = {}, {n: [] for n in names}
    for name in names * 2:  # alternating, so drift in machine load hits every precision
        s = time.perf_counter()
        probs[name] = teacher.predict(q, p, bf16=name == "bf16", int8=name == "int8")
        secs[name].append(time.perf_counter() - s)
    a = probs["fp32"]
    grades = np.arange(4)
    n_test = len(test)
    y = test[C.LABEL].to_numpy()
    best = {k: min(v) for k, v in secs.items()}
    changes = {n: {"max_abs_prob_change": float(np.abs(a - probs[n]).max()),
                   "mean_abs_expected_grade_change": float(np.abs(a @ grades - probs[n] @ grades).mean()),
                   "argmax_grade_changed_share": float((a.argmax(1) != probs[n].argmax(1)).mean())}
               for n in names if n != "fp32"}
    payload = {
        "bf16_supported_here": has_bf16,
        "cpu": cpu_model(),
        "pairs_labelled": len(q), "threads": args.threads,
        "rows_per_s": {k: round(len(q) / v, 1) for k, v in best.items()},
        "speedup_over_fp32": {n: round(best["fp32"] / best[n], 2) for n in names if n != "fp32"},
        "change_from_fp32": changes,
        "heldout_seed_agreement": {n: agreement(probs[n][:n_test], y) for n in names},
        "teacher": {"seed_pairs_fitted": len(fit), "epochs": args.epochs, "train_s": round(train_s, 1)},
        "source": str(s2),
        "machine": f"{platform.machine()} {os.cpu_count()} CPU cores, {platform.python_version()}, CPU torch",
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "command": "python bench/teacher_precision.py " + " ".join(sys.argv[1:] if argv is None else argv),
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(payload, indent=2) + "\n")
    print(json.dumps(payload, indent=2))
    return 0



if __name__ == "__main__":
    raise SystemExit(main())
