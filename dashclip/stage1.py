"""Stage 1: continual pretraining of the product encoder on the catalog (ITC + ITM + alignment).

The frozen trunks run once (``trunk_cache``); training updates the image tower's top blocks,
the fusion encoder, the projections, the ITM head and the temperature. Text dropout gives some
rows the empty text, so they train the embedding of products with an image and no text (the
image tower's embedding with ``text_less="image"``, or the fusion encoder over the empty text)
in the same space; image dropout trains the text-only path.

The catalog's category paths are text too: an optional category alignment (``w_category``)
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
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from pydantic import BaseModel, ConfigDict, Field
from tqdm import tqdm

from dashclip import columns as C
from dashclip.catalog import load_products
from dashclip.config import load_model_config
from dashclip.data import category_text
from dashclip.losses import grouped_targets, itc_loss, itm_loss, sample_hard_negatives
from dashclip.inference import cache_batch, embed_cached, with_empty_text
from dashclip.model import DashCLIP
from dashclip.weight_average import WeightAverage
from dashclip.training import length_grouped_batches, lr_lambda
from dashclip.trunk_cache import TrunkCache, build_trunk_cache, text_states

log = logging.getLogger(__name__)


def default_catalog() -> str:
    """$DASHCLIP_CATALOG, else $DASHCLIP_DATA/catalog.csv, else ../shared/data/catalog.csv from the
    working directory (the shipped data beside a checkout); --catalog overrides all three."""
    data = os.environ.get("DASHCLIP_DATA", str(Path("..") / "shared" / "data"))
    return os.environ.get("DASHCLIP_CATALOG", str(Path(data) / "catalog.csv"))


class Stage1Config(BaseModel):
    """Stage-1 training settings (validated once, saved in the checkpoint's meta.json)."""

    model_config = ConfigDict(extra="forbid", protected_namespaces=())

    catalog: str = Field(default_factory=default_catalog, description="catalog file or ingested products.parquet")
    model: str = "dashclip-base"  # named architecture or JSON path
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
    w_itc: float = 1.0
    w_itm: float = 1.0
    w_align_text: float = 1.0
    w_align_image: float = 1.0
    w_category: float = 0.5  # product embedding vs its category path's text embedding (0: off)
    w_category_image: float = 0.0  # the image tower's own embedding vs category texts (0: off)
    feature_flip: float = Field(0.0, ge=0, le=1)  # p of mirroring a row's cached image map (augmentation)
    # exponential moving average of the weights, validated and saved in place of the last ones (0: off).
    # Off: 0.99 over the default 6 epochs gave validation image-only probe 91.5 vs 91.6 without and a
    # higher validation loss (the average lags; docs/results_history.md, 2026-12-01 third session)
    weight_average: float = Field(0.0, ge=0, lt=1)
    patience: int = 2
    seed: int = 0
    threads: int | None = None
    max_train_rows: int | None = None  # faster settings for smoke runs
    cache_dir: str | None = "runs/cache"
    workers: int = 1


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
        if states is not None:
            t = int(mask.sum(1).max())
            states, mask = states[:, :t].float(), mask[:, :t]
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


def train_batches(idx: torch.Tensor, lengths: torch.Tensor, batch_size: int, gen: torch.Generator) -> list[torch.Tensor]:
    """One epoch's batches of ``idx`` grouped by text length (8 batches per sorted window), so
    little compute is spent on padding; batches under 4 rows are dropped."""
    local = length_grouped_batches(lengths[idx].numpy(), batch_size, 8,
                                   lambda n: torch.randperm(n, generator=gen).numpy(), min_size=4)
    return [idx[torch.from_numpy(b)] for b in local]


def flip_feature_maps(img: torch.Tensor, p: float, gen: torch.Generator) -> torch.Tensor:
    """Mirror each (C, h, w) cached CNN map left-right with probability p: a horizontal-flip
    augmentation that needs no pass through the frozen trunk (its convolutions are close to
    flip-equivariant). Token sequences (ViT towers) are returned unchanged."""
    if img.dim() != 4 or p <= 0:
        return img
    flip = torch.rand(len(img), generator=gen) < p
    return torch.where(flip[:, None, None, None], img.flip(-1), img)


def step_losses(model: DashCLIP, cache: TrunkCache, idx: torch.Tensor, keys: torch.Tensor, cfg: Stage1Config,
                gen: torch.Generator, train: bool = True, cats: CategoryTexts | None = None) -> dict[str, torch.Tensor]:
    img, has, txt, msk = cache_batch(cache, idx)
    if train:
        img = flip_feature_maps(img, cfg.feature_flip, gen)
    k, kc = keys[idx, 0], keys[idx, 1]
    B = len(idx)
    drop_text = (torch.rand(B, generator=gen) < cfg.text_dropout) & has if train else torch.zeros(B, dtype=torch.bool)
    drop_img = (torch.rand(B, generator=gen) < cfg.image_dropout) & ~drop_text if train else torch.zeros(B, dtype=torch.bool)
    f_txt, f_msk = with_empty_text(txt, msk, drop_text, cache) if drop_text.any() else (txt, msk)
    out = model(img, has, txt, msk, fusion_states=f_txt, fusion_mask=f_msk, fusion_has_image=has & ~drop_img)
    s = out["logit_scale"]
    t_img = grouped_targets(k[has], kc[has], cfg.category_target_weight)
    losses = {
        "itc": itc_loss(out["image"][has], out["text"][has], s, targets=t_img),
        "align_text": itc_loss(out["product"], out["text"], s, k),
        "align_image": itc_loss(out["product"][has], out["image"][has], s, targets=t_img),
    }
    # ITM on hard negatives, for rows whose fusion saw their own full text and image
    sub = torch.nonzero(has & ~drop_text & ~drop_img).squeeze(1)[: max(2, int(cfg.itm_fraction * B))]
    if train and cfg.w_itm > 0 and len(sub) >= 2 and len(torch.unique(k[sub])) > 1:
        sim = out["text"][sub] @ out["image"][sub].t()  # (S, S) text -> image
        neg_img = sample_hard_negatives(sim, k[sub], gen)
        neg_txt = sample_hard_negatives(sim.t(), k[sub], gen)
        ok1, ok2 = k[sub][neg_img] != k[sub], k[sub][neg_txt] != k[sub]
        patches, ones = out["image_tokens"][sub], torch.ones(len(sub), dtype=torch.bool)
        f1 = model.fuse(txt[sub], msk[sub], patches[neg_img], ones)[ok1]
        f2 = model.fuse(txt[sub][neg_txt], msk[sub][neg_txt], patches, ones)[ok2]
        losses["itm"] = itm_loss(model.itm_logits(out["fused"][sub]), model.itm_logits(torch.cat([f1, f2])))
    if cats is not None and cats.states is not None and (cfg.w_category > 0 or cfg.w_category_image > 0):
        cat_emb = model.embed_text(cats.states, cats.mask)  # once per step for both category terms
        terms = {"category": (cfg.w_category, out["product"], cats.index[idx]),  # text-less embedding for text-dropped rows
                 "category_image": (cfg.w_category_image, out["image"][has], cats.index[idx][has])}
        for name, (w, emb, rows_cat) in terms.items():
            loss = category_loss(model, emb, rows_cat, cats, s, cat_emb) if w > 0 else None
            if loss is not None:
                losses[name] = loss
    weights = {"itc": cfg.w_itc, "align_text": cfg.w_align_text, "align_image": cfg.w_align_image, "itm": cfg.w_itm,
               "category": cfg.w_category, "category_image": cfg.w_category_image}
    losses["total"] = sum(weights[n] * v for n, v in losses.items())
    return losses


def key_hit_rate_at_k(q: torch.Tensor, d: torch.Tensor, q_keys: torch.Tensor, d_keys: torch.Tensor, k: int) -> float:
    """Fraction of queries with a same-key item among the top k (by dot product)."""
    top = (q @ d.t()).topk(min(k, len(d)), dim=1).indices
    return float((d_keys[top] == q_keys[:, None]).any(1).float().mean())


@torch.no_grad()
def validate(model: DashCLIP, cache: TrunkCache, idx: torch.Tensor, keys: torch.Tensor, cfg: Stage1Config,
             cats: CategoryTexts | None = None) -> dict:
    model.eval()
    gen = torch.Generator().manual_seed(123)
    tot, n = {}, 0
    for s in range(0, len(idx), cfg.batch_size):
        b = idx[s:s + cfg.batch_size]
        if len(b) < 4:
            continue
        for name, v in step_losses(model, cache, b, keys, cfg, gen, train=False, cats=cats).items():
            tot[name] = tot.get(name, 0.0) + float(v) * len(b)
        n += len(b)
    metrics = {f"val_{k}": v / max(n, 1) for k, v in tot.items()}
    full = embed_cached(model, cache, idx)
    img_only = embed_cached(model, cache, idx, image_only=True)
    kk = keys[idx, 0]
    metrics["val_text_to_imageonly_R@10"] = key_hit_rate_at_k(full["text"], img_only["product"], kk, kk, 10)
    metrics["val_text_to_product_R@1"] = key_hit_rate_at_k(full["text"], full["product"], kk, kk, 1)
    return metrics


def plot_history(history: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ep = [h["epoch"] for h in history]
    fig, ax = plt.subplots(1, 2, figsize=(10, 4))
    ax[0].plot(ep, [h["train_total"] for h in history], marker="o", label="train total")
    ax[0].plot(ep, [h["val_total"] for h in history], marker="o", label="val total")
    ax[0].set_xlabel("epoch"), ax[0].set_ylabel("loss"), ax[0].legend(), ax[0].set_title("stage 1 loss")
    ax[1].plot(ep, [h["val_text_to_imageonly_R@10"] for h in history], marker="o", label="text→image-only R@10")
    ax[1].plot(ep, [h["val_text_to_product_R@1"] for h in history], marker="o", label="text→product R@1")
    ax[1].set_xlabel("epoch"), ax[1].legend(), ax[1].set_title("validation retrieval")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def train_stage1(cfg: Stage1Config, out: str | Path, progress: bool = True) -> dict:
    """Train, validate each epoch, stop early, save the best checkpoint + curve; returns the summary."""
    t_start = time.perf_counter()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    np.random.seed(cfg.seed)
    products = load_products(cfg.catalog)
    model = DashCLIP(load_model_config(cfg.model))
    cache = build_trunk_cache(model, products, cache_dir=cfg.cache_dir, progress=progress, workers=cfg.workers)
    t_cache = time.perf_counter() - t_start
    keys = class_keys(products)
    split = products[C.SPLIT].to_numpy()
    train_idx = torch.as_tensor(np.nonzero(split == "train")[0])
    val_idx = torch.as_tensor(np.nonzero(split == "val")[0])
    if cfg.max_train_rows:
        train_idx = train_idx[torch.randperm(len(train_idx), generator=torch.Generator().manual_seed(cfg.seed))[: cfg.max_train_rows]]
    if len(val_idx) < 4:  # tiny catalogs: validate on a slice of train
        val_idx = train_idx[: max(4, len(train_idx) // 5)]
    log.info("stage 1: %d train, %d val products", len(train_idx), len(val_idx))
    cats = CategoryTexts(model, products, train_idx.numpy()) if cfg.w_category > 0 or cfg.w_category_image > 0 else None

    backbone = [p for p in model.image_tower.parameters() if p.requires_grad]
    bb_ids = {id(p) for p in backbone}
    new = [p for p in model.parameters() if p.requires_grad and id(p) not in bb_ids]
    opt = torch.optim.AdamW([{"params": backbone, "lr": cfg.lr_backbone}, {"params": new, "lr": cfg.lr}],
                            weight_decay=cfg.weight_decay)
    steps_per_epoch = math.ceil(len(train_idx) / cfg.batch_size)
    total = steps_per_epoch * cfg.epochs
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: lr_lambda(s, cfg.warmup_steps, total))
    gen = torch.Generator().manual_seed(cfg.seed)
    lengths = cache.mask.sum(1)

    avg = WeightAverage(model, cfg.weight_average) if cfg.weight_average > 0 else None
    history, best, best_state, bad = [], float("inf"), None, 0
    for epoch in range(1, cfg.epochs + 1):
        model.train()
        sums, n = {}, 0
        bar = tqdm(train_batches(train_idx, lengths, cfg.batch_size, gen), desc=f"stage1 epoch {epoch}",
                   disable=not progress)
        for b in bar:
            losses = step_losses(model, cache, b, keys, cfg, gen, cats=cats)
            opt.zero_grad(set_to_none=True)
            losses["total"].backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            sched.step()
            if avg is not None:
                avg.update(model)
            for name, v in losses.items():
                sums[name] = sums.get(name, 0.0) + v.item() * len(b)
            n += len(b)
            bar.set_postfix(loss=f"{losses['total'].item():.3f}")
        live = avg.swap(model) if avg is not None else None  # validate (and keep, if best) the average
        rec = {"epoch": epoch, **{f"train_{k}": v / n for k, v in sums.items()}, **validate(model, cache, val_idx, keys, cfg, cats),
               "temperature": (1 / model.logit_scale.exp()).item(), "elapsed_s": round(time.perf_counter() - t_start, 1)}
        history.append(rec)
        log.info("epoch %d: %s", epoch, {k: round(v, 4) for k, v in rec.items() if isinstance(v, float)})
        if rec["val_total"] < best - 1e-4:
            best, bad = rec["val_total"], 0
            best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
        else:
            bad += 1
        if live is not None:
            WeightAverage.restore(model, live)  # training goes on from the last weights
        if bad >= cfg.patience:
            log.info("early stopping after epoch %d", epoch)
            break
    model.load_state_dict(best_state)
    summary = {"best_val_total": best, "epochs_run": len(history), "cache_s": round(t_cache, 1),
               "train_s": round(time.perf_counter() - t_start, 1), "train_rows": len(train_idx), "val_rows": len(val_idx)}
    version = model.save_pretrained(out, stage="stage1", extra_meta={"train_config": cfg.model_dump(),
                                                                      "summary": summary, "history": history})
    (out / "history.json").write_text(json.dumps(history, indent=2))
    plot_history(history, out / "training_curve.png")
    summary["model_version"] = version
    return summary
