"""Stage 1: continual pretraining of the product encoder on the catalog (ITC + ITM + alignment).

The frozen trunks run once (``trunk_cache``); training updates the image tower's top blocks,
the fusion encoder, the projections, the ITM head and the temperature. Text dropout gives some
rows the empty text, so they train the embedding of products with an image and no text (the
image tower's embedding with ``text_less="image"``, or the fusion encoder over the empty text)
in the same space; image dropout trains the text-only path.

The catalog's category paths are text too: an optional category alignment (``weights.category``)
pulls each product embedding towards the text embedding of its own category path, against all
the catalog's other category paths (a contrastive loss over category texts, CLIP's zero-shot
classifier used as a training signal). Image-only rows learn from it most: a photo's category
is what its title alone does not say.
"""

from __future__ import annotations

import json
import logging
import math
import os
import time
from dataclasses import dataclass, fields
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from pydantic import BaseModel, ConfigDict, Field

from dashclip import columns as C
from dashclip import distributed
from dashclip.catalog import load_products
from dashclip.config import load_model_config
from dashclip.data import category_text
from dashclip.inference import cache_batch, embed_cached, with_empty_text
from dashclip.losses import grouped_targets, itc_loss, itm_loss, sample_hard_negatives
from dashclip.model import DashCLIP
from dashclip.training import (BatchLoader, DeviceName, LoopConfig, LossWeights, fit, length_grouped_batches, lr_lambda,
                               precision, to_device, training_device)
from dashclip.trunk_cache import TrunkCache, build_trunk_cache, text_states
from dashclip.weight_average import WeightAverage

log = logging.getLogger(__name__)


def default_catalog() -> str:
    """$DASHCLIP_CATALOG, else $DASHCLIP_DATA/catalog.csv, else ../shared/data/catalog.csv from the
    working directory (the shipped data beside a checkout); --catalog overrides all three."""
    data = os.environ.get("DASHCLIP_DATA", str(Path("..") / "shared" / "data"))
    return os.environ.get("DASHCLIP_CATALOG", str(Path(data) / "catalog.csv"))


class Stage1Weights(LossWeights):
    """Weight of each stage-1 loss term in the total (0 turns a term off)."""

    itc: float = 1.0  # image vs text
    itm: float = 1.0  # image-text matching on hard negatives
    align_text: float = 1.0  # product embedding vs text embedding
    align_image: float = 1.0  # product embedding vs image embedding
    category: float = 0.5  # product embedding vs its category path's text embedding
    category_image: float = 0.0  # the image tower's own embedding vs category texts


class Stage1Config(BaseModel):
    """Stage-1 training settings (validated once, saved in the checkpoint's meta.json)."""

    model_config = ConfigDict(extra="forbid", protected_namespaces=())

    catalog: str = Field(default_factory=default_catalog, description="catalog file or ingested products.parquet")
    model: str = "dashclip-base"  # named architecture or JSON path
    device: DeviceName = "auto"  # auto (CUDA when present) | cpu | cuda | cuda:N; bf16 autocast on CUDA
    epochs: int = Field(6, ge=1)
    batch_size: int = Field(128, ge=4)
    lr: float = 5e-4  # new layers (fusion, projections, heads)
    lr_backbone: float = 2e-4  # fine-tuned top of the image tower
    weight_decay: float = 0.01
    warmup_steps: int = 50
    text_dropout: float = Field(0.5, ge=0, le=1)
    image_dropout: float = Field(0.1, ge=0, le=1)
    itm_fraction: float = Field(0.25, ge=0, le=1)
    category_target_weight: float = Field(0.4, ge=0, lt=1)  # target mass shared with same-category items
    weights: Stage1Weights = Stage1Weights()
    feature_flip: float = Field(0.0, ge=0, le=1)  # p of mirroring a row's cached image map (augmentation)
    # moving average of the weights, validated and saved in place of the last ones (0: off; it lags)
    weight_average: float = Field(0.0, ge=0, lt=1)
    patience: int = 2
    seed: int = 0
    threads: int | None = None
    max_train_rows: int | None = None  # faster settings for smoke runs
    cache_dir: str | None = "runs/cache"
    workers: int = 1  # image-decoding processes of the trunk-cache build
    # processes that gather training batches from the trunk cache into pinned memory, on CUDA
    # (0, or the CPU: in the training process, as the step asks)
    loader_workers: int = Field(2, ge=0)


