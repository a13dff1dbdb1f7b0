"""Evaluation entry point.

    python -m dashclip.evaluate products --checkpoint DIR [--catalog PATH] [--train-catalog PATH] [--out FILE.json]
    python -m dashclip.evaluate queries  --checkpoint DIR --catalog PATH --judgments PATH [--queries PATH]
        [--rankings PATH] [--out FILE.json]
    python -m dashclip.evaluate judgments [--catalog PATH] [--split test] [--queries PATH] --out-dir DIR

Writes a JSON report and a markdown table beside it (same name, .md) and prints the table. Query
reports carry two judges, the rule annotator (the judgments file) and the independent judge
(``dashclip.judge``), overall and per intent class (docs/evaluation.md).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from dashclip.io import write_json_atomic
from dashclip.stage1 import default_catalog


def _write(report: dict, table: str, out: str | None) -> None:
    print(table)
    if out:
        write_json_atomic(report, out)
        Path(out).with_suffix(".md").write_text(table + "\n")
        print(f"wrote {out} and {Path(out).with_suffix('.md')}")


def _cmd_judgments(args) -> int:
    from dashclip import columns as C
    from dashclip.catalog import load_products
    from dashclip.eval_queries import make_judgments, read_query_file
    from dashclip.io import write_parquet_atomic
    from dashclip.queries import generate_queries

    prods = load_products(args.catalog)
    if args.split != "all":
        prods = prods[prods[C.SPLIT] == args.split].reset_index(drop=True)
    exclude = set(read_query_file(args.exclude_queries)[C.QUERY]) if args.exclude_queries else set()
    if args.queries:
        queries = read_query_file(args.queries)  # an intent column is carried into the judgments
    else:
        queries = generate_queries(prods, args.per_category, 0.1, seed=args.seed, exclude=exclude, prefix="eval")
    judg = make_judgments(prods, queries)
    has_rel = judg[judg[C.LABEL] >= 2][C.QUERY_ID].unique()
    judg = judg[judg[C.QUERY_ID].isin(has_rel)]
    out = Path(args.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    write_parquet_atomic(prods, out / "products.parquet")
    judg.to_csv(out / "judgments.csv", index=False)
    queries.to_csv(out / "queries.csv", index=False)  # all of them: the independent judge grades every query
    print(f"{len(prods)} products, {judg[C.QUERY_ID].nunique()} queries with a relevant product "
          f"(of {len(queries)}), {len(judg)} judged pairs -> {out} (simulated labels: the rule annotator judged them)")
    return 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m dashclip.evaluate")
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("products", help="category probes, zero-shot and title→image retrieval")
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--catalog", default=default_catalog())
    p.add_argument("--train-catalog", help="train the probe here; evaluate every product of --catalog")
    p.add_argument("--max-rows", type=int, help="subsample train and test rows (quick checks)")
    p.add_argument("--out")
    p.add_argument("--device", default="auto", help="auto (CUDA when present) | cpu | cuda | cuda:N")
    q = sub.add_parser("queries", help="retrieval metrics against graded judgments, with BM25 and MiniLM baselines")
    q.add_argument("--checkpoint", required=True)
    q.add_argument("--catalog", required=True)
    q.add_argument("--judgments", required=True)
    q.add_argument("--rankings", help="also write the top 100 per query here (parquet or csv)")
    q.add_argument("--queries", help="every query to evaluate (query_id, query[, intent]); default: queries.csv "
                                     "beside --judgments when there is one, else the judged queries")
    q.add_argument("--out")
    q.add_argument("--device", default="auto", help="auto (CUDA when present) | cpu | cuda | cuda:N")
    j = sub.add_parser("judgments", help="held-out products + queries + annotator judgments for `queries`")
    j.add_argument("--catalog", default=default_catalog())
    j.add_argument("--split", default="test", help="which ingestion split to keep (all: every product)")
    j.add_argument("--queries", help="query file (query_id, query); default: generated from the kept products")
    j.add_argument("--exclude-queries", help="query file whose texts must not be reused (e.g. training queries)")
    j.add_argument("--per-category", type=int, default=3)
    j.add_argument("--seed", type=int, default=1000)
    j.add_argument("--out-dir", required=True)
    args = ap.parse_args(argv)
    if args.cmd == "judgments":
        try:
            return _cmd_judgments(args)
        except (FileNotFoundError, ValueError) as e:
            print(f"error: {e}", file=sys.stderr)
            return 2
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        from dashclip.embed import pick_device

        device = pick_device(args.device)
        print(f"evaluate {args.cmd}: device={device}, precision=fp32", flush=True)  # figures comparable across devices
        if args.cmd == "products":
            from dashclip.eval_products import evaluate_products, markdown_table

            report = evaluate_products(args.checkpoint, args.catalog, args.train_catalog, max_rows=args.max_rows,
                                       device=device)
            _write(report, markdown_table(report), args.out)
        else:
            from dashclip.eval_queries import evaluate_queries, markdown_table as q_table

            report = evaluate_queries(args.checkpoint, args.catalog, args.judgments, rankings_out=args.rankings,
                                      device=device, queries=args.queries)
            _write(report, q_table(report), args.out)
    except (FileNotFoundError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(json.dumps({k: v for k, v in report.items() if k not in ("per_query",)}, indent=1, default=str)[:4000])
    return 0


if __name__ == "__main__":
    sys.exit(main())
