"""The packaged towers side by side: EfficientNet-Lite0/1/2 and MiniLM / all-mpnet-base-v2.

    python bench/towers.py image   [--catalog CSV_OR_PARQUET] [--train-products 2000]
    python bench/towers.py zeroshot [--catalog ...]
    python bench/towers.py teacher  [--catalog ...] [--config configs/fast_stage2.json]
    python bench/towers.py teacher-speed [--catalog ...] [--pairs 128]

- ``image``: the off-the-shelf image-only category probe of ``dashclip.evaluate products``
  (pooled features of the pretrained image tower, standardised, logistic regression fitted on
  training products, accuracy on the test split) for Lite0 (224 px), Lite1 (240) and Lite2 (260)
  on the same products, and each tower's images/s (forward of the whole tower on random pixels,
  the three interleaved so that a busy machine slows them alike).
- ``zeroshot``: MiniLM and mpnet zero-shot (mean-pooled sentence embeddings, cosine) on the
  handwritten queries over the test products: nDCG@10 and relevance AUC under the independent
  judge (``dashclip.judge``) and the read judgments (pooled, unjudged = 0), as
  ``dashclip.evaluate queries`` computes them.
- ``teacher``: the stage-2 teacher with a MiniLM and an mpnet backbone trained on the same seed
  labels (stage 2's own query generation, candidate mining, seed annotation and held-out split;
  candidates mined with MiniLM zero-shot embeddings in place of a stage-1 model): agreement on the
  held-out seed, against the read judgments, and labelling pairs/s.
- ``teacher-speed``: the two teachers' labelling and training pairs/s on the same pairs, interleaved.

Each writes its part of bench/results/towers.json (the other parts are kept).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from bench.machine import cpu_model  # noqa: E402

RESULTS = REPO / "bench" / "results" / "towers.json"
CATALOG = REPO.parent / "shared" / "data" / "catalog.csv"
LITE = {"lite0": ("packaged:efficientnet-lite0", 224), "lite1": ("packaged:efficientnet-lite1", 240),
        "lite2": ("packaged:efficientnet-lite2", 260)}
TEXT = {"minilm": "packaged:all-minilm-l6-v2", "mpnet": "packaged:all-mpnet-base-v2"}


def save_part(name: str, part: dict) -> None:
    report = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}
    report[name] = {**part, "date": datetime.now(timezone.utc).strftime("%Y-%m-%d"), "cpu": cpu_model(),
                    "torch_threads": torch.get_num_threads()}
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(report, indent=1) + "\n")
    print(json.dumps(report[name], indent=1))


@torch.no_grad()
def pooled_image_features(source: str, size: int, products, batch: int = 32) -> np.ndarray:
    """(N, 1280): the pretrained tower's feature map averaged over positions, as the probe's baseline."""
    from dashclip.config import ImageTowerConfig
    from dashclip.data import ProductDataset, product_loader
    from dashclip.towers import build_image_tower

    tower = build_image_tower(ImageTowerConfig(source=source, image_size=size)).eval()
    ds = ProductDataset(products, image_size=size, with_text=False)
    out = [tower(b["image"]).mean(1) for b in product_loader(ds, batch_size=batch, workers=1)]
    return torch.cat(out).numpy()


@torch.no_grad()
def images_per_s(rounds: int = 3, batch: int = 16) -> dict[str, float]:
    """Each tower's forward throughput on random pixels, the towers interleaved; the median round."""
    from dashclip.config import ImageTowerConfig
    from dashclip.towers import build_image_tower

    towers = {k: build_image_tower(ImageTowerConfig(source=s, image_size=n)).eval() for k, (s, n) in LITE.items()}
    times: dict[str, list[float]] = {k: [] for k in towers}
    for _ in range(rounds):
        for k, t in towers.items():
            x = torch.rand(batch, 3, LITE[k][1], LITE[k][1])
            t(x[:2])  # warm-up
            t0 = time.perf_counter()
            t(x)
            times[k].append(time.perf_counter() - t0)
    return {k: round(batch / float(np.median(v)), 1) for k, v in times.items()}


