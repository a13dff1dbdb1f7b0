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
    """An exponential moving average of a model's trainable parameters and floating-point buffers
    (batch-norm statistics), for validating and saving averaged weights. Bias-corrected as in Adam,
    kept in its running-mean form: the n-th update moves the average towards the weights by
    ``(1 - decay) / (1 - decay**n)`` (1 at the first), so it is a proper weighted mean of the weights
    seen so far, with no share left to the initial ones, and a buffer that never changes stays
    bit-identical. Frozen parameters are left out: they never change, and in DashCLIP they are
    three quarters of the weights."""

    def __init__(self, module: nn.Module, decay: float):
        if not 0.0 < decay < 1.0:
            raise ValueError(f"decay={decay}: must be in (0, 1)")
        self.decay, self.updates = decay, 0
        tracked = {k for k, p in module.named_parameters() if p.requires_grad}
        tracked |= {k for k, b in module.named_buffers() if b.is_floating_point()}
        self.avg = {k: v.detach().clone() for k, v in module.state_dict().items() if k in tracked}

    @torch.no_grad()
    def update(self, module: nn.Module) -> None:
        self.updates += 1
        cur = module.state_dict()
        keys = list(self.avg)
        step = (1.0 - self.decay) / (1.0 - self.decay ** self.updates)
        torch._foreach_lerp_([self.avg[k] for k in keys], [cur[k].detach() for k in keys], step)

    @torch.no_grad()
    def swap(self, module: nn.Module) -> dict[str, torch.Tensor]:
        """Load the averaged weights into the module; returns the weights they replaced, for
        ``restore``."""
        if self.updates == 0:
            raise RuntimeError("WeightAverage: no update yet")
        cur = module.state_dict()
        saved = {k: cur[k].detach().clone() for k in self.avg}
        for k, v in self.avg.items():
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
