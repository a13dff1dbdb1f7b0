"""The DashCLIP model: image and text towers, the fusion encoder, projections and the query tower.

``forward`` takes tower-trunk outputs (cacheable) and returns named, L2-normalised embeddings
plus the logit scale; it does not tokenise, sample negatives or read the schedule.

Training works in the shared space (``embed_dim``). The embeddings served to the rest of the stack
(``dashclip.inference``: the embed CLI, Spark, the feature store, the ads server) can append the
frozen text tower's sentence embedding (``text_channel``, see ``with_text_channel``); ``out_dim``
is their size.

Checkpoints are Hugging Face style: ``config.json`` (the DashCLIPConfig), ``model.safetensors``,
``meta.json`` (model version, stage, whether a query tower is present, the training config),
``text_config.json`` / ``vision_config.json`` (backbone architectures, so loading needs no
package weights) and ``tokenizer/``. ``DashCLIP.from_pretrained(dir)`` loads one back after checking
it (``dashclip.checkpoint``): a damaged or changed checkpoint raises ``CheckpointError``.
"""

from __future__ import annotations

import copy
import json
import math
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

from dashclip import checkpoint as ckpt
from dashclip.checkpoint import CheckpointError  # noqa: F401 - raised by from_pretrained
from dashclip.config import DashCLIPConfig
from dashclip.fusion import FusionEncoder
from dashclip.towers import TextTower, build_image_tower, build_text_tower, l2n, masked_pool


