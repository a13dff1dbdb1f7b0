"""One inference module: the trunk-cache path (training, validation, evaluation) gives the embeddings
the pixel path serves (embed CLI, Spark jobs, online), on real catalog images.

Tolerance: the trunk cache stores the frozen trunks' outputs (image map, text token states) as
float16 (relative rounding ~5e-4), so the two paths differ by that rounding only: each served
embedding (unit length) is within 5e-4 of the other in every coordinate and their cosine is above
0.99999 (measured on the tiny configs: at most 1e-4 apart)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from dashclip import columns as C
from dashclip.catalog import ingest_frame, read_catalog
from dashclip.config import load_model_config
from dashclip.inference import ProductEmbedder, QueryEmbedder, cached_product_parts, query_parts, served
from dashclip.model import DashCLIP
from dashclip.trunk_cache import build_trunk_cache

ATOL, MIN_COS = 5e-4, 0.99999


@pytest.fixture(scope="module")
def real_products(data_dir):
    """Six shipped products, three from each source, one of them without text and one without image."""
    raw = read_catalog(data_dir / "catalog.csv")
    picks = pd.concat([g.head(3) for _, g in raw.groupby(raw[C.PRODUCT_ID].str.split("-").str[0])])
    picks = picks.reset_index(drop=True).astype(str)
    picks.loc[0, [C.TITLE, C.DESCRIPTION]] = ""  # image only
    picks.loc[1, "image"] = ""  # text only
    return ingest_frame(picks, data_dir, progress=False).products


def checkpoint(tmp_path, config: str, text_channel: float) -> DashCLIP:
    torch.manual_seed(0)
    cfg = load_model_config(config).model_copy(update={"text_channel": text_channel})
    model = DashCLIP(cfg, with_query_tower=True)
    model.save_pretrained(tmp_path / config, stage="tiny")
    return DashCLIP.from_pretrained(tmp_path / config).eval()


def assert_same(a: np.ndarray, b: np.ndarray) -> None:
    np.testing.assert_allclose(a, b, atol=ATOL)
    cos = (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))
    assert cos.min() > MIN_COS, cos


@pytest.mark.parametrize("config", ["tiny-effnet", "tiny-random"])
@pytest.mark.parametrize("text_channel", [0.0, 0.3])
def test_trunk_cache_path_equals_pixel_path_on_real_images(tmp_path, real_products, config, text_channel):
    model = checkpoint(tmp_path, config, text_channel)
    assert real_products[C.HAS_IMAGE].sum() >= 4
    cache = build_trunk_cache(model, real_products, cache_dir=None, workers=0, progress=False)
    shared, channel = cached_product_parts(model, cache, real_products)
    via_cache = served(model, shared, channel).numpy()
    via_pixels = ProductEmbedder(tmp_path / config, device="cpu", batch_size=4).embed_products(real_products)
    assert via_cache.shape == via_pixels.shape == (len(real_products), model.out_dim)
    assert_same(via_cache, via_pixels)


def test_queries_evaluated_are_the_queries_served(tmp_path):
    model = checkpoint(tmp_path, "tiny-random", 0.3)
    queries = ["red  shirt ", "green apple", "Golden Delicious"]
    shared, channel = query_parts(model, queries)
    evaluated = served(model, shared, channel).numpy()
    np.testing.assert_allclose(evaluated, QueryEmbedder(tmp_path / "tiny-random", device="cpu").embed(queries),
                               atol=1e-6)