def image_main(args) -> None:
    from dashclip import columns as C
    from dashclip.catalog import load_products
    from dashclip.eval_products import accuracy_by_group, probe_predictions

    prods = load_products(args.catalog)
    train = prods[prods[C.SPLIT] == "train"]
    train = train.sample(min(args.train_products, len(train)), random_state=0)
    test = prods[prods[C.SPLIT] == "test"]
    y_tr, y_te = train[C.CATEGORY].to_numpy(), test[C.CATEGORY].to_numpy()
    acc, pred, secs = {}, {}, {}
    for k, (source, size) in LITE.items():
        t0 = time.perf_counter()
        f_tr, f_te = (pooled_image_features(source, size, d) for d in (train, test))
        secs[k] = round(time.perf_counter() - t0, 1)
        pred[k] = probe_predictions(f_tr, y_tr, f_te)
        acc[k] = round(float((pred[k] == y_te).mean()), 4)
        print(f"{k}: probe {acc[k]:.4f} ({secs[k]} s features incl. decoding)", flush=True)
    by_source = accuracy_by_group(pred, y_te, test[C.SOURCE].fillna("").to_numpy())
    save_part("image", {
        "what": "off-the-shelf image-only category probe (pooled pretrained features, logistic regression) "
                "on the test split; images/s: forward of the whole tower on random pixels, 1 thread",
        "catalog": str(args.catalog), "train_products": int(len(train)),
        "train_sample": f"{len(train)} of the training split, random_state=0 (the same for all three)",
        "test_products": int(len(test)), "categories": int(len(set(y_tr) | set(y_te))),
        "probe_acc": acc, "probe_acc_by_source": {s: {k: round(v, 4) if isinstance(v, float) else v
                                                      for k, v in d.items()} for s, d in by_source.items()},
        "image_size": {k: v[1] for k, v in LITE.items()}, "images_per_s": images_per_s(),
        "feature_seconds_incl_decoding": secs})


READ = REPO / "dashclip" / "resources" / "handwritten_read_judgments.csv"
QUERIES = REPO / "dashclip" / "resources" / "handwritten_queries.csv"


@torch.no_grad()
def sentence_embeddings(source: str, texts: list[str], max_length: int, batch: int = 64) -> np.ndarray:
    """(N, H) L2-normalised mean-pooled sentence embeddings of a packaged text model."""
    from dashclip.config import TextTowerConfig
    from dashclip.towers import build_text_tower, l2n

    tower = build_text_tower(TextTowerConfig(source=source, max_length=max_length)).eval()
    out = []
    for s in range(0, len(texts), batch):
        tok = tower.tokenize(texts[s:s + batch])
        out.append(l2n(tower.pool(tower(**tok), tok["attention_mask"])))
    return torch.cat(out).numpy()


def judged_means(scores: np.ndarray, labels: np.ndarray, rows: np.ndarray) -> dict:
    """nDCG@10 and relevance AUC over ``rows`` that have a relevant (>= 2) product, as judge_report keeps them."""
    from dashclip.eval_queries import mean_metrics

    keep = rows & (labels >= 2).any(axis=1)
    m = mean_metrics(scores[keep], labels[keep])
    return {"queries": int(keep.sum()), "ndcg@10": round(m["ndcg@10"], 4), "auc_relevant": round(m["auc_relevant"], 4)}


def zeroshot_main(args) -> None:
    from dashclip import columns as C
    from dashclip.catalog import load_products
    from dashclip.eval_queries import read_judgment_matrix, read_query_file
    from dashclip.judge import Judge
    from dashclip.retrieval import BM25Index, product_search_text

    prods = load_products(args.catalog)
    prods = prods[prods[C.SPLIT] == "test"].reset_index(drop=True)
    qs = read_query_file(QUERIES)
    queries, texts = qs[C.QUERY].tolist(), product_search_text(prods)
    judge = Judge(prods)
    indep = np.stack([judge.grade_all(q) for q in queries])
    read_labels, judged, n_read = read_judgment_matrix(prods, qs, READ)
    bm25 = BM25Index(texts)
    systems = {"bm25": np.stack([bm25.scores(q) for q in queries])}
    secs = {}
    for length in args.max_length:
        for name, source in TEXT.items():
            t0 = time.perf_counter()
            p_emb = sentence_embeddings(source, texts, length)
            secs[f"{name}@{length}"] = round(time.perf_counter() - t0, 1)
            systems[f"{name}@{length}"] = sentence_embeddings(source, queries, length) @ p_emb.T
    everyone = np.ones(len(qs), bool)
    rows = judged.any(axis=1)
    intents = qs["intent"].to_numpy()
    report = {"independent_judge": {k: judged_means(v, indep, everyone) for k, v in systems.items()},
              "read_judge": {k: judged_means(v, read_labels, rows) for k, v in systems.items()},
              "read_judge_coverage_top10": {k: round(float(np.take_along_axis(judged[rows], np.argsort(-v[rows], 1)[:, :10],
                                                                               1).mean()), 4) for k, v in systems.items()},
              "independent_judge_by_intent": {i: {k: judged_means(v, indep, intents == i)["ndcg@10"]
                                                  for k, v in systems.items()} for i in sorted(set(intents))}}
    save_part("zeroshot", {
        "what": "zero-shot retrieval of the handwritten queries over the test products (product search text, "
                "mean-pooled sentence embeddings, cosine); NAME@L = max_length L tokens; BM25 for reference. "
                "read_judge: pooled judgments (BM25, MiniLM zero-shot and DashCLIP top 20), unjudged = 0, so a "
                "system whose top 10 was not pooled (low coverage) is under-credited",
        "catalog": str(args.catalog), "test_products": int(len(prods)), "queries": int(len(qs)),
        "read_judged_pairs_in_test": int(n_read), **report, "product_encoding_seconds": secs})


