"""Image preprocessing (PIL/numpy, no torchvision) and the (image, text, category) dataset.

Images are resized on the short side, centre-cropped to a square and normalised with a
configurable mean/std (EfficientNet-Lite uses mean = std = 0.5). Image files are read as ingestion
reads them (``dashclip.image_source``: regular files only, at most ``max_image_bytes``), so a path
that became a FIFO or a huge file fails with the reason instead of blocking. Decoded, resized images can be
cached on disk as uint8 arrays keyed by the image's path and modification time, which pays when
the same catalog is read for several epochs or several models.
"""

from __future__ import annotations

import hashlib
import io
import os
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset

from dashclip import columns as C
from dashclip.image_source import MAX_IMAGE_BYTES, read_local


def product_text(title: str, description: str = "", max_chars: int = 600) -> str:
    """The text the text tower sees for a product: title, then the start of the description."""
    title, description = (title or "").strip(), (description or "").strip()
    if title and description:
        text = f"{title}. {description}"
    else:
        text = title or description
    return text[:max_chars]


def channel_text(title: str, description: str = "", category: str = "", max_chars: int = 600) -> str:
    """What the text channel of the served product embedding reads: title, category path, then the
    description (the category before the description, so that truncation keeps it). Empty when
    the product has no title and no description: a text-less product gets no text channel."""
    title, description = (title or "").strip(), (description or "").strip()
    if not (title or description):
        return ""
    head = ". ".join(x for x in (title, category_text(category or "")) if x)
    return product_text(head, description, max_chars)


def product_channel_texts(products: pd.DataFrame, max_chars: int = 600) -> list[str]:
    """``channel_text`` of every row of a products frame (description and category optional)."""
    n = len(products)
    descs = products[C.DESCRIPTION].tolist() if C.DESCRIPTION in products else [""] * n
    cats = products[C.CATEGORY].tolist() if C.CATEGORY in products else [""] * n
    return [channel_text(t, d, c, max_chars) for t, d, c in zip(products[C.TITLE].tolist(), descs, cats)]


def category_text(path: str) -> str:
    """What the text tower reads for a category path: its levels, space-separated."""
    return " ".join(p for p in path.split(" > "))


def decode_resize(data_or_path: bytes | str | os.PathLike, size: int) -> np.ndarray:
    """Decode an image and return it as (size, size, 3) uint8, short side resized then centre-cropped."""
    src = io.BytesIO(data_or_path) if isinstance(data_or_path, (bytes, bytearray)) else data_or_path
    with Image.open(src) as im:
        im = im.convert("RGB")
        w, h = im.size
        scale = size / min(w, h)
        nw, nh = max(size, round(w * scale)), max(size, round(h * scale))
        im = im.resize((nw, nh), Image.Resampling.BICUBIC)
        left, top = (nw - size) // 2, (nh - size) // 2
        im = im.crop((left, top, left + size, top + size))
        return np.asarray(im, dtype=np.uint8)


def to_tensor(img: np.ndarray, mean: float | tuple = 0.5, std: float | tuple = 0.5) -> torch.Tensor:
    """(H, W, 3) uint8 -> (3, H, W) float32 normalised."""
    x = torch.from_numpy(np.array(img, dtype=np.uint8, copy=True)).permute(2, 0, 1).float().div_(255.0)
    mean_t = torch.as_tensor(mean, dtype=torch.float32).reshape(-1, 1, 1)
    std_t = torch.as_tensor(std, dtype=torch.float32).reshape(-1, 1, 1)
    return (x - mean_t) / std_t


class ImageCache:
    """On-disk cache of decoded, resized uint8 images keyed by (path, mtime, size, image size)."""

    def __init__(self, root: str | os.PathLike, size: int, max_bytes: int = MAX_IMAGE_BYTES):
        self.root = Path(root)
        self.size, self.max_bytes = size, max_bytes
        self.root.mkdir(parents=True, exist_ok=True)

    def _key(self, path: str) -> Path:
        st = os.stat(path)
        h = hashlib.sha1(f"{path}|{st.st_mtime_ns}|{st.st_size}|{self.size}".encode()).hexdigest()
        return self.root / h[:2] / f"{h}.npy"

    def get(self, path: str) -> np.ndarray:
        key = self._key(path)
        if key.exists():
            try:
                return np.load(key)
            except (OSError, ValueError):
                pass  # a partial file from a killed worker: decode again
        img = decode_resize(read_local(path, self.max_bytes), self.size)
        key.parent.mkdir(exist_ok=True)
        tmp = key.with_name(f"{key.name}.{os.getpid()}.tmp")
        with open(tmp, "wb") as f:
            np.save(f, img)
        os.replace(tmp, key)
        return img


class ProductDataset(Dataset):
    """Items of an ingested products frame: image tensor (zeros when absent), text, category.

    Returns dicts with ``index``, ``image`` (3, S, S), ``has_image``, ``text``, ``channel_text``, ``category``.
    """

    def __init__(self, products: pd.DataFrame, image_size: int = 224, mean: float | tuple = 0.5,
                 std: float | tuple = 0.5, cache_dir: str | os.PathLike | None = None,
                 with_text: bool = True, max_text_chars: int = 600, max_image_bytes: int = MAX_IMAGE_BYTES):
        self.paths = [p if h else None for p, h in zip(products[C.IMAGE_PATH], products[C.HAS_IMAGE])]
        titles = products[C.TITLE].tolist()
        descs = products[C.DESCRIPTION].tolist() if C.DESCRIPTION in products else [""] * len(products)
        self.texts = [product_text(t, d, max_text_chars) if with_text else "" for t, d in zip(titles, descs)]
        self.categories = products[C.CATEGORY].tolist() if C.CATEGORY in products else [""] * len(products)
        self.channel_texts = product_channel_texts(products, max_text_chars) if with_text else [""] * len(products)
        self.size, self.mean, self.std, self.max_image_bytes = image_size, mean, std, max_image_bytes
        self.cache = ImageCache(cache_dir, image_size, max_image_bytes) if cache_dir else None

    def __len__(self) -> int:
        return len(self.paths)

    def load_image(self, i: int) -> torch.Tensor | None:
        path = self.paths[i]
        if path is None:
            return None
        img = self.cache.get(path) if self.cache else decode_resize(read_local(path, self.max_image_bytes), self.size)
        return to_tensor(img, self.mean, self.std)

    def __getitem__(self, i: int) -> dict:
        img = self.load_image(i)
        return {
            "index": i,
            "image": img if img is not None else torch.zeros(3, self.size, self.size),
            "has_image": img is not None,
            "text": self.texts[i],
            "channel_text": self.channel_texts[i],
            "category": self.categories[i],
        }


def product_loader(dataset: ProductDataset, batch_size: int = 64, workers: int = 2,
                   shuffle: bool = False, seed: int = 0) -> DataLoader:
    """Batched loader; worker processes decode images in parallel."""
    gen = torch.Generator().manual_seed(seed)
    return DataLoader(dataset, batch_size=batch_size, shuffle=shuffle, num_workers=workers,
                      persistent_workers=False, generator=gen, pin_memory=False)
