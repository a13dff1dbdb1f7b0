"""Loss functions on hand-computed cases."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from dashclip.losses import graded_targets, itc_loss, itm_loss, qcc_loss, sample_hard_negatives


def _unit(x):
    return F.normalize(torch.as_tensor(x, dtype=torch.float32), dim=-1)


def test_itc_perfect_alignment_is_minimal_and_permutation_raises_it():
    e = torch.eye(4)
    perfect = itc_loss(e, e, 10.0)
    # hand-computed: each row softmax over [10, 0, 0, 0] -> -log(e^10 / (e^10 + 3))
    assert math.isclose(float(perfect), -math.log(math.exp(10) / (math.exp(10) + 3)), rel_tol=1e-3, abs_tol=1e-6)
    permuted = itc_loss(e, e[[1, 0, 2, 3]], 10.0)
    assert float(permuted) > float(perfect) + 4


def test_itc_duplicates_are_not_negatives():
    # rows 0 and 1 are two photos of one product class (same key)
    keys = torch.tensor([7, 7, 3])
    merged = _unit([[1, 0, 0], [1, 0, 0], [0, 0, 1]])  # duplicates share one embedding
    apart = _unit([[1, 0, 0], [0, 1, 0], [0, 0, 1]])  # duplicates pushed apart as negatives
    # plain InfoNCE rewards pushing the duplicate away ...
    assert float(itc_loss(apart, apart, 20.0)) < float(itc_loss(merged, merged, 20.0))
    # ... soft targets do the opposite: duplicates are positives, merged is the minimum
    soft_merged = itc_loss(merged, merged, 20.0, keys=keys)
    assert float(soft_merged) < float(itc_loss(apart, apart, 20.0, keys=keys))
    # and it sits at the floor: the entropy of the targets, (2 log 2 + 0) / 3 rows
    assert math.isclose(float(soft_merged), 2 * math.log(2) / 3, abs_tol=1e-3)


def test_hard_negatives_never_share_a_key_and_follow_similarity():
    sim = torch.tensor([[1.0, 0.9, -5.0, 0.8], [0.9, 1.0, -5.0, -5.0], [0.0, 0.0, 1.0, 0.0], [0.8, -5.0, 0.0, 1.0]])
    keys = torch.tensor([0, 0, 1, 2])
    gen = torch.Generator().manual_seed(0)
    draws = torch.stack([sample_hard_negatives(sim * 5, keys, gen) for _ in range(200)])
    assert (keys[draws] != keys).all()
    # row 0 may only pick 2 or 3; 3 is far more similar
    assert (draws[:, 0] == 3).float().mean() > 0.9


def test_itm_loss_prefers_correct_logits():
    good = itm_loss(torch.tensor([[-3.0, 3.0]]), torch.tensor([[3.0, -3.0]]))
    bad = itm_loss(torch.tensor([[3.0, -3.0]]), torch.tensor([[-3.0, 3.0]]))
    assert float(good) < 0.01 < 5 < float(bad)


def test_graded_targets_follow_ndcg_gains():
    t = graded_targets(torch.tensor([[3, 1, 0, 0]]))
    assert torch.allclose(t, torch.tensor([[7 / 8, 1 / 8, 0.0, 0.0]]))


def test_qcc_orders_by_graded_labels():
    q = _unit([[1.0, 0.0, 0.0]])
    products = _unit([[1, 0, 0], [0.7, 0.7, 0], [0, 0, 1]])  # exact, substitute, irrelevant
    labels = torch.tensor([[3, 2, 0]])
    aligned = qcc_loss(q, products, labels, 10.0)
    # ranking the irrelevant product on top costs more than ranking the substitute first
    q_sub = _unit([[0.7, 0.7, 0]])
    q_bad = _unit([[0, 0, 1.0]])
    assert float(aligned) < float(qcc_loss(q_sub, products, labels, 10.0)) < float(qcc_loss(q_bad, products, labels, 10.0))


def test_qcc_valid_mask_and_rows_without_positives():
    q = _unit([[1.0, 0.0], [0.0, 1.0]])
    p = _unit([[1.0, 0.0], [0.0, 1.0]])
    labels = torch.tensor([[3, 0], [0, 0]])  # second query has no relevant candidate: skipped
    full = qcc_loss(q, p, labels, 10.0)
    only_first = qcc_loss(q[:1], p, labels[:1], 10.0)
    assert torch.isclose(full, only_first)
    # masking out the competing candidate leaves only the positive: zero loss
    masked = qcc_loss(q[:1], p, labels[:1], 10.0, valid=torch.tensor([[True, False]]))
    assert float(masked) < 1e-6


def test_grouped_targets_share_a_little_mass_with_the_category():
    from dashclip.losses import grouped_targets

    titles = torch.tensor([0, 1, 2, 3])
    cats = torch.tensor([5, 5, 5, 6])
    t = grouped_targets(titles, cats, 0.2)
    assert torch.allclose(t.sum(1), torch.ones(4))
    assert torch.allclose(t[0], torch.tensor([0.8, 0.1, 0.1, 0.0]))
    assert torch.allclose(t[3], torch.tensor([0.0, 0.0, 0.0, 1.0]))  # alone in its category
