"""Evaluation metrics against hand-computed values on toy rankings."""

from __future__ import annotations

import math

import numpy as np

from dashclip.metrics import auc, ndcg_at_k, recall_at_k, reciprocal_rank


def test_ndcg_hand_computed():
    ranked = np.array([2, 3, 0])
    all_labels = np.array([3, 2, 0, 0])
    dcg = (2**2 - 1) / math.log2(2) + (2**3 - 1) / math.log2(3)
    ideal = (2**3 - 1) / math.log2(2) + (2**2 - 1) / math.log2(3)
    assert math.isclose(ndcg_at_k(ranked, all_labels, 10), dcg / ideal, rel_tol=1e-9)
    assert ndcg_at_k(np.array([3, 2, 0]), all_labels, 10) == 1.0
    assert ndcg_at_k(np.array([0, 0]), np.array([0, 0]), 10) == 0.0
    # an exact match outside the top k does not count
    assert ndcg_at_k(np.array([0, 3]), np.array([3]), 1) == 0.0


def test_mrr_and_recall():
    assert reciprocal_rank(np.array([0, 1, 3, 3])) == 1 / 3
    assert reciprocal_rank(np.array([0, 2]), level=2) == 0.5
    assert reciprocal_rank(np.array([0, 0])) == 0.0
    assert recall_at_k(np.array([3, 0, 3, 3]), n_relevant=4, k=3) == 0.5
    assert math.isnan(recall_at_k(np.array([0]), n_relevant=0))


def test_auc_hand_computed_with_ties():
    scores = np.array([0.9, 0.8, 0.8, 0.1])
    pos = np.array([1, 1, 0, 0])
    # pairs (pos, neg): (0.9,0.8)=1 (0.9,0.1)=1 (0.8,0.8)=0.5 (0.8,0.1)=1 -> 3.5/4
    assert auc(scores, pos) == 3.5 / 4
    assert auc(np.array([1.0, 2.0]), np.array([1, 0])) == 0.0
    assert math.isnan(auc(np.array([1.0]), np.array([1])))
