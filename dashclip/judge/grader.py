"""The ESCI grader: the verdict of a parsed query on one product's facts, and the final grades.

Rules in the package docstring (``dashclip.judge``). ``Judge`` (api.py) asks for one verdict per
product *profile* (the products that agree on every fact the query reads, ``fields_read``) and
combines it with the query's free keywords per product in ``final_grades``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from dashclip.judge import lexicon as L
from dashclip.judge.products import ProductFacts, all_facts, catalog_brands
from dashclip.judge.reading import Reading
from dashclip.judge.text import Phrases, Taxonomy

EXACT, SUBSTITUTE, COMPLEMENT, IRRELEVANT = 3, 2, 1, 0
ATTRIBUTES = 4  # a query that names no product type: graded on the attributes it states
LETTER = {EXACT: "E", SUBSTITUTE: "S", COMPLEMENT: "C", IRRELEVANT: "I"}
INTENTS = ("fresh_vs_made_from", "plain_vs_flavoured", "dairy_vs_plant", "vegetable_names",
           "footwear_apparel_type", "general")


@dataclass(frozen=True)
class Verdict:
    """A product profile's verdict before the query's free keywords are checked."""

    kind: int  # EXACT / SUBSTITUTE / COMPLEMENT / IRRELEVANT: the type relation; ATTRIBUTES: no type asked
    reasons: tuple[str, ...]  # the relation first, then failed attributes
    central: bool = False  # a central attribute failed (gender, age, dairy/plant, plain): irrelevant
    n_soft: int = 0  # non-central attributes that failed (colour, brand, usage, flavour, ...)
    n_stated: int = 0  # ATTRIBUTES: attributes the query states, and how many the product matches
    n_matched: int = 0


def _colour(c: str) -> str:
    return L.COLOUR_SYNONYMS.get(c, c)


def colour_ok(query_colours: tuple[str, ...], product_colours: tuple[str, ...]) -> bool:
    """Navy blue answers "blue"; blue does not answer "navy blue"."""
    for qc in map(_colour, query_colours):
        for pc in map(_colour, product_colours):
            if qc == pc or qc in L.COLOURS.get(pc, ()):
                return True
    return False


def brand_ok(query_brand: str, product_brand: str | None) -> bool:
    """Equal, or one names the other's house ("adidas" and "adidas originals")."""
    if not product_brand:
        return False
    return query_brand == product_brand or product_brand.startswith(query_brand + " ") or \
        query_brand.startswith(product_brand + " ")


