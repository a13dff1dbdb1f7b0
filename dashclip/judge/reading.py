"""What a text says: the head product type, its modifiers and its attributes.

The same reading serves queries ("soy yoghurt blueberry") and product titles ("Alpro Blueberry
Soyghurt"). The head is the type the text is about: a processed product beats the fresh product it
is made from or flavoured with ("apple juice" is a juice, flavour apple); otherwise the last type
named (English puts the head noun last: "denim jacket" is a jacket); types joined by "and"/"or" are
alternatives ("lemons and limes"). A word that is both a colour and a type ("orange", "peach",
"cream") is a colour in fashion text, a flavour before a processed product and a colour before
another type ("orange bell pepper"); alone it is the type.
"""

from __future__ import annotations

from dataclasses import dataclass

from dashclip.judge.text import Span, Taxonomy
from dashclip.lexical import tokens

GROCERY_ROLES = ("base", "plain", "flavour", "fat", "organic", "lactose", "pulp")
FASHION_ROLES = ("gender", "usage")


@dataclass
class Reading:
    heads: tuple[str, ...] = ()
    head_words: tuple[tuple[str, ...], ...] = ()  # the words that named each head (stems)
    modifier_types: tuple[str, ...] = ()
    colours: tuple[str, ...] = ()
    gender: str | None = None
    age: str | None = None
    usage: str | None = None
    brand: str | None = None
    base: str | None = None
    plain: bool = False
    flavours: tuple[str, ...] = ()
    fat: str | None = None
    organic: bool = False
    lactose_free: bool = False
    pulp: bool | None = None
    keywords: tuple[tuple[str, ...], ...] = ()  # stem phrases that must appear in the product text
    domain: str | None = None  # grocery | fashion | None


@dataclass(eq=False)
class _Item:
    role: str
    value: object
    words: tuple[str, ...]
    senses: dict


def _domain(spans: list[Span], tax: Taxonomy) -> str | None:
    votes: dict[str, int] = {"grocery": 0, "fashion": 0}
    for sp in spans:
        s = sp.senses
        if "type" in s and "colour" not in s and tax.department(s["type"]):
            votes[tax.department(s["type"])] += 1
        if any(r in s for r in FASHION_ROLES):
            votes["fashion"] += 1
        if any(r in s for r in ("base", "plain", "fat", "lactose", "pulp")) and "shade" not in s:
            votes["grocery"] += 1
    if votes["grocery"] > votes["fashion"]:
        return "grocery"
    if votes["fashion"] > votes["grocery"]:
        return "fashion"
    # a tie: the department of the last type named, the head noun ("pink ladies sandals")
    last = [tax.department(sp.senses["type"]) for sp in spans if "type" in sp.senses and "colour" not in sp.senses]
    return last[-1] if last else None


def _respot(spans: list[Span], domain: str | None, tax: Taxonomy, table: dict) -> list[Span]:
    """A phrase of the other department read word by word ("casual pink ladies footwear": not the
    Pink Lady apple)."""
    if domain is None:
        return spans
    out = []
    for sp in spans:
        t = sp.senses.get("type")
        if t is not None and len(sp.words) > 1 and tax.department(t) not in (None, domain):
            out += [Span(sp.start + k, sp.start + k + 1, (w,), table.get((w,), {})) for k, w in enumerate(sp.words)]
        else:
            out.append(sp)
    return out


def _next_senses(spans: list[Span], i: int) -> dict:
    for sp in spans[i + 1:]:
        if not ({"stop", "shade"} & set(sp.senses)):
            return sp.senses
    return {}


def _choose_role(spans: list[Span], i: int, domain: str | None, tax: Taxonomy) -> tuple[str, object] | None:
    """One role for span i (None: an unknown word, a keyword)."""
    s = spans[i].senses
    if not s:
        return None
    nxt = _next_senses(spans, i)
    if "type" in s and ("colour" in s or "flavour" in s):
        if domain == "fashion":
            return ("colour", s["colour"]) if "colour" in s else None
        # "orange juice", "juice orange", "Orange Red Grapefruit Juice": a flavour of the processed product
        if any(sp.senses.get("type") in tax.made for j, sp in enumerate(spans) if j != i):
            return "flavour", s["type"]
        if nxt.get("type") is not None or "colour" in nxt:
            return ("colour", s["colour"]) if "colour" in s else ("type", s["type"])
        return "type", s["type"]
    if "colour" in s and "flavour" in s:
        return ("colour", s["colour"]) if domain == "fashion" else ("flavour", s["flavour"])
    if "shade" in s and (domain == "fashion" or "colour" in nxt):
        return "shade", True
    for role in ("type", "colour", "gender", "usage", "base", "plain", "flavour", "fat", "organic", "lactose",
                 "pulp", "conj", "set", "keyword", "for", "stop", "shade", "brand"):
        if role in s:
            return role, s[role]
    return None


def _items(spans: list[Span], domain: str | None, tax: Taxonomy) -> list[_Item]:
    """Spans with one role each; unknown words after "for" (a purpose: "for juicing") are dropped."""
    items, after_for = [], False
    for i, sp in enumerate(spans):
        rv = _choose_role(spans, i, domain, tax)
        if rv is None:
            if not after_for:
                items.append(_Item("keyword", None, sp.words, sp.senses))
            continue
        if rv[0] == "keyword":  # a phrase standing for one keyword ("long life" -> shelf)
            rv = ("keyword", None)
            sp = Span(sp.start, sp.end, tokens(sp.senses["keyword"]), sp.senses)
        after_for = rv[0] == "for" or (after_for and rv[0] in ("stop", "conj"))
        items.append(_Item(rv[0], rv[1], sp.words, sp.senses))
    return items


