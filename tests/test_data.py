"""Image preprocessing and the product dataset/dataloader (no torchvision)."""

from __future__ import annotations

import os

import numpy as np
import pandas as pd
import pytest
import torch

from dashclip import columns as C
from dashclip.catalog import ingest
from dashclip.data import ProductDataset, decode_resize, product_loader, product_text, to_tensor
from tests.hostile import fifo_watchdog, jpeg_bytes, make_hostile_catalog


def test_decode_resize_centre_crops_to_square(tmp_path):
    from PIL import Image

    arr = np.zeros((40, 100, 3), dtype=np.uint8)
    arr[:, 45:55] = 255  # a white bar in the centre survives the crop
    Image.fromarray(arr).save(tmp_path / "w.png")
    out = decode_resize(str(tmp_path / "w.png"), 32)
    assert out.shape == (32, 32, 3) and out.dtype == np.uint8
    assert out[:, 16].mean() > 200 and out[:, 0].mean() < 10
    t = to_tensor(out)
    assert t.shape == (3, 32, 32) and float(t.min()) >= -1.0 and float(t.max()) <= 1.0


def test_dataset_and_loader_with_workers_and_cache(tmp_path):
    prods = ingest(make_hostile_catalog(tmp_path / "cat"), progress=False).products
    ds = ProductDataset(prods, image_size=32, cache_dir=tmp_path / "cache")
    batches = list(product_loader(ds, batch_size=4, workers=2))
    assert sum(len(b["index"]) for b in batches) == len(prods)
    images = torch.cat([b["image"] for b in batches])
    has = torch.cat([b["has_image"] for b in batches])
    assert images.shape == (len(prods), 3, 32, 32)
    assert has.tolist() == prods[C.HAS_IMAGE].tolist()
    assert images[~has].abs().sum() == 0  # text-only rows get a blank image and has_image False
    # the cache now holds the decoded images; a second pass gives identical tensors
    assert any((tmp_path / "cache").rglob("*.npy"))
    again = torch.cat([b["image"] for b in product_loader(ds, batch_size=4, workers=0)])
    assert torch.equal(images, again)
    texts = [t for b in batches for t in b["text"]]
    assert texts[0] == "Red Cotton Shirt. A shirt."


def test_product_text():
    assert product_text("Tee", "") == "Tee"
    assert product_text("", "only desc") == "only desc"
    assert product_text("A", "b" * 1000, max_chars=10) == "A. bbbbbbb"


def test_image_loading_refuses_fifos_and_oversized_files_without_blocking(tmp_path):
    """The loader reads image files the same guarded way ingestion does: a path that became a
    FIFO or a huge file between ingestion and training fails at once with the reason."""
    os.mkfifo(tmp_path / "pipe.jpg")
    with open(tmp_path / "huge.jpg", "wb") as f:
        f.truncate(60_000_000)
    (tmp_path / "good.jpg").write_bytes(jpeg_bytes(0))
    paths = [str(tmp_path / n) for n in ("pipe.jpg", "huge.jpg", "good.jpg")]
    products = pd.DataFrame({C.IMAGE_PATH: paths, C.HAS_IMAGE: True, C.TITLE: "t", C.DESCRIPTION: "", C.CATEGORY: ""})
    for cache in (None, tmp_path / "cache"):
        ds = ProductDataset(products, image_size=32, cache_dir=cache)
        with fifo_watchdog(tmp_path / "pipe.jpg", every_s=5), pytest.raises(OSError, match=r"pipe\.jpg: not a regular file \(fifo\)"):
            ds[0]
        with pytest.raises(OSError, match=r"huge\.jpg: 60000000 bytes, over the 50000000-byte limit"):
            ds[1]
        assert ds[2]["has_image"] and ds[2]["image"].shape == (3, 32, 32)
