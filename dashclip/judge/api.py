"""``Judge``: grade free-text queries against a products frame; explain a grade; name a query's intent."""

from __future__ import annotations

import numpy as np
import pandas as pd

from dashclip import columns as C
from dashclip.judge import lexicon as L
from dashclip.judge.grader import (ATTRIBUTES, EXACT, LETTER, SUBSTITUTE, Grader, Verdict, brand_ok, catalog_vocabulary,
                                   fields_read, final_grades)
from dashclip.judge.products import FACT_FIELDS, product_tokens
from dashclip.judge.reading import Reading, read
from dashclip.judge.text import phrase_key
from dashclip.lexical import tokens

_SYNONYMS = {phrase_key(w)[0]: tuple(phrase_key(x)[0] for x in group) for group in L.KEYWORD_SYNONYMS for w in group}
_IMPLIED = {phrase_key(w)[0]: types for w, types in L.KEYWORD_IMPLIED.items()}
_ROLE_ORDER = ("type", "colour", "gender", "usage", "base", "plain", "flavour", "fat", "organic", "lactose", "pulp",
               "keyword", "brand", "set", "conj", "for", "stop", "shade")


def _first_sense(senses: dict) -> tuple:
    role = next(r for r in _ROLE_ORDER if r in senses)
    return role, senses[role]


