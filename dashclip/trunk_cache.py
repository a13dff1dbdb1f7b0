"""Cache of frozen tower-trunk outputs, so stage-1 training runs the frozen backbones once.

For every product: the image trunk output (e.g. EfficientNet-Lite0's 14x14x112 map before its
five fine-tuned top blocks) and the frozen text tower's token states (padded to max_length), both as
float16. Cache files are keyed by the trunk configs and the products' content hashes, with an
index of those hashes beside each file: any request whose products a saved cache already holds
(the same catalog, or a split or subset of it) loads in seconds; anything else recomputes.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import torch
from tqdm import tqdm

from dashclip import columns as C
from dashclip.data import ProductDataset, product_loader
from dashclip.model import DashCLIP

log = logging.getLogger(__name__)


@dataclass
class TrunkCache:
    image: torch.Tensor  # (N, ...) float16 image-trunk outputs (zeros where no image)
    has_image: torch.Tensor  # (N,) bool
    text: torch.Tensor  # (N, T, H) float16 token states of title + description
    mask: torch.Tensor  # (N, T) bool
    empty_text: torch.Tensor  # (T0, H) token states of the empty text (image-grounded path)
    empty_mask: torch.Tensor  # (T0,) bool

    def __len__(self) -> int:
        return len(self.has_image)


def config_key(model: DashCLIP, with_text: bool) -> str:
    """The frozen trunks' identity: image and text tower configs (fusion/heads do not matter)."""
    h = hashlib.sha256((model.cfg.image.model_dump_json() + model.cfg.text.model_dump_json()).encode())
    h.update(str(with_text).encode())
    return h.hexdigest()[:12]


def data_key(products: pd.DataFrame) -> str:
    h = hashlib.sha256()
    for v in products[C.CONTENT_HASH]:
        h.update(v.encode())
    return h.hexdigest()[:12]


def _slice(cache: TrunkCache, rows: list[int]) -> TrunkCache:
    idx = torch.as_tensor(rows, dtype=torch.long)
    return TrunkCache(image=cache.image[idx], has_image=cache.has_image[idx], text=cache.text[idx],
                      mask=cache.mask[idx], empty_text=cache.empty_text, empty_mask=cache.empty_mask)


def _find_covering(cache_dir: Path, ckey: str, hashes: list[str]) -> TrunkCache | None:
    """A saved cache of the same trunks holding every requested product (e.g. a split of it)."""
    for index_file in sorted(cache_dir.glob(f"trunk-{ckey}-*.json")):
        saved = json.loads(index_file.read_text())
        pos = {h: i for i, h in enumerate(saved)}
        if all(h in pos for h in hashes):
            log.info("trunk cache hit: %s", index_file.with_suffix(".pt"))
            full = TrunkCache(**torch.load(index_file.with_suffix(".pt"), weights_only=True))
            return _slice(full, [pos[h] for h in hashes])
    return None


@torch.no_grad()
def text_states(model: DashCLIP, texts: list[str], batch_size: int = 128, progress: bool = False
                ) -> tuple[torch.Tensor, torch.Tensor]:
    """Frozen text-tower token states, padded to max_length: (N, T, H) float16 and (N, T) bool."""
    T, H = model.cfg.text.max_length, model.text_tower.hidden
    states = torch.zeros(len(texts), T, H, dtype=torch.float16)
    mask = torch.zeros(len(texts), T, dtype=torch.bool)
    order = sorted(range(len(texts)), key=lambda i: len(texts[i]))  # similar lengths share a batch
    dev = next(model.parameters()).device  # the cache stays in host memory whatever the model's device
    for s in tqdm(range(0, len(texts), batch_size), desc="text trunk", disable=not progress, unit="batch"):
        idx = order[s:s + batch_size]
        tok = model.tokenize([texts[i] for i in idx])
        out = model.text_tower(tok["input_ids"].to(dev), tok["attention_mask"].to(dev))  # (b, t, H)
        t = out.shape[1]
        states[idx, :t] = out.half().cpu()
        mask[idx, :t] = tok["attention_mask"].bool()
    return states, mask


@torch.no_grad()
def build_trunk_cache(model: DashCLIP, products: pd.DataFrame, cache_dir: str | Path | None = None,
                      batch_size: int = 16, workers: int = 1, progress: bool = True,
                      with_text: bool = True) -> TrunkCache:
    model.eval()
    path = None
    if cache_dir is not None:
        ckey = config_key(model, with_text)
        hit = _find_covering(Path(cache_dir), ckey, products[C.CONTENT_HASH].tolist())
        if hit is not None:
            return hit
        path = Path(cache_dir) / f"trunk-{ckey}-{data_key(products)}.pt"
    cfg = model.cfg.image
    ds = ProductDataset(products, image_size=cfg.image_size, mean=cfg.mean, std=cfg.std, with_text=with_text)
    dev = next(model.parameters()).device
    probe = model.image_tower.trunk(torch.zeros(1, 3, cfg.image_size, cfg.image_size, device=dev))
    image = torch.zeros((len(ds),) + tuple(probe.shape[1:]), dtype=torch.float16)
    for b in tqdm(product_loader(ds, batch_size=batch_size, workers=workers), desc="image trunk",
                  disable=not progress, unit="batch"):
        keep = b["has_image"]
        if keep.any():
            image[b["index"][keep]] = model.image_tower.trunk(b["image"][keep].to(dev)).half().cpu()
    text, mask = text_states(model, ds.texts, progress=progress)
    e_text, e_mask = text_states(model, [""])
    t0 = int(e_mask[0].sum())
    cache = TrunkCache(image=image, has_image=torch.as_tensor(products[C.HAS_IMAGE].to_numpy(), dtype=torch.bool),
                       text=text, mask=mask, empty_text=e_text[0, :t0], empty_mask=e_mask[0, :t0])
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        torch.save(cache.__dict__, tmp)
        tmp.replace(path)
        path.with_suffix(".json").write_text(json.dumps(products[C.CONTENT_HASH].tolist()))
    return cache
