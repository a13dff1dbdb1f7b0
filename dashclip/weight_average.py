"""An exponential moving average of a model's weights, validated and saved in place of the last ones
(stage 1's ``weight_average``)."""

from __future__ import annotations

import torch
from torch import nn


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
