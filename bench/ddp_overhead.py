"""One-process training speed on the CPU of two checkouts of dashclip (e.g. before and after a change
to the training loop), on the tiny random model, where the loop's own Python work weighs most.

    python bench/ddp_overhead.py --before DIR --after DIR [--rounds 3] [--out bench/results/ddp_overhead.json]

DIR is a folder holding ``dashclip/`` and ``tests/`` (a checkout or ``git archive`` of one). Each
round runs both, alternating, in fresh single-threaded processes: stage 1 (``train_stage1``, 3
epochs over a 160-product catalog, batch 8, with its trunk-cache build and validation) and the
teacher (``train_teacher``, 6 epochs). Reported: the median seconds of each, and whether the
loss sequences of the two checkouts are the same. ``*_cpu_s`` is the process's CPU time
(single-threaded: what a shared, busy machine disturbs least); ``*_s`` is wall time.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

if "--worker" not in sys.argv:  # a worker imports dashclip from the checkout on its PYTHONPATH
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


KEYS = ("stage1_s", "stage1_cpu_s", "teacher_s", "teacher_cpu_s")


def worker() -> dict:
    import numpy as np
    import torch

    from dashclip import columns as C
    from dashclip.config import load_model_config
    from dashclip.queries import Annotator, generate_queries
    from dashclip.stage1 import Stage1Config, train_stage1
    from dashclip.teacher import CrossEncoder, teacher_product_text, train_teacher
    from tests.test_stage1 import small_catalog
    from tests.test_stage2 import fashion_products

    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as tmp:
        cat = small_catalog(Path(tmp) / "cat", n=160)
        cfg = Stage1Config(catalog=str(cat), model="tiny-random", epochs=3, batch_size=8, cache_dir=None,
                           warmup_steps=2, workers=0, device="cpu", patience=3)
        t0, c0 = time.perf_counter(), time.process_time()
        train_stage1(cfg, Path(tmp) / "s1", progress=False)
        stage1_s, stage1_cpu_s = time.perf_counter() - t0, time.process_time() - c0
        hist = json.loads((Path(tmp) / "s1" / "history.json").read_text())
    p = fashion_products()
    queries = generate_queries(p, per_category=4, per_product=1.0, seed=0)[C.QUERY].tolist()
    rng = np.random.default_rng(0)
    pairs = [(q, int(r)) for q in queries for r in rng.choice(len(p), 4, replace=False)]
    labels = np.array(Annotator(p).grade_pairs([q for q, _ in pairs], [r for _, r in pairs]))
    texts = [teacher_product_text(r) for r in p.to_dict("records")]
    torch.manual_seed(0)
    teacher = CrossEncoder(load_model_config("tiny-random").text, max_length=32)
    t0, c0 = time.perf_counter(), time.process_time()
    losses = train_teacher(teacher, [q for q, _ in pairs], [texts[r] for _, r in pairs], labels, epochs=6,
                           batch_size=16, lr=2e-3, progress=False, length_group=2, device="cpu")
    return {"stage1_s": stage1_s, "teacher_s": time.perf_counter() - t0, "stage1_cpu_s": stage1_cpu_s,
            "teacher_cpu_s": time.process_time() - c0,
            "stage1_losses": [h["train_total"] for h in hist], "teacher_losses": losses}


def run(code: Path) -> dict:
    env = {**os.environ, "PYTHONPATH": str(code), "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}
    out = subprocess.run([sys.executable, str(Path(__file__).resolve()), "--worker"], cwd=code, env=env, capture_output=True, text=True,
                         check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--before", type=Path)
    ap.add_argument("--after", type=Path)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--out", type=Path, default=Path("bench/results/ddp_overhead.json"))
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.worker:
        print(json.dumps(worker()))
        return 0
    from bench.machine import cpu_model

    runs = {"before": [], "after": []}
    for _ in range(a.rounds):
        for name, code in (("before", a.before), ("after", a.after)):
            runs[name].append(run(code.resolve()))
    med = {name: {k: round(statistics.median(r[k] for r in rs), 3) for k in KEYS}
           for name, rs in runs.items()}
    result = {"cpu": cpu_model(), "threads": 1, "rounds": a.rounds, "median_s": med,
              "runs_s": {n: [{k: round(r[k], 3) for k in KEYS} for r in rs] for n, rs in runs.items()},
              "same_losses": all(b["stage1_losses"] == f["stage1_losses"] and b["teacher_losses"] == f["teacher_losses"]
                                 for b, f in zip(runs["before"], runs["after"])),
              "command": "python bench/ddp_overhead.py --before BASE --after . --rounds %d" % a.rounds}
    a.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