def _type_groups(items: list[_Item]) -> list[list[_Item]]:
    """Type items, grouped where only "and"/"or" (or stop words) stand between them."""
    groups: list[list[_Item]] = []
    joined = False
    for it in items:
        if it.role == "type":
            if groups and joined:
                groups[-1].append(it)
            else:
                groups.append([it])
            joined = False
        elif it.role == "conj":
            joined = bool(groups)
        elif it.role != "stop":
            joined = False
    return groups


def _heads(items: list[_Item], tax: Taxonomy) -> tuple[list[_Item], list[_Item], list[_Item]]:
    """(heads, fresh products that flavour a processed head, other types that modify the head)."""
    types = [it for it in items if it.role == "type"]
    # a type named twice, or a generic type beside a more specific one, adds nothing ("denim jeans",
    # "polo t shirt"); the last naming stays
    types = [t for i, t in enumerate(types) if not any(u.value == t.value for u in types[i + 1:])]
    types = [t for t in types if not any(u.value != t.value and tax.is_a(u.value, t.value) for u in types)]
    if not types:
        return [], [], []
    made = [t for t in types if t.value in tax.made]
    if made and any(t.value in tax.produce for t in types):
        head = made[-1]
        heads = [t for t in made if t.value == head.value or _same_group(items, t, head)]
        flav = [t for t in types if t.value in tax.produce]
        return heads, flav, [t for t in types if t not in heads and t not in flav]
    groups = [[t for t in g if t in types] for g in _type_groups(items)]
    groups = [g for g in groups if g]
    heads = groups[-1]
    return heads, [], [t for t in types if t not in heads]


def _as_set(items: list[_Item], heads: list[_Item], modifiers: list[_Item], tax: Taxonomy
            ) -> tuple[list[_Item], list[_Item]]:
    """"tie and cufflinks set": a gift set holding the accessories named (a clothing set for garments)."""
    set_word = next((it for it in items if it.role == "set"), None)
    if set_word is None:
        return heads, modifiers
    roots = {tax.root(h.value) for h in heads}
    target = {frozenset({"accessories"}): "gift set", frozenset({"clothing"}): "clothing set"}.get(frozenset(roots))
    if target is None:
        set_word.role = "keyword"
        return heads, modifiers
    return [_Item("type", target, set_word.words, {})], modifiers + heads


def _same_group(items: list[_Item], a: _Item, b: _Item) -> bool:
    return any(a in g and b in g for g in _type_groups(items))


def read(spans: list[Span], tax: Taxonomy, domain: str | None = None, table: dict | None = None) -> Reading:
    """The reading of a text's spans; ``domain`` when the caller knows it (a product's department);
    ``table`` (the phrase table) to re-read phrases of the other department word by word."""
    domain = domain or _domain(spans, tax)
    if table is not None:
        spans = _respot(spans, domain, tax, table)
    items = _items(spans, domain, tax)
    heads, flav_types, modifiers = _heads(items, tax)
    heads, modifiers = _as_set(items, heads, modifiers, tax)
    r = Reading(heads=tuple(dict.fromkeys(h.value for h in heads)), head_words=tuple(h.words for h in heads),
                modifier_types=tuple(m.value for m in modifiers), domain=domain)
    head_domain = tax.department(r.heads[0]) if r.heads else domain
    grocery_attrs = head_domain == "grocery" or (head_domain is None and domain != "fashion")
    keywords = [m.words for m in modifiers if not (r.heads and r.heads[0] in tax.sets)]
    flavours = [f.value for f in flav_types]
    colours = []
    for it in items:
        if it.role == "keyword":
            keywords.append(it.words)
        elif it.role in GROCERY_ROLES and not grocery_attrs:
            keywords.append(it.words)  # "organic cotton tshirt": a word the title must carry
        elif it.role == "colour":
            colours.append(it.value)
        elif it.role == "flavour":
            flavours.append(it.value)
        else:
            _set_attr(r, it)
        if it.role == "type" and "base" in it.senses:  # "soyghurt": a yoghurt whose base is soy
            _set_attr(r, _Item("base", it.senses["base"], it.words, {}))
    r.colours, r.flavours = tuple(dict.fromkeys(colours)), tuple(dict.fromkeys(flavours))
    r.keywords = tuple(dict.fromkeys(keywords))
    return r


def _set_attr(r: Reading, it: _Item) -> None:
    if it.role == "gender":
        g, age = it.value
        r.gender = g if g is not None else r.gender
        r.age = age if age is not None else r.age
    elif it.role == "usage" and r.usage is None:
        r.usage = it.value
    elif it.role == "brand" and r.brand is None:
        r.brand = it.value
    elif it.role == "base":
        # a named plant ("soy") is more precise than "plant based"
        if r.base is None or (r.base == "plant" and it.value not in ("plant", "dairy")):
            r.base = it.value
    elif it.role == "plain":
        r.plain = True
    elif it.role == "fat" and r.fat is None:
        r.fat = it.value
    elif it.role == "organic":
        r.organic = True
    elif it.role == "lactose":
        r.lactose_free = True
    elif it.role == "pulp" and r.pulp is None:
        r.pulp = it.value
