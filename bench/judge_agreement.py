"""How well each program-made grade agrees with the judgments made by reading each product.

    python bench/judge_agreement.py [--catalog runs/pipeline/ingest/products.parquet]
        [--read dashclip/resources/handwritten_read_judgments.csv] [--teacher runs/pipeline/stage2/teacher]
        [--out bench/results/judge_agreement.json]

The read judgments (the handwritten queries' pooled top 20 of BM25, MiniLM zero-shot and DashCLIP,
each pair graded by reading the product, with a reason) are the reference. Every pair is also graded
by the rule annotator (``dashclip.queries``, stage 2's seed labeller), the independent judge
(``dashclip.judge``) and, with ``--teacher``, the stage-2 teacher (the cross-encoder that labels
stage 2's pairs; its expected grade rounded). Reports per grader: exact grade agreement, agreement
on relevant (grade >= 2) vs not, Cohen's kappa of the relevant split, and the same by intent class;
``against_independent_judge``: the annotator's and the teacher's agreement with the independent
judge on the same pairs.
"""

from __future__ import annotations

import argparse
import json
import sys
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pandas as pd

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from bench.machine import cpu_model  # noqa: E402
from dashclip import columns as C  # noqa: E402

READ = REPO / "dashclip" / "resources" / "handwritten_read_judgments.csv"
QUERIES = REPO / "dashclip" / "resources" / "handwritten_queries.csv"
RESULTS = REPO / "bench" / "results" / "judge_agreement.json"


def kappa(a: np.ndarray, b: np.ndarray) -> float:
    """Cohen's kappa of two boolean raters."""
    po = float((a == b).mean())
    pe = float(a.mean() * b.mean() + (1 - a.mean()) * (1 - b.mean()))
    return (po - pe) / (1 - pe) if pe < 1 else float("nan")


def scores(grader: np.ndarray, read: np.ndarray) -> dict:
    rel_g, rel_r = grader >= 2, read >= 2
    return {"exact_grade": round(float((grader == read).mean()), 4),
            "relevant_split": round(float((rel_g == rel_r).mean()), 4),
            "kappa_relevant": round(kappa(rel_g, rel_r), 4),
            "false_relevant": int((rel_g & ~rel_r).sum()), "missed_relevant": int((~rel_g & rel_r).sum())}


def grades(products: pd.DataFrame, pairs: pd.DataFrame, teacher: str | None) -> dict[str, np.ndarray]:
    from dashclip.judge import Judge
    from dashclip.queries import Annotator

    row = {p: i for i, p in enumerate(products[C.PRODUCT_ID])}
    rows = pairs[C.PRODUCT_ID].map(row).to_numpy()
    queries = pairs[C.QUERY].tolist()
    judge, annotator = Judge(products), Annotator(products)
    out = {"annotator": np.array(annotator.grade_pairs(queries, list(rows))),
           "independent_judge": np.array(graded_pairs(judge, queries, rows))}
    if teacher:
        from dashclip.teacher import load_teacher, teacher_labels, teacher_product_text

        model = load_teacher(teacher)
        texts = [teacher_product_text(products.iloc[r].to_dict()) for r in rows]
        out["teacher"] = np.clip(np.rint(teacher_labels(model, queries, texts, batch_size=64)), 0, 3).astype(int)
    return out


def graded_pairs(judge, queries: list[str], rows: np.ndarray) -> list[int]:
    """The judge's grade of each (query, product row), grading each query's catalog once."""
    cache: dict[str, np.ndarray] = {}
    for q in queries:
        if q not in cache:
            cache[q] = judge.grade_all(q)
    return [int(cache[q][r]) for q, r in zip(queries, rows)]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--catalog", default=str(REPO / "runs" / "pipeline" / "ingest" / "products.parquet"))
    ap.add_argument("--read", default=str(READ))
    ap.add_argument("--teacher", help="a stage-2 teacher folder (stage2/teacher)")
    ap.add_argument("--out", default=str(RESULTS))
    args = ap.parse_args(argv)
    from dashclip.catalog import load_products

    products = load_products(args.catalog).reset_index(drop=True)
    read = pd.read_csv(args.read, dtype={C.QUERY_ID: str, C.PRODUCT_ID: str})
    intents = pd.read_csv(QUERIES, dtype=str).set_index(C.QUERY_ID)["intent"]
    pairs = read[read[C.PRODUCT_ID].isin(set(products[C.PRODUCT_ID]))].reset_index(drop=True)
    graded = grades(products, pairs, args.teacher)
    ref = pairs[C.LABEL].to_numpy()
    intent = pairs[C.QUERY_ID].map(intents).fillna("").to_numpy()
    report = {"what": "program-made grades vs judgments made by reading each product (handwritten queries' pool)",
              "pairs": int(len(pairs)), "queries": int(pairs[C.QUERY_ID].nunique()),
              "read_label_counts": {int(k): int(v) for k, v in pairs[C.LABEL].value_counts().sort_index().items()},
              "graders": {name: scores(g, ref) for name, g in graded.items()},
              "against_independent_judge": {name: scores(g, graded["independent_judge"]) for name, g in graded.items()
                                            if name != "independent_judge"},
              "by_intent": {i: {name: scores(g[intent == i], ref[intent == i]) for name, g in graded.items()}
                            for i in sorted(set(intent))},
              "teacher": args.teacher, "date": datetime.now(timezone.utc).strftime("%Y-%m-%d"), "cpu": cpu_model()}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(report, indent=1) + "\n")
    print(json.dumps({k: report[k] for k in ("pairs", "queries", "graders")}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