class DashCLIP(nn.Module):
    def __init__(self, cfg: DashCLIPConfig, with_query_tower: bool = False):
        super().__init__()
        self.cfg = cfg
        self.image_tower = build_image_tower(cfg.image)
        self.text_tower = build_text_tower(cfg.text)
        for p in self.text_tower.parameters():  # stage 1 keeps the text backbone frozen
            p.requires_grad_(False)
        H, Di, E = self.text_tower.hidden, self.image_tower.out_dim, cfg.embed_dim
        self.fusion = FusionEncoder(H, Di, cfg.fusion)
        self.image_proj = nn.Linear(Di, E)
        self.text_proj = nn.Linear(H, E)
        self.product_proj = nn.Linear(H, E)
        self.product_proj.load_state_dict(self.text_proj.state_dict())  # start where the text space is
        self.itm_head = nn.Linear(H, 2)
        self.logit_scale = nn.Parameter(torch.tensor(math.log(1.0 / cfg.temperature)),
                                        requires_grad=cfg.learn_temperature)
        # token count of the empty text ([CLS] [SEP]): rows with no more tokens are text-less
        self.n_empty_tokens = int(self.text_tower.tokenize([""])["attention_mask"].sum())
        self.query_tower: TextTower | None = None
        self.query_proj: nn.Linear | None = None
        if with_query_tower:
            self.add_query_tower()

    # --- stage 2: the query tower starts as a trainable copy of the text tower -------------
    def add_query_tower(self) -> None:
        self.query_tower = copy.deepcopy(self.text_tower)
        for p in self.query_tower.parameters():
            p.requires_grad_(True)
        self.query_proj = copy.deepcopy(self.text_proj)

    @property
    def has_query_tower(self) -> bool:
        return self.query_tower is not None

    # --- pieces, on trunk outputs -----------------------------------------------------------
    def patches(self, image_trunk: torch.Tensor) -> torch.Tensor:
        return self.image_tower.head(image_trunk)  # (B, P, Di)

    def embed_image(self, patches: torch.Tensor) -> torch.Tensor:
        return l2n(self.image_proj(patches.mean(1)))  # (B, E)

    def embed_text(self, text_states: torch.Tensor, text_mask: torch.Tensor) -> torch.Tensor:
        return l2n(self.text_proj(self.text_tower.pool(text_states, text_mask)))  # (B, E)

    def image_tokens(self, patches: torch.Tensor) -> torch.Tensor:
        return self.fusion.image_tokens(patches)  # (B, P, H)

    def fuse(self, text_states, text_mask, image_tokens, has_image) -> torch.Tensor:
        fused = self.fusion(text_states, text_mask, image_tokens, has_image)  # (B, T, H)
        return masked_pool(fused, text_mask, "mean")  # (B, H)

    def embed_fused(self, fused_pooled: torch.Tensor) -> torch.Tensor:
        return l2n(self.product_proj(fused_pooled))  # (B, E)

    def product_embedding(self, fused_pooled: torch.Tensor, image_emb: torch.Tensor, fusion_mask: torch.Tensor,
                          has_image: torch.Tensor) -> torch.Tensor:
        """The product embedding: the fused one, or (``text_less="image"``) the image embedding
        for rows with an image and only the empty text."""
        product = self.embed_fused(fused_pooled)
        if self.cfg.text_less == "image":
            text_less = (fusion_mask.sum(1) <= self.n_empty_tokens) & has_image.bool()
            product = torch.where(text_less[:, None], image_emb, product)
        return product

    def itm_logits(self, fused_pooled: torch.Tensor) -> torch.Tensor:
        return self.itm_head(fused_pooled)  # (B, 2): not matched / matched

    def forward(self, image_trunk: torch.Tensor, has_image: torch.Tensor, text_states: torch.Tensor,
                text_mask: torch.Tensor, fusion_states: torch.Tensor | None = None,
                fusion_mask: torch.Tensor | None = None, fusion_has_image: torch.Tensor | None = None,
                ) -> dict[str, torch.Tensor]:
        """Embeddings from trunk outputs. The fusion encoder may be given other text (e.g. the
        empty text, for image-grounded product embeddings) or other image flags than the text
        tower; by default it sees the same inputs."""
        patches = self.patches(image_trunk)
        img_tokens = self.image_tokens(patches)
        f_mask = text_mask if fusion_mask is None else fusion_mask
        f_has = has_image if fusion_has_image is None else fusion_has_image
        fused = self.fuse(text_states if fusion_states is None else fusion_states, f_mask, img_tokens, f_has)
        image = self.embed_image(patches)
        return {
            "image": image,
            "text": self.embed_text(text_states, text_mask),
            "product": self.product_embedding(fused, image, f_mask, f_has),
            "fused": fused,
            "image_tokens": img_tokens,
            "logit_scale": self.logit_scale.exp().clamp(max=100.0),
        }

    # --- end to end, from pixels and token ids (inference) ---------------------------------
    @torch.no_grad()
    def encode_products(self, pixels: torch.Tensor, has_image: torch.Tensor, input_ids: torch.Tensor,
                        attention_mask: torch.Tensor) -> torch.Tensor:
        states = self.text_tower(input_ids, attention_mask)
        patches = self.patches(self.image_tower.trunk(pixels))
        fused = self.fuse(states, attention_mask, self.image_tokens(patches), has_image)
        return self.product_embedding(fused, self.embed_image(patches), attention_mask, has_image)

    def encode_queries(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        tower, proj = (self.query_tower, self.query_proj) if self.has_query_tower else (self.text_tower, self.text_proj)
        states = tower(input_ids, attention_mask)
        return l2n(proj(tower.pool(states, attention_mask)))

    @torch.no_grad()
    def encode_texts(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """Unimodal text embeddings (the stage-1 text tower), e.g. category names for zero-shot."""
        return self.embed_text(self.text_tower(input_ids, attention_mask), attention_mask)

    def tokenize(self, texts: list[str]) -> dict[str, torch.Tensor]:
        return self.text_tower.tokenize(texts)

    # --- the served embeddings: the shared space plus the text channel -----------------------
    @property
    def out_dim(self) -> int:
        """Dimension of the served embeddings: the shared space, plus the text channel when on."""
        return self.cfg.embed_dim + (self.text_tower.hidden if self.cfg.text_channel > 0 else 0)

    @torch.no_grad()
    def text_channel(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """(B, H) L2-normalised sentence embeddings of the frozen text tower; zeros for empty text."""
        pooled = self.text_tower.pool(self.text_tower(input_ids, attention_mask), attention_mask)
        empty = attention_mask.sum(1) <= self.n_empty_tokens
        return torch.where(empty[:, None], torch.zeros_like(pooled), l2n(pooled))

    def with_text_channel(self, shared: torch.Tensor, channel: torch.Tensor, weight: float | None = None) -> torch.Tensor:
        """(B, E) shared-space and (B, H) text-channel embeddings -> (B, E + H) unit vectors whose dot
        product is (1 - b) cos_shared + b cos_text (b = ``weight``, by default ``cfg.text_channel``);
        a row without text (zero channel) keeps its shared-space direction. The shared embedding
        alone when b = 0."""
        b = self.cfg.text_channel if weight is None else weight
        if b <= 0:
            return shared
        return l2n(torch.cat([math.sqrt(1 - b) * shared, math.sqrt(b) * channel.to(shared.dtype)], -1))

    # --- checkpoints ------------------------------------------------------------------------
    def save_pretrained(self, out: str | Path, stage: str, extra_meta: dict | None = None) -> str:
        """Write the checkpoint; returns its model version (content-addressed, see ``dashclip.checkpoint``)."""
        out = Path(out)
        out.mkdir(parents=True, exist_ok=True)
        state = {k: v.detach().contiguous().cpu() for k, v in self.state_dict().items()}
        save_file(state, str(out / ckpt.WEIGHTS))
        from dashclip.io import match_umask  # here: dashclip.io loads pandas, which loading a model does not need

        match_umask(out / ckpt.WEIGHTS)
        # weights and configuration: a setting that changes the served embeddings without touching
        # the weights (text_channel) is a new version, so no table mixes the two
        (out / ckpt.CONFIG).write_bytes(self.cfg.model_dump_json(indent=2).encode())
        digest = ckpt.content_digest(out / ckpt.WEIGHTS, out / ckpt.CONFIG)
        version = f"{self.cfg.name}-{stage}-{digest[:10]}"
        (out / "text_config.json").write_text(self.text_tower.model.config.to_json_string())
        if hasattr(self.image_tower, "model"):
            (out / "vision_config.json").write_text(self.image_tower.model.config.to_json_string())
        self.text_tower.tokenizer.save_pretrained(str(out / "tokenizer"))
        meta = {"model_version": version, ckpt.DIGEST_KEY: digest, "stage": stage, "has_query_tower": self.has_query_tower,
                "embed_dim": self.out_dim, "shared_dim": self.cfg.embed_dim, "text_channel": self.cfg.text_channel,
                "image_size": self.cfg.image.image_size,
                "image_mean": list(self.cfg.image.mean), "image_std": list(self.cfg.image.std),
                "max_length": self.cfg.text.max_length, **(extra_meta or {})}
        meta.update({"model_version": version, ckpt.DIGEST_KEY: digest})  # extra_meta never overrides these
        (out / ckpt.META).write_text(json.dumps(meta, indent=2, default=str))  # last: the checkpoint is complete
        return version

    @classmethod
    def from_pretrained(cls, path: str | Path, map_location: str = "cpu") -> "DashCLIP":
        """Load a checkpoint; ``CheckpointError`` (one line naming the file) when a file is missing,
        unreadable or inconsistent, or when weights or config changed since saving."""
        path = Path(path)
        meta, cfg = ckpt.read_meta(path), ckpt.read_config(path)
        shapes = ckpt.weight_shapes(path)
        # rebuild the architecture only (weights come from model.safetensors); model.cfg stays
        # the configuration the checkpoint was trained with
        arch = cfg.model_copy(deep=True)
        arch.text.random_init = ckpt.read_json(path, "text_config.json")
        arch.text.tokenizer = str(path / "tokenizer")
        if arch.image.kind == "hf_vision":
            arch.image.random_init = ckpt.read_json(path, "vision_config.json")
        else:
            arch.image.pretrained = False
        model = cls(arch, with_query_tower=meta.get("has_query_tower", False))
        model.cfg = cfg
        ckpt.check_fits(path, {k: tuple(v.shape) for k, v in model.state_dict().items()}, shapes)
        ckpt.check_digest(path, meta)
        try:
            state = load_file(str(path / ckpt.WEIGHTS), device=map_location)
        except (SafetensorError, OSError) as e:
            raise ckpt.CheckpointError(path, ckpt.WEIGHTS, f"not a readable safetensors file ({e})") from None
        model.load_state_dict(state)
        model.model_version = meta["model_version"]
        model.meta = meta
        return model.eval()
