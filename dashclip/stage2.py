"""Stage 2: relevance labels at scale and a query encoder aligned into the product space.

1. Queries: the user's query log (``queries_file``), or generated from the training products
   (both with ``generate_queries``).
2. Candidates per query mined with BM25 and the stage-1 embeddings (hard negatives), hard
   negatives by product type (``dashclip.type_negatives``) plus random.
3. Seed: the user's relevance judgments (``seed_judgments``), or the rule annotator grading a
   budget of pairs (simulated "human" labels; every report says so). `dashclip.seed`.
4. Teacher: a cross-encoder fine-tuned on the seed, checked on held-out seed pairs, labels
   the other mined pairs (the type negatives: the seed's annotator, ``cand_type_labeller``).
5. QCC: the query tower (a copy of the stage-1 text tower) is trained with graded soft targets
   over each query's labelled candidates, other queries' candidates it has labels for, and
   random catalog negatives; the product tower stays frozen (its embeddings are precomputed).
   Validation: nDCG@10 on queries from the validation products, judged by the annotator.
"""

from __future__ import annotations

import json
import logging
import math
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd
import torch
from pydantic import BaseModel, ConfigDict, Field

from dashclip import columns as C
from dashclip import distributed
from dashclip.catalog import departments, load_products
from dashclip.config import TextTowerConfig
from dashclip.embed import read_queries
from dashclip.inference import embed_cached, encode_queries, encode_texts, pick_device
from dashclip.inputs import file_digests
from dashclip.io import write_parquet_atomic
from dashclip.losses import qcc_loss
from dashclip.metrics import ndcg_at_k
from dashclip.model import DashCLIP
from dashclip.queries import Annotator, generate_queries
from dashclip.retrieval import BM25Index, dense_top_k, product_search_text
from dashclip.seed import SIMULATED, heldout_queries, seed_from_judgments
from dashclip.stage1 import default_catalog, trunk_cache
from dashclip.teacher import (CrossEncoder, agreement, label_precision, pair_content_hash, save_teacher, teacher_labels,
                              teacher_product_text, train_teacher)
from dashclip.training import BatchLoader, DeviceName, LoopConfig, fit, lr_lambda, precision, to_device, training_device
from dashclip.type_negatives import TypeNegativeMiner
from dashclip.wise_ft import interpolate

log = logging.getLogger(__name__)
BY_TYPE = "by_type"  # a mined pair's column: the type miner found it (``cand_type``)


