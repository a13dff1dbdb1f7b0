"""Pool query–product pairs to judge by hand: the union of every system's top results per query.

    python bench/pool_for_judging.py --products ../shared/data/catalog.csv [--split test]
        [--queries dashclip/resources/handwritten_queries.csv]
        [--rankings dashclip=runs/pipeline/eval/rankings_handwritten.parquet ...]
        [--baselines bm25,minilm_zero_shot] [--baselines-out runs/judging/rankings]
        [--top 20] [--existing runs/judging/judgments.csv] --out runs/judging/pool.csv

A rankings file (parquet or csv) has ``query_id, product_id, rank`` (1 = best), as
``python -m dashclip.evaluate queries --rankings`` writes it; name it ``name=path`` (else the file's
stem names the system). ``--baselines`` also ranks the products with BM25 and the packaged MiniLM
zero-shot (top 100, written to ``--baselines-out`` in the same format) and pools them too.

Writes ``--out``: one row per pair to judge, ``query_id, query, intent, product_id, title, category,
color, gender, usage, description`` (its first 200 characters) and empty ``label`` and ``reason``
columns, grouped by query and ordered by category and title, so the sheet does not show any
system's ranking. Pairs already in ``--existing`` (a judgments CSV with ``query_id, product_id``) are
left out, so a later run tops the set up. Beside it, ``<out>.sources.csv`` says which system put each
pair in the pool and at which rank (for the analysis after judging, not for the judge).
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import tempfile
from pathlib import Path

import pandas as pd

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from dashclip import columns as C  # noqa: E402

log = logging.getLogger("pool_for_judging")
RANK = "rank"
SYSTEM = "system"
INTENT = "intent"
SHEET_COLUMNS = [C.QUERY_ID, C.QUERY, INTENT, C.PRODUCT_ID, C.TITLE, C.CATEGORY, C.COLOR, C.GENDER, C.USAGE,
                 C.DESCRIPTION, C.LABEL, "reason"]
DESCRIPTION_CHARS = 200
BASELINE_DEPTH = 100


def read_table(path: str | Path) -> pd.DataFrame:
    path = Path(path)
    if path.suffix.lower() in (".parquet", ".pq"):
        return pd.read_parquet(path)
    return pd.read_csv(path, dtype={C.QUERY_ID: str, C.PRODUCT_ID: str}, keep_default_na=False)


def load_rankings(spec: str, top: int) -> tuple[str, pd.DataFrame]:
    """``name=path`` or ``path`` -> (system name, its top-``top`` rows: query_id, product_id, rank)."""
    name, _, path = spec.rpartition("=") if "=" in spec else ("", "", spec)
    name = name or Path(path).stem
    df = read_table(path)
    missing = [c for c in (C.QUERY_ID, C.PRODUCT_ID, RANK) if c not in df.columns]
    if missing:
        raise ValueError(f"rankings {path}: missing column(s) {missing}; found {list(df.columns)}")
    ranks = pd.to_numeric(df[RANK], errors="coerce")
    if ranks.isna().any():
        i = int(ranks.isna().to_numpy().nonzero()[0][0])
        raise ValueError(f"rankings {path}: row {i} has rank {df[RANK].iloc[i]!r}; ranks are integers from 1")
    df = df.assign(**{RANK: ranks.astype(int), C.QUERY_ID: df[C.QUERY_ID].astype(str),
                      C.PRODUCT_ID: df[C.PRODUCT_ID].astype(str)})
    return name, df.loc[df[RANK] <= top, [C.QUERY_ID, C.PRODUCT_ID, RANK]]


def read_query_file(path: str | Path) -> pd.DataFrame:
    """``query_id, query, intent`` (intent empty where the file has none), checked by read_queries."""
    from dashclip.embed import read_queries

    clean, rejects = read_queries(path)
    for r in rejects.itertuples():
        log.warning("query file %s: row %s (%s) left out: %s", path, r.source_row, r.query_id, r.reason)
    csv = Path(path).suffix.lower() == ".csv"
    raw = pd.read_csv(path, dtype=str, keep_default_na=False) if csv else read_table(path)
    intents = dict(zip(raw[C.QUERY_ID].astype(str).str.strip(), raw[INTENT])) if INTENT in raw.columns else {}
    return clean.assign(**{INTENT: [intents.get(q, "") for q in clean[C.QUERY_ID]]})


def baseline_rankings(products: pd.DataFrame, queries: pd.DataFrame, names: list[str]) -> dict[str, pd.DataFrame]:
    """Top-``BASELINE_DEPTH`` rankings of BM25 and/or MiniLM zero-shot over the products' search text."""
    import numpy as np

    from dashclip.retrieval import BM25Index, product_search_text

    texts, qs = product_search_text(products), queries[C.QUERY].tolist()
    scores: dict[str, np.ndarray] = {}
    if "bm25" in names:
        bm25 = BM25Index(texts)
        scores["bm25"] = np.stack([bm25.scores(q) for q in qs])
    if "minilm_zero_shot" in names:
        from dashclip.eval_queries import minilm_scores

        scores["minilm_zero_shot"] = minilm_scores(qs, texts)
    unknown = set(names) - set(scores)
    if unknown:
        raise ValueError(f"--baselines: unknown system(s) {sorted(unknown)}; known: bm25, minilm_zero_shot")
    k = min(BASELINE_DEPTH, len(products))
    out = {}
    for name, s in scores.items():
        top = np.argsort(-s, axis=1, kind="stable")[:, :k]
        out[name] = pd.DataFrame({C.QUERY_ID: np.repeat(queries[C.QUERY_ID].to_numpy(), k),
                                  C.PRODUCT_ID: products[C.PRODUCT_ID].to_numpy()[top.ravel()],
                                  RANK: np.tile(np.arange(1, k + 1), len(qs)),
                                  "score": np.take_along_axis(s, top, 1).ravel().astype("float32")})
    return out