def class_keys(products: pd.DataFrame) -> torch.Tensor:
    """(N, 2) integer keys: the normalised title (same title = same class, never a negative) and
    the leaf category (same category shares a little target mass; see ``grouped_targets``)."""
    t = products[C.TITLE].str.lower().str.strip()
    t = t.where(t != "", "__id__" + products[C.PRODUCT_ID])
    c = products[C.CATEGORY].where(products[C.CATEGORY] != "", "__id__" + products[C.PRODUCT_ID])
    return torch.stack([torch.as_tensor(pd.factorize(t)[0]), torch.as_tensor(pd.factorize(c)[0])], 1).long()


class CategoryTexts:
    """The training categories' text token states and each product's category index (-1: none)."""

    def __init__(self, model: DashCLIP, products: pd.DataFrame, train_rows: np.ndarray):
        cats = products[C.CATEGORY].fillna("").to_numpy()
        self.classes = sorted({c for c in cats[train_rows] if c})
        pos = {c: i for i, c in enumerate(self.classes)}
        self.index = torch.as_tensor([pos.get(c, -1) for c in cats], dtype=torch.long)
        states, mask = text_states(model, [category_text(c) for c in self.classes]) if self.classes else (None, None)
        if states is not None:  # read every step: kept on the model's device
            t = int(mask.sum(1).max())
            dev = next(model.parameters()).device
            states, mask = states[:, :t].float().to(dev), mask[:, :t].to(dev)
        self.states, self.mask = states, mask


def category_loss(model: DashCLIP, product: torch.Tensor, rows_cat: torch.Tensor, cats: CategoryTexts,
                  logit_scale: torch.Tensor, cat_emb: torch.Tensor | None = None) -> torch.Tensor | None:
    """Cross-entropy of each product embedding against all category-text embeddings (``cat_emb``:
    those embeddings when the caller already has them for this step)."""
    keep = rows_cat >= 0
    if cats.states is None or not keep.any():
        return None
    if cat_emb is None:
        cat_emb = model.embed_text(cats.states, cats.mask)  # (K, E), trainable text head
    return torch.nn.functional.cross_entropy(logit_scale * product[keep] @ cat_emb.t(), rows_cat[keep])


def train_batches(idx: torch.Tensor, lengths: torch.Tensor, batch_size: int, gen: torch.Generator
                  ) -> list[torch.Tensor]:
    """One epoch's batches of ``idx`` grouped by text length (8 batches per sorted window), so
    little compute is spent on padding; batches under 4 rows are dropped."""
    local = length_grouped_batches(lengths[idx].numpy(), batch_size, 8,
                                   lambda n: torch.randperm(n, generator=gen).numpy(), min_size=4)
    return [idx[torch.from_numpy(b)] for b in local]


def flip_feature_maps(img: torch.Tensor, p: float, gen: torch.Generator, shard: distributed.Shard | None = None
                      ) -> torch.Tensor:
    """Mirror each (C, h, w) cached CNN map left-right with probability p: a horizontal-flip
    augmentation that needs no pass through the frozen trunk (its convolutions are close to
    flip-equivariant). Token sequences (ViT towers) are returned unchanged. With a ``shard``,
    ``img`` holds its rows of the batch and the draws are the whole batch's."""
    if img.dim() != 4 or p <= 0:
        return img
    flip = distributed.local(torch.rand(len(img) if shard is None else sum(shard.sizes), generator=gen) < p, shard)
    return torch.where(flip[:, None, None, None], img.flip(-1), img)