class Stage2Config(BaseModel):
    model_config = ConfigDict(extra="forbid", protected_namespaces=())

    catalog: str = Field(default_factory=default_catalog)
    queries_file: str | None = None  # the query log (query_id, query[, count]): the training queries
    generate_queries: bool | None = None  # add generated queries; None: only when no query log is given
    seed_judgments: str | None = None  # human seed (query_id, query, product_id, label); None: the rule annotator
    # who grades the mined pairs: the teacher trained on the seed, or an LLM (dashclip.llm_labels;
    # endpoint, model and key from DASHCLIP_LLM_*), cached in llm_cache (None: OUT/llm_labels.jsonl)
    labeller: Literal["teacher", "llm"] = "teacher"
    llm_cache: str | None = None
    llm_budget_pairs: int | None = Field(None, ge=0)  # most pairs sent to the LLM per run
    llm_budget_requests: int | None = Field(None, ge=0)  # most HTTP requests per run (retries included)
    queries_per_category: int = 20  # more queries, more teacher-labelled pairs: better validation nDCG
    queries_per_product: float = 1.0
    val_queries: int = 300
    seed_budget: int = 5000  # annotated ("human") pairs the teacher learns from
    seed_heldout: float = 0.2  # share of seed queries kept to measure the teacher
    # how the simulated seed's queries are drawn: "random" (in proportion to the query mix),
    # "department" (in turn from each top-level category: an equal share each) or "department_sqrt"
    # (each department's share in proportion to the square root of its query count: in between)
    seed_spread: Literal["random", "department", "department_sqrt"] = "random"
    cand_bm25: int = 8
    cand_dense: int = 8
    cand_random: int = 4  # random catalog products labelled per query (0: ~14% faster, no clear loss)
    # hard negatives by type per query (dashclip.type_negatives): the juice for "apples", the
    # vanilla yoghurt for "natural yoghurt"; 0: off
    cand_type: int = Field(2, ge=0)
    # who grades the type negatives of the queries outside the seed: "seed", the seed's grader where it
    # can grade any pair (the rule annotator of a simulated seed: the seed grows by those pairs and
    # the teacher labels as many fewer; a human seed: the teacher), or "teacher", like every mined pair
    cand_type_labeller: Literal["seed", "teacher"] = "seed"
    teacher_epochs: int = 6  # fits stage 2 in its time budget over the default seed
    teacher_lr: float = 1e-4
    teacher_batch_size: int = 32
    teacher_max_length: int = 64
    # the teacher's backbone; None: the stage-1 model's text tower (the packaged MiniLM by default).
    # e.g. {"source": "packaged:all-mpnet-base-v2"} (scripts/install_mpnet.sh; docs/encoders.md)
    teacher_text: TextTowerConfig | None = None
    teacher_length_group: int = Field(50, ge=1)  # batches per length-sorted window (1: random batches)
    # label the mined pairs under bfloat16 autocast where the hardware does bf16 (training: bf16 on CUDA only)
    teacher_bf16: bool = True
    # elsewhere, label with int8 dynamically quantised linear layers: faster, but it moves the grades
    teacher_int8: bool = False
    # where the teacher trains and labels the mined pairs: auto | cpu | cuda | cuda:N; None: ``device``
    teacher_device: DeviceName | None = None
    # a spark_jobs/label_pairs.py table: its labels replace the teacher's in-process labelling (no teacher is trained)
    labels: str | None = None
    device: DeviceName = "auto"  # QCC training: auto (CUDA when present) | cpu | cuda | cuda:N; bf16 autocast on CUDA
    epochs: int = Field(8, ge=1)
    batch_size: int = 64
    lr: float = 5e-5  # query tower
    # "frozen": product embeddings fixed (default); "projection": the product projection is
    # fine-tuned jointly on the cached fused states (the paper's end-to-end option, made cheap)
    product_tower: Literal["frozen", "projection"] = "frozen"
    lr_product: float = 1e-4
    reuse_labels_from: str | None = None  # a stage-2 output folder whose labels.parquet to reuse
    lr_proj: float = 3e-4  # query projection and temperature
    random_negatives: int = 256  # random catalog negatives per QCC batch, taken as irrelevant
    # random negatives in the leaf category of a candidate labelled at least this grade are left out
    # of the query's softmax instead of counting as irrelevant (broad queries); 0: off
    mask_category_negatives: float = Field(0.0, ge=0, le=3)
    # WiSE-FT: query encoder saved at (1 - a) * zero-shot + a * fine-tuned weights (dashclip.wise_ft),
    # and the served text-channel weight saved with it (None: the model config's). Both chosen by
    # `python -m dashclip.wise_ft` on validation queries under the independent judge (docs/evaluation.md);
    # a sweep needs a checkpoint saved with 1.0 and None.
    wise_ft_alpha: float = Field(0.5, ge=0.0, le=1.0)
    served_text_channel: float | None = Field(0.4, ge=0.0, lt=1.0)
    warmup_steps: int = 20
    patience: int = 2
    seed: int = 0
    threads: int | None = None
    cache_dir: str | None = "runs/cache"
    # processes that tokenise training batches (QCC and teacher) into pinned memory, on CUDA
    # (0, or the CPU: in the training process, as the step asks)
    loader_workers: int = Field(2, ge=0)


def qcc_targets(batch: list[tuple[str, np.ndarray, np.ndarray]], rows: np.ndarray, cat_codes: np.ndarray | None = None,
                mask_grade: float = 0.0) -> tuple[torch.Tensor, torch.Tensor]:
    """Graded labels and the valid mask of one QCC batch.

    batch: per query (text, candidate rows, labels); rows: the batch's product columns (every
    query's candidates plus random catalog products). A query's own candidates carry its labels;
    other queries' candidates are unlabelled for it and left out; the random products count as
    irrelevant, except, with ``mask_grade`` > 0, those in the leaf category (``cat_codes`` per
    product row) of one of its candidates labelled at least ``mask_grade``: left out too.
    """
    col = {r: j for j, r in enumerate(rows)}
    labels = torch.zeros(len(batch), len(rows))
    valid = torch.zeros(len(batch), len(rows), dtype=torch.bool)
    other = np.ones(len(rows), dtype=bool)
    for b in batch:
        other[[col[r] for r in b[1]]] = False
    mask = mask_grade > 0 and cat_codes is not None
    row_cats = cat_codes[rows] if mask else None  # once per batch, not per query
    for i, (_, r, lab) in enumerate(batch):
        cols = [col[x] for x in r]
        labels[i, cols] = torch.from_numpy(np.asarray(lab, dtype=np.float32))
        valid[i, cols] = True
        rand = other
        if mask:
            rel = cat_codes[np.asarray(r)[np.asarray(lab) >= mask_grade]]
            rand = other & ~np.isin(row_cats, rel)
        valid[i, torch.from_numpy(rand)] = True
    return labels, valid


