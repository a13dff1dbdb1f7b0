"""Shopper queries from a catalog, and the rule annotator that grades query–product pairs (ESCI).

The lexicon is built from the catalog itself (category names, colours, genders, usages, brands
and title words) plus a small table of synonyms and plural forms, so the same code works on a
user's catalog. ``parse`` turns any query text into an ``Intent``; ``Annotator.grade_intent``
grades every product against it at once. Both generated queries and queries a user supplies go
through the same parser.

Grading rules (the seed "human" annotator):
- the query's *type* is the category it names (a leaf such as "casual shoes", a coarser level
  such as "shoes" or "apple", or a product-class name such as "granny smith");
- attributes are colour, gender, usage and brand where the query names them; remaining
  content words are keywords that must appear in the product's title, description or category;
- 3 exact: the product is of the named type (or under it) and matches every attribute and
  keyword;
- 2 substitute: the product is of the named type with one attribute/keyword mismatch (not
  gender), or of a sibling type (same parent category below the top-level department, e.g.
  shirts for tees, one apple variety for another) matching every attribute;
- 1 partial/complement: of the named type or a sibling with more mismatches or the other
  gender; or the same top-level department matching the attributes;
- 0 irrelevant: anything else. A query without a type is graded on attributes/keywords alone
  (all match: 3; all but one: 1).
"""

from __future__ import annotations

import hashlib
import random
import re
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from dashclip import columns as C
from dashclip.lexical import stem as _stem

GENDER_WORDS = {
    "men": "men", "man": "men", "mens": "men", "men's": "men", "male": "men", "boys": "men", "boy": "men",
    "gents": "men", "women": "women", "woman": "women", "womens": "women", "women's": "women", "ladies": "women",
    "lady": "women", "female": "women", "girls": "women", "girl": "women", "unisex": "unisex",
}
USAGE_WORDS = {"casual": "casual", "formal": "formal", "office": "formal", "sports": "sports", "sport": "sports",
               "gym": "sports", "running": "sports", "ethnic": "ethnic", "traditional": "ethnic",
               "party": "party", "smart casual": "smart casual"}
# synonyms / plural forms for category names (catalog-independent shopper vocabulary)
TYPE_SYNONYMS = {
    "tshirts": ["t-shirt", "t shirt", "tee", "tees", "tshirt", "t-shirts", "polo"],
    "shirts": ["shirt", "button down"],
    "casual shoes": ["sneakers", "sneaker", "casual shoe"],
    "sports shoes": ["running shoes", "trainers", "sport shoes", "training shoes"],
    "formal shoes": ["office shoes", "dress shoes", "formal shoe"],
    "flip flops": ["flip flop", "slippers", "chappals"],
    "sandals": ["sandal"],
    "heels": ["heel", "high heels", "pumps"],
    "flats": ["flat shoes", "ballerinas"],
    "trousers": ["trouser", "pants", "chinos"],
    "track pants": ["joggers", "trackpants"],
    "jeans": ["denim", "denims"],
    "kurtas": ["kurta"],
    "kurtis": ["kurti"],
    "tops": ["top", "blouse"],
    "sweaters": ["sweater", "pullover", "jumper"],
    "sweatshirts": ["sweatshirt", "hoodie", "hoodies"],
    "jackets": ["jacket", "coat"],
    "handbags": ["handbag", "purse", "bag", "bags"],
    "backpacks": ["backpack", "school bag", "rucksack"],
    "wallets": ["wallet"],
    "belts": ["belt"],
    "watches": ["watch"],
    "caps": ["cap", "hat"],
    "socks": ["sock"],
    "ties": ["tie"],
    "dresses": ["dress"],
    "skirts": ["skirt"],
    "shorts": ["short"],
    "shoes": ["shoe", "footwear"],
    "yoghurt": ["yogurt", "yoghurts", "yogurts"],
    "juice": ["juices"],
    "milk": [],
    "apple": ["apples"],
    "pear": ["pears"],
    "melon": ["melons"],
    "tomato": ["tomatoes"],
    "potato": ["potatoes", "potatos"],
    "onion": ["onions"],
    "pepper": ["peppers", "bell pepper", "capsicum"],
    "mushroom": ["mushrooms"],
    "carrots": ["carrot"],
    "banana": ["bananas"],
    "orange": ["oranges"],
    "lemon": ["lemons"],
    "lime": ["limes"],
    "avocado": ["avocados"],
    "mango": ["mangoes", "mangos"],
    "kiwi": ["kiwis", "kiwi fruit"],
    "satsumas": ["satsuma", "mandarin", "mandarins", "clementines"],
    "fruit": ["fruits"],
    "vegetables": ["vegetable", "veggies", "veg"],
}
KEYWORD_SYNONYMS = {"ecological": ["organic", "eco"], "lactose": ["lactose free"], "natural": ["plain"]}
STOP = {"for", "the", "a", "an", "and", "with", "in", "of", "to", "my", "on", "buy", "cheap", "best", "new", "online",
        "size", "pack", "&"}


