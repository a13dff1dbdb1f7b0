"""What a product IS, read from its title, category path, description and attribute columns.

The type comes from the title and the category path. The title is the product's own name, so it
wins when the two disagree (this catalog files "Rocia Women Black Heels" under Flats); the category
path wins when it is more specific ("Sandals" filed under Sports Sandals is a sports sandal) or when
it names the processed product whose fruit the title names ("Tropicana Golden Grapefruit" under
Juice is a juice, flavour grapefruit).
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from dashclip import columns as C
from dashclip.judge import lexicon as L
from dashclip.judge.reading import Reading, read
from dashclip.judge.text import Phrases, Taxonomy
from dashclip.lexical import normalise, tokens

# juice names its fruit in the description when the title does not ("Tropicana Juice Smooth")
_FLAVOUR_FROM_DESCRIPTION = ("juice", "smoothie")
_AGE_WORDS = frozenset(tokens(" ".join(L.TITLE_AGE_WORDS)))
_ORGANIC_WORDS = frozenset(tokens(" ".join(L.ORGANIC_WORDS)))
_GENDER_COLUMN = {"men": ("men", "adult"), "women": ("women", "adult"), "boys": ("men", "kids"),
                  "girls": ("women", "kids"), "unisex": ("unisex", None), "kids": (None, "kids")}


@dataclass(frozen=True)
class ProductFacts:
    type: str | None = None
    flavours: tuple[str, ...] = ()
    plain: bool = False
    base: str | None = None  # dairy | soy | oat | ... for dairy-type products, else None
    fat: str | None = None
    organic: bool = False
    lactose_free: bool = False
    pulp: bool | None = None
    colours: tuple[str, ...] = ()
    gender: str | None = None
    age: str | None = None
    usage: str | None = None
    brand: str | None = None
    contains: tuple[str, ...] = ()  # the types a set holds


FACT_FIELDS = tuple(ProductFacts.__dataclass_fields__)


def _col(products: pd.DataFrame, name: str) -> list[str]:
    if name not in products.columns:
        return [""] * len(products)
    return ["" if v is None or (isinstance(v, float) and pd.isna(v)) else str(v) for v in products[name]]


def category_type(category: str, phrases: Phrases, tax: Taxonomy) -> tuple[str | None, str | None]:
    """(type, fresh product it is made from) from a ``a > b > c`` path, read from the leaf upwards."""
    heads = [read(phrases.spans(tokens(seg)), tax) for seg in reversed(category.split(">"))]
    found = [r.heads[0] for r in heads if r.heads]
    if not found:
        return None, None
    leaf = found[0]
    made = next((t for t in found if t in tax.made), None)
    if made is not None and leaf in tax.produce:
        return made, leaf
    return leaf, None


def resolve_type(title_type: str | None, cat_type: str | None, tax: Taxonomy) -> tuple[str | None, str | None]:
    """(type, flavour it adds) from the title's and the category's types (rules in the module docstring)."""
    if title_type is None or cat_type is None:
        return title_type or cat_type, None
    if tax.is_a(cat_type, title_type):
        return cat_type, None
    if cat_type in tax.made and title_type in tax.produce:
        return cat_type, title_type
    return title_type, None


def brand_of(toks: tuple[str, ...], typ: str | None, phrases: Phrases, tax: Taxonomy) -> tuple[str, ...]:
    """The title's brand words: those before the first gender or age word ("United Colors of Benetton
    Men ..."), else an unknown first word ("Arla Natural Yoghurt"); fresh produce has none."""
    if typ in tax.produce:
        return ()
    for i, w in enumerate(toks):
        if "gender" in phrases.table.get((w,), {}):
            return toks[:i] if i <= 5 else ()
    return toks[:1] if toks and toks[:1] not in phrases.table else ()


def catalog_brands(facts: list[ProductFacts]) -> dict[tuple[str, ...], str]:
    """Brand phrase -> canonical brand: the catalog's brands plus the lexicon's well-known ones."""
    out = {tuple(f.brand.split()): f.brand for f in facts if f.brand}
    for alias, brand in L.KNOWN_BRANDS.items():
        out.setdefault(tokens(alias), " ".join(tokens(brand)))
    return out