def seed_split(cfg, train_df):
    """Stage 2's seed: its training queries, candidates (BM25, dense, random, by type; dense from MiniLM
    zero-shot), the annotator's seed grades and held-out queries. Returns seed_train, seed_test, ptext."""
    from dashclip import columns as C
    from dashclip.retrieval import BM25Index, product_search_text
    from dashclip.stage2 import _pairs_frame, mine_candidates, seed_pairs, training_queries
    from dashclip.teacher import teacher_product_text
    from dashclip.type_negatives import TypeNegativeMiner

    rng = np.random.default_rng(cfg.seed)
    queries = training_queries(cfg, train_df)
    qtexts = queries[C.QUERY].tolist()
    ptexts = product_search_text(train_df)
    emb = (sentence_embeddings(TEXT["minilm"], qtexts, 48), sentence_embeddings(TEXT["minilm"], ptexts, 48))
    cands = mine_candidates(qtexts, *emb, BM25Index(ptexts), cfg, rng)
    if cfg.cand_type:
        cands = [np.union1d(c, t) for c, t in zip(cands, TypeNegativeMiner(train_df).mine(qtexts, cfg.cand_type, seed=cfg.seed))]
    pairs = _pairs_frame(queries[C.QUERY_ID], qtexts, cands)
    seed, _, heldout_q, _ = seed_pairs(cfg, queries, pairs, cands, train_df, rng)
    held = seed[C.QUERY_ID].isin(heldout_q)
    return seed[~held], seed[held], [teacher_product_text(r) for r in train_df.to_dict("records")]


def read_pairs(prods, max_pairs: int | None = None):
    """The read judgments over ``prods`` (a seeded sample of ``max_pairs``): (queries, product texts,
    labels) for the teacher to grade."""
    import pandas as pd

    from dashclip import columns as C
    from dashclip.teacher import teacher_product_text

    read = pd.read_csv(READ, dtype={C.QUERY_ID: str, C.PRODUCT_ID: str})
    row = {p: i for i, p in enumerate(prods[C.PRODUCT_ID])}
    read = read[read[C.PRODUCT_ID].isin(row)]
    if max_pairs and len(read) > max_pairs:
        read = read.sample(max_pairs, random_state=0)
    recs = prods.to_dict("records")
    return read[C.QUERY].tolist(), [teacher_product_text(recs[row[p]]) for p in read[C.PRODUCT_ID]], read[C.LABEL].to_numpy()


def teacher_main(args) -> None:
    from bench.judge_agreement import scores
    from dashclip import columns as C
    from dashclip.catalog import load_products
    from dashclip.config import TextTowerConfig
    from dashclip.stage2 import Stage2Config, fit_teacher, teacher_agreement
    from dashclip.teacher import CrossEncoder, teacher_labels

    overrides = json.loads(Path(args.config).read_text())
    overrides.update({k: v for k, v in (("seed_budget", args.seed_budget), ("teacher_epochs", args.teacher_epochs))
                      if v is not None})
    cfg = Stage2Config.model_validate({**overrides, "catalog": str(args.catalog), "teacher_device": "cpu"})
    prods = load_products(args.catalog).reset_index(drop=True)
    train_df = prods[prods[C.SPLIT] == "train"].reset_index(drop=True)
    seed_train, seed_test, ptext = seed_split(cfg, train_df)
    rq, rtext, rlab = read_pairs(prods, args.max_read_pairs)
    out = {}
    for name in args.backbones:
        torch.manual_seed(cfg.seed)
        teacher = CrossEncoder(TextTowerConfig(source=TEXT[name]), max_length=cfg.teacher_max_length)
        t0 = time.perf_counter()
        losses = fit_teacher(cfg, teacher, seed_train, ptext, progress=False)
        t_fit = time.perf_counter() - t0
        held = teacher_agreement(teacher, seed_test, ptext)
        t0 = time.perf_counter()
        grades = np.clip(np.rint(teacher_labels(teacher, rq, rtext)), 0, 3).astype(int)
        t_lab = time.perf_counter() - t0
        out[name] = {"heldout_seed": {k: round(v, 4) if isinstance(v, float) else v for k, v in held.items()},
                     "read_judgments": scores(grades, rlab), "train_s": round(t_fit, 1),
                     "train_pairs_per_s": round(cfg.teacher_epochs * len(seed_train) / t_fit, 1),
                     "label_pairs_per_s": round(len(rq) / t_lab, 1), "train_loss": [round(x, 4) for x in losses]}
        print(name, json.dumps(out[name]), flush=True)
        save_part("teacher", {
            "what": "the stage-2 teacher (cross-encoder, 4 grades) on each backbone, trained on the same seed "
                    f"({Path(args.config).name} with seed_budget {cfg.seed_budget}, teacher_epochs {cfg.teacher_epochs}; "
                    "candidates mined with MiniLM zero-shot in place of a stage-1 model), fp32, 1 thread: agreement "
                    "on the held-out seed (annotator grades) and against the read judgments (expected grade "
                    "rounded); label_pairs_per_s over the read-judgment pairs",
            "catalog": str(args.catalog), "seed_train_pairs": int(len(seed_train)),
            "seed_heldout_pairs": int(len(seed_test)), "read_pairs": int(len(rq)), "backbones": out})


