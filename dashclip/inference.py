"""Inference: every embedding DashCLIP serves or measures, computed one way.

Two routes to a product embedding, one model:
- from the trunk cache (``embed_cached``): the frozen trunks' outputs saved once per catalog, as
  training, validation and evaluation read them;
- from pixels and text (``ProductEmbedder``): what the embed CLI, the Spark jobs and the online path
  run. ``tests/test_inference.py`` holds the two equal on real images.
Queries go through ``query_parts`` (the query tower, or the stage-1 text tower before stage 2)
and ``QueryEmbedder``. The served embedding of either side is ``served``: the shared-space one plus,
when the checkpoint's ``text_channel`` is on, the frozen text tower's sentence embedding.
"""

from __future__ import annotations

import os
import re

import numpy as np
import pandas as pd
import torch
from tqdm import tqdm

from dashclip.catalog import normalize_text
from dashclip.data import ProductDataset, product_channel_texts, product_loader
from dashclip.model import DashCLIP
from dashclip.trunk_cache import TrunkCache


def check_device_name(device: str) -> str:
    """``device`` when it is a name ``pick_device`` knows (auto, cpu, mps, cuda, cuda:N), else a
    one-line ValueError; whether that device is present is left to ``pick_device``."""
    if not re.fullmatch(r"auto|cpu|mps|cuda(:\d+)?", device):
        raise ValueError(f"device {device!r}: expected auto, cpu, cuda or cuda:N")
    return device


def pick_device(device: str | torch.device | None = None) -> torch.device:
    """``auto`` (or None): CUDA when present, else the CPU; ``cpu``, ``cuda`` or ``cuda:N`` as named
    (ValueError in one line when CUDA is named and absent)."""
    if device in (None, "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = check_device_name(str(device))  # a name or a torch.device
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"device {device!r}: no CUDA device is available here (torch {torch.__version__}); "
                         f"use auto or cpu")
    return torch.device(device)


# --- from the trunk cache ------------------------------------------------------------------------
def cache_batch(cache: TrunkCache, idx: torch.Tensor, image_rows: slice | None = None) -> tuple[torch.Tensor, ...]:
    """Rows ``idx`` of the cache as float32: image trunk outputs, has_image, text states (B, t, H)
    and mask (B, t), the text trimmed to the batch's longest row; ``image_rows``: only those
    positions of ``idx`` get their image outputs (a training process's share of the batch)."""
    m = cache.mask[idx]
    t = int(m.sum(1).max())  # trim padding shared by the whole batch
    img = cache.image[idx if image_rows is None else idx[image_rows]].float()
    return img, cache.has_image[idx], cache.text[idx, :t].float(), m[:, :t]


def with_empty_text(states: torch.Tensor, mask: torch.Tensor, rows: torch.Tensor, cache: TrunkCache
                    ) -> tuple[torch.Tensor, torch.Tensor]:
    """Replace the text of ``rows`` (a (B,) bool mask) by the empty text's token states (the
    image-grounded path of products with no text)."""
    states, mask = states.clone(), mask.clone()
    t0 = len(cache.empty_mask)
    if states.shape[1] < t0:
        pad = t0 - states.shape[1]
        states = torch.nn.functional.pad(states, (0, 0, 0, pad))
        mask = torch.nn.functional.pad(mask, (0, pad))
    states[rows] = 0
    mask[rows] = False
    states[rows, :t0] = cache.empty_text.float()
    mask[rows, :t0] = True
    return states, mask


@torch.no_grad()
def embed_cached(model: DashCLIP, cache: TrunkCache, idx: torch.Tensor, image_only: bool = False,
                 batch_size: int = 256) -> dict[str, torch.Tensor]:
    """Image, text and (shared-space) product embeddings and the fused pooled states of cached rows;
    the product embedding comes from the empty text when ``image_only``."""
    model.eval()
    dev = next(model.parameters()).device  # batches go to the model's device, embeddings come back to the host
    outs: dict[str, list] = {"image": [], "text": [], "product": [], "fused": []}
    for s in range(0, len(idx), batch_size):
        b = idx[s:s + batch_size]
        img, has, txt, msk = cache_batch(cache, b)
        everyone = torch.ones(len(b), dtype=torch.bool)
        f_txt, f_msk = with_empty_text(txt, msk, everyone, cache) if image_only else (txt, msk)
        img, has, txt, msk, f_txt, f_msk = (x.to(dev) for x in (img, has, txt, msk, f_txt, f_msk))
        out = model(img, has, txt, msk, fusion_states=f_txt, fusion_mask=f_msk)
        for n in outs:
            outs[n].append(out[n].cpu())
    return {n: torch.cat(v) for n, v in outs.items()}


@torch.no_grad()
def cached_product_parts(model: DashCLIP, cache: TrunkCache, products: pd.DataFrame, channel: bool | None = None
                         ) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Every product's shared-space embedding (N, E) from the cache and its text channel (N, H)
    (None without ``channel``, by default when the checkpoint serves none); ``served`` joins them."""
    shared = embed_cached(model, cache, torch.arange(len(products)))["product"]
    if not (model.cfg.text_channel > 0 if channel is None else channel):
        return shared, None
    return shared, text_channel_embeddings(model, product_channel_texts(products))


# --- text ------------------------------------------------------------------------------------------
@torch.no_grad()
def text_channel_embeddings(model: DashCLIP, texts: list[str], batch_size: int = 128) -> torch.Tensor:
    """(N, H) text-channel embeddings of ``texts`` (zeros for empty ones), on the model's device."""
    out = []
    device = next(model.parameters()).device
    for s in range(0, len(texts), batch_size):
        tok = model.tokenize(list(texts[s:s + batch_size]))
        out.append(model.text_channel(tok["input_ids"].to(device), tok["attention_mask"].to(device)))
    return torch.cat(out) if out else torch.zeros(0, model.text_tower.hidden, device=device)