def mine_candidates(queries: list[str], q_emb: np.ndarray, p_emb: np.ndarray, bm25: BM25Index,
                    cfg: Stage2Config, rng: np.random.Generator) -> list[np.ndarray]:
    """Per query: BM25 top, stage-1 embedding top (hard negatives included) and random products."""
    dense = dense_top_k(q_emb, p_emb, cfg.cand_dense) if cfg.cand_dense else np.zeros((len(queries), 0), int)
    out = []
    for i, q in enumerate(queries):
        c = np.concatenate([bm25.top_k(q, cfg.cand_bm25) if cfg.cand_bm25 else np.zeros(0, int), dense[i],
                            rng.integers(0, len(p_emb), cfg.cand_random)])
        out.append(np.unique(c))
    return out


def choose_seed(qids: list[str], n_cands: list[int], cfg: Stage2Config, rng: np.random.Generator,
                strata: list[str] | None = None, power: float = 0.0) -> tuple[set[str], set[str]]:
    """Seed queries (whole queries in a seeded random order until ``seed_budget`` pairs are spent,
    at most half of all queries so the teacher has queries of its own to label) and the held-out
    share of them, chosen by a hash of the query id (`dashclip.seed.heldout_queries`): a rerun, or
    the same seed given as a file, holds out the same queries. With ``strata`` (one label per
    query), the strata take turns: a stratum of n queries gets a share of the budget in proportion
    to n ** ``power`` (0: the same share each, whatever its size; 1: in proportion to its size)."""
    order = rng.permutation(len(qids))
    if strata is not None:
        labels = pd.Series(np.asarray(strata, dtype=object)[order])
        turn = labels.groupby(labels, sort=False).cumcount().to_numpy()  # i-th query of its stratum
        rate = labels.map(labels.value_counts() ** power).to_numpy(dtype=float)
        order = order[np.argsort((turn + 0.5) / rate, kind="stable")]
    n_seed = int(np.searchsorted(np.cumsum([n_cands[i] for i in order]), cfg.seed_budget, side="right"))
    n_seed = max(min(n_seed, len(qids) // 2), 2)
    seed = [qids[i] for i in order[:n_seed]]
    return set(seed), heldout_queries(seed, cfg.seed_heldout, cfg.seed)


def _pairs_frame(qids, queries, cands, by_type=None) -> pd.DataFrame:
    """(query_id, query, row, by_type) per candidate; ``by_type``: per query, its rows mined by type."""
    rows = [(qid, q, int(p)) for qid, q, c in zip(qids, queries, cands) for p in c]
    pairs = pd.DataFrame(rows, columns=[C.QUERY_ID, C.QUERY, "row"])
    typed = [np.isin(c, t) for c, t in zip(cands, by_type)] if by_type is not None else []
    pairs[BY_TYPE] = np.concatenate(typed) if typed else np.zeros(len(pairs), dtype=bool)
    return pairs


def val_ndcg(model: DashCLIP, queries: list[str], judgments: list[np.ndarray], p_val: np.ndarray) -> float:
    model.eval()
    q = encode_queries(model, queries)
    top = dense_top_k(q, p_val, 10)
    return float(np.mean([ndcg_at_k(j[t], j, 10) for j, t in zip(judgments, top)]))


def candidate_pairs(cfg: Stage2Config, model: DashCLIP, train_df: pd.DataFrame, p_train: np.ndarray,
                    rng: np.random.Generator) -> tuple[pd.DataFrame, list[np.ndarray], pd.DataFrame]:
    """The training queries (`training_queries`), each one's mined candidate rows, and all
    (query, product row) pairs to label."""
    queries = training_queries(cfg, train_df)
    qtexts = queries[C.QUERY].tolist()
    bm25 = BM25Index(product_search_text(train_df))
    cands = mine_candidates(qtexts, encode_texts(model, qtexts), p_train, bm25, cfg, rng)
    by_type = None
    if cfg.cand_type:  # its own generator: the other draws stay as they were
        by_type = TypeNegativeMiner(train_df).mine(qtexts, cfg.cand_type, seed=cfg.seed)
        cands = [np.union1d(c, t) for c, t in zip(cands, by_type)]
    return queries, cands, _pairs_frame(queries[C.QUERY_ID], qtexts, cands, by_type)


def training_queries(cfg: Stage2Config, train_df: pd.DataFrame) -> pd.DataFrame:
    """The query log's queries, plus generated ones when asked (or when there is no log)."""
    parts = []
    if cfg.queries_file:
        parts.append(read_queries(cfg.queries_file)[0])
    if cfg.generate_queries or (cfg.generate_queries is None and not cfg.queries_file):
        parts.append(generate_queries(train_df, cfg.queries_per_category, cfg.queries_per_product, seed=cfg.seed,
                                      prefix="gen"))
    return pd.concat(parts, ignore_index=True).drop_duplicates(C.QUERY_ID).reset_index(drop=True)


def seed_pairs(cfg: Stage2Config, queries: pd.DataFrame, pairs: pd.DataFrame, cands: list[np.ndarray],
               train_df: pd.DataFrame, rng: np.random.Generator) -> tuple[pd.DataFrame, set[str], set[str], dict]:
    """The graded seed (``query_id, query, row, label``), its query ids, the held-out ones and where
    its labels came from: the user's judgments, or the rule annotator on a budget of mined pairs."""
    if cfg.seed_judgments:
        catalog_ids = set(load_products(cfg.catalog)[C.PRODUCT_ID].astype(str))
        seed, info = seed_from_judgments(cfg.seed_judgments, train_df, catalog_ids)
        seed_q = set(seed[C.QUERY_ID])
        return seed, seed_q, heldout_queries(seed_q, cfg.seed_heldout, cfg.seed), info
    if cfg.labeller == "llm":  # no human seed: the LLM grades every mined pair, the annotator is not asked
        empty = pairs.iloc[:0].assign(**{C.LABEL: pd.Series(dtype=np.int64)})
        return empty, set(), set(), {"seed_source": "none: the LLM labels every mined pair"}
    strata = query_departments(cands, train_df) if cfg.seed_spread != "random" else None
    seed_q, heldout_q = choose_seed(queries[C.QUERY_ID].tolist(), [len(c) for c in cands], cfg, rng, strata,
                                    power=0.5 if cfg.seed_spread == "department_sqrt" else 0.0)
    seed = pairs[pairs[C.QUERY_ID].isin(seed_q)].copy()
    seed[C.LABEL] = Annotator(train_df).grade_pairs(seed[C.QUERY].tolist(), seed["row"].tolist())
    return seed, seed_q, heldout_q, {"seed_source": SIMULATED}


def query_departments(cands: list[np.ndarray], products: pd.DataFrame) -> list[str]:
    """Each query's department: the top-level category most of its mined candidates are in."""
    top = departments(products).to_numpy(dtype=object)
    return [pd.Series(top[c]).mode().iloc[0] if len(c) else "" for c in cands]


def validation_set(cfg: Stage2Config, labelled: pd.DataFrame, val_df: pd.DataFrame, train_df: pd.DataFrame,
                   out: Path) -> tuple[list[str], list[np.ndarray], bool, str]:
    """Validation queries with graded judgments (queries without a relevant product left out),
    whether those are over the training products, and who judged them: with a human seed, its
    held-out queries over the training products (their pairs never reach training); otherwise
    queries generated from the validation products, judged by the rule annotator (simulated)."""
    if cfg.seed_judgments and (out / "seed_labels.parquet").exists():
        seed = pd.read_parquet(out / "seed_labels.parquet")
        held = seed[seed[C.QUERY_ID].isin(heldout_queries(seed[C.QUERY_ID], cfg.seed_heldout, cfg.seed))]
        row = {p: i for i, p in enumerate(train_df[C.PRODUCT_ID].astype(str))}
        texts, judg = [], []
        for _, g in held.groupby(C.QUERY_ID, sort=True):
            j = np.zeros(len(train_df))
            j[g[C.PRODUCT_ID].astype(str).map(row).to_numpy(dtype=np.int64)] = g[C.LABEL].to_numpy(dtype=float)
            if (j >= 2).any():
                texts.append(g[C.QUERY].iloc[0])
                judg.append(j)
        if texts:
            return texts, judg, True, f"held-out human seed ({len(texts)} queries over the training products)"
    vq = generate_queries(val_df, 3, 0.2, seed=cfg.seed + 1, exclude=set(labelled[C.QUERY]), prefix="val")
    vq = vq.sample(min(cfg.val_queries, len(vq)), random_state=cfg.seed)
    v_ann = Annotator(val_df)
    v_judg = [v_ann.grade_all(q) for q in vq[C.QUERY]]
    keep = [i for i, j in enumerate(v_judg) if (j >= 2).any()]
    return ([vq[C.QUERY].iloc[i] for i in keep], [v_judg[i] for i in keep], False,
            f"{SIMULATED} (generated queries over the validation products)")


def fit_teacher(cfg: Stage2Config, teacher: CrossEncoder, graded: pd.DataFrame, ptext: list[str],
                progress: bool = True) -> list[float]:
    """Train the teacher on graded pairs (``query``, product ``row``, ``label``) with the config's
    teacher settings; the mean loss per epoch."""
    return train_teacher(teacher, graded[C.QUERY].tolist(), [ptext[r] for r in graded["row"]],
                         graded[C.LABEL].to_numpy(), epochs=cfg.teacher_epochs, lr=cfg.teacher_lr,
                         batch_size=cfg.teacher_batch_size, seed=cfg.seed, progress=progress,
                         length_group=cfg.teacher_length_group, device=teacher_device(cfg),
                         workers=cfg.loader_workers)


def teacher_device(cfg: Stage2Config) -> str:
    """The device name the teacher trains and labels on: ``teacher_device``, else ``device``."""
    return cfg.teacher_device or cfg.device


def teacher_agreement(teacher: CrossEncoder, graded: pd.DataFrame, ptext: list[str], bf16: bool = False,
                      int8: bool = False) -> dict[str, float]:
    """The teacher's agreement with graded pairs (accuracy, macro-F1, AUC of relevant vs not)."""
    return agreement(teacher.predict(graded[C.QUERY].tolist(), [ptext[r] for r in graded["row"]], bf16=bf16,
                                     int8=int8), graded[C.LABEL].to_numpy())


def build_label_set(cfg: Stage2Config, model: DashCLIP, train_df: pd.DataFrame, p_train: np.ndarray,
                    out: Path, progress: bool = True) -> tuple[pd.DataFrame, dict]:
    """Queries -> mined candidates -> seed annotation -> teacher -> labelled pairs."""
    rng = np.random.default_rng(cfg.seed)
    queries, cands, pairs = candidate_pairs(cfg, model, train_df, p_train, rng)
    by_type = pairs.pop(BY_TYPE).to_numpy()  # who grades a pair is said by ``source`` from here on
    seed, seed_q, heldout_q, seed_info = seed_pairs(cfg, queries, pairs, cands, train_df, rng)
    seed_train = seed[~seed[C.QUERY_ID].isin(heldout_q)]
    seed_test = seed[seed[C.QUERY_ID].isin(heldout_q)]
    records = train_df.to_dict("records")
    ptext = [teacher_product_text(r) for r in records]
    if cfg.labeller == "llm":
        from dashclip.llm_labels import llm_label_set

        if distributed.world_size() > 1:
            raise ValueError(f"labeller llm: stage 2 under torchrun ({distributed.world_size()} processes) would send "
                             "every request once per process; label in one process first and pass its folder "
                             "as reuse_labels_from")

        return llm_label_set(cfg, queries, pairs, seed, seed_q, heldout_q, seed_info, train_df, ptext, out, progress)

    outside = ~pairs[C.QUERY_ID].isin(seed_q).to_numpy()
    rest = pairs[outside].copy()
    annotator_grades_type = cfg.cand_type_labeller == "seed" and seed_info["seed_source"] == SIMULATED
    by_seed = by_type[outside] & annotator_grades_type
    typed = rest[by_seed].copy()  # the seed's annotator grades them (``cand_type_labeller``)
    if len(typed):
        typed[C.LABEL] = Annotator(train_df).grade_pairs(typed[C.QUERY].tolist(), typed["row"].tolist())
    rest = rest[~by_seed].copy()
    rest_text = [ptext[r] for r in rest["row"]]
    if distributed.is_main():  # for spark_jobs/label_pairs.py
        write_parquet_atomic(pairs_to_label(rest, train_df), out / "pairs.parquet")
    if cfg.labels:
        rest[C.LABEL], teacher_stats = labels_from_table(cfg.labels, rest[C.QUERY].tolist(), rest_text)
    else:
        rest[C.LABEL], teacher_stats = label_in_process(cfg, model, seed_train, seed_test, rest[C.QUERY].tolist(),
                                                        rest_text, ptext, out, progress)
    rest["source"] = "teacher"
    seed_train = seed_train.assign(source="seed")  # gold labels stay gold; held-out seed stays out
    labelled = pd.concat([seed_train, typed.assign(source="seed_type"), rest], ignore_index=True)
    labelled[C.PRODUCT_ID] = train_df[C.PRODUCT_ID].to_numpy()[labelled["row"].to_numpy()]
    if distributed.is_main():  # the other processes wait for these files before validation (``train_stage2``)
        write_parquet_atomic(labelled.drop(columns=["row"]), out / "labels.parquet")
        write_parquet_atomic(seed.assign(product_id=train_df[C.PRODUCT_ID].to_numpy()[seed["row"].to_numpy()])
                             .drop(columns=["row"]), out / "seed_labels.parquet")
        queries.to_csv(out / "train_queries.csv", index=False)
    stats = {**seed_info, "queries": len(queries), "pairs_mined": len(pairs), "seed_pairs": len(seed),
             "seed_queries": len(seed_q), "seed_heldout_pairs": len(seed_test), "seed_type_pairs": len(typed),
             "teacher_labelled_pairs": len(rest),
             **teacher_stats, "seed_label_counts": seed[C.LABEL].value_counts().sort_index().to_dict()}
    return labelled, stats


def pairs_to_label(rest: pd.DataFrame, train_df: pd.DataFrame) -> pd.DataFrame:
    """The teacher's share of the mined pairs with the product columns the teacher reads: the
    ``--pairs`` input of ``spark_jobs/label_pairs.py``."""
    cols = [c for c in (C.PRODUCT_ID, C.TITLE, C.DESCRIPTION, C.CATEGORY, *C.ATTRIBUTES) if c in train_df]
    prods = train_df[cols].iloc[rest["row"].to_numpy()].fillna("").reset_index(drop=True)
    return pd.concat([rest[[C.QUERY_ID, C.QUERY]].reset_index(drop=True), prods], axis=1)


def label_in_process(cfg: Stage2Config, model: DashCLIP, seed_train: pd.DataFrame, seed_test: pd.DataFrame,
                     queries: list[str], products: list[str], ptext: list[str], out: Path,
                     progress: bool = True) -> tuple[np.ndarray, dict]:
    """Fit the teacher on the seed pairs (product ``row`` into ``ptext``), save it in ``out/teacher``
    and label the (query, product text) pairs: their labels and the teacher's stats."""
    device = distributed.setup(teacher_device(cfg), pick_device)
    teacher = CrossEncoder(cfg.teacher_text or model.cfg.text, max_length=cfg.teacher_max_length).to(device)
    before = teacher_agreement(teacher, seed_test, ptext, cfg.teacher_bf16, cfg.teacher_int8)  # as it will label
    t_fit = time.perf_counter()
    losses = fit_teacher(cfg, teacher, seed_train, ptext, progress)
    t_fit = time.perf_counter() - t_fit
    after = teacher_agreement(teacher, seed_test, ptext, cfg.teacher_bf16, cfg.teacher_int8)
    log.info("teacher agreement on held-out seed: before %s after %s", before, after)
    version = distributed.main_only(lambda: save_teacher(teacher, out / "teacher", {"teacher_agreement": after,
                                                                                    "stage1": model.model_version}))
    label_prec = label_precision(device, cfg.teacher_bf16, cfg.teacher_int8)
    if distributed.is_main():
        print(f"teacher labelling: device={device}, precision={label_prec}", flush=True)
    t_pred = time.perf_counter()
    labels = split_labels(teacher, queries, products, progress=progress and distributed.is_main(),
                          bf16=cfg.teacher_bf16, int8=cfg.teacher_int8)
    teacher.cpu()
    t_pred = time.perf_counter() - t_pred
    return labels, {"teacher_version": version, "teacher_agreement_untrained": before, "teacher_agreement": after,
                    "teacher_train_loss": losses, "teacher_labels_device": str(device),
                    "teacher_labels_precision": label_prec, "teacher_train_s": round(t_fit, 1),
                    "teacher_label_s": round(t_pred, 1), "teacher_label_pairs_per_s": round(len(queries) / max(t_pred, 1e-9), 1)}


def split_labels(teacher: CrossEncoder, queries: list[str], products: list[str], **kw) -> np.ndarray:
    """``teacher_labels`` of the pairs, each training process labelling its share (all of them with
    one process); every process gets every label."""
    s = distributed.shard(len(queries))
    part = teacher_labels(teacher, distributed.local(queries, s), distributed.local(products, s), **kw)
    return np.concatenate(distributed.all_parts(part)) if s is not None else part


class LabelTableError(ValueError):
    """A label table that cannot label this run's pairs; the message says why in one line."""


def labels_from_table(folder: str, queries: list[str], products: list[str]) -> tuple[np.ndarray, dict]:
    """Labels of (query, product text) pairs from a ``label_pairs`` table: the committed partition
    of its one teacher version (or ``folder`` = that partition), matched by content hash; a pair
    the table does not hold is an error naming how many are missing."""
    part = Path(folder)
    if not part.name.startswith(f"{C.MODEL_VERSION}="):
        found = sorted(p for p in part.glob(f"{C.MODEL_VERSION}=*") if p.is_dir())
        if len(found) != 1:
            raise LabelTableError(f"labels {folder}: expected one teacher version ({C.MODEL_VERSION}=...) in the table, "
                             f"found {[p.name for p in found]}; pass the partition folder of the one to use")
        part = found[0]
    version = part.name.split("=", 1)[1]
    table = pd.read_parquet(part, columns=[C.CONTENT_HASH, C.LABEL]).drop_duplicates(C.CONTENT_HASH)
    want = pd.Series([pair_content_hash(q, p, version) for q, p in zip(queries, products)])
    labels = want.map(table.set_index(C.CONTENT_HASH)[C.LABEL])
    missing = int(labels.isna().sum())
    if missing:
        i = int(np.flatnonzero(labels.isna().to_numpy())[0])
        raise LabelTableError(f"labels {part}: no label for {missing} of {len(want)} pairs (first: query {queries[i]!r}); "
                         f"label the run's pairs.parquet with spark_jobs/label_pairs.py and teacher {version}")
    return labels.to_numpy(dtype=np.float64), {"teacher_version": version, "labels_from": str(part)}


def reuse_label_set(src: Path, train_df: pd.DataFrame, out: Path) -> tuple[pd.DataFrame, dict]:
    """Labels built by an earlier stage-2 run over the same training products (ablations)."""
    labelled = pd.read_parquet(src / "labels.parquet")
    row = {p: i for i, p in enumerate(train_df[C.PRODUCT_ID])}
    missing = set(labelled[C.PRODUCT_ID]) - set(row)
    if missing:
        raise ValueError(f"reuse_labels_from={src}: {len(missing)} labelled products are not training products")
    labelled["row"] = labelled[C.PRODUCT_ID].map(row).to_numpy()
    for name in ("labels.parquet", "seed_labels.parquet", "train_queries.csv"):
        if distributed.is_main():
            (out / name).write_bytes((src / name).read_bytes())
    prev = json.loads((src / "stage2_summary.json").read_text())
    stats = {k: v for k, v in prev.items() if k.startswith(("queries", "pairs", "seed", "teacher", "labeller", "llm"))}
    stats["labels_reused_from"] = str(src)
    return labelled, stats


def qcc_optimizer(model: DashCLIP, cfg: Stage2Config, steps: int):
    """AdamW over the query tower (``lr``), its projection and the temperature (``lr_proj``) and, for
    ``product_tower="projection"``, the product projection (``lr_product``); the parameters to clip
    and the warm-up + cosine schedule over ``steps``."""
    model.logit_scale.requires_grad_(True)
    groups = [{"params": list(model.query_tower.parameters()), "lr": cfg.lr},
              {"params": list(model.query_proj.parameters()) + [model.logit_scale], "lr": cfg.lr_proj}]
    if cfg.product_tower == "projection":
        groups.append({"params": list(model.product_proj.parameters()), "lr": cfg.lr_product})
    opt = torch.optim.AdamW(groups, weight_decay=0.01)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: lr_lambda(s, cfg.warmup_steps, steps))
    return opt, sched, [p for g in groups for p in g["params"]]


@dataclass
class ProductSide:
    """The stage-1 product tower's outputs the QCC loss reads: fixed embeddings, or (joint) the
    fused states the fine-tuned product projection embeds."""

    model: DashCLIP
    p_train: np.ndarray  # (N_train, E)
    p_val: np.ndarray  # (N_val, E)
    fused_train: torch.Tensor  # (N_train, H)
    fused_val: torch.Tensor  # (N_val, H)
    joint: bool

    def train(self, rows: np.ndarray) -> torch.Tensor:
        """The rows' product embeddings on the model's device (the fixed ones are kept on the host)."""
        dev = next(self.model.parameters()).device
        if self.joint:
            return self.model.embed_fused(self.fused_train[torch.as_tensor(rows)].to(dev))
        return torch.from_numpy(self.p_train)[rows].to(dev)

    def val(self) -> np.ndarray:
        if not self.joint:
            return self.p_val
        with torch.no_grad():
            return self.model.embed_fused(self.fused_val.to(next(self.model.parameters()).device)).cpu().numpy()


def fit_query_tower(cfg: Stage2Config, model: DashCLIP, labelled: pd.DataFrame, products: ProductSide,
                    cat_codes: np.ndarray, val: tuple[list[str], list[np.ndarray]], t0: float, progress: bool):
    """QCC training of the query tower (epoch 0: the stage-1 text tower as query tower) on the
    model's device; batches are drawn and their targets built on the host."""
    dev = next(model.parameters()).device
    groups = {qid: (g[C.QUERY].iloc[0], g["row"].to_numpy(), g[C.LABEL].to_numpy(dtype=np.float32))
              for qid, g in labelled.groupby(C.QUERY_ID)}
    qids = list(groups)
    n_products = len(products.p_train)
    opt, sched, params = qcc_optimizer(model, cfg, cfg.epochs * math.ceil(len(qids) / cfg.batch_size))
    rng = np.random.default_rng(cfg.seed)

    def prepare(batch: list) -> tuple[list, dict[str, torch.Tensor]]:
        mine = distributed.local(batch, distributed.shard(len(batch)))
        return batch, model.tokenize([b[0] for b in mine])

    def epoch_batches(epoch: int) -> BatchLoader:
        order = rng.permutation(len(qids))
        batches = [[groups[qids[i]] for i in order[s:s + cfg.batch_size]] for s in range(0, len(order), cfg.batch_size)]
        return BatchLoader(batches, prepare, dev, cfg.loader_workers)

    def step(prepared: tuple[list, dict[str, torch.Tensor]]):  # the queries of every process's share (gathered)
        batch, tokens = prepared
        rows = np.unique(np.concatenate([b[1] for b in batch] + [rng.integers(0, n_products, cfg.random_negatives)]))
        labels, valid = (t.to(dev) for t in qcc_targets(batch, rows, cat_codes, cfg.mask_category_negatives))
        q = distributed.gather(model.encode_queries(**to_device(tokens, dev)), distributed.shard(len(batch)))
        scale = model.logit_scale.exp().clamp(max=100.0)
        return {"qcc": qcc_loss(q, products.train(rows), labels, scale, valid)}, len(batch)

    def validation() -> dict:
        return {"val_ndcg@10": val_ndcg(model, val[0], val[1], products.val()),
                "temperature": (1 / model.logit_scale.exp()).item()}

    history = [distributed.main_only(lambda: {"epoch": 0, "val_ndcg@10": val_ndcg(model, val[0], val[1], products.val())})]
    log.info("stage 2 start: val nDCG@10 (stage-1 text tower as query tower) %.4f", history[0]["val_ndcg@10"])
    loop = LoopConfig(name="stage2", epochs=cfg.epochs, objective="qcc", monitor="val_ndcg@10", mode="max",
                      patience=cfg.patience)
    return fit(model, opt, sched, epoch_batches, step, loop, validate=validation, params=params, history=history,
               best=history[0]["val_ndcg@10"], t_start=t0, progress=progress, device=dev)


def train_stage2(cfg: Stage2Config, stage1_dir: str | Path, out: str | Path, progress: bool = True) -> dict:
    t0 = time.perf_counter()
    device = training_device(cfg.device, "stage 2")  # first: a device that is absent stops the run here
    distributed.setup(teacher_device(cfg), pick_device)  # and the teacher's, rather than after mining and seeding
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    products = load_products(cfg.catalog)
    model = DashCLIP.from_pretrained(stage1_dir)
    model.add_query_tower()
    model.to(device)
    cache = trunk_cache(model, products, cfg.cache_dir, progress, workers=1)
    split = products[C.SPLIT].to_numpy()
    tr_idx, va_idx = np.nonzero(split == "train")[0], np.nonzero(split == "val")[0]
    if len(va_idx) == 0:
        va_idx = tr_idx[: max(1, len(tr_idx) // 5)]
    emb = embed_cached(model, cache, torch.arange(len(products)))
    p_all, fused_all = emb["product"].numpy(), emb["fused"]  # stage-1 product tower
    train_df, val_df = products.iloc[tr_idx].reset_index(drop=True), products.iloc[va_idx].reset_index(drop=True)
    side = ProductSide(model, p_all[tr_idx], p_all[va_idx], fused_all[torch.as_tensor(tr_idx)],
                       fused_all[torch.as_tensor(va_idx)], cfg.product_tower == "projection")

    if cfg.reuse_labels_from:
        labelled, stats = reuse_label_set(Path(cfg.reuse_labels_from), train_df, out)
    else:
        labelled, stats = build_label_set(cfg, model, train_df, side.p_train, out, progress)
    distributed.barrier()  # rank 0 has written the label files validation reads
    t_labels = time.perf_counter() - t0
    vq_texts, v_judg, val_on_train, val_source = validation_set(cfg, labelled, val_df, train_df, out)
    if val_on_train:  # held-out seed queries are judged over the training products
        side = replace(side, p_val=side.p_train, fused_val=side.fused_train)
    cat_codes = pd.factorize(train_df[C.CATEGORY].fillna("").to_numpy())[0]
    result = fit_query_tower(cfg, model, labelled, side, cat_codes, (vq_texts, v_judg), t0, progress)
    history = result.history
    if cfg.wise_ft_alpha < 1.0:
        interpolate(model, cfg.wise_ft_alpha)
    if cfg.served_text_channel is not None:
        model.cfg.text_channel = cfg.served_text_channel
    summary = {**stats, "label_s": round(t_labels, 1), "train_s": round(time.perf_counter() - t0, 1),
               "best_val_ndcg@10": result.best, "val_queries": len(vq_texts), "validation_judged_by": val_source,
               "epochs_run": len(history) - 1, "wise_ft_alpha": cfg.wise_ft_alpha, "device": str(device),
               "precision": precision(device), "processes": distributed.world_size()}
    return distributed.main_only(lambda: save_stage2(model, cfg, stage1_dir, out, summary, history))


def save_stage2(model: DashCLIP, cfg: Stage2Config, stage1_dir: str | Path, out: Path, summary: dict,
                history: list[dict]) -> dict:
    """The checkpoint, its history and summary in ``out`` (rank 0's work under torchrun); the summary
    with the checkpoint's version."""
    stage1_version = json.loads((Path(stage1_dir) / "meta.json").read_text())["model_version"]
    version = model.save_pretrained(out, stage="stage2", extra_meta={"train_config": cfg.model_dump(), "summary": summary,
                                                                      "inputs": file_digests(cfg.queries_file, cfg.seed_judgments),
                                                                      "wise_ft_alpha": cfg.wise_ft_alpha,
                                                                      "history": history, "stage1": str(stage1_dir),
                                                                      "stage1_version": stage1_version})
    (out / "history.json").write_text(json.dumps(history, indent=2))
    summary["model_version"] = version
    (out / "stage2_summary.json").write_text(json.dumps(summary, indent=2, default=str))
    return summary