def pool(rankings: dict[str, pd.DataFrame], queries: pd.DataFrame, products: pd.DataFrame, top: int) -> pd.DataFrame:
    """(query_id, product_id, system, rank) of every system's top ``top`` for the known queries and products."""
    parts = []
    for name, df in rankings.items():
        df = df[df[RANK] <= top]
        known = df[C.QUERY_ID].isin(queries[C.QUERY_ID]) & df[C.PRODUCT_ID].isin(products[C.PRODUCT_ID])
        if (~known).any():
            log.warning("rankings %s: %d row(s) name a query or product not in this run; left out",
                        name, int((~known).sum()))
        parts.append(df[known].assign(**{SYSTEM: name}))
    cols = [C.QUERY_ID, C.PRODUCT_ID, SYSTEM, RANK]
    return pd.concat(parts, ignore_index=True)[cols] if parts else pd.DataFrame(columns=cols)


def judging_sheet(sources: pd.DataFrame, queries: pd.DataFrame, products: pd.DataFrame,
                  existing: pd.DataFrame | None) -> pd.DataFrame:
    """One row per pooled pair not yet judged, with what the judge reads and empty label and reason."""
    pairs = sources[[C.QUERY_ID, C.PRODUCT_ID]].drop_duplicates()
    if existing is not None:
        done = existing[[C.QUERY_ID, C.PRODUCT_ID]].astype(str).drop_duplicates()
        pairs = pairs.merge(done, how="left", indicator=True)
        pairs = pairs[pairs["_merge"] == "left_only"].drop(columns="_merge")
    prod = products[[C.PRODUCT_ID, C.TITLE, C.CATEGORY, C.COLOR, C.GENDER, C.USAGE, C.DESCRIPTION]].copy()
    prod[C.DESCRIPTION] = prod[C.DESCRIPTION].fillna("").astype(str).str.slice(0, DESCRIPTION_CHARS)
    order = queries.assign(_q=range(len(queries)))[[C.QUERY_ID, C.QUERY, INTENT, "_q"]]
    sheet = pairs.merge(order, on=C.QUERY_ID).merge(prod, on=C.PRODUCT_ID)
    sheet = sheet.sort_values(["_q", C.CATEGORY, C.TITLE, C.PRODUCT_ID], kind="stable")
    return sheet.assign(**{C.LABEL: "", "reason": ""})[SHEET_COLUMNS].reset_index(drop=True)


def write_csv_atomic(df: pd.DataFrame, path: str | Path) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        df.to_csv(tmp, index=False)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--products", required=True, help="raw catalog, products.parquet or an ingest folder")
    ap.add_argument("--split", default="test", help="ingestion split to keep (all: every product)")
    ap.add_argument("--queries", default=str(REPO / "dashclip" / "resources" / "handwritten_queries.csv"))
    ap.add_argument("--rankings", nargs="*", default=[], help="name=path or path (query_id, product_id, rank)")
    ap.add_argument("--baselines", default="bm25,minilm_zero_shot", help="comma list; empty: none")
    ap.add_argument("--baselines-out", help="write the baseline rankings here (parquet per system)")
    ap.add_argument("--top", type=int, default=20, help="each system's top this many per query")
    ap.add_argument("--existing", help="judgments CSV whose (query_id, product_id) pairs are left out")
    ap.add_argument("--out", required=True)
    return ap.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    from dashclip.catalog import load_products
    from dashclip.io import write_parquet_atomic

    try:
        products = load_products(args.products)
        if args.split != "all":
            products = products[products[C.SPLIT] == args.split].reset_index(drop=True)
        queries = read_query_file(args.queries)
        rankings = dict(load_rankings(spec, args.top) for spec in args.rankings)
        names = [n.strip() for n in args.baselines.split(",") if n.strip()]
        baselines = baseline_rankings(products, queries, names) if names else {}
        for name, df in baselines.items():
            if args.baselines_out:
                write_parquet_atomic(df, Path(args.baselines_out) / f"{name}.parquet")
            rankings[name] = df
        existing = read_table(args.existing) if args.existing and Path(args.existing).exists() else None
        if existing is not None and not {C.QUERY_ID, C.PRODUCT_ID} <= set(existing.columns):
            raise ValueError(f"existing judgments {args.existing}: need query_id and product_id; "
                             f"found {list(existing.columns)}")
    except (FileNotFoundError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    sources = pool(rankings, queries, products, args.top)
    sheet = judging_sheet(sources, queries, products, existing)
    write_csv_atomic(sheet, args.out)
    write_csv_atomic(sources.sort_values([C.QUERY_ID, SYSTEM, RANK]), str(args.out) + ".sources.csv")
    per_system = sources.groupby(SYSTEM).size().to_dict()
    print(f"{len(queries)} queries, {len(products)} products; pooled pairs by system {per_system}; "
          f"union {sources[[C.QUERY_ID, C.PRODUCT_ID]].drop_duplicates().shape[0]}; "
          f"{len(sheet)} to judge -> {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
