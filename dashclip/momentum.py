"""Optional momentum encoder and feature queue (BLIP/MoCo style), kept apart from model and losses."""

from __future__ import annotations

import copy

import torch
from torch import nn


@torch.no_grad()
def ema_update(target: nn.Module, online: nn.Module, momentum: float) -> None:
    """target <- momentum * target + (1 - momentum) * online, parameter by parameter."""
    for t, o in zip(target.parameters(), online.parameters()):
        t.mul_(momentum).add_(o.detach(), alpha=1.0 - momentum)


def momentum_copy(module: nn.Module) -> nn.Module:
    m = copy.deepcopy(module)
    for p in m.parameters():
        p.requires_grad_(False)
    return m


class FeatureQueue:
    """A FIFO of (E,)-embeddings and their class keys, used as extra contrastive negatives."""

    def __init__(self, size: int, dim: int):
        self.feats = torch.zeros(size, dim)
        self.keys = torch.full((size,), -1, dtype=torch.long)
        self.ptr, self.full = 0, False

    @torch.no_grad()
    def push(self, feats: torch.Tensor, keys: torch.Tensor) -> None:
        n = min(len(feats), len(self.feats))
        idx = (self.ptr + torch.arange(n)) % len(self.feats)
        self.feats[idx] = feats[:n].detach().float().cpu()
        self.keys[idx] = keys[:n].cpu()
        self.full = self.full or self.ptr + n >= len(self.feats)
        self.ptr = int((self.ptr + n) % len(self.feats))

    def get(self) -> tuple[torch.Tensor, torch.Tensor]:
        n = len(self.feats) if self.full else self.ptr
        return self.feats[:n], self.keys[:n]
