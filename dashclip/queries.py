"""Shopper queries from a catalog, and the rule annotator that grades query–product pairs (ESCI).

The lexicon is built from the catalog itself (category names, colours, genders, usages, brands
and title words) plus a small table of synonyms and plural forms, so the same code works on a
user's catalog. ``parse`` turns any query text into an ``Intent``; ``grade`` scores a product
against it. Both generated queries and queries a user supplies go through the same parser.

Grading rules (the seed "human" annotator), after the ESCI guidelines (exact / substitute /
complement / irrelevant, where a substitute serves the same need):
- the query's *type* is the category it names (a leaf such as "casual shoes", a coarser level
  such as "shoes" or "apple", or a product-class name such as "granny smith"), as written, in
  the plural, under a shopper's or regional name ("eggplant", "courgettes"), or as a last word cut
  off while typing ("black mens sanda"); a category "<plant base> <type>" ("Oat Milk") and a
  plant yoghurt ("Soyghurt") are kinds of that type, on their base;
- attributes are colour, gender, age (kids' wear), usage, brand, base (dairy or a plant base:
  soy, oat, ...; "plant based", "vegan", "dairy free" ask for any plant base) and plain
  ("natural", "unflavoured") where the query names them; remaining content words are keywords
  that must appear in the product's title, description or category;
- central attributes fail a product outright (0): the other gender (unisex answers both); kids'
  wear for a query that does not ask for kids, and adult wear for one that does; a plant-based
  product for a dairy type named without a base ("milk", "yoghurt"), a dairy product for a plant
  base; a flavoured product (a flavour word in its title that is not its own produce type) for a
  plain query;
- 3 exact: the product is of the named type (or under it) and matches every attribute and keyword;
- 2 substitute: of the named type with other (non-central) mismatches: colour (a "navy blue"
  product answers "blue", a "blue" one does not answer "navy blue"), usage, brand, another plant
  base, keywords; or of a sibling type that serves the same need (same parent below the
  department: another apple variety; in fashion only the groups in ``SUBSTITUTE_SIBLINGS``, jeans
  for trousers, flats for heels, not a t-shirt for a sweater) matching every attribute;
- 1 complement: of a type used together with the named one (``COMPLEMENTS``: a tie for "shirt",
  a dupatta for "kurta", socks for "sports shoes"), whatever its colour or brand;
- 0 irrelevant: anything else, including a different type of the same department (a shirt for
  "trousers": not a substitute and not used with it) and products made from the named one (apple
  juice for "apples" is another type). A query without a type is graded on attributes and
  keywords alone: all match: 3; one non-central attribute off of two or more stated: 1; a
  keyword missing (usually the product noun the lexicon does not know): 0.
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
    "flats": ["flat shoes", "ballerinas", "ballet flats"],
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
    "kiwi": ["kiwis", "kiwi fruit", "kiwifruit"],
    "satsumas": ["satsuma", "mandarin", "mandarins", "clementines"],
    "fruit": ["fruits"],
    "vegetables": ["vegetable", "veggies", "veg"],
    # shoppers' and regional names the catalog spells otherwise
    "aubergine": ["eggplant", "eggplants", "brinjal", "brinjals"],
    "zucchini": ["courgette", "courgettes", "zucchinis"],
    "red beet": ["beetroot", "beetroots", "beet", "beets"],
    "cantaloupe": ["rockmelon", "muskmelon"],
    "papaya": ["pawpaw"],
    "sports sandals": ["sport sandals", "sports sandal"],
}
# shopper words for kids' wear; a product is kids' wear when its title says so
KIDS_WORDS = {"kids", "kid", "kid's", "kids'", "children", "childrens", "children's", "child", "boys", "boy", "girls",
              "girl", "baby", "babies", "infant", "infants", "toddler", "toddlers", "junior"}
KIDS_TITLE_WORDS = {"kids", "kid", "boys", "boy", "girls", "girl", "baby", "infant", "infants", "toddler", "junior"}
# the base of a dairy-type product: an explicit plant base, any plant base, or dairy asked by name
BASE_WORDS = {"soy": "soy", "soya": "soy", "oat": "oat", "oats": "oat", "almond": "almond", "coconut": "coconut",
              "plant": "plant", "plant based": "plant", "plant-based": "plant", "vegan": "plant", "dairy free": "plant",
              "dairy-free": "plant", "non dairy": "plant", "non-dairy": "plant", "dairy": "dairy", "cows": "dairy",
              "cow's": "dairy", "cow": "dairy"}
PLANT_PREFIXES = {"soy": "soy", "oat": "oat", "almond": "almond", "coconut": "coconut"}  # title word starts -> base
DAIRY_TYPES = {"milk", "yoghurt", "sour milk", "sour cream", "cream", "cheese", "butter", "kefir"}
KIND_OF = {"soyghurt": "yoghurt", "oatghurt": "yoghurt"}  # plant products named in one word
PLAIN_WORDS = {"plain", "natural", "unflavoured", "unflavored", "unsweetened"}
FLAVOURS = {"vanilla", "strawberry", "blueberry", "raspberry", "cherry", "peach", "apricot", "mango", "banana", "apple",
            "orange", "pear", "lemon", "lime", "mandarin", "grapefruit", "pineapple", "passion", "chocolate", "honey",
            "caramel", "coffee", "berry", "berries", "rhubarb", "coconut", "forest"}
# siblings (same parent) that serve the same need; under these parents other siblings do not
# substitute each other (a t-shirt does not serve a shopper who asked for a sweater)
SUBSTITUTE_SIBLINGS = {
    "topwear": [{"tshirts", "tops", "tunics"}, {"tshirts", "shirts"}, {"sweaters", "sweatshirts", "jackets", "shrug"},
                {"kurtas", "kurtis", "tunics"}],
    "bottomwear": [{"trousers", "jeans", "track pants", "capris", "churidar"}, {"leggings", "tights", "stockings"},
                   {"track pants", "tracksuits"}],
    "shoes": [{"casual shoes", "sports shoes"}, {"heels", "flats"}],
    "bags": [{"handbags", "laptop bag"}],
    "sandal": [{"sandals", "sports sandals"}],
}
# types used together with a named type (ESCI complements, graded 1 when no central attribute
# fails); read both ways
COMPLEMENT_PAIRS = [("shirts", "ties"), ("shirts", "cufflinks"), ("ties", "cufflinks"), ("kurtas", "dupatta"),
                    ("kurtis", "dupatta"), ("kurtas", "churidar"), ("kurtis", "churidar"), ("sports shoes", "socks"),
                    ("casual shoes", "socks"), ("formal shoes", "socks"), ("sports shoes", "track pants"),
                    ("trousers", "belts"), ("jeans", "belts")]
COMPLEMENTS: dict[str, set[str]] = {}
for _a, _b in COMPLEMENT_PAIRS:
    COMPLEMENTS.setdefault(_a, set()).add(_b)
    COMPLEMENTS.setdefault(_b, set()).add(_a)
KEYWORD_SYNONYMS = {"ecological": ["organic", "eco"], "lactose": ["lactose free"], "standard": ["whole", "full"],
                    "medium": ["semi"]}
STOP = {"for", "the", "a", "an", "and", "with", "in", "of", "to", "my", "on", "buy", "cheap", "best", "new", "online",
        "size", "pack", "&"}


def _norm(s: str) -> str:
    return re.sub(r"\s+", " ", re.sub(r"[^\w\s'&.-]", " ", str(s).lower())).strip()


def _plurals(term: str) -> list[str]:
    return [term + "s", term + "es"] if not term.endswith("s") else []


@dataclass
class Intent:
    types: set[str] = field(default_factory=set)  # category paths (any level) the query names
    color: str | None = None
    gender: str | None = None
    usage: str | None = None
    brand: str | None = None
    kids: bool = False
    base: str | None = None  # "dairy", "plant" (any plant base) or one plant base ("soy", "oat", ...)
    plain: bool = False
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
        kinds: list[tuple[str, str]] = []  # (prefix, the type it is a kind of)
        for path in paths:
            segs = path.split(" > ")
            for depth in range(1, len(segs) + 1):
                prefix = " > ".join(segs[:depth])
                name = _norm(segs[depth - 1])
                for term in [name, *TYPE_SYNONYMS.get(name, [])]:
                    for t in [term, *_plurals(term)]:
                        self.type_terms.setdefault(t, set()).add(prefix)
                first, _, rest = name.partition(" ")
                if name in KIND_OF or (BASE_WORDS.get(first) not in (None, "dairy") and rest):
                    kinds.append((prefix, KIND_OF.get(name, rest)))
        # "Oat Milk" answers "milk" and its synonyms (on its base, graded as an attribute)
        named = {kind: frozenset(self.type_terms.get(kind, ())) for _, kind in kinds}
        for prefix, kind in kinds:
            for t, v in self.type_terms.items():
                if named[kind] and v >= named[kind] and not v - named[kind] - {x for x, _ in kinds}:
                    v.add(prefix)
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
                    first, _, rest = gram.partition(" ")
                    if BASE_WORDS.get(first) not in (None, "dairy") and rest in self.type_terms:
                        it.base = BASE_WORDS[first]  # "oat milk": any milk, on an oat base
                        it.types |= self.type_terms[rest]
                elif gram in self.colors and it.color is None:
                    it.color = gram
                elif gram in KIDS_WORDS:
                    it.kids = True
                    if gram in GENDER_WORDS and it.gender is None:
                        it.gender = GENDER_WORDS[gram]
                elif gram in GENDER_WORDS and it.gender is None:
                    it.gender = GENDER_WORDS[gram]
                elif gram in BASE_WORDS and it.base is None:
                    it.base = BASE_WORDS[gram]
                elif gram in PLAIN_WORDS:
                    it.plain = True
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
                completed = self._complete(words[i]) if i == len(words) - 1 and not it.types else None
                if completed:
                    it.types = completed
                elif words[i] not in STOP:
                    it.keywords.append(words[i])
                i += 1
        # a colour word that is also a product type ("orange") counts as the type when no other type
        if not it.types and it.color and it.color in self.type_terms:
            it.types |= self.type_terms[it.color]
            it.color = None
        return it

    def _complete(self, frag: str) -> set[str] | None:
        """A last word cut off as typed ("sanda"): the types of the one type term it begins (or of
        the term whose types cover every other such term's)."""
        if len(frag) < 3:
            return None
        sets = [v for t, v in self.type_terms.items() if t.startswith(frag) and " " not in t]
        widest = max(sets, key=len, default=None)
        return set(widest) if widest and all(v <= widest for v in sets) else None


@dataclass
class ProductView:
    path: str
    color: str
    gender: str
    usage: str
    brand: str
    text: str  # title + description + category, normalised, for keywords
    kids: bool = False  # kids' wear (the title says so)
    base: str = ""  # plant base named in the title ("soy", "oat", ...); "" for none
    dairy: bool = False  # a dairy type (milk, yoghurt, ...) without a plant base
    flavoured: bool = False  # a flavour word in the title that is not the product's own produce type


def _path_names(path: str) -> list[str]:
    return [_norm(x) for x in path.split(" > ")]


def product_view(d: dict) -> ProductView:
    """What the rules read of one product (a row of ingestion's columns)."""
    title, color, path = _norm(d[C.TITLE]), _norm(d[C.COLOR]), d[C.CATEGORY]
    words = title.split()
    text = _norm(f"{d[C.TITLE]} {d[C.DESCRIPTION]} {path}")
    names = _path_names(path)
    base = "" if color else next((b for w in words for pre, b in PLANT_PREFIXES.items() if w.startswith(pre)), "")
    own = {w for n in names[:-1] for w in n.split()}  # "orange" is what Fruit > Orange > Orange is
    return ProductView(path, color, _norm(d[C.GENDER]), _norm(d[C.USAGE]), brand_of(d[C.TITLE], d[C.GENDER]),
                       " " + " ".join(_stem(w) for w in text.split()) + " ",
                       kids=bool(set(words) & KIDS_TITLE_WORDS) and bool(d[C.GENDER]),
                       base=base, dairy=not base and any(n in DAIRY_TYPES or n in KIND_OF for n in names),
                       flavoured=not color and any(w in FLAVOURS and w not in own for w in words))


def product_views(products: pd.DataFrame) -> list[ProductView]:
    return [product_view(r._asdict()) for r in products.itertuples(index=False)]


def _keyword_alternatives(kw: str) -> list[str]:
    return [kw] + [k for k, syns in KEYWORD_SYNONYMS.items() if kw in syns]


def _siblings_substitute(t: list[str], p: list[str]) -> bool:
    """Two leaf types under the same parent: substitutes unless the parent is one whose siblings
    serve different needs (``SUBSTITUTE_SIBLINGS``) and no group holds both."""
    groups = SUBSTITUTE_SIBLINGS.get(_norm(t[-2]))
    a, b = _norm(t[-1]), _norm(p[len(t) - 1])
    return groups is None or any(a in g and b in g for g in groups)


def _type_relation(types: set[str], path: str) -> int:
    """3: product under a named type; 2: a sibling that substitutes it; 1: same top level; 0: none."""
    best = 0
    for t in types:
        if path == t or path.startswith(t + " > "):
            return 3
        tsegs, psegs = t.split(" > "), path.split(" > ")
        # siblings share a parent below the department ("Topwear" for shirts and tees, "Apple"
        # for two apple varieties); two fruits that only share "Fruit" are not substitutes
        if len(tsegs) >= 3 and psegs[: len(tsegs) - 1] == tsegs[:-1]:
            best = max(best, 2 if _siblings_substitute(tsegs, psegs) else 1)
        elif tsegs[0] == psegs[0]:
            best = max(best, 1)
    return best


def _asks_dairy(it: Intent) -> bool:
    return it.base == "dairy" or (it.base is None and any(
        n in DAIRY_TYPES for t in it.types for n in _path_names(t)))


class _Columns:
    """The product views as arrays, for grading every product of a catalog at once."""

    def __init__(self, views: list[ProductView]):
        self.n = len(views)
        self.path_codes, self.paths = pd.factorize(pd.Series([v.path for v in views], dtype=object))
        for f in ("color", "gender", "usage", "brand", "base"):
            setattr(self, f, np.array([getattr(v, f) for v in views], dtype=object))
        for f in ("kids", "dairy", "flavoured"):
            setattr(self, f, np.array([getattr(v, f) for v in views], dtype=bool))
        self.text = pd.Series([v.text for v in views], dtype=object)

    def has(self, word: str) -> np.ndarray:
        return self.text.str.contains(f" {re.escape(word)} ", regex=True).to_numpy(dtype=bool)

    def mismatches(self, it: Intent) -> tuple[np.ndarray, np.ndarray]:
        """(non-central attribute mismatches, keyword misses) per product."""
        mism = np.zeros(self.n, dtype=np.int64)
        if it.color:  # the colour attribute, or for rows without one, the colour named in the text
            ok = np.array([bool(x) and it.color in x for x in self.color], dtype=bool)
            mism += ~(ok | ((self.color == "") & self.has(it.color)))
        if it.usage:
            mism += (self.usage != "") & (self.usage != it.usage)
        if it.brand:
            mism += self.brand != it.brand
        if it.base not in (None, "dairy", "plant"):
            mism += (self.base != "") & (self.base != it.base)
        kw = np.zeros(self.n, dtype=np.int64)
        for k in it.keywords:
            hit = np.zeros(self.n, dtype=bool)
            for a in _keyword_alternatives(k):
                hit |= self.has(_stem(a))
            kw += ~hit
        return mism, kw

    def central_failure(self, it: Intent) -> np.ndarray:
        bad = np.zeros(self.n, dtype=bool)
        if it.gender and it.gender != "unisex":
            bad |= (self.gender != "") & (self.gender != it.gender) & (self.gender != "unisex")
        bad |= (self.gender != "") & (self.kids != it.kids)
        if _asks_dairy(it):
            bad |= self.base != ""
        elif it.base not in (None, "dairy"):
            bad |= self.dairy
        if it.plain:
            bad |= self.flavoured
        return bad

    def grade(self, it: Intent) -> np.ndarray:
        """(n,) ESCI grades 0..3 for a parsed query (rules in the module docstring)."""
        mism, kw = self.mismatches(it)
        bad = self.central_failure(it)
        if not it.types:
            stated = bool(it.color) + bool(it.usage) + bool(it.brand) + bool(it.gender) + len(it.keywords)
            if stated + it.kids + bool(it.base) + it.plain == 0:
                return np.zeros(self.n, dtype=np.int64)
            # what the words ask for must be there ("kids": kids' wear; "vegan": a plant base)
            bad = bad | (it.kids & ~self.kids) | (it.plain & (self.flavoured | (self.color != "")))
            if it.base == "dairy":
                bad |= ~self.dairy
            elif it.base is not None:
                bad |= self.base == ""
            out = np.where(mism == 0, 3, np.where((mism == 1) & (stated >= 2), 1, 0))
            return np.where(bad | (kw > 0), 0, out).astype(np.int64)
        rel = np.array([_type_relation(it.types, p) for p in self.paths], dtype=np.int64)[self.path_codes]
        wanted = {c for t in it.types for c in COMPLEMENTS.get(_path_names(t)[-1], ())}
        comp = np.array([_path_names(p)[-1] in wanted for p in self.paths], dtype=bool)[self.path_codes]
        off = mism + kw
        g3 = np.where(off == 0, 3, 2)
        g2 = np.where(off == 0, 2, 0)
        out = np.select([rel == 3, rel == 2, comp], [g3, g2, np.ones_like(g3)], 0)
        return np.where(bad, 0, out).astype(np.int64)


def grade(it: Intent, p: ProductView) -> int:
    """ESCI grade 0..3 of one product for a parsed query (rules in the module docstring)."""
    return int(_Columns([p]).grade(it)[0])


class Annotator:
    """The rule annotator over one catalog; ``grade_all`` labels every product for a query (vectorised)."""

    def __init__(self, products: pd.DataFrame, lexicon: Lexicon | None = None):
        self.products = products.reset_index(drop=True)
        self.lexicon = lexicon or Lexicon(products)
        self.columns = _Columns(product_views(self.products))

    def grade_intent(self, it: Intent) -> np.ndarray:
        return self.columns.grade(it)

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