def _norm(s: str) -> str:
    return re.sub(r"\s+", " ", re.sub(r"[^\w\s'&.-]", " ", str(s).lower())).strip()


@dataclass
class Intent:
    types: set[str] = field(default_factory=set)  # category paths (any level) the query names
    color: str | None = None
    gender: str | None = None
    usage: str | None = None
    brand: str | None = None
    keywords: list[str] = field(default_factory=list)


def brand_of(title: str, gender: str) -> str:
    """Fashion titles read '<brand> <gender> ...': the words before the gender word."""
    words = title.split()
    for i, w in enumerate(words):
        if GENDER_WORDS.get(w.lower().strip(",")) is not None or w.lower() in ("kids", "unisex"):
            return " ".join(words[:i]).lower() if i > 0 else ""
    return ""


class Lexicon:
    """Query vocabulary built from a catalog (ingested products frame)."""

    def __init__(self, products: pd.DataFrame):
        self.type_terms: dict[str, set[str]] = {}
        paths = sorted(set(products[C.CATEGORY]))
        for path in paths:
            segs = path.split(" > ")
            for depth in range(1, len(segs) + 1):
                prefix = " > ".join(segs[:depth])
                name = _norm(segs[depth - 1])
                for term in [name, *TYPE_SYNONYMS.get(name, [])]:
                    self.type_terms.setdefault(term, set()).add(prefix)
        self.colors = sorted({_norm(c) for c in products[C.COLOR] if c}, key=len, reverse=True)
        brands = [brand_of(t, g) for t, g in zip(products[C.TITLE], products[C.GENDER])]
        self.brands = sorted({b for b in brands if b and len(b) > 1}, key=len, reverse=True)
        self.max_n = 4

    def parse(self, query: str) -> Intent:
        words = _norm(query).split()
        it = Intent()
        heads: list[str] = []
        i = 0
        while i < len(words):
            matched = False
            for n in range(min(self.max_n, len(words) - i), 0, -1):
                gram = " ".join(words[i:i + n])
                if gram in self.type_terms:
                    # the last type named is the head noun ("apple juice" is juice); earlier
                    # type words become keywords that qualify it
                    if it.types and self.type_terms[gram] != it.types:
                        it.keywords.extend(heads)
                    it.types = set(self.type_terms[gram])
                    heads = [gram]
                elif gram in self.colors and it.color is None:
                    it.color = gram
                elif gram in GENDER_WORDS and it.gender is None:
                    it.gender = GENDER_WORDS[gram]
                elif gram in USAGE_WORDS and it.usage is None:
                    it.usage = USAGE_WORDS[gram]
                elif gram in self.brands and it.brand is None:
                    it.brand = gram
                else:
                    continue
                i += n
                matched = True
                break
            if not matched:
                if words[i] not in STOP:
                    it.keywords.append(words[i])
                i += 1
        # a colour word that is also a product type ("orange") counts as the type when no other type
        if not it.types and it.color and it.color in self.type_terms:
            it.types |= self.type_terms[it.color]
            it.color = None
        return it


@dataclass
class ProductView:
    path: str
    color: str
    gender: str
    usage: str
    brand: str
    text: str  # title + description + category, normalised, for keywords