def teacher_speed_main(args) -> None:
    """Both backbones' cross-encoder on the same read-judgment pairs, interleaved: labelling pairs/s
    (forward, fp32) and training pairs/s (forward + backward + AdamW step); the median round."""
    import torch.nn.functional as F

    from dashclip.catalog import load_products
    from dashclip.config import TextTowerConfig
    from dashclip.teacher import CrossEncoder

    rq, rtext, rlab = read_pairs(load_products(args.catalog).reset_index(drop=True), args.pairs)
    models = {k: CrossEncoder(TextTowerConfig(source=s), max_length=64) for k, s in TEXT.items()}
    opts = {k: torch.optim.AdamW(m.parameters(), lr=1e-5) for k, m in models.items()}
    y = torch.as_tensor(rlab[:args.train_batch], dtype=torch.long)
    lab, tr = {k: [] for k in models}, {k: [] for k in models}
    for _ in range(args.rounds):
        for k, m in models.items():
            t0 = time.perf_counter()
            m.predict(rq, rtext, batch_size=64)
            lab[k].append(len(rq) / (time.perf_counter() - t0))
            m.train()
            enc = m.tokenize(rq[:args.train_batch], rtext[:args.train_batch])
            t0 = time.perf_counter()
            F.cross_entropy(m(**enc), y).backward()
            opts[k].step()
            opts[k].zero_grad()
            tr[k].append(args.train_batch / (time.perf_counter() - t0))
    med = {k: {"label_pairs_per_s": round(float(np.median(lab[k])), 1),
               "train_pairs_per_s": round(float(np.median(tr[k])), 1)} for k in models}
    save_part("teacher_speed", {
        "what": f"cross-encoder teacher speed per backbone, interleaved, median of {args.rounds} rounds: labelling "
                f"{len(rq)} read-judgment pairs (batch 64, max 64 tokens, fp32) and one training step on "
                f"{args.train_batch} of them", "pairs": len(rq), "backbones": med,
        "mpnet_cost_vs_minilm": {m: round(med["minilm"][m] / med["mpnet"][m], 2) for m in med["minilm"]}})


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    im = sub.add_parser("image")
    im.add_argument("--catalog", default=str(CATALOG))
    im.add_argument("--train-products", type=int, default=2000)
    zs = sub.add_parser("zeroshot")
    zs.add_argument("--catalog", default=str(CATALOG))
    zs.add_argument("--max-length", type=int, nargs="+", default=[48, 128])
    te = sub.add_parser("teacher")
    te.add_argument("--catalog", default=str(CATALOG))
    te.add_argument("--config", default=str(REPO / "configs" / "fast_stage2.json"))
    te.add_argument("--backbones", nargs="+", choices=list(TEXT), default=list(TEXT))
    te.add_argument("--seed-budget", type=int, help="override the config's seed_budget")
    te.add_argument("--teacher-epochs", type=int, help="override the config's teacher_epochs")
    te.add_argument("--max-read-pairs", type=int, help="grade a seeded sample of this many read-judgment pairs")
    sp = sub.add_parser("teacher-speed")
    sp.add_argument("--catalog", default=str(CATALOG))
    sp.add_argument("--pairs", type=int, default=128)
    sp.add_argument("--train-batch", type=int, default=16)
    sp.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args(argv)
    {"image": image_main, "zeroshot": zeroshot_main, "teacher": teacher_main,
     "teacher-speed": teacher_speed_main}[args.cmd](args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