@dataclass
class StepInputs:
    """One batch as the model reads it: trunk outputs, the text the fusion encoder sees (the empty
    text for text-dropped rows) and which rows dropped their text or image. Under torchrun
    ``img`` holds only this process's share of the rows (``local`` gives the share of the rest)."""

    img: torch.Tensor
    has: torch.Tensor
    txt: torch.Tensor
    msk: torch.Tensor
    fusion_txt: torch.Tensor
    fusion_msk: torch.Tensor
    drop_text: torch.Tensor
    drop_img: torch.Tensor

    def to(self, device: torch.device) -> "StepInputs":
        return StepInputs(*(to_device(getattr(self, f.name), device) for f in fields(self)))

    def local(self, shard: distributed.Shard | None) -> "StepInputs":
        """This process's rows (every field but ``img``, which holds only them already)."""
        if shard is None:
            return self
        return StepInputs(*(getattr(self, f.name) if f.name == "img" else getattr(self, f.name)[shard.rows]
                            for f in fields(self)))


def batch_rows(cache: TrunkCache, idx: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """What a training step reads from the trunk cache for batch ``idx`` (``cache_batch``, the image
    outputs of this process's share only): the ``prepare`` of the stage's ``BatchLoader``."""
    s = distributed.shard(len(idx))
    return cache_batch(cache, idx, None if s is None else s.rows)


def train_inputs(cache: TrunkCache, idx: torch.Tensor, cfg: Stage1Config, gen: torch.Generator,
                 rows: tuple[torch.Tensor, ...] | None = None) -> StepInputs:
    """A training batch: mirrored feature maps, text dropout (image-grounded path) and image dropout,
    drawn on the host from ``gen`` (the same draws on every device, and for the whole batch in
    every process); ``rows``: ``batch_rows(cache, idx)`` when a loader has read them already."""
    img, has, txt, msk = batch_rows(cache, idx) if rows is None else rows
    img = flip_feature_maps(img, cfg.feature_flip, gen, distributed.shard(len(idx)))
    B = len(idx)
    drop_text = (torch.rand(B, generator=gen) < cfg.text_dropout) & has
    drop_img = (torch.rand(B, generator=gen) < cfg.image_dropout) & ~drop_text
    f_txt, f_msk = with_empty_text(txt, msk, drop_text, cache) if drop_text.any() else (txt, msk)
    return StepInputs(img, has, txt, msk, f_txt, f_msk, drop_text, drop_img)


def eval_inputs(cache: TrunkCache, idx: torch.Tensor) -> StepInputs:
    """A validation batch: every row with its own text and image."""
    img, has, txt, msk = cache_batch(cache, idx)
    none = torch.zeros(len(idx), dtype=torch.bool)
    return StepInputs(img, has, txt, msk, txt, msk, none, none)


def contrastive_terms(out: dict[str, torch.Tensor], x: StepInputs, k: torch.Tensor, kc: torch.Tensor,
                      cfg: Stage1Config) -> dict[str, torch.Tensor]:
    """ITC (image vs text) and the alignment of the product embedding with the text and the image."""
    s, has = out["logit_scale"], x.has
    t_img = grouped_targets(k[has], kc[has], cfg.category_target_weight)
    return {
        "itc": itc_loss(out["image"][has], out["text"][has], s, targets=t_img),
        "align_text": itc_loss(out["product"], out["text"], s, k),
        "align_image": itc_loss(out["product"][has], out["image"][has], s, targets=t_img),
    }


def itm_term(model: DashCLIP, out: dict[str, torch.Tensor], x: StepInputs, k: torch.Tensor, cfg: Stage1Config,
             gen: torch.Generator) -> torch.Tensor | None:
    """ITM on hard negatives sampled from the batch's similarities, for rows whose fusion saw their
    own full text and image (None when the batch has too few such rows or classes)."""
    sub = torch.nonzero(x.has & ~x.drop_text & ~x.drop_img).squeeze(1)[: max(2, int(cfg.itm_fraction * len(k)))]
    if cfg.weights.itm <= 0 or len(sub) < 2 or len(torch.unique(k[sub])) <= 1:
        return None
    sim = out["text"][sub] @ out["image"][sub].t()  # (S, S) text -> image
    host, host_k = sim.detach().float().cpu(), k[sub].cpu()  # drawn from the host generator ``gen``
    neg_img = sample_hard_negatives(host, host_k, gen).to(k.device)
    neg_txt = sample_hard_negatives(host.t(), host_k, gen).to(k.device)
    ok1, ok2 = k[sub][neg_img] != k[sub], k[sub][neg_txt] != k[sub]
    patches, ones = out["image_tokens"][sub], torch.ones(len(sub), dtype=torch.bool, device=k.device)
    txt, msk = x.txt[sub], x.msk[sub]
    f1 = model.fuse(txt, msk, patches[neg_img], ones)[ok1]
    f2 = model.fuse(txt[neg_txt], msk[neg_txt], patches, ones)[ok2]
    return itm_loss(model.itm_logits(out["fused"][sub]), model.itm_logits(torch.cat([f1, f2])))


def category_terms(model: DashCLIP, out: dict[str, torch.Tensor], x: StepInputs, rows_cat: torch.Tensor,
                   cats: CategoryTexts | None, w: Stage1Weights) -> dict[str, torch.Tensor]:
    """The product embedding (text-less for text-dropped rows) and the image embedding against the
    category texts, for the terms with a weight."""
    if cats is None or cats.states is None or (w.category <= 0 and w.category_image <= 0):
        return {}
    cat_emb = model.embed_text(cats.states, cats.mask)  # once per step for both category terms
    terms = {"category": (w.category, out["product"], rows_cat),
             "category_image": (w.category_image, out["image"][x.has], rows_cat[x.has])}
    found = {}
    for name, (weight, emb, rc) in terms.items():
        loss = category_loss(model, emb, rc, cats, out["logit_scale"], cat_emb) if weight > 0 else None
        if loss is not None:
            found[name] = loss
    return found


def batch_keys(keys: torch.Tensor, cats: CategoryTexts | None, idx: torch.Tensor, device: torch.device
               ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """The batch's title keys, category keys and category-text indices (None without category
    texts), on ``device``."""
    rows_cat = cats.index[idx].to(device) if cats is not None else None
    return keys[idx, 0].to(device), keys[idx, 1].to(device), rows_cat


def _forward(model: DashCLIP, x: StepInputs) -> dict[str, torch.Tensor]:
    return model(x.img, x.has, x.txt, x.msk, fusion_states=x.fusion_txt, fusion_mask=x.fusion_msk,
                 fusion_has_image=x.has & ~x.drop_img)


def gather_outputs(out: dict[str, torch.Tensor], shard: distributed.Shard | None) -> dict[str, torch.Tensor]:
    """The per-row outputs of every process's share, with gradients (``distributed.gather``)."""
    if shard is None:
        return out
    return {k: v if k == "logit_scale" else distributed.gather(v, shard) for k, v in out.items()}


def train_losses(model: DashCLIP, cache: TrunkCache, idx: torch.Tensor, keys: torch.Tensor, cfg: Stage1Config,
                 gen: torch.Generator, cats: CategoryTexts | None = None, rows: tuple[torch.Tensor, ...] | None = None
                 ) -> dict[str, torch.Tensor]:
    """The named loss terms of one training batch and their weighted ``total``, on the model's device.
    Under torchrun the model runs on this process's share and the losses on every share's outputs."""
    dev = next(model.parameters()).device
    shard = distributed.shard(len(idx))
    x = train_inputs(cache, idx, cfg, gen, rows).to(dev)
    out = gather_outputs(_forward(model, x.local(shard)), shard)
    k, kc, rows_cat = batch_keys(keys, cats, idx, dev)
    terms = contrastive_terms(out, x, k, kc, cfg)
    itm = itm_term(model, out, x, k, cfg, gen)
    if itm is not None:
        terms["itm"] = itm
    terms.update(category_terms(model, out, x, rows_cat, cats, cfg.weights))
    return {**terms, "total": cfg.weights.total(terms)}


def eval_losses(model: DashCLIP, cache: TrunkCache, idx: torch.Tensor, keys: torch.Tensor, cfg: Stage1Config,
                cats: CategoryTexts | None = None) -> dict[str, torch.Tensor]:
    """The named loss terms of one validation batch (no augmentation, no ITM sampling) and their total."""
    dev = next(model.parameters()).device
    x = eval_inputs(cache, idx).to(dev)
    out = _forward(model, x)
    k, kc, rows_cat = batch_keys(keys, cats, idx, dev)
    terms = contrastive_terms(out, x, k, kc, cfg)
    terms.update(category_terms(model, out, x, rows_cat, cats, cfg.weights))
    return {**terms, "total": cfg.weights.total(terms)}


def key_hit_rate_at_k(q: torch.Tensor, d: torch.Tensor, q_keys: torch.Tensor, d_keys: torch.Tensor, k: int) -> float:
    """Fraction of queries with a same-key item among the top k (by dot product)."""
    top = (q @ d.t()).topk(min(k, len(d)), dim=1).indices
    return float((d_keys[top] == q_keys[:, None]).any(1).float().mean())


@torch.no_grad()
def validate(model: DashCLIP, cache: TrunkCache, idx: torch.Tensor, keys: torch.Tensor, cfg: Stage1Config,
             cats: CategoryTexts | None = None) -> dict:
    model.eval()
    tot, n = {}, 0
    for s in range(0, len(idx), cfg.batch_size):
        b = idx[s:s + cfg.batch_size]
        if len(b) < 4:
            continue
        for name, v in eval_losses(model, cache, b, keys, cfg, cats).items():
            tot[name] = tot.get(name, 0.0) + float(v) * len(b)
        n += len(b)
    metrics = {f"val_{k}": v / max(n, 1) for k, v in tot.items()}
    full = embed_cached(model, cache, idx)
    img_only = embed_cached(model, cache, idx, image_only=True)
    kk = keys[idx, 0]
    metrics["val_text_to_imageonly_R@10"] = key_hit_rate_at_k(full["text"], img_only["product"], kk, kk, 10)
    metrics["val_text_to_product_R@1"] = key_hit_rate_at_k(full["text"], full["product"], kk, kk, 1)
    return metrics


def plot_history(history: list[dict], path: Path, model_version: str = "", run_id: str = "") -> None:
    """Loss and validation retrieval by epoch; the title names the model version and the run."""
    from dashclip.plots import new_run_id, pyplot, save, stamp

    plt = pyplot()
    ep = [h["epoch"] for h in history]
    fig, ax = plt.subplots(1, 2, figsize=(10, 4))
    curves = ((ax[0], "loss", (("train_total", "train total"), ("val_total", "val total"))),
              (ax[1], "recall", (("val_text_to_imageonly_R@10", "text→image-only R@10"),
                                 ("val_text_to_product_R@1", "text→product R@1"))))
    for a, ylabel, series in curves:
        for key, label in series:
            ys = [h[key] for h in history]
            a.plot(ep, ys, marker="o", label=label)
            a.annotate(f"{ys[-1]:.3f}", (ep[-1], ys[-1]), xytext=(4, 0), textcoords="offset points", fontsize=8,
                       va="center")
        a.set_xlabel("epoch"), a.set_ylabel(ylabel), a.legend(fontsize=8)
    ax[0].set_title("stage 1 loss", fontsize=9), ax[1].set_title("validation retrieval", fontsize=9)
    stamp(fig, "Stage 1 training", model_version or "(unsaved)", run_id or new_run_id())
    save(fig, path)


def split_rows(products: pd.DataFrame, cfg: Stage1Config) -> tuple[torch.Tensor, torch.Tensor]:
    """Training rows (at most ``max_train_rows``, a seeded sample) and validation rows (a slice of
    the training rows when the catalog has under 4 validation products)."""
    split = products[C.SPLIT].to_numpy()
    train_idx = torch.as_tensor(np.nonzero(split == "train")[0])
    val_idx = torch.as_tensor(np.nonzero(split == "val")[0])
    if cfg.max_train_rows:
        sample = torch.randperm(len(train_idx), generator=torch.Generator().manual_seed(cfg.seed))
        train_idx = train_idx[sample[: cfg.max_train_rows]]
    if len(val_idx) < 4:  # tiny catalogs: validate on a slice of train
        val_idx = train_idx[: max(4, len(train_idx) // 5)]
    return train_idx, val_idx


def optimizer(model: DashCLIP, cfg: Stage1Config, steps: int):
    """AdamW with the fine-tuned image blocks at ``lr_backbone`` and the new layers at ``lr``; warm-up
    then cosine schedule over ``steps``."""
    backbone = [p for p in model.image_tower.parameters() if p.requires_grad]
    bb_ids = {id(p) for p in backbone}
    new = [p for p in model.parameters() if p.requires_grad and id(p) not in bb_ids]
    opt = torch.optim.AdamW([{"params": backbone, "lr": cfg.lr_backbone}, {"params": new, "lr": cfg.lr}],
                            weight_decay=cfg.weight_decay)
    return opt, torch.optim.lr_scheduler.LambdaLR(opt, lambda s: lr_lambda(s, cfg.warmup_steps, steps))


def train_stage1(cfg: Stage1Config, out: str | Path, progress: bool = True) -> dict:
    """Train, validate each epoch, stop early, save the best checkpoint + curve; returns the summary."""
    t_start = time.perf_counter()
    device = training_device(cfg.device, "stage 1")  # first: a device that is absent stops the run here
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    np.random.seed(cfg.seed)
    products = load_products(cfg.catalog)
    model = DashCLIP(load_model_config(cfg.model)).to(device)  # the trunk cache is computed there, kept on the host
    cache = trunk_cache(model, products, cfg.cache_dir, progress, cfg.workers)
    t_cache = time.perf_counter() - t_start
    keys = class_keys(products)
    train_idx, val_idx = split_rows(products, cfg)
    log.info("stage 1: %d train, %d val products", len(train_idx), len(val_idx))
    w = cfg.weights
    cats = CategoryTexts(model, products, train_idx.numpy()) if w.category > 0 or w.category_image > 0 else None
    opt, sched = optimizer(model, cfg, math.ceil(len(train_idx) / cfg.batch_size) * cfg.epochs)
    gen = torch.Generator().manual_seed(cfg.seed)
    lengths = cache.mask.sum(1)

    def step(prepared: tuple[torch.Tensor, tuple]):
        b, rows = prepared
        return train_losses(model, cache, b, keys, cfg, gen, cats=cats, rows=rows), len(b)

    def epoch_batches(epoch: int) -> BatchLoader:
        batches = train_batches(train_idx, lengths, cfg.batch_size, gen)
        return BatchLoader(batches, lambda b: (b, batch_rows(cache, b)), device, cfg.loader_workers)

    def validation() -> dict:
        return {**validate(model, cache, val_idx, keys, cfg, cats), "temperature": (1 / model.logit_scale.exp()).item()}

    loop = LoopConfig(name="stage1", epochs=cfg.epochs, monitor="val_total", mode="min", patience=cfg.patience)
    avg = WeightAverage(model, cfg.weight_average) if cfg.weight_average > 0 else None
    result = fit(model, opt, sched, epoch_batches, step, loop, validate=validation, average=avg, t_start=t_start,
                 progress=progress, device=device)
    history = result.history
    summary = {"best_val_total": result.best, "epochs_run": len(history), "device": str(device),
               "precision": precision(device), "processes": distributed.world_size(), "cache_s": round(t_cache, 1),
               "train_s": round(time.perf_counter() - t_start, 1), "train_rows": len(train_idx), "val_rows": len(val_idx)}
    summary["model_version"] = distributed.main_only(lambda: save_stage1(model, cfg, out, summary, history))
    return summary


def save_stage1(model: DashCLIP, cfg: Stage1Config, out: Path, summary: dict, history: list[dict]) -> str:
    """The checkpoint, its history and training curve in ``out`` (rank 0's work under torchrun); its version."""
    version = model.save_pretrained(out, stage="stage1", extra_meta={"train_config": cfg.model_dump(),
                                                                      "summary": summary, "history": history})
    (out / "history.json").write_text(json.dumps(history, indent=2))
    plot_history(history, out / "training_curve.png", version)
    return version


def trunk_cache(model: DashCLIP, products: pd.DataFrame, cache_dir: str | None, progress: bool, workers: int
                ) -> TrunkCache:
    """``build_trunk_cache``; under torchrun rank 0 builds (and saves) it first, the other processes
    then read it from ``cache_dir`` (or, without one, compute their own)."""
    if distributed.is_main():
        cache = build_trunk_cache(model, products, cache_dir=cache_dir, progress=progress, workers=workers)
    distributed.barrier()
    if not distributed.is_main():
        cache = build_trunk_cache(model, products, cache_dir=cache_dir, progress=False, workers=workers)
    return cache