def product_views(products: pd.DataFrame) -> list[ProductView]:
    out = []
    for r in products.itertuples(index=False):
        d = r._asdict()
        text = _norm(f"{d[C.TITLE]} {d[C.DESCRIPTION]} {d[C.CATEGORY]}")
        out.append(ProductView(d[C.CATEGORY], _norm(d[C.COLOR]), _norm(d[C.GENDER]), _norm(d[C.USAGE]),
                               brand_of(d[C.TITLE], d[C.GENDER]), " " + " ".join(_stem(w) for w in text.split()) + " "))
    return out


def _type_relation(types: set[str], path: str) -> int:
    """3: product under a named type; 2: sibling (same parent); 1: same top level; 0: none."""
    best = 0
    for t in types:
        if path == t or path.startswith(t + " > "):
            return 3
        tsegs, psegs = t.split(" > "), path.split(" > ")
        # siblings share a parent below the department ("Topwear" for shirts and tees, "Apple"
        # for two apple varieties); two fruits that only share "Fruit" are not substitutes
        if len(tsegs) >= 3 and psegs[: len(tsegs) - 1] == tsegs[:-1]:
            best = max(best, 2)
        elif tsegs[0] == psegs[0]:
            best = max(best, 1)
    return best


class Annotator:
    """The rule annotator over one catalog; ``grade_all`` labels every product for a query (vectorised)."""

    def __init__(self, products: pd.DataFrame, lexicon: Lexicon | None = None):
        self.products = products.reset_index(drop=True)
        self.lexicon = lexicon or Lexicon(products)
        views = product_views(self.products)
        self.path_codes, self.paths = pd.factorize(pd.Series([v.path for v in views]))
        self.color = np.array([v.color for v in views], dtype=object)
        self.gender = np.array([v.gender for v in views], dtype=object)
        self.usage = np.array([v.usage for v in views], dtype=object)
        self.brand = np.array([v.brand for v in views], dtype=object)
        self.text = pd.Series([v.text for v in views])

    def _mismatches(self, it: Intent) -> np.ndarray:
        mism = np.zeros(len(self.products), dtype=np.int64)
        if it.color:
            in_text = self.text.str.contains(f" {re.escape(it.color)} ", regex=True).to_numpy()
            ok = np.array([bool(x) and (it.color in x or x in it.color) for x in self.color])
            mism += ~(ok | ((self.color == "") & in_text))
        if it.usage:
            mism += (self.usage != "") & (self.usage != it.usage)
        if it.brand:
            mism += self.brand != it.brand
        for k in it.keywords:
            alts = [k] + [w for w, syns in KEYWORD_SYNONYMS.items() if k in syns]
            hit = np.zeros(len(self.products), dtype=bool)
            for a in alts:
                hit |= self.text.str.contains(f" {re.escape(_stem(a))} ", regex=True).to_numpy()
            mism += ~hit
        return mism

    def grade_intent(self, it: Intent) -> np.ndarray:
        mism = self._mismatches(it)
        g = self.gender
        gender_bad = (np.zeros(len(g), dtype=bool) if not it.gender or it.gender == "unisex"
                      else (g != "") & (g != it.gender) & (g != "unisex"))
        if not it.types:
            if not (it.color or it.usage or it.brand or it.keywords or it.gender):
                return np.zeros(len(g), dtype=np.int64)
            out = np.where(mism == 0, 3, np.where(mism == 1, 1, 0))
            return np.where(gender_bad, 0, out)
        rel = np.array([_type_relation(it.types, p) for p in self.paths])[self.path_codes]
        has_attr = bool(it.color or it.brand or it.usage or it.keywords)
        g3 = np.where(gender_bad, 1, np.where(mism == 0, 3, np.where(mism == 1, 2, 1)))
        g2 = np.where((mism == 0) & ~gender_bad, 2, np.where(mism <= 1, 1, 0))
        g1 = np.where((mism == 0) & ~gender_bad & has_attr, 1, 0)
        return np.select([rel == 3, rel == 2, rel == 1], [g3, g2, g1], 0).astype(np.int64)

    def grade_all(self, query: str) -> np.ndarray:
        return self.grade_intent(self.lexicon.parse(query))

    def grade_pairs(self, queries: list[str], rows: list[int]) -> list[int]:
        cache: dict[str, np.ndarray] = {}
        out = []
        for q, r in zip(queries, rows):
            if q not in cache:
                cache[q] = self.grade_all(q)
            out.append(int(cache[q][r]))
        return out


