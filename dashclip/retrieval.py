"""Retrieval helpers shared by stage 2 and evaluation: BM25 over product text, dense top-k."""

from __future__ import annotations

import re

import bm25s
import numpy as np
import pandas as pd

from dashclip import columns as C

_TOKEN = re.compile(r"[a-z0-9]+")


def _stem(w: str) -> str:
    if len(w) > 4 and w.endswith("es") and not w.endswith("ss"):
        return w[:-2] if w[-3] in "sxz" or w.endswith(("ches", "shes", "oes")) else w[:-1]
    if len(w) > 3 and w.endswith("s") and not w.endswith("ss"):
        return w[:-1]
    return w


def tokenize(text: str) -> list[str]:
    """Lower-case word tokens with light plural stemming (shirts -> shirt, tomatoes -> tomato)."""
    return [_stem(w) for w in _TOKEN.findall(text.lower())]


def product_search_text(products: pd.DataFrame) -> list[str]:
    """What text baselines index for a product: title, description and category path."""
    return [f"{t}. {d} {c.replace(' > ', ' ')}".strip() for t, d, c in
            zip(products[C.TITLE], products[C.DESCRIPTION], products[C.CATEGORY])]


class BM25Index:
    def __init__(self, texts: list[str]):
        self.bm25 = bm25s.BM25()
        corpus = [tokenize(t) or ["__empty__"] for t in texts]
        self.bm25.index(corpus, show_progress=False)
        self.n = len(texts)

    def scores(self, query: str) -> np.ndarray:
        toks = tokenize(query)
        if not toks:
            return np.zeros(self.n, dtype=np.float32)
        return np.asarray(self.bm25.get_scores(toks), dtype=np.float32)

    def top_k(self, query: str, k: int) -> np.ndarray:
        s = self.scores(query)
        k = min(k, self.n)
        top = np.argpartition(-s, k - 1)[:k]
        return top[np.argsort(-s[top], kind="stable")]


def dense_top_k(q: np.ndarray, d: np.ndarray, k: int) -> np.ndarray:
    """(Q, E) x (N, E) -> (Q, k) indices by dot product, best first."""
    s = q @ d.T
    k = min(k, d.shape[0])
    top = np.argpartition(-s, k - 1, axis=1)[:, :k]
    order = np.argsort(-np.take_along_axis(s, top, 1), axis=1, kind="stable")
    return np.take_along_axis(top, order, 1)
