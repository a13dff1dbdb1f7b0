"""Image-grounded text encoder (BLIP style): text tokens self-attend and cross-attend to image patches.

Pre-norm residual layers with tanh gates: at initialisation the output is close to the input
token states, so the product embedding starts as the text tower's sentence embedding and learns
what the image adds. Products without an image skip cross-attention (the text-only path).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from dashclip.config import FusionConfig


class _Attention(nn.Module):
    def __init__(self, dim: int, heads: int, dropout: float):
        super().__init__()
        self.heads, self.dropout = heads, dropout
        self.q = nn.Linear(dim, dim)
        self.kv = nn.Linear(dim, 2 * dim)
        self.out = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor, ctx: torch.Tensor, ctx_mask: torch.Tensor) -> torch.Tensor:
        B, T, D = x.shape
        q = self.q(x).view(B, T, self.heads, -1).transpose(1, 2)  # (B, h, T, d)
        k, v = self.kv(ctx).view(B, ctx.shape[1], 2, self.heads, -1).permute(2, 0, 3, 1, 4)  # (B, h, S, d)
        bias = torch.zeros(ctx_mask.shape, dtype=x.dtype, device=x.device).masked_fill(~ctx_mask, -1e4)
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=bias[:, None, None, :],
                                           dropout_p=self.dropout if self.training else 0.0)
        return self.out(y.transpose(1, 2).reshape(B, T, D))


class FusionLayer(nn.Module):
    def __init__(self, dim: int, heads: int, cfg: FusionConfig):
        super().__init__()
        self.ln_self, self.ln_cross, self.ln_ffn = nn.LayerNorm(dim), nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.self_attn = _Attention(dim, heads, cfg.dropout)
        self.cross_attn = _Attention(dim, heads, cfg.dropout)
        self.ffn = nn.Sequential(nn.Linear(dim, 2 * dim), nn.GELU(), nn.Dropout(cfg.dropout), nn.Linear(2 * dim, dim))
        self.gates = nn.Parameter(torch.full((3,), float(cfg.gate_init)))

    def forward(self, x: torch.Tensor, mask: torch.Tensor, img: torch.Tensor, img_mask: torch.Tensor,
                has_image: torch.Tensor) -> torch.Tensor:
        g = torch.tanh(self.gates)
        h = self.ln_self(x)
        x = x + g[0] * self.self_attn(h, h, mask)
        cross = self.cross_attn(self.ln_cross(x), img, img_mask)
        x = x + g[1] * cross * has_image[:, None, None].to(x.dtype)  # text-only rows skip the image
        return x + g[2] * self.ffn(self.ln_ffn(x))


class FusionEncoder(nn.Module):
    """(B, T, H) text states + (B, P, D_img) patches -> (B, T, H) image-grounded states."""

    def __init__(self, text_dim: int, image_dim: int, cfg: FusionConfig):
        super().__init__()
        heads = max(1, text_dim // 64)
        self.img_in = nn.Sequential(nn.Linear(image_dim, text_dim), nn.LayerNorm(text_dim))
        self.layers = nn.ModuleList(FusionLayer(text_dim, heads, cfg) for _ in range(cfg.layers))

    def image_tokens(self, patches: torch.Tensor) -> torch.Tensor:
        """(B, P, D_img) -> (B, P, H): compute once, reuse for matched and negative pairs."""
        return self.img_in(patches)

    def forward(self, text_states: torch.Tensor, text_mask: torch.Tensor, img: torch.Tensor,
                has_image: torch.Tensor) -> torch.Tensor:
        """img: image tokens from ``image_tokens`` (B, P, H)."""
        img_mask = torch.ones(img.shape[:2], dtype=torch.bool, device=img.device)
        mask = text_mask.bool()
        x = text_states
        for layer in self.layers:
            x = layer(x, mask, img, img_mask, has_image)
        return x
