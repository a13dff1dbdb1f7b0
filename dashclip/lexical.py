"""Words: the one normaliser, stemmer and tokenizer that the rule annotator (``dashclip.queries``),
BM25 (``dashclip.retrieval``) and the judge (``dashclip.judge``) share, so that a word matches the
same way wherever text is compared ("apples" and "apple", "shoes" and "shoe", "tomatoes" and
"tomato" are one word each)."""

from __future__ import annotations

import re
import unicodedata
from functools import lru_cache

_NON_WORD = re.compile(r"[^a-z0-9]+")
_IRREGULAR = {"shoes": "shoe", "scarves": "scarf", "children": "child", "halves": "half", "leaves": "leaf"}
# plural-only garment names whose singular is another word ("shorts" vs "short", "flats" vs "flat")
_NO_STEM = frozenset({"shorts", "flats", "tights", "jeans", "pants", "trousers", "leggings", "capris", "chinos",
                      "briefs", "boxers", "glasses", "sunglasses", "clothes", "pyjamas", "pajamas", "bits"})


def normalise(text: object) -> str:
    """Lower case ASCII words separated by single spaces ("Crème-Fraîche & Co's" -> "creme fraiche and cos")."""
    s = unicodedata.normalize("NFKD", "" if text is None else str(text))
    s = "".join(ch for ch in s if not unicodedata.combining(ch)).lower()
    s = s.replace("&", " and ").replace("'", "").replace("\u2019", "")
    return _NON_WORD.sub(" ", s).strip()


@lru_cache(maxsize=200_000)
def stem(w: str) -> str:
    """Plural to singular for the words shoppers type (tomatoes -> tomato, ladies -> lady, dresses -> dress)."""
    if w in _IRREGULAR:
        return _IRREGULAR[w]
    if w in _NO_STEM or len(w) <= 3:
        return w
    if w.endswith("ies") and len(w) > 4:
        return w[:-3] + "y"
    if w.endswith("oes") and len(w) > 4:
        return w[:-2]
    if w.endswith(("ches", "shes", "sses", "xes", "zzes")):
        return w[:-2]
    if w.endswith("s") and not w.endswith(("ss", "us")):
        return w[:-1]
    return w


def tokens(text: object) -> tuple[str, ...]:
    """Normalised, stemmed words of a text."""
    return tuple(stem(w) for w in normalise(text).split())
