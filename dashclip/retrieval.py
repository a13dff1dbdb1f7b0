"""Retrieval helpers shared by stage 2 and evaluation: BM25 over product text (words from
``dashclip.lexical``, as the annotator reads them), dense top-k."""

from __future__ import annotations

import bm25s
import numpy as np
import pandas as pd

from dashclip import columns as C
from dashclip.lexical import tokens


def product_search_text(products: pd.DataFrame) -> list[str]:
    """What text baselines index for a product: title, description and category path."""
    return [f"{t}. {d} {c.replace(' > ', ' ')}".strip() for t, d, c in
            zip(products[C.TITLE], products[C.DESCRIPTION], products[C.CATEGORY])]


class BM25Index:
    def __init__(self, texts: list[str]):
        self.bm25 = bm25s.BM25()
        corpus = [list(tokens(t)) or ["__empty__"] for t in texts]
        self.bm25.index(corpus, show_progress=False)
        self.n = len(texts)

    def scores(self, query: str) -> np.ndarray:
        toks = list(tokens(query))
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