class Grader:
    """Verdicts of one parsed query over product facts (pure; no product frame)."""

    def __init__(self, tax: Taxonomy):
        self.tax = tax

    def relation(self, q: Reading, p: ProductFacts) -> tuple[int, str]:
        """The best relation of the product's type to any of the query's head types."""
        if p.type is None:
            return IRRELEVANT, "product_type_unknown"
        best = (IRRELEVANT, "type_mismatch")
        for h in q.heads:
            if self.tax.is_a(p.type, h):
                return EXACT, "same_type"
            rel = self._other_relation(q, h, p)
            if rel[0] > best[0] or (best[1] == "type_mismatch" and rel[0] == best[0]):
                best = rel
        return best

    def _other_relation(self, q: Reading, h: str, p: ProductFacts) -> tuple[int, str]:
        tax, t = self.tax, p.type
        if tax.is_a(h, t):
            return SUBSTITUTE, "narrower_query_type"  # "granny smith" answered by a generic apple
        if tax.sibling_varieties(h, t):
            return SUBSTITUTE, "sibling_variety"
        if tax.related(L.SUBSTITUTES, h, t):
            return SUBSTITUTE, "substitute_type"
        if t in tax.sets and any(tax.is_a(c, h) for c in p.contains):
            return SUBSTITUTE, "set_contains_type"
        if h in tax.sets and any(tax.is_a(t, m) for m in q.modifier_types):
            return SUBSTITUTE, "set_component"
        if t in tax.made and any(tax.is_a(f, h) for f in p.flavours if f in tax.types):
            return IRRELEVANT, "made_from_query_product"  # apple juice for "apples"
        if h in tax.made and t in tax.produce and any(tax.is_a(t, f) for f in q.flavours if f in tax.types):
            return IRRELEVANT, "ingredient_not_product"  # apples for "apple juice"
        if tax.related(L.COMPLEMENTS, h, t):
            return COMPLEMENT, "complement_type"
        return IRRELEVANT, "type_mismatch"

    def who(self, q: Reading, p: ProductFacts) -> str | None:
        """Gender or age that rules the product out (a men's shirt for "women shirt")."""
        if q.gender in ("men", "women") and p.gender in ("men", "women") and q.gender != p.gender:
            return "gender_mismatch"
        if q.age and p.age and q.age != p.age:
            return "age_mismatch"
        return None

    def base(self, q: Reading, p: ProductFacts) -> tuple[str | None, list[str]]:
        """Dairy against plant-based: central unless the query asks for lactose-free."""
        if p.type not in self.tax.dairy:
            return None, []
        qb = q.base
        if qb is None and not q.lactose_free and any(h in self.tax.dairy for h in q.heads):
            qb = "dairy"  # "milk", "yoghurt": a shopper who wants plant-based says so
        soft = []
        if q.lactose_free:
            if p.base == "dairy" and not p.lactose_free:
                return "contains_lactose", []
            if p.base != "dairy" and qb is None:
                soft.append("plant_based_for_lactose_free")
        if qb == "dairy" and p.base != "dairy":
            return "plant_based_for_dairy", []
        if qb not in (None, "dairy") and p.base == "dairy":
            return "dairy_for_plant_based", []
        if qb not in (None, "dairy", "plant") and p.base != qb:
            soft.append("base_mismatch")
        return None, soft

    def _flavour_matches(self, pf: str, qf: str) -> bool:
        return pf == qf or (pf in self.tax.types and qf in self.tax.types and self.tax.is_a(pf, qf))

    def flavour(self, q: Reading, p: ProductFacts) -> tuple[str | None, list[str]]:
        """Plain against flavoured: a flavoured product never answers a plain query."""
        if p.type not in self.tax.flavourable:
            return None, []
        if q.plain:
            if p.flavours:
                return "flavoured_for_plain", []
            return None, ([] if p.plain else ["flavour_unknown"])
        if not q.flavours:
            return None, []
        if not p.flavours:
            return None, ["plain_for_flavoured" if p.plain else "flavour_unknown"]
        hit = [qf for qf in q.flavours if any(self._flavour_matches(pf, qf) for pf in p.flavours)]
        extra = [pf for pf in p.flavours if not any(self._flavour_matches(pf, qf) for qf in q.flavours)]
        if len(hit) < len(q.flavours):
            return None, ["flavour_mismatch"]
        return None, (["blend"] if extra else [])

    def soft(self, q: Reading, p: ProductFacts) -> list[str]:
        """Non-central attributes the product fails: a substitute at best."""
        out = []
        if q.fat and p.type in self.tax.dairy and p.fat != q.fat:
            out.append("fat_unknown" if p.fat is None else "fat_mismatch")
        if q.organic and not p.organic:
            out.append("not_organic")
        if q.pulp is not None and p.type in self.tax.made and p.pulp != q.pulp:
            out.append("pulp_unknown" if p.pulp is None else "pulp_mismatch")
        if q.colours and not colour_ok(q.colours, p.colours):
            out.append("colour_mismatch" if p.colours else "colour_unknown")
        if q.usage and p.usage and q.usage != p.usage:
            out.append("usage_mismatch")
        if q.brand and not brand_ok(q.brand, p.brand):
            out.append("brand_mismatch")
        return out

    def verdict(self, q: Reading, p: ProductFacts) -> Verdict:
        if not q.heads:
            return self.attribute_verdict(q, p)
        kind, rel = self.relation(q, p)
        if kind == IRRELEVANT:
            return Verdict(IRRELEVANT, (rel,))
        central = self.who(q, p)
        if kind == COMPLEMENT or central:
            return Verdict(kind, (rel, central) if central else (rel,), central=bool(central))
        c_base, s_base = self.base(q, p)
        c_flav, s_flav = self.flavour(q, p)
        central = c_base or c_flav
        if central:
            return Verdict(kind, (rel, central), central=True)
        soft = s_base + s_flav + self.soft(q, p) + self.set_soft(q, p, kind)
        return Verdict(kind, (rel, *soft), n_soft=len(soft))

    def set_soft(self, q: Reading, p: ProductFacts, kind: int) -> list[str]:
        """A set that lacks a type the query's set names; a flavoured product standing in for a
        plain-by-nature type ("sour milk" answered by a vanilla yoghurt)."""
        out = []
        if kind == EXACT and p.type in self.tax.sets:
            out += [f"set_lacks({m})" for m in q.modifier_types if not any(self.tax.is_a(c, m) for c in p.contains)]
        if kind == SUBSTITUTE and p.flavours and not (q.plain or q.flavours) and q.heads and \
                all(h in self.tax.plain_default for h in q.heads):
            out.append("flavoured_for_plain")
        return out

    def attribute_verdict(self, q: Reading, p: ProductFacts) -> Verdict:
        """A query without a product type ("nike", "black", "organic"): each stated attribute checked."""
        checks: list[tuple[str, bool]] = []
        if q.colours:
            checks.append(("colour", colour_ok(q.colours, p.colours)))
        if q.gender or q.age:
            checks.append(("gender", self.who(q, p) is None and (p.gender is not None or p.age is not None)))
        if q.usage:
            checks.append(("usage", p.usage == q.usage))
        if q.brand:
            checks.append(("brand", brand_ok(q.brand, p.brand)))
        if q.base:
            checks.append(("base", p.base == q.base or (q.base == "plant" and p.base not in (None, "dairy"))))
        if q.plain:
            checks.append(("plain", p.plain))
        if q.flavours:
            checks.append(("flavour", any(self._flavour_matches(pf, qf) for pf in p.flavours for qf in q.flavours)))
        for name, asked, has in (("fat", q.fat, p.fat), ("pulp", q.pulp, p.pulp)):
            if asked is not None:
                checks.append((name, asked == has))
        for name, asked, has in (("organic", q.organic, p.organic), ("lactose_free", q.lactose_free, p.lactose_free)):
            if asked:
                checks.append((name, has))
        central = self.who(q, p)
        failed = tuple(f"{n}_mismatch" for n, ok in checks if not ok)
        reasons = ("attributes_only", *((central,) if central else failed))
        return Verdict(ATTRIBUTES, reasons, central=bool(central), n_stated=len(checks),
                       n_matched=sum(ok for _, ok in checks))