class Judge:
    """An ESCI judge over one products frame (ingested catalog columns; title and category at least).

    ``grade_all(query)`` -> (n_products,) int64 grades 0..3 in the frame's row order;
    ``explain(query, row)`` -> "S:same_type+colour_mismatch" (letter, then reason codes).
    """

    def __init__(self, products: pd.DataFrame):
        self.products = products.reset_index(drop=True)
        self.tax, self.facts, self.phrases = catalog_vocabulary(self.products)
        self.grader = Grader(self.tax)
        self.n = len(self.facts)
        self._index_facts()
        self._index_words()
        self._parsed: dict[str, tuple[Reading, frozenset[str]]] = {}
        self._implied: dict[str, np.ndarray] = {}
        self._regional = {name: {phrase_key(r) for r in t.regional} for name, t in self.tax.types.items()}

    def _index_facts(self) -> None:
        """(N,) integer codes per product fact (profiles are grouped on them), products by brand and
        the bases each brand makes."""
        self._codes, self._card = {}, {}
        for f in FACT_FIELDS:
            seen: dict = {}
            self._codes[f] = np.fromiter((seen.setdefault(getattr(x, f), len(seen)) for x in self.facts),
                                         dtype=np.int64, count=self.n)
            self._card[f] = max(len(seen), 1)
        self._by_brand: dict[str, list[int]] = {}
        self._brand_bases: dict[str, set[str]] = {}
        for i, f in enumerate(self.facts):
            if f.brand:
                self._by_brand.setdefault(f.brand, []).append(i)
                if f.base:
                    self._brand_bases.setdefault(f.brand, set()).add(f.base)

    def _index_words(self) -> None:
        """Products by word (keywords), title words (named products), and phrase continuations
        (queries cut off as typed)."""
        self._postings: dict[str, list[int]] = {}
        for i, toks in enumerate(product_tokens(self.products)):
            for t in toks:
                self._postings.setdefault(t, []).append(i)
        self._titles = [frozenset(tokens(t)) for t in self.products[C.TITLE]] if C.TITLE in self.products else []
        self._known = set(self._postings) | {w for key in self.phrases.table for w in key}
        self._continuations: dict[tuple[str, ...], list[tuple[str, ...]]] = {}
        for key in self.phrases.table:
            self._continuations.setdefault(key[:-1], []).append(key)

    def parse(self, query: str) -> Reading:
        return self._read(query)[0]

    def _read(self, query: str) -> tuple[Reading, frozenset[str]]:
        if query not in self._parsed:
            toks = self.complete(tokens(query))
            q = read(self.phrases.spans(toks), self.tax, table=self.phrases.table)
            self._parsed[query] = self._with_implied(q), frozenset(toks)
        return self._parsed[query]

    def _with_implied(self, q: Reading) -> Reading:
        """What the query says without naming it: the base of a brand that makes one ("milk oatly":
        oat), the product of a brand that makes one kind ("tropicana oranges": a juice), women's wear
        for a type only women wear ("flats")."""
        if q.brand and q.base is None and len(self._brand_bases.get(q.brand, ())) == 1:
            q.base = next(iter(self._brand_bases[q.brand]))
        made = {self.facts[i].type for i in self._by_brand.get(q.brand or "", [])}
        if len(made) == 1 and made <= self.tax.made and q.heads and all(h in self.tax.produce for h in q.heads):
            q.flavours, q.heads = q.flavours + q.heads, tuple(made)  # "tropicana oranges": Tropicana makes juice
        if q.gender is None and q.heads and all(any(self.tax.is_a(h, w) for w in L.WOMENS_TYPES) for h in q.heads):
            q.gender = "women"
        return q

    def complete(self, toks: tuple[str, ...]) -> tuple[str, ...]:
        """A query cut off as typed ("arrow shir", "t sh"): its last word, when no product or phrase
        has it, becomes the one phrase it begins (with the words before it), or the one catalog word
        it begins; otherwise it stays a keyword any word it begins satisfies ("jum*")."""
        if toks and len(toks[-1]) == 1 and (toks[-1],) not in self.phrases.table:
            return toks[:-1]  # a stray letter ("women kurta s")
        if not toks or toks[-1] in self._known:
            return toks
        frag = toks[-1]
        for n in range(min(len(toks), self.phrases.max_len), 0, -1):
            if n == 1 and len(frag) < 3:
                break
            before = toks[len(toks) - n:-1]
            found = [k for k in self._continuations.get(before, []) if len(k) == n and k[-1].startswith(frag)]
            senses = {_first_sense(self.phrases.table[k]) for k in found}
            if len(senses) == 1:
                return toks[:len(toks) - n] + min(found, key=len)
            if senses:
                break
        words = [w for w in self._postings if w.startswith(frag)] if len(frag) >= 3 else []
        return toks[:-1] + ((words[0],) if len(words) == 1 else (frag + "*",))

    # --- grading -----------------------------------------------------------------------------------
    def _verdicts(self, q: Reading) -> tuple[list[Verdict], np.ndarray]:
        """One verdict per product profile (products equal on the facts this query reads) and (N,) profile ids."""
        key = np.zeros(self.n, dtype=np.int64)
        for f in fields_read(q, self.tax):
            key = key * self._card[f] + self._codes[f]
        _, first, inverse = np.unique(key, return_index=True, return_inverse=True)
        return [self.grader.verdict(q, self.facts[i]) for i in first], inverse

    def _word_mask(self, w: str) -> np.ndarray:
        m = np.zeros(self.n, dtype=bool)
        if w.endswith("*"):  # the start of a word, from a query cut off as typed
            for word in [x for x in self._postings if x.startswith(w[:-1])]:
                m[self._postings[word]] = True
            return m
        for alt in _SYNONYMS.get(w, (w,)):
            m[self._postings.get(alt, [])] = True
        if w in _IMPLIED:  # "winter jacket": every jacket is winter wear
            m |= self._implied_mask(w)
        return m

    def _implied_mask(self, w: str) -> np.ndarray:
        if w not in self._implied:
            self._implied[w] = np.array([any(self.tax.is_a(f.type, t) for t in _IMPLIED[w]) for f in self.facts],
                                        dtype=bool)
        return self._implied[w]

    def keyword_hits(self, q: Reading) -> np.ndarray:
        """(N, K) whether each product's text carries each of the query's K free keywords."""
        out = np.ones((self.n, len(q.keywords)), dtype=bool)
        for k, kw in enumerate(q.keywords):
            for w in kw:
                out[:, k] &= self._word_mask(w)
        return out

    def named_products(self, q: Reading, words: frozenset[str]) -> np.ndarray:
        """(N,) products the query names by brand and full title ("tropicana mandarin morning")."""
        out = np.zeros(self.n, dtype=bool)
        if q.brand:
            for brand, rows in self._by_brand.items():
                if brand_ok(q.brand, brand):
                    out[[i for i in rows if self._titles[i] <= words]] = True
        return out

    def _grade(self, query: str) -> tuple[np.ndarray, list[Verdict], np.ndarray, np.ndarray]:
        q, words = self._read(query)
        verdicts, inv = self._verdicts(q)
        hits = self.keyword_hits(q)
        field = lambda name: np.array([getattr(v, name) for v in verdicts])[inv]  # noqa: E731
        grades = final_grades(field("kind"), field("central").astype(bool), field("n_soft"), field("n_stated"),
                              field("n_matched"), (~hits).sum(1), hits.shape[1])
        named = self.named_products(q, words)
        if named.any():  # a shopper who types a product's full name asks for that product
            verdicts = verdicts + [Verdict(EXACT, ("named_product",))]
            inv = np.where(named, len(verdicts) - 1, inv)
            hits = np.where(named[:, None], True, hits)
            grades = np.where(named, 3, grades)
        return grades, verdicts, inv, hits

    def grade_all(self, query: str) -> np.ndarray:
        """(N,) grades 0..3 of every product for a free-text query."""
        return self._grade(query)[0]

    def grade_matrix(self, queries: list[str]) -> np.ndarray:
        return np.stack([self.grade_all(q) for q in queries]) if queries else np.zeros((0, self.n), np.int64)

    def grade_pairs(self, queries: list[str], rows: list[int]) -> list[int]:
        cache: dict[str, np.ndarray] = {}
        out = []
        for q, r in zip(queries, rows):
            if q not in cache:
                cache[q] = self.grade_all(q)
            out.append(int(cache[q][r]))
        return out

    def reasons(self, query: str) -> np.ndarray:
        """(N,) reason strings ("S:same_type+colour_mismatch") for every product."""
        q = self.parse(query)
        grades, verdicts, inv, hits = self._grade(query)
        return np.array([self._reason(grades[i], verdicts[inv[i]], q, hits[i]) for i in range(self.n)], dtype=object)

    def explain(self, query: str, row: int) -> str:
        q = self.parse(query)
        grades, verdicts, inv, hits = self._grade(query)
        return self._reason(grades[row], verdicts[inv[row]], q, hits[row])

    @staticmethod
    def _reason(grade: int, v: Verdict, q: Reading, hits: np.ndarray) -> str:
        codes = list(v.reasons)
        if not v.central:
            codes += [f"keyword_missing({' '.join(kw)})" for kw, ok in zip(q.keywords, hits) if not ok]
        if grade == 0 and v.kind == SUBSTITUTE and not v.central:
            codes.append("too_many_mismatches")
        if v.kind == ATTRIBUTES and not (v.n_stated + len(q.keywords)):
            codes = ["empty_query"]
        return f"{LETTER[int(grade)]}:{'+'.join(codes)}"

    # --- intent ------------------------------------------------------------------------------------
    def intent(self, query: str) -> str:
        """The intent class a query tests (``INTENTS``), from what it asks for."""
        q, tax = self.parse(query), self.tax
        heads = q.heads
        produce = [h for h in heads if h in tax.produce]
        if any(words in self._regional[h] for h, words in zip(heads, q.head_words)) and produce:
            return "vegetable_names"
        if any(h in tax.made and tax.is_a(h, "drink") for h in heads) or (
                produce and any(tax.is_a(h, j) for h in produce for j in L.JUICED_PRODUCE)):
            return "fresh_vs_made_from"
        if any(h in tax.dairy for h in heads) or q.base or q.lactose_free:
            return "plain_vs_flavoured" if (q.plain or q.flavours) and q.base is None else "dairy_vs_plant"
        if any(tax.root(h) in ("clothing", "footwear") for h in heads):
            return "footwear_apparel_type"
        return "general"

