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


class WeightAverage:
    """An exponential moving average of a model's floating-point state (parameters and buffers such
    as batch-norm statistics), for validating and saving averaged weights. Bias-corrected as in
    Adam: the average starts at zero and is divided by ``1 - decay**n`` after ``n`` updates, so it
    is a proper weighted mean of the weights seen so far, with no share left to the initial ones."""

    def __init__(self, module: nn.Module, decay: float):
        if not 0.0 < decay < 1.0:
            raise ValueError(f"decay={decay}: must be in (0, 1)")
        self.decay, self.updates = decay, 0
        self.sums = {k: torch.zeros_like(v) for k, v in module.state_dict().items() if v.is_floating_point()}

    @torch.no_grad()
    def update(self, module: nn.Module) -> None:
        cur = module.state_dict()
        keys = list(self.sums)
        torch._foreach_lerp_([self.sums[k] for k in keys], [cur[k].detach() for k in keys], 1.0 - self.decay)
        self.updates += 1

    @torch.no_grad()
    def averaged(self) -> dict[str, torch.Tensor]:
        if self.updates == 0:
            raise RuntimeError("WeightAverage: no update yet")
        c = 1.0 - self.decay ** self.updates
        return {k: v / c for k, v in self.sums.items()}

    @torch.no_grad()
    def swap(self, module: nn.Module) -> dict[str, torch.Tensor]:
        """Load the averaged weights into the module; returns the weights they replaced, for
        ``restore``."""
        cur = module.state_dict()
        saved = {k: cur[k].detach().clone() for k in self.sums}
        for k, v in self.averaged().items():
            cur[k].copy_(v)
        return saved

    @staticmethod
    @torch.no_grad()
    def restore(module: nn.Module, saved: dict[str, torch.Tensor]) -> None:
        cur = module.state_dict()
        for k, v in saved.items():
            cur[k].copy_(v)


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