@torch.no_grad()
def encode_texts(model: DashCLIP, texts: list[str], batch_size: int = 256) -> np.ndarray:
    """(N, E) unimodal embeddings of the stage-1 text tower (stage 2 mines candidates with them)."""
    dev = next(model.parameters()).device
    out = [model.encode_texts(**{k: v.to(dev) for k, v in model.tokenize(texts[s:s + batch_size]).items()}).float().cpu().numpy()
           for s in range(0, len(texts), batch_size)]
    return np.concatenate(out) if out else np.zeros((0, model.cfg.embed_dim), np.float32)


@torch.no_grad()
def encode_queries(model: DashCLIP, queries: list[str], batch_size: int = 256) -> np.ndarray:
    """(Q, E) shared-space query embeddings as given (the query tower; the text tower before stage 2)."""
    dev = next(model.parameters()).device
    out = [model.encode_queries(**{k: v.to(dev) for k, v in model.tokenize(queries[s:s + batch_size]).items()})
           .float().cpu().numpy() for s in range(0, len(queries), batch_size)]
    return np.concatenate(out) if out else np.zeros((0, model.cfg.embed_dim), np.float32)


@torch.no_grad()
def query_parts(model: DashCLIP, queries: list[str], batch_size: int = 256, channel: bool | None = None
                ) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Queries as served read them (``normalize_text``): their shared-space embeddings (Q, E) and
    text channel (Q, H) (None without ``channel``, by default when the checkpoint serves none);
    ``served`` joins them."""
    texts = [normalize_text(q) for q in queries]
    device = next(model.parameters()).device
    want_channel = model.cfg.text_channel > 0 if channel is None else channel
    shared, chan = [], []
    for s in range(0, len(texts), batch_size):
        batch = texts[s:s + batch_size]
        tok = model.tokenize(batch)
        shared.append(model.encode_queries(tok["input_ids"].to(device), tok["attention_mask"].to(device)))
        if want_channel:
            chan.append(text_channel_embeddings(model, batch, batch_size=max(1, len(batch))))
    if not shared:
        return torch.zeros(0, model.cfg.embed_dim, device=device), None
    return torch.cat(shared), (torch.cat(chan) if chan else None)


def served(model: DashCLIP, shared: torch.Tensor, channel: torch.Tensor | None) -> torch.Tensor:
    """The served embedding: shared-space rows plus their text channel (``DashCLIP.with_text_channel``)
    when the checkpoint's ``text_channel`` is on; the shared rows alone otherwise."""
    if channel is None or model.cfg.text_channel <= 0:
        return shared
    return model.with_text_channel(shared.float(), channel.float())


# --- from pixels (embed CLI, Spark jobs, online path) ----------------------------------------------
class _Embedder:
    def __init__(self, checkpoint: str | os.PathLike, device: str | None = None, batch_size: int = 64,
                 threads: int | None = None, amp: bool | None = None):
        if threads:
            torch.set_num_threads(threads)
        self.device = pick_device(device)
        self.model = DashCLIP.from_pretrained(checkpoint).to(self.device).eval()
        self.model_version: str = self.model.model_version
        self.meta: dict = self.model.meta
        self.batch_size = batch_size
        self.amp = (self.device.type == "cuda") if amp is None else amp

    def _autocast(self):
        return torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.amp)

    def _channel(self, texts: list[str]) -> torch.Tensor | None:
        if self.model.cfg.text_channel <= 0:
            return None
        return text_channel_embeddings(self.model, texts, batch_size=max(1, len(texts)))


class ProductEmbedder(_Embedder):
    """Product tower: image + text -> the served product embedding (B, ``model.out_dim``)."""

    def embed_products(self, products: pd.DataFrame, progress: bool = False, workers: int = 0,
                       with_text: bool = True) -> np.ndarray:
        """Embeddings for an ingested products frame (``image_path``, ``has_image``, ``title``...)."""
        m = self.meta
        ds = ProductDataset(products, image_size=m["image_size"], mean=tuple(m["image_mean"]),
                            std=tuple(m["image_std"]), with_text=with_text)
        out = np.zeros((len(ds), self.model.out_dim), dtype=np.float32)
        loader = product_loader(ds, batch_size=self.batch_size, workers=workers)
        with torch.inference_mode(), self._autocast():
            for b in tqdm(loader, desc="embed products", disable=not progress, unit="batch"):
                tok = self.model.tokenize(b["text"])
                e = self.model.encode_products(b["image"].to(self.device), b["has_image"].to(self.device),
                                               tok["input_ids"].to(self.device), tok["attention_mask"].to(self.device))
                out[b["index"].numpy()] = served(self.model, e, self._channel(b["channel_text"])).float().cpu().numpy()
        return out


class QueryEmbedder(_Embedder):
    """Query tower: text -> the served query embedding (B, ``model.out_dim``), in the product space."""

    def embed(self, queries: list[str], progress: bool = False) -> np.ndarray:
        out = np.zeros((len(queries), self.model.out_dim), dtype=np.float32)
        with torch.inference_mode(), self._autocast():
            for s in tqdm(range(0, len(queries), self.batch_size), desc="embed queries", disable=not progress):
                shared, channel = query_parts(self.model, queries[s:s + self.batch_size], batch_size=self.batch_size)
                out[s:s + len(shared)] = served(self.model, shared, channel).float().cpu().numpy()
        return out

    __call__ = embed
