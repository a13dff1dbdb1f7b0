"""Evaluation entry point.

    python -m dashclip.evaluate products  --checkpoint DIR [--catalog PATH] [--train-catalog PATH] [--out DIR]
    python -m dashclip.evaluate queries   --checkpoint DIR --catalog PATH --judgments PATH [--queries PATH] [--out DIR]
    python -m dashclip.evaluate judgments [--catalog PATH] [--queries PATH] --out DIR

(or ``dashclip evaluate ...``). ``products`` and ``queries`` print a markdown table and, with
``--out``, write ``DIR/products.json`` / ``DIR/queries.json`` with the table beside it (``.md``);
``queries`` also writes the top 100 per query to ``DIR/rankings.parquet``. ``judgments`` writes
``DIR/products.parquet``, ``DIR/judgments.csv`` and ``DIR/queries.csv`` for ``queries``. Query
reports carry two judges, the rule annotator (the judgments file) and the independent judge
(``dashclip.judge``), overall and per intent class (docs/evaluation.md).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

RENAMED = {"--out-dir": "--out"}  # older spellings, still accepted
DEFAULT_CATALOG = "$DASHCLIP_CATALOG, else $DASHCLIP_DATA/catalog.csv, else ../shared/data/catalog.csv"


def _write(report: dict, table: str, out: str | None) -> None:
    from dashclip.io import write_json_atomic

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
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    write_parquet_atomic(prods, out / "products.parquet")
    judg.to_csv(out / "judgments.csv", index=False)
    queries.to_csv(out / "queries.csv", index=False)  # all of them: the independent judge grades every query
    print(f"{len(prods)} products, {judg[C.QUERY_ID].nunique()} queries with a relevant product "
          f"(of {len(queries)}), {len(judg)} judged pairs -> {out} (simulated labels: the rule annotator judged them)")
    return 0


def build_parser():
    from dashclip.cli import parser, subcommand

    ap = parser("python -m dashclip.evaluate", __doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True, metavar="COMMAND")
    p = subcommand(sub, "products", "category probes, zero-shot and title→image retrieval")
    p.add_argument("--checkpoint", required=True, help="DashCLIP checkpoint folder")
    p.add_argument("--catalog", help=f"catalog file, products.parquet or its folder (default: {DEFAULT_CATALOG})")
    p.add_argument("--train-catalog", help="train the probe here; evaluate every product of --catalog")
    p.add_argument("--max-rows", type=int, help="subsample train and test rows (quick checks)")
    p.add_argument("--out", help="output folder: products.json and products.md (default: print only)")
    p.add_argument("--device", default="auto", help="auto (CUDA when present) | cpu | cuda | cuda:N")
    q = subcommand(sub, "queries", "retrieval metrics against graded judgments, with BM25 and MiniLM baselines")
    q.add_argument("--checkpoint", required=True, help="DashCLIP checkpoint folder")
    q.add_argument("--catalog", required=True, help="the judged products (judgments' OUT/products.parquet)")
    q.add_argument("--judgments", required=True, help="judgment file (query_id, query, product_id, label)")
    q.add_argument("--queries", help="every query to evaluate (query_id, query[, intent]); default: queries.csv "
                                     "beside --judgments when there is one, else the judged queries")
    q.add_argument("--out", help="output folder: queries.json, queries.md, rankings.parquet (default: print only)")
    q.add_argument("--device", default="auto", help="auto (CUDA when present) | cpu | cuda | cuda:N")
    q.add_argument("--read-judgments", help="judgments made by reading each product (query_id, product_id, label[, reason]): "
                   "a third judge, e.g. dashclip/resources/handwritten_read_judgments.csv")
    q.add_argument("--rankings", help=argparse.SUPPRESS)  # older: names the rankings file itself
    j = subcommand(sub, "judgments", "held-out products + queries + annotator judgments for `queries`")
    j.add_argument("--catalog", help=f"catalog file, products.parquet or its folder (default: {DEFAULT_CATALOG})")
    j.add_argument("--split", default="test", help="which ingestion split to keep (all: every product)")
    j.add_argument("--queries", help="query file (query_id, query); default: generated from the kept products")
    j.add_argument("--exclude-queries", help="query file whose texts must not be reused (e.g. training queries)")
    j.add_argument("--per-category", type=int, default=3, help="generated queries per category")
    j.add_argument("--seed", type=int, default=1000, help="seed of the query generator")
    j.add_argument("--out", required=True, help="output folder: products.parquet and judgments.csv")
    return ap


def main(argv: list[str] | None = None) -> int:
    from dashclip.cli import run_main

    return run_main(build_parser(), _run, argv, RENAMED)


def _run(args) -> int:
    from dashclip.cli import out_file

    if args.catalog is None:
        from dashclip.stage1 import default_catalog

        args.catalog = default_catalog()
    if args.cmd == "judgments":
        return _cmd_judgments(args)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    from dashclip.inference import pick_device

    out = str(out_file(args.out, f"{args.cmd}.json", (".json",))) if args.out else None
    device = pick_device(args.device)
    print(f"evaluate {args.cmd}: device={device}, precision=fp32", flush=True)  # figures comparable across devices
    if args.cmd == "products":
        from dashclip.eval_products import evaluate_products, markdown_table

        report = evaluate_products(args.checkpoint, args.catalog, args.train_catalog, max_rows=args.max_rows,
                                   device=device)
        _write(report, markdown_table(report), out)
    else:
        from dashclip.eval_queries import evaluate_queries, markdown_table as q_table

        in_folder = args.out and Path(out).parent == Path(args.out)  # not the older --out FILE.json
        rankings = args.rankings or (str(Path(args.out) / "rankings.parquet") if in_folder else None)
        report = evaluate_queries(args.checkpoint, args.catalog, args.judgments, rankings_out=rankings,
                                  device=device, queries=args.queries, read_judged=args.read_judgments)
        _write(report, q_table(report), out)
    print(json.dumps({k: v for k, v in report.items() if k not in ("per_query",)}, indent=1, default=str)[:4000])
    return 0


if __name__ == "__main__":
    sys.exit(main())
