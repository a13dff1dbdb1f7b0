"""Query evaluation: retrieval over a whole catalog against graded judgments, beside text baselines.

For each query, every product of the catalog is scored by DashCLIP (the served query and product
embeddings: the shared space plus, when the checkpoint's ``text_channel`` is on, the text channel;
``dashclip_shared`` is the shared space alone), BM25 over product text (title, description,
category; light stemming) and the packaged MiniLM zero-shot (query vs product text). Reports nDCG@10 (gains 2^label - 1),
Recall@100 of exact matches (label 3), MRR of the first exact match, and relevance AUC (score
separating label >= 2 from the rest, per query, averaged). Unlisted products count as 0.

Every report carries two judges, each under its own key with the same layout (systems' metrics,
gains over the baselines, the same per intent class):
- ``annotator``: the judgments file (``dashclip.evaluate judgments`` writes the rule annotator's,
  the labeller stage 2 trains on);
- ``independent_judge``: ``dashclip.judge.Judge`` grading every product of the catalog for the same
  queries (ESCI rules written apart from the annotator);
- ``read_judge`` (with ``read_judged``, a file): judgments made by reading each product, not by a
  program (``dashclip/resources/handwritten_read_judgments.csv``: the union of every system's top 20
  per handwritten query, with the reader's reason). Products outside that pool count as 0, as in
  pooled (TREC-style) evaluation; ``read_judge_coverage`` gives the judged share of each system's
  top 10, so a system whose results were not pooled shows up as low coverage, not as a silent loss.
Each judge's means are over the queries it finds a relevant (grade >= 2) product for. The queries
are those of the query file (``queries.csv`` beside the judgments, written by the judgments
command), so a query the annotator finds nothing relevant for is still graded by the judge.
Intent classes come from an ``intent`` column (the handwritten queries have one), else from
``Judge.intent``.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from dashclip import columns as C
from dashclip.catalog import load_products
from dashclip.config import TextTowerConfig
from dashclip.inference import cached_product_parts, query_parts, served
from dashclip.metrics import auc, ndcg_at_k, recall_at_k, reciprocal_rank
from dashclip.model import DashCLIP
from dashclip.retrieval import BM25Index, product_search_text
from dashclip.towers import build_text_tower, l2n
from dashclip.trunk_cache import build_trunk_cache

log = logging.getLogger(__name__)
METRICS = ("ndcg@10", "recall@100_exact", "mrr_exact", "auc_relevant")
# report order; dashclip_shared only when the checkpoint serves a text channel
SYSTEMS = ("dashclip", "dashclip_shared", "bm25", "minilm_zero_shot")
JUDGES = ("annotator", "independent_judge", "read_judge")  # read_judge only with read judgments


def read_judgments(path: str | Path) -> pd.DataFrame:
    path = Path(path)
    df = pd.read_parquet(path) if path.suffix in (".parquet", ".pq") else pd.read_csv(path, dtype={C.QUERY_ID: str, C.PRODUCT_ID: str})
    return checked_judgments(df, path, (C.QUERY_ID, C.QUERY, C.PRODUCT_ID, C.LABEL), "judgments")


def checked_judgments(df: pd.DataFrame, path: str | Path, columns: tuple[str, ...], what: str) -> pd.DataFrame:
    """``df`` when it has ``columns`` and every label is 0..3; else one line naming the file, row and value."""
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise ValueError(f"{what} {path}: missing column(s) {missing}; found {list(df.columns)}")
    bad = ~df[C.LABEL].isin([0, 1, 2, 3])
    if bad.any():
        i = int(np.nonzero(bad.to_numpy())[0][0])
        v = df[C.LABEL].iloc[i]
        raise ValueError(f"{what} {path}: row {i} has label {v.item() if hasattr(v, 'item') else v!r}; labels are 0..3")
    return df


@torch.no_grad()
def minilm_scores(queries: list[str], texts: list[str], cfg: TextTowerConfig | None = None) -> np.ndarray:
    """(Q, N) cosine similarities from the packaged MiniLM, no fine-tuning."""
    tower = build_text_tower(cfg or TextTowerConfig()).eval()

    def enc(xs):
        out = []
        for s in range(0, len(xs), 128):
            tok = tower.tokenize(xs[s:s + 128])
            out.append(l2n(tower.pool(tower(**tok), tok["attention_mask"])))
        return torch.cat(out).numpy()

    return enc(queries) @ enc(texts).T


def per_query_metrics(scores: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    order = np.argsort(-scores, kind="stable")
    ranked = labels[order]
    n_exact = int((labels == 3).sum())
    return {"ndcg@10": ndcg_at_k(ranked, labels, 10), "recall@100_exact": recall_at_k(ranked, n_exact, 100, 3),
            "mrr_exact": reciprocal_rank(ranked, 3) if n_exact else float("nan"),
            "auc_relevant": auc(scores, labels >= 2)}


def read_query_file(path: str | Path) -> pd.DataFrame:
    """``query_id, query`` (cleaned as ``dashclip.embed.read_queries`` does) plus the file's
    ``intent`` column when it has one."""
    from dashclip.embed import read_queries

    qs = read_queries(path)[0]
    path = Path(path)
    raw = pd.read_parquet(path) if path.suffix in (".parquet", ".pq") else pd.read_csv(path, dtype=str, keep_default_na=False)
    if "intent" in raw.columns:
        intent = dict(zip(raw[C.QUERY_ID].astype(str).str.strip(), raw["intent"].fillna("").astype(str)))
        qs["intent"] = [intent.get(q, "") for q in qs[C.QUERY_ID]]
    return qs


def judgment_matrix(products: pd.DataFrame, judg: pd.DataFrame, queries: pd.DataFrame | None = None
                    ) -> tuple[pd.DataFrame, np.ndarray, int]:
    """The queries (``queries``' rows first when given, so queries with nothing judged relevant are
    kept, then any other judged query, first-seen order), their (Q, N) label matrix over the
    catalog's rows (unlisted = 0) and the number of judged pairs used; judged product ids that are
    not in the catalog are left out, with a warning."""
    pid_row = {p: i for i, p in enumerate(products[C.PRODUCT_ID])}
    unknown = set(judg[C.PRODUCT_ID]) - set(pid_row)
    if unknown:
        log.warning("%d judged product ids are not in the catalog (ignored), e.g. %s", len(unknown), sorted(unknown)[:3])
    parts = ([queries[[C.QUERY_ID, C.QUERY]]] if queries is not None else []) + [judg[[C.QUERY_ID, C.QUERY]]]
    qs = pd.concat(parts, ignore_index=True).drop_duplicates(C.QUERY_ID).reset_index(drop=True)
    labels = np.zeros((len(qs), len(products)), dtype=np.int64)
    qrow = {q: i for i, q in enumerate(qs[C.QUERY_ID])}
    known = judg[judg[C.PRODUCT_ID].isin(pid_row)]
    # int indices: an empty selection maps to float arrays, which numpy refuses as indices
    labels[known[C.QUERY_ID].map(qrow).to_numpy(dtype=np.int64), known[C.PRODUCT_ID].map(pid_row).to_numpy(dtype=np.int64)] = \
        known[C.LABEL].to_numpy()
    return qs, labels, len(known)


def dashclip_embeddings(model: DashCLIP, products: pd.DataFrame, queries: list[str], cache_dir: str | None,
                        channel: bool) -> dict[str, torch.Tensor]:
    """Shared-space query and product embeddings (``q_shared``, ``p_shared``) and, with ``channel``,
    their text channels (``q_chan``, ``p_chan``): the parts ``dashclip.inference.served`` joins."""
    cache = build_trunk_cache(model, products, cache_dir=cache_dir)
    p_shared, p_chan = cached_product_parts(model, cache, products, channel)
    q_shared, q_chan = query_parts(model, queries, channel=channel)
    out = {"p_shared": p_shared.cpu(), "q_shared": q_shared.cpu()}
    if channel:
        out["p_chan"], out["q_chan"] = p_chan.cpu(), q_chan.cpu()  # the model may sit on a GPU
    return out


def baseline_scores(products: pd.DataFrame, queries: list[str], text_cfg: TextTowerConfig) -> dict[str, np.ndarray]:
    """(Q, N) scores of BM25 and the packaged MiniLM zero-shot over the products' search text."""
    texts = product_search_text(products)
    bm25 = BM25Index(texts)
    return {"bm25": np.stack([bm25.scores(q) for q in queries]), "minilm_zero_shot": minilm_scores(queries, texts, text_cfg)}