def _colours(colour_col: str, title: Reading, typ: str | None, tax: Taxonomy) -> tuple[str, ...]:
    if colour_col:
        return (normalise(colour_col),)
    if title.colours:
        return title.colours
    return tax.types[typ].colours if typ else ()


def product_facts(row: dict, phrases: Phrases, tax: Taxonomy) -> ProductFacts:
    """The facts of one product row (title, description, category, color, gender, usage)."""
    cat_type, cat_flavour = category_type(row[C.CATEGORY], phrases, tax)
    has_fashion_cols = bool(row[C.GENDER] or row[C.USAGE])
    domain = tax.department(cat_type) or ("fashion" if has_fashion_cols else None)
    title_toks = tokens(row[C.TITLE])
    title = read(phrases.spans(title_toks), tax, domain, phrases.table)
    typ, flav = resolve_type(title.heads[0] if title.heads else None, cat_type, tax)
    flavours = list(title.flavours) + [f for f in (flav, cat_flavour) if f]
    if typ in _FLAVOUR_FROM_DESCRIPTION and not flavours:
        desc = read(phrases.spans(tokens(row[C.DESCRIPTION])), tax, "grocery")
        flavours = [t for t in (*desc.flavours, *desc.modifier_types, *desc.heads) if t in tax.produce]
    flavours = sorted(set(flavours))
    base = title.base or read(phrases.spans(tokens(row[C.CATEGORY].split(">")[-1])), tax, "grocery").base
    if typ in tax.dairy:
        base = base or "dairy"
    else:
        base = None
    desc_toks = set(tokens(row[C.DESCRIPTION]))
    gender, age = _GENDER_COLUMN.get(normalise(row[C.GENDER]), (title.gender, title.age))
    if _AGE_WORDS & set(title_toks):
        age = "kids"
    return ProductFacts(
        type=typ, flavours=tuple(flavours),
        plain=typ in tax.flavourable and (title.plain or (not flavours and typ in tax.plain_default)),
        base=base, fat=title.fat, organic=title.organic or bool(desc_toks & _ORGANIC_WORDS),
        lactose_free=title.lactose_free or (base not in (None, "dairy")) or _says_lactose_free(row[C.DESCRIPTION]),
        pulp=(title.pulp if title.pulp is not None else _pulp(row[C.DESCRIPTION], phrases, tax)) if typ in tax.made
        else None,
        colours=_colours(row[C.COLOR], title, typ, tax), gender=gender, age=age,
        usage=normalise(row[C.USAGE]) or None, brand=" ".join(brand_of(title_toks, typ, phrases, tax)) or None,
        contains=tuple(sorted(set(title.modifier_types) | set(title.heads[1:]))) if typ in tax.sets else (),
    )


def _says_lactose_free(description: str) -> bool:
    d = normalise(description)
    return "lactose free" in d or "free from lactose" in d


def _pulp(description: str, phrases: Phrases, tax: Taxonomy) -> bool | None:
    r = read(phrases.spans(tokens(description)), tax, "grocery")
    return r.pulp


def all_facts(products: pd.DataFrame, phrases: Phrases, tax: Taxonomy) -> list[ProductFacts]:
    """Facts for every row; identical rows (grocery photos of one product class) are read once."""
    cols = {c: _col(products, c) for c in (C.TITLE, C.DESCRIPTION, C.CATEGORY, C.COLOR, C.GENDER, C.USAGE)}
    cache: dict[tuple, ProductFacts] = {}
    out = []
    for key in zip(*cols.values()):
        if key not in cache:
            cache[key] = product_facts(dict(zip(cols, key)), phrases, tax)
        out.append(cache[key])
    return out


def product_tokens(products: pd.DataFrame) -> list[frozenset[str]]:
    """Stemmed words of each product's title, category, description, colour and usage (keyword checks)."""
    cols = [_col(products, c) for c in (C.TITLE, C.CATEGORY, C.DESCRIPTION, C.COLOR, C.USAGE)]
    return [frozenset(tokens(" ".join(parts))) for parts in zip(*cols)]
