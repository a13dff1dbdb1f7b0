"""A small synthetic catalog in the canonical format (text only) and a small ranker over the embedding
features, for tests, probes and quick demos."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from dashclip import columns as DC
from dashclip.catalog import ingest_frame
from features import columns as FC
from ranking import columns as R
from ranking.model import LGBParams, Ranker, RankerConfig, fit_binary

_FASHION = [("Apparel > Topwear > Tshirts", "Tshirt"), ("Apparel > Topwear > Shirts", "Shirt"),
            ("Apparel > Bottomwear > Jeans", "Jeans"), ("Footwear > Shoes > Casual Shoes", "Casual Shoes"),
            ("Footwear > Shoes > Sports Shoes", "Sports Shoes"), ("Accessories > Watches > Watches", "Watch")]
_GROCERY = [("Fruit > Apple > Granny Smith", "Granny Smith Apple"), ("Fruit > Banana", "Banana"),
            ("Vegetables > Tomato", "Tomato")]
_COLORS = ["Black", "Blue", "White", "Red", "Green", "Grey"]
_BRANDS = ["Nike", "Puma", "Roadster", "Fossil", "Adidas"]


def toy_catalog(n: int = 240, seed: int = 0) -> pd.DataFrame:
    """An ingested products frame of `n` products (~80% fashion with attributes, ~20% grocery)."""
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n):
        if rng.random() < 0.8:
            cat, noun = _FASHION[rng.integers(len(_FASHION))]
            color, gender = _COLORS[rng.integers(len(_COLORS))], ["Men", "Women"][rng.integers(2)]
            usage = ["Casual", "Formal", "Sports"][rng.integers(3)]
            brand = _BRANDS[rng.integers(len(_BRANDS))]
            rows.append({DC.TITLE: f"{brand} {gender} {color} {noun}", DC.CATEGORY: cat, DC.COLOR: color,
                         DC.GENDER: gender, DC.USAGE: usage, DC.SOURCE: "toy_fashion"})
        else:
            cat, noun = _GROCERY[rng.integers(len(_GROCERY))]
            rows.append({DC.TITLE: f"{noun} {['organic', 'fresh', 'ripe'][rng.integers(3)]}", DC.CATEGORY: cat,
                         DC.COLOR: "", DC.GENDER: "", DC.USAGE: "", DC.SOURCE: "toy_grocery"})
    raw = pd.DataFrame(rows)
    raw.insert(0, DC.PRODUCT_ID, [f"t{i:05d}" for i in range(n)])
    raw[DC.DESCRIPTION], raw[DC.IMAGE] = "", ""
    return ingest_frame(raw.astype(str), Path("."), progress=False).products


def toy_ranker(model_version: str = "v1", name: str = "with_embeddings") -> Ranker:
    """Both tasks' LightGBM models (20 rounds) on 600 random rows of the embedding features, clicks
    following the query–product cosine."""
    feats = list(R.EMBEDDING_FEATURES)
    rng = np.random.default_rng(0)
    X = pd.DataFrame(rng.random((600, len(feats))), columns=feats)
    y = (X[FC.COS_QUERY_PRODUCT] + 0.5 * rng.random(600) > 0.9).to_numpy(float)
    p = LGBParams(num_boost_round=20, early_stopping_rounds=5, min_data_in_leaf=10)
    return Ranker({t: fit_binary(X[:450], y[:450], X[450:], y[450:], p) for t in R.TASKS},
                  RankerConfig(name=name, features=feats, model_version=model_version, params=p))