def mean_metrics(scores: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    """``METRICS`` averaged over queries (rows); a query without an exact match has no MRR."""
    df = pd.DataFrame([per_query_metrics(scores[i], labels[i]) for i in range(len(labels))])
    return {m: float(df[m].mean(skipna=True)) for m in METRICS}


def evaluate_queries(checkpoint: str | Path, catalog: str | Path, judgments: str | Path,
                     rankings_out: str | Path | None = None, cache_dir: str | None = "runs/cache",
                     device: str | torch.device = "cpu", queries: str | Path | None = None,
                     read_judged: str | Path | None = None) -> dict:
    """Retrieval metrics of the checkpoint (run on ``device`` in float32) and the baselines.
    ``queries``: every query to evaluate (``query_id, query[, intent]``); default the
    ``queries.csv`` that ``dashclip.evaluate judgments`` writes beside the judgments, else the
    judged queries alone."""
    products = load_products(catalog).reset_index(drop=True)
    judg = read_judgments(judgments)
    beside = Path(judgments).with_name("queries.csv")
    qfile = queries or (beside if beside.is_file() else None)
    qframe = read_query_file(qfile) if qfile else None
    qs, labels, n_judged = judgment_matrix(products, judg, qframe)
    if n_judged == 0:  # e.g. queries written for another catalog: nothing to measure, not an error
        return {"checkpoint": str(checkpoint), "catalog": str(catalog), "products": len(products), "queries": len(qs),
                "judged_pairs": 0, "skipped": f"no judged pair of {judgments} names a product of this catalog"}
    model = DashCLIP.from_pretrained(checkpoint).to(device)
    queries = qs[C.QUERY].tolist()
    e = dashclip_embeddings(model, products, queries, cache_dir, channel=model.cfg.text_channel > 0)
    systems = {"dashclip": (e["q_shared"] @ e["p_shared"].T).numpy()}
    if "q_chan" in e:  # what dashclip.embed serves: shared space + text channel
        systems["dashclip_shared"] = systems["dashclip"]
        q, p = served(model, e["q_shared"], e["q_chan"]), served(model, e["p_shared"], e["p_chan"])
        systems["dashclip"] = (q @ p.T).numpy()
    systems.update(baseline_scores(products, queries, model.cfg.text))

    report = {"checkpoint": str(checkpoint), "model_version": model.model_version, "catalog": str(catalog),
              "products": len(products), "queries": len(qs), "judged_pairs": int(n_judged),
              "text_channel": model.cfg.text_channel}
    intents = intents_of(qframe if qframe is not None else judg, qs)
    report.update(two_judge_reports(products, qs, intents, labels, systems))
    if read_judged:
        report.update(read_judge_report(products, qs, read_judged, intents or [""] * len(qs), systems))
    report["queries_file"] = str(qfile) if qfile else None
    if rankings_out:
        top = np.argsort(-systems["dashclip"], axis=1)[:, :100]
        rk = pd.DataFrame({C.QUERY_ID: np.repeat(qs[C.QUERY_ID].to_numpy(), top.shape[1]),
                           C.PRODUCT_ID: products[C.PRODUCT_ID].to_numpy()[top.ravel()],
                           "rank": np.tile(np.arange(1, top.shape[1] + 1), len(qs)),
                           "score": np.take_along_axis(systems["dashclip"], top, 1).ravel().astype(np.float32)})
        out = Path(rankings_out)
        out.parent.mkdir(parents=True, exist_ok=True)
        rk.to_csv(out, index=False) if out.suffix == ".csv" else rk.to_parquet(out, index=False)
    return report


def intents_of(judg: pd.DataFrame, qs: pd.DataFrame) -> list[str] | None:
    """Per query, its intent class from an ``intent`` column of the judgments or the query file
    (None without one)."""
    if "intent" not in judg.columns:
        return None
    by_q = judg.drop_duplicates(C.QUERY_ID).set_index(C.QUERY_ID)["intent"].fillna("")
    return [str(by_q.get(q, "") or "") for q in qs[C.QUERY_ID]]


def judge_report(systems: dict[str, np.ndarray], labels: np.ndarray, intents: list[str]) -> dict:
    """One judge's figures: every system's mean metrics over the queries with a relevant (>= 2)
    product under this judge, the gains over the baselines, and the same per intent class."""
    keep = (labels >= 2).any(axis=1)
    out = summary(systems, labels, keep)
    out["by_intent"] = {i: summary(systems, labels, keep & (np.asarray(intents) == i)) for i in sorted(set(intents))}
    return out


def summary(systems: dict[str, np.ndarray], labels: np.ndarray, mask: np.ndarray) -> dict:
    """Mean metrics of every system and DashCLIP's gains, over the queries (rows) in ``mask``."""
    r: dict = {"queries": int(mask.sum())}
    if not mask.any():
        return r
    for name, scores in systems.items():
        r[name] = mean_metrics(scores[mask], labels[mask])
    best_base = max(r["bm25"]["ndcg@10"], r["minilm_zero_shot"]["ndcg@10"])
    r["ndcg@10_gain_over_best_baseline"] = r["dashclip"]["ndcg@10"] - best_base
    r["ndcg@10_gain_over_minilm_zero_shot"] = r["dashclip"]["ndcg@10"] - r["minilm_zero_shot"]["ndcg@10"]
    r["auc_above_both_baselines"] = bool(r["dashclip"]["auc_relevant"] > max(
        r["bm25"]["auc_relevant"], r["minilm_zero_shot"]["auc_relevant"]))
    if "dashclip_shared" in r:
        r["ndcg@10_gain_over_best_baseline_shared"] = r["dashclip_shared"]["ndcg@10"] - best_base
    return r


def two_judge_reports(products: pd.DataFrame, qs: pd.DataFrame, intents: list[str] | None, labels: np.ndarray,
                      systems: dict[str, np.ndarray]) -> dict:
    """``{"annotator": ..., "independent_judge": ...}`` for the same queries and system scores:
    ``labels`` are the annotator's (the judgments file); the independent judge grades the catalog."""
    from dashclip.judge import Judge

    judge = Judge(products)
    queries = qs[C.QUERY].tolist()
    if intents is None or not all(intents):
        intents = [i or judge.intent(q) for i, q in zip(intents or [""] * len(queries), queries)]
    indep = np.stack([judge.grade_all(q) for q in queries]) if queries else labels
    return {"annotator": judge_report(systems, labels, intents),
            "independent_judge": judge_report(systems, indep, intents),
            "intents": dict(sorted(pd.Series(intents).value_counts().to_dict().items()))}


def read_judgment_matrix(products: pd.DataFrame, qs: pd.DataFrame, path: str | Path) -> tuple[np.ndarray, np.ndarray, int]:
    """A read-judgments file (``query_id, product_id, label[, query, reason]``) over the queries ``qs``
    and the catalog's rows: the (Q, N) labels (unjudged = 0), which pairs were judged, and how many."""
    judg = checked_judgments(pd.read_csv(path, dtype={C.QUERY_ID: str, C.PRODUCT_ID: str}), path,
                             (C.QUERY_ID, C.PRODUCT_ID, C.LABEL), "read judgments")
    judg = judg.drop(columns=[C.QUERY], errors="ignore").merge(qs[[C.QUERY_ID, C.QUERY]], on=C.QUERY_ID, how="inner")
    # labels shifted by one in a single matrix: 0 = not judged, 1 + label = judged
    _, shifted, n = judgment_matrix(products, judg.assign(**{C.LABEL: judg[C.LABEL] + 1}), qs)
    return np.maximum(shifted - 1, 0), shifted > 0, n


def read_judge_report(products: pd.DataFrame, qs: pd.DataFrame, path: str | Path, intents: list[str],
                      systems: dict[str, np.ndarray]) -> dict:
    """The ``read_judge`` figures (same layout as the other judges) and each system's judged share of
    its top 10 (``read_judge_coverage``), for the queries of ``qs`` that the file judges."""
    labels, judged, n = read_judgment_matrix(products, qs, path)
    rows = judged.any(axis=1)
    report = judge_report({k: v[rows] for k, v in systems.items()}, labels[rows], list(np.asarray(intents)[rows]))
    top10 = {name: np.argsort(-scores[rows], axis=1)[:, :10] for name, scores in systems.items()}
    coverage = {name: float(np.take_along_axis(judged[rows], t, 1).mean()) for name, t in top10.items()}
    return {"read_judge": report, "read_judge_coverage": coverage, "read_judged_pairs": int(n)}


def markdown_table(r: dict) -> str:
    if "skipped" in r:
        return f"{r['queries']} queries over {r['products']} products: skipped ({r['skipped']})."
    lines = [f"{r['queries']} queries over {r['products']} products ({r['judged_pairs']} judged pairs; unlisted = 0)."]
    for judge in (j for j in JUDGES if j in r):
        j = r[judge]
        lines += ["", f"Judge: {judge} ({j['queries']} queries with a relevant product).", "",
                  "| system | nDCG@10 | Recall@100 (exact) | MRR (exact) | relevance AUC |", "| --- | --- | --- | --- | --- |"]
        for name in SYSTEMS:
            if name in j:
                lines.append(f"| {name} | " + " | ".join(f"{j[name][k]:.3f}" for k in METRICS) + " |")
    lines += ["", "nDCG@10 by intent class (annotator / independent judge):", "",
              "| intent | queries | dashclip | minilm_zero_shot | bm25 |", "| --- | --- | --- | --- | --- |"]
    for intent in r["intents"]:
        a, b = r["annotator"]["by_intent"].get(intent, {}), r["independent_judge"]["by_intent"].get(intent, {})

        def cell(name):
            return " / ".join(f"{x[name]['ndcg@10']:.3f}" if name in x else "-" for x in (a, b))
        lines.append(f"| {intent} | {r['intents'][intent]} | {cell('dashclip')} | {cell('minilm_zero_shot')} | {cell('bm25')} |")
    if "read_judge" in r:
        cov = ", ".join(f"{k} {v:.2f}" for k, v in r["read_judge_coverage"].items())
        lines += ["", f"read_judge: {r['read_judged_pairs']} pairs judged by reading; judged share of each top 10: {cov}."]
    return "\n".join(lines)


def make_judgments(products: pd.DataFrame, queries: pd.DataFrame, annotator=None) -> pd.DataFrame:
    """Graded judgments for queries over a catalog from the rule annotator (nonzero labels only)."""
    from dashclip.queries import Annotator

    ann = annotator or Annotator(products)
    pids = products[C.PRODUCT_ID].to_numpy()
    rows = []
    intent = dict(zip(queries[C.QUERY_ID], queries["intent"])) if "intent" in queries else None
    for qid, q in zip(queries[C.QUERY_ID], queries[C.QUERY]):
        g = ann.grade_all(q)
        nz = np.nonzero(g)[0]
        rows.append(pd.DataFrame({C.QUERY_ID: qid, C.QUERY: q, C.PRODUCT_ID: pids[nz], C.LABEL: g[nz],
                                  **({"intent": intent[qid]} if intent else {})}))
    return pd.concat(rows, ignore_index=True) if rows else pd.DataFrame(columns=[C.QUERY_ID, C.QUERY, C.PRODUCT_ID, C.LABEL])
