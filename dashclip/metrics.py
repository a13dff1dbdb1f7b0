"""Ranking metrics on graded judgments (ESCI 0–3; unlisted products count as 0)."""

from __future__ import annotations

import numpy as np
from scipy.stats import rankdata


def dcg(gains: np.ndarray) -> float:
    return float(((2.0 ** gains - 1) / np.log2(np.arange(2, len(gains) + 2))).sum())


def ndcg_at_k(ranked_labels: np.ndarray, all_labels: np.ndarray, k: int = 10) -> float:
    """nDCG@k with gains 2^label - 1; the ideal ranking sorts every judged label of the query."""
    ideal = dcg(np.sort(all_labels)[::-1][:k])
    return dcg(ranked_labels[:k]) / ideal if ideal > 0 else 0.0


def recall_at_k(ranked_labels: np.ndarray, n_relevant: int, k: int = 100, level: int = 3) -> float:
    """Fraction of the query's products with label >= level found in the top k."""
    if n_relevant == 0:
        return float("nan")
    return float((ranked_labels[:k] >= level).sum() / n_relevant)


def reciprocal_rank(ranked_labels: np.ndarray, level: int = 3) -> float:
    """1 / rank of the first product with label >= level (0 if none is ranked)."""
    hits = np.nonzero(ranked_labels >= level)[0]
    return 1.0 / (hits[0] + 1) if len(hits) else 0.0


def auc(scores: np.ndarray, positive: np.ndarray) -> float:
    """ROC AUC via the rank-sum statistic (ties get average ranks); nan without both classes."""
    pos = positive.astype(bool)
    n_pos, n_neg = int(pos.sum()), int((~pos).sum())
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    ranks = rankdata(scores)  # average ranks over ties
    return float((ranks[pos].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))
