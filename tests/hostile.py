"""Builders for small catalogs with deliberately bad rows (used by several test modules)."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image


def jpeg_bytes(seed: int, size: tuple[int, int] = (64, 48)) -> bytes:
    rng = np.random.default_rng(seed)
    arr = rng.integers(0, 255, size=(size[1], size[0], 3), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="JPEG", quality=90)
    return buf.getvalue()


def make_hostile_catalog(root: Path) -> Path:
    """A catalog CSV with one row of each kind of trouble; returns the CSV path.

    Rows (0-based):
      0 good            1 corrupt jpeg      2 truncated jpeg   3 missing file (kept text-only)
      4 empty title, image ok (kept)        5 empty title+desc, no image (rejected)
      6 duplicate of row 0 (rejected)       7 unicode + control chars (kept, normalised)
      8 10 MB description (kept, truncated) 9 empty product_id (rejected)
     10 no image field (kept text-only)    11 image too small (rejected)
    """
    img = root / "img"
    img.mkdir(parents=True, exist_ok=True)
    (img / "good.jpg").write_bytes(jpeg_bytes(0))
    (img / "good2.jpg").write_bytes(jpeg_bytes(1))
    (img / "corrupt.jpg").write_bytes(b"\xff\xd8\xff\xe0 this is not really a jpeg" * 10)
    full = jpeg_bytes(2, (128, 128))
    (img / "truncated.jpg").write_bytes(full[: len(full) // 2])
    (img / "tiny.jpg").write_bytes(jpeg_bytes(3, (4, 4)))
    rows = [
        ("p0", "Red Cotton Shirt", "A shirt.", "Apparel > Topwear > Shirts", "img/good.jpg"),
        ("p1", "Corrupt Shoe", "", "Footwear > Shoes", "img/corrupt.jpg"),
        ("p2", "Truncated Apple", "", "Fruit > Apple", "img/truncated.jpg"),
        ("p3", "Missing Banana", "yellow", "Fruit > Banana", "img/does_not_exist.jpg"),
        ("p4", "", "", "Fruit > Apple", "img/good2.jpg"),
        ("p5", "", "", "Fruit > Pear", ""),
        ("p0", "Duplicate Shirt", "", "Apparel > Topwear > Shirts", "img/good.jpg"),
        ("p7", "Café  crème\u0007 sneakers 👟", "naïve\tdescription", "Footwear>Shoes >  Casual", "img/good.jpg"),
        ("p8", "Long Description Tea", "x" * 10_000_000, "Packages > Tea", "img/good.jpg"),
        ("  ", "No Id", "", "Fruit", "img/good.jpg"),
        ("p10", "Text Only Melon", "", "Fruit > Melon", ""),
        ("p11", "Tiny Image Kiwi", "", "Fruit > Kiwi", "img/tiny.jpg"),
    ]
    df = pd.DataFrame(rows, columns=["product_id", "title", "description", "category", "image"])
    df["color"] = ""
    df["gender"] = ""
    df["usage"] = ""
    df["source"] = "hostile"
    path = root / "catalog.csv"
    df.to_csv(path, index=False)
    return path