# --- query generation ----------------------------------------------------------------------
def _type_phrase(path: str, rng: random.Random) -> str:
    segs = path.split(" > ")
    leaf = _norm(segs[-1])
    choices = [leaf] + TYPE_SYNONYMS.get(leaf, [])
    if len(segs) >= 2 and rng.random() < 0.2:  # coarser: "shoes", "apple"
        mid = _norm(segs[-2])
        choices = [mid] + TYPE_SYNONYMS.get(mid, [])
    return rng.choice(choices)


def generate_query(row: dict, rng: random.Random) -> str:
    """One realistic shopper query for a product: short, lower case, some attributes, synonyms."""
    cat = row[C.CATEGORY]
    parts: list[str] = []
    typ = _type_phrase(cat, rng) if cat else ""
    brand = brand_of(row[C.TITLE], row[C.GENDER])
    color, gender, usage = _norm(row[C.COLOR]), _norm(row[C.GENDER]), _norm(row[C.USAGE])
    if row[C.SOURCE] and not (color or gender or usage):
        # grocery-like rows: the class name, its words, or the type with a title word
        title = _norm(row[C.TITLE])
        words = [w for w in title.split() if w not in STOP]
        r = rng.random()
        if r < 0.35:
            return title
        if r < 0.6 and words:
            return " ".join(rng.sample(words, min(len(words), rng.choice([1, 2]))))
        return " ".join(dict.fromkeys(([rng.choice(words)] if words and rng.random() < 0.6 else []) + [typ])).strip()
    suffix = ""
    if gender and rng.random() < 0.5:
        g = rng.choice({"men": ["men", "mens", "men's", "for men"], "women": ["women", "womens", "ladies", "for women"]}.get(gender, [gender]))
        if g.startswith("for "):
            suffix = g
        else:
            parts.append(g)
    if brand and rng.random() < 0.25:
        parts.append(brand)
    if color and rng.random() < 0.5:
        parts.append(color)
    if usage and rng.random() < 0.2:
        parts.append(usage)
    rng.shuffle(parts)
    parts.insert(rng.randint(0, len(parts)) if rng.random() < 0.3 else len(parts), typ)
    q = " ".join(p for p in parts + [suffix] if p)
    words = q.split()
    q = " ".join(w for i, w in enumerate(words) if i == 0 or w != words[i - 1])  # "yellow yellow onion"
    if rng.random() < 0.05 and len(q) > 6:  # partial query, as typed
        q = q[: rng.randint(max(3, len(q) - 3), len(q) - 1)]
    return q.strip()


def generate_queries(products: pd.DataFrame, per_category: int = 8, per_product: float = 0.5, seed: int = 0,
                     exclude: set[str] | None = None, prefix: str = "q") -> pd.DataFrame:
    """Several queries per category path plus a sample per product; unique texts; ``query_id, query``."""
    rng = random.Random(seed)
    exclude = exclude or set()
    rows = products.to_dict("records")
    by_cat: dict[str, list[dict]] = {}
    for r in rows:
        by_cat.setdefault(r[C.CATEGORY], []).append(r)
    seen, out = set(), []

    def add(q: str) -> None:
        if q and len(q) >= 2 and q not in seen and q not in exclude:
            seen.add(q)
            qid = f"{prefix}-{hashlib.sha1(q.encode()).hexdigest()[:10]}"
            out.append({C.QUERY_ID: qid, C.QUERY: q})

    for cat in sorted(by_cat):
        for _ in range(per_category):
            add(generate_query(rng.choice(by_cat[cat]), rng))
    n = int(per_product * len(rows))  # above one query per product, products are drawn again
    extra = rng.choices(rows, k=n - len(rows)) if n > len(rows) else []
    for r in rng.sample(rows, min(n, len(rows))) + extra:
        add(generate_query(r, rng))
    return pd.DataFrame(out, columns=[C.QUERY_ID, C.QUERY])
