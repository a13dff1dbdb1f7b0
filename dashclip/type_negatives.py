"""Hard negatives by product type for stage 2: candidates a query's words reach but whose type it
does not ask for, mined from the catalog's categories.

Two kinds per query (the query's type is the category it names, read by the annotator's lexicon):
- *other type, shared word*: products whose title carries one of the query's words but whose
  category is outside the named type (the apple juice for "apples", the oat milk for "oat
  yoghurt", the jeans for "slim fit trousers");
- *same type, modifier missing*: products of the named type whose title lacks every word that
  qualifies the type in the query (the vanilla yoghurt for "natural yoghurt", the dairy milk for
  "oat milk").
Lexical and embedding mining rarely reach either: BM25 and the stage-1 embedding rank the many
products of the asked type first. Up to ``k`` per query, spread over categories (one per category
in turn), drawn with their own seeded generator so the rest of stage 2's sampling is unchanged.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from dashclip import columns as C
from dashclip.queries import GENDER_WORDS, STOP, Lexicon, _norm, _stem


def _forms(w: str) -> set[str]:
    """A word, its light stem and its singular ("apples" -> "apple" as well as "appl")."""
    return {w, _stem(w), w[:-1] if w.endswith("s") and len(w) > 3 else w}


class TypeNegativeMiner:
    """Title-word postings and category paths of a catalog (the stage-2 training products)."""

    def __init__(self, products: pd.DataFrame, lexicon: Lexicon | None = None):
        self.lexicon = lexicon or Lexicon(products)
        self.paths = products[C.CATEGORY].fillna("").to_numpy(dtype=object)
        self.path_codes, uniq = pd.factorize(pd.Series(self.paths, dtype=object))
        self.uniq_paths = list(uniq)
        words: dict[str, list[int]] = {}
        for i, t in enumerate(products[C.TITLE].fillna("")):
            for w in {f for x in _norm(t).split() for f in _forms(x)}:
                words.setdefault(w, []).append(i)
        self.postings: dict[str, np.ndarray] = {w: np.asarray(r, dtype=np.int64) for w, r in words.items()}

    def _under(self, types: set[str]) -> np.ndarray:
        """(N,) products whose category is one of ``types`` or below it."""
        hit = np.array([any(p == t or p.startswith(t + " > ") for t in types) for p in self.uniq_paths], dtype=bool)
        return hit[self.path_codes]

    def _rows(self, words: list[str]) -> np.ndarray:
        found = [self.postings[f] for w in words for f in _forms(w) if f in self.postings]
        return np.unique(np.concatenate(found)) if found else np.zeros(0, np.int64)

    def candidates(self, query: str) -> tuple[np.ndarray, np.ndarray]:
        """(other type sharing a query word, same type lacking the query's modifiers) rows."""
        it = self.lexicon.parse(query)
        if not it.types:
            return np.zeros(0, np.int64), np.zeros(0, np.int64)
        words = [w for w in _norm(query).split() if w not in STOP]
        typed = {w for w in words if w in self.lexicon.type_terms}
        same = self._under(it.types)
        # gender words are shared by half the catalog: they do not make a candidate hard
        shared = self._rows([w for w in words if w not in GENDER_WORDS])
        other = shared[~same[shared]]
        modifiers = [w for w in words if w not in typed and w not in GENDER_WORDS and w not in (it.color or "").split()]
        if not modifiers:
            return other, np.zeros(0, np.int64)
        has_mod = np.zeros(len(same), dtype=bool)
        has_mod[self._rows(modifiers)] = True
        return other, np.nonzero(same & ~has_mod)[0]

    def spread(self, rows: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
        """Up to k of ``rows``, one per category in turn (categories and rows in a seeded order)."""
        if k <= 0 or len(rows) == 0:
            return np.zeros(0, np.int64)
        rows = rng.permutation(rows)
        codes = self.path_codes[rows]
        # rank of each row within its category, then categories in order of first appearance
        order = np.lexsort((np.arange(len(rows)), pd.Series(codes).groupby(codes).cumcount().to_numpy()))
        return rows[order[:k]]

    def mine(self, queries: list[str], k: int, seed: int = 0) -> list[np.ndarray]:
        """Per query, up to ``k`` hard negatives by type: half from each kind where both have some."""
        rng = np.random.default_rng(seed)
        out = []
        for q in queries:
            other, same = self.candidates(q)
            k_other = k - min(len(same), k // 2)
            picked = self.spread(other, k_other, rng)
            picked = np.concatenate([picked, self.spread(same, k - len(picked), rng)])
            out.append(np.unique(picked))
        return out