def fields_read(q: Reading, tax: Taxonomy) -> tuple[str, ...]:
    """The product facts a verdict for this query can depend on (profiles are grouped on these)."""
    f = ["type", "contains"]
    if q.heads and any(h in tax.produce or h in tax.made for h in q.heads) or q.plain or q.flavours:
        f += ["flavours", "plain"]
    if any(h in tax.dairy for h in q.heads) or q.base or q.lactose_free:
        f += ["base", "lactose_free"]
    for name in ("fat", "organic", "brand", "usage"):
        if getattr(q, name):
            f.append(name)
    if q.pulp is not None:
        f.append("pulp")
    if q.colours:
        f.append("colours")
    if q.gender or q.age:
        f += ["gender", "age"]
    return tuple(f)


def final_grades(kind: np.ndarray, central: np.ndarray, n_soft: np.ndarray, n_stated: np.ndarray,
                 n_matched: np.ndarray, kw_missing: np.ndarray, n_keywords: int) -> np.ndarray:
    """(N,) ESCI grades from per-product verdict fields and the number of keywords each misses."""
    soft = n_soft + kw_missing
    stated, matched = n_stated + n_keywords, n_matched + (n_keywords - kw_missing)
    attr = np.where(central | (stated == 0), 0,
                    np.where(matched == stated, 3, np.where((2 * matched >= stated) & (matched >= 1), 2, 0)))
    return np.select(
        [central & (kind != ATTRIBUTES), kind == EXACT, kind == SUBSTITUTE, kind == COMPLEMENT, kind == ATTRIBUTES],
        [0, np.where(soft == 0, 3, 2), np.where(soft == 0, 2, 0), 1, attr], 0).astype(np.int64)


def catalog_vocabulary(products: pd.DataFrame) -> tuple[Taxonomy, list[ProductFacts], Phrases]:
    """The type tree, every product's facts, and the phrase table with the catalog's brands."""
    tax = Taxonomy()
    facts = all_facts(products, Phrases(), tax)
    return tax, facts, Phrases(catalog_brands(facts))
