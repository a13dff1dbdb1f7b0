"""Image preprocessing and the product dataset/dataloader (no torchvision)."""

from __future__ import annotations

import numpy as np
import torch

from dashclip import columns as C
from dashclip.catalog import ingest
from dashclip.data import ProductDataset, decode_resize, product_loader, product_text, to_tensor
from tests.hostile import make_hostile_catalog


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
