"""The LLM as stage 2's labeller (``labeller: llm``): it grades the mined pairs instead of the teacher.

The endpoint, model and key come from the environment (``DASHCLIP_LLM_BASE_URL``, ``_MODEL``,
``_API_KEY``; `dashclip.llm_labeller`). Labels are cached as they arrive (`dashclip.llm_cache`,
default ``OUT/llm_labels.jsonl``), so a rerun pays only for what is missing, and a budget bounds
the spend. With a human seed, its held-out pairs are graded too and the LLM's agreement with them
is reported; the seed's training pairs keep their gold labels. Without one, the LLM labels every
mined pair and there is no seed (the rule annotator is not asked).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from dashclip import columns as C
from dashclip.io import write_parquet_atomic
from dashclip.llm_cache import CachedLLMLabeller, LabelCache
from dashclip.llm_labeller import UNLABELLED, LLMLabeller, LLMLabellerConfig
from dashclip.teacher import agreement

LLM_CACHE = "llm_labels.jsonl"


def make_labeller(cfg, out: Path) -> CachedLLMLabeller:
    """cfg: Stage2Config (llm_cache, llm_budget_pairs, llm_budget_requests)."""
    llm = LLMLabellerConfig.from_env()
    cache = LabelCache(cfg.llm_cache or Path(out) / LLM_CACHE, llm.model)
    return CachedLLMLabeller(LLMLabeller(llm), cache, cfg.llm_budget_pairs, cfg.llm_budget_requests)


def llm_label_set(cfg, queries: pd.DataFrame, pairs: pd.DataFrame, seed: pd.DataFrame, seed_q: set[str],
                  heldout_q: set[str], seed_info: dict, train_df: pd.DataFrame, ptext: list[str], out: Path,
                  progress: bool = True) -> tuple[pd.DataFrame, dict]:
    """Mined pairs of non-seed queries graded by the LLM -> labelled pairs (with the seed's gold
    training pairs) and stats; pairs it could not label (failed, over budget) are left out."""
    labeller = make_labeller(cfg, out)
    seed_train = seed[~seed[C.QUERY_ID].isin(heldout_q)].assign(source="seed")
    seed_test = seed[seed[C.QUERY_ID].isin(heldout_q)]
    stats = {**seed_info, "labeller": "llm", "llm_model": labeller.cache.model,
             "llm_prompt_version": labeller.cache.prompt_version}
    if len(seed_test):  # agreement first: the budget goes to the measurement before the bulk
        res = labeller.label(seed_test[C.QUERY].tolist(), [ptext[r] for r in seed_test["row"]], progress)
        ok = res.labels != UNLABELLED
        stats["llm_agreement"] = agreement(np.eye(4)[res.labels[ok]], seed_test[C.LABEL].to_numpy()[ok])
        stats["llm_agreement_unlabelled_pairs"] = int((~ok).sum())
    rest = pairs[~pairs[C.QUERY_ID].isin(seed_q)].copy()
    res = labeller.label(rest[C.QUERY].tolist(), [ptext[r] for r in rest["row"]], progress)
    rest[C.LABEL] = res.labels.astype(np.float32)
    rest = rest[res.labels != UNLABELLED].assign(source="llm")
    stats["llm_labels"] = res.summary()
    labelled = pd.concat([seed_train, rest], ignore_index=True)
    labelled[C.PRODUCT_ID] = train_df[C.PRODUCT_ID].to_numpy()[labelled["row"].to_numpy()]
    if labelled.empty:
        raise ValueError(f"the LLM labelled no pair ({res.summary()}); see the log for why")
    write_parquet_atomic(labelled.drop(columns=["row"]), out / "labels.parquet")
    write_parquet_atomic(seed.assign(product_id=train_df[C.PRODUCT_ID].to_numpy()[seed["row"].to_numpy()])
                         .drop(columns=["row"]), out / "seed_labels.parquet")
    queries.to_csv(out / "train_queries.csv", index=False)
    stats.update({"queries": len(queries), "pairs_mined": len(pairs), "seed_pairs": len(seed),
                  "seed_queries": len(seed_q), "seed_heldout_pairs": len(seed_test), "llm_labelled_pairs": len(rest)})
    return labelled, stats
