"""The production image tower (EfficientNet-Lite) on its tiny config: it builds, runs forward from
pixels and from its frozen trunk's output, and only its top blocks train."""

from __future__ import annotations

import torch

from dashclip.config import load_model_config
from dashclip.model import DashCLIP


def test_tiny_effnet_config_builds_and_runs_forward():
    torch.manual_seed(0)
    cfg = load_model_config("tiny-effnet")
    assert cfg.image.kind == "efficientnet_lite"
    model = DashCLIP(cfg).eval()
    pixels = torch.rand(3, 3, cfg.image.image_size, cfg.image.image_size)
    has = torch.tensor([True, True, False])
    tok = model.tokenize(["red shirt", "blue jeans", ""])
    emb = model.encode_products(pixels, has, tok["input_ids"], tok["attention_mask"])
    assert emb.shape == (3, cfg.embed_dim) and torch.isfinite(emb).all()
    torch.testing.assert_close(emb.norm(dim=1), torch.ones(3))
    # the trunk's output is a CNN feature map the training path takes as input (trunk cache)
    with torch.no_grad():
        trunk = model.image_tower.trunk(pixels)
        out = model(trunk, has, model.text_tower(tok["input_ids"], tok["attention_mask"]), tok["attention_mask"])
    assert trunk.dim() == 4  # (B, C, h, w)
    torch.testing.assert_close(out["product"], emb, atol=1e-5, rtol=1e-5)
    # stage 1 fine-tunes the top block(s) of the CNN and keeps the rest frozen
    trainable = [p for p in model.image_tower.parameters() if p.requires_grad]
    frozen = [p for p in model.image_tower.parameters() if not p.requires_grad]
    assert trainable and frozen
