"""Builders for small catalogs with deliberately bad rows (used by several test modules)."""

from __future__ import annotations

import csv
import io
import os
import threading
from contextlib import contextmanager
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


CATALOG_HEADER = ["product_id", "title", "description", "category", "image", "color", "gender", "usage", "source"]
SPARSE_BYTES = 60_000_000  # over the default 50 MB image cap; sparse, so it costs no disk


def _row(pid: str, title: str, image: str) -> list[str]:
    return [pid, title, "", "Fruit > Test", image, "", "", "", "hostile-files"]


def make_hostile_files(root: Path, dev_zero: bool = True) -> tuple[Path, Path]:
    """A catalog whose image references attack the reader, and a folder beside it (outside it)
    holding a real image; returns (catalog CSV, outside folder). Rows (0-based):

      0 good                       1 symbolic-link loop        2 FIFO (a plain open blocks forever)
      3 sparse 60 MB file          4 ../ to the outside image  5 ../ to a missing outside file
      6 absolute outside image     7 symlink to the outside image
      8 /dev/zero (absolute; /dev/null when ``dev_zero`` is False: a reader without limits would
        exhaust memory on /dev/zero, so callers that cannot cap memory pass False)
      9 symlink to a good image inside (kept)   10 good (the run goes on after all of them)
    """
    img, outside = root / "img", root.parent / f"{root.name}-outside"
    img.mkdir(parents=True, exist_ok=True)
    outside.mkdir(parents=True, exist_ok=True)
    (img / "good.jpg").write_bytes(jpeg_bytes(10))
    (img / "good2.jpg").write_bytes(jpeg_bytes(11))
    (outside / "secret.jpg").write_bytes(jpeg_bytes(12))
    os.symlink("loop_b.jpg", img / "loop_a.jpg")
    os.symlink("loop_a.jpg", img / "loop_b.jpg")
    os.mkfifo(img / "pipe.jpg")
    with open(img / "huge.jpg", "wb") as f:
        f.truncate(SPARSE_BYTES)
    os.symlink(outside / "secret.jpg", img / "escape.jpg")
    os.symlink("good2.jpg", img / "alias.jpg")
    up = f"../{outside.name}"
    rows = [
        _row("h0", "Good", "img/good.jpg"), _row("h1", "Loop", "img/loop_a.jpg"), _row("h2", "Fifo", "img/pipe.jpg"),
        _row("h3", "Huge", "img/huge.jpg"), _row("h4", "Up", f"{up}/secret.jpg"), _row("h5", "Up missing", f"{up}/nope.jpg"),
        _row("h6", "Absolute", str(outside / "secret.jpg")), _row("h7", "Escape link", "img/escape.jpg"),
        _row("h8", "Device", "/dev/zero" if dev_zero else "/dev/null"), _row("h9", "Alias", "img/alias.jpg"),
        _row("h10", "Last good", "img/good.jpg"),
    ]
    path = root / "catalog.csv"
    with open(path, "w", newline="", encoding="utf-8") as f:
        csv.writer(f, lineterminator="\n").writerows([CATALOG_HEADER, *rows])
    return path, outside


@contextmanager
def fifo_watchdog(*fifos: Path, every_s: float = 10.0):
    """Every ``every_s`` seconds, opens each FIFO for writing without blocking and closes it: a
    reader blocked in open() then sees end-of-file, so a reader that regresses to a plain open
    fails its test instead of hanging the suite."""
    stop = threading.Event()

    def release() -> None:
        while not stop.wait(every_s):
            for fifo in fifos:
                try:
                    os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
                except OSError:
                    pass  # ENXIO: nobody is waiting to read

    t = threading.Thread(target=release, daemon=True)
    t.start()
    try:
        yield
    finally:
        stop.set()
