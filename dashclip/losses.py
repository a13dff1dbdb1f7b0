"""Losses as pure functions of embeddings, temperature (logit scale) and targets.

- ``itc_loss``: symmetric image–text contrastive loss with soft targets, so that items sharing a
  class key (same title / class) are positives for each other rather than negatives.
- ``itm_loss`` + ``sample_hard_negatives``: image–text matching on hard negatives drawn from the
  similarity matrix (vectorised, one ``torch.multinomial`` per direction).
- ``qcc_loss``: query–catalog contrastive loss (stage 2): InfoNCE over candidate products where
  graded relevance labels become soft targets.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def same_key_targets(keys: torch.Tensor) -> torch.Tensor:
    """(B,) integer class keys -> (B, B) row-normalised targets, 1 where keys match."""
    t = (keys[:, None] == keys[None, :]).float()
    return t / t.sum(1, keepdim=True)


def grouped_targets(keys: torch.Tensor, group_keys: torch.Tensor, group_weight: float) -> torch.Tensor:
    """Same-key targets with ``group_weight`` of each row's mass spread over same-group rows.

    E.g. keys = titles, groups = leaf categories: the exact item keeps most of the mass and
    other items of its category share the rest, instead of being pushed away as negatives.
    Rows with no other group member keep all mass on their key.
    """
    same = (keys[:, None] == keys[None, :]).float()
    group = ((group_keys[:, None] == group_keys[None, :]) & (same == 0)).float()
    g_sum = group.sum(1, keepdim=True)
    w = torch.where(g_sum > 0, torch.full_like(g_sum, group_weight), torch.zeros_like(g_sum))
    return (1 - w) * same / same.sum(1, keepdim=True) + w * group / g_sum.clamp_min(1.0)


def soft_cross_entropy(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Mean over rows of -sum_j targets_ij log softmax(logits)_ij."""
    return -(targets * F.log_softmax(logits, dim=-1)).sum(-1).mean()


def itc_loss(a: torch.Tensor, b: torch.Tensor, logit_scale: torch.Tensor | float,
             keys: torch.Tensor | None = None, targets: torch.Tensor | None = None) -> torch.Tensor:
    """Symmetric contrastive loss between aligned rows of a (B, E) and b (B, E), L2-normalised.

    With ``keys`` (B,), rows sharing a key are all positives (soft targets); ``targets`` (B, B)
    gives the soft targets directly (e.g. ``grouped_targets``); with neither, the diagonal is
    the only positive.
    """
    logits = logit_scale * a @ b.t()  # (B, B)
    if targets is None:
        targets = same_key_targets(keys) if keys is not None else torch.eye(len(a), device=a.device)
    return 0.5 * (soft_cross_entropy(logits, targets) + soft_cross_entropy(logits.t(), targets.t()))


def sample_hard_negatives(sim: torch.Tensor, keys: torch.Tensor, generator: torch.Generator | None = None
                          ) -> torch.Tensor:
    """For each row i of a (B, B) similarity, draw a column j with a different key, ∝ softmax(sim_i).

    Rows with no valid negative (all keys equal) get their own index back; callers mask them.
    """
    valid = keys[:, None] != keys[None, :]
    weights = torch.softmax(sim.detach().float(), dim=1) * valid
    has = valid.any(1)
    weights = torch.where(has[:, None], weights + 1e-12 * valid, torch.eye(len(sim), device=sim.device))
    return torch.multinomial(weights, 1, generator=generator).squeeze(1)


def itm_loss(pos_logits: torch.Tensor, neg_logits: torch.Tensor) -> torch.Tensor:
    """Binary matching loss: (P, 2) logits for matched pairs, (N, 2) for hard negatives."""
    logits = torch.cat([pos_logits, neg_logits])
    labels = torch.cat([torch.ones(len(pos_logits), dtype=torch.long, device=logits.device),
                        torch.zeros(len(neg_logits), dtype=torch.long, device=logits.device)])
    return F.cross_entropy(logits, labels)


def graded_targets(labels: torch.Tensor, gain: str = "exp") -> torch.Tensor:
    """(B, C) graded labels in 0..3 (negative = ignore) -> row-normalised soft targets.

    Gains follow nDCG: exp -> 2^label - 1, so an exact match (3) weighs 7x a partial one (1).
    """
    lab = labels.clamp_min(0).float()
    g = (torch.pow(2.0, lab) - 1.0) if gain == "exp" else lab
    s = g.sum(1, keepdim=True)
    return torch.where(s > 0, g / s.clamp_min(1e-12), torch.zeros_like(g))


def qcc_loss(q: torch.Tensor, p: torch.Tensor, labels: torch.Tensor, logit_scale: torch.Tensor | float,
             valid: torch.Tensor | None = None) -> torch.Tensor:
    """Query–catalog contrastive loss.

    q: (B, E) query embeddings; p: (C, E) candidate product embeddings (positives, mined hard
    negatives and in-batch products); labels: (B, C) graded relevance of each candidate for each
    query (0 = irrelevant); valid: optional (B, C) mask of candidates that take part for a row
    (e.g. exclude unlabelled in-batch products that might be relevant). Rows without any
    relevant candidate are skipped.
    """
    logits = logit_scale * q @ p.t()  # (B, C)
    if valid is not None:
        logits = logits.masked_fill(~valid, float("-inf"))
        labels = labels.masked_fill(~valid, 0)
    targets = graded_targets(labels)
    keep = targets.sum(1) > 0
    if not keep.any():
        return logits.sum() * 0.0
    logp = F.log_softmax(logits[keep], dim=-1)
    t = targets[keep]
    return -(t * torch.where(t > 0, logp, torch.zeros_like(logp))).sum(-1).mean()
