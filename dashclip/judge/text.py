"""Words for the judge: the type tree and phrase spotting (normalising and stemming: ``dashclip.lexical``)."""

from __future__ import annotations

from dataclasses import dataclass

from dashclip.judge import lexicon as L
from dashclip.lexical import tokens


def phrase_key(text: str) -> tuple[str, ...]:
    return tokens(text)


class Taxonomy:
    """The type tree with its closures: ``is_a(x, y)`` when x is y or a descendant of y."""

    def __init__(self, types: tuple[L.TypeDef, ...] = L.TYPES):
        self.types = {t.name: t for t in types}
        for t in types:
            for p in t.parents:
                if p not in self.types:
                    raise ValueError(f"judge lexicon: type {t.name!r} names unknown parent {p!r}")
        self.ancestors = {name: self._ancestors(name) for name in self.types}
        self.made = frozenset(n for n in self.types if any(self.is_a(n, m) for m in L.MADE_TYPES))
        self.plain_default = frozenset(n for n in self.types if any(self.is_a(n, m) for m in L.PLAIN_BY_DEFAULT))
        self.flavourable = self.made | self.plain_default
        self.dairy = frozenset(n for n in self.types if self.is_a(n, "dairy"))
        self.produce = frozenset(n for n in self.types if self.is_a(n, "produce"))
        self.sets = frozenset(n for n in self.types if any(self.is_a(n, s) for s in L.SET_TYPES))
        self._cache: dict[tuple, bool] = {}  # type-pair relations, asked once per pair

    def _ancestors(self, name: str) -> frozenset[str]:
        out, todo = {name}, [name]
        while todo:
            for p in self.types[todo.pop()].parents:
                if p not in out:
                    out.add(p)
                    todo.append(p)
        return frozenset(out)

    def is_a(self, x: str | None, y: str | None) -> bool:
        return x is not None and y is not None and y in self.ancestors[x]

    def root(self, name: str | None) -> str | None:
        if name is None:
            return None
        roots = [a for a in self.ancestors[name] if not self.types[a].parents]
        return roots[0] if roots else None

    def department(self, name: str | None) -> str | None:
        """grocery | fashion | None for a type."""
        if name is None:
            return None
        anc = self.ancestors[name]
        if anc & set(L.GROCERY_ROOTS) or name == "produce":
            return "grocery"
        return "fashion" if anc & set(L.FASHION_ROOTS) else None

    def related(self, pairs: tuple[tuple[str, str], ...], a: str, b: str) -> bool:
        """A declared (symmetric) relation between a or an ancestor of a and b or an ancestor of b."""
        key = (id(pairs), a, b)
        if key not in self._cache:
            anc_a, anc_b = self.ancestors[a], self.ancestors[b]
            self._cache[key] = any((x in anc_a and y in anc_b) or (y in anc_a and x in anc_b) for x, y in pairs)
        return self._cache[key]

    def sibling_varieties(self, a: str, b: str) -> bool:
        key = ("varieties", a, b)
        if key not in self._cache:
            self._cache[key] = any(self.is_a(a, v) and self.is_a(b, v) for v in L.VARIETIES_SUBSTITUTE)
        return self._cache[key]


@dataclass(frozen=True)
class Span:
    start: int
    end: int
    words: tuple[str, ...]
    senses: dict  # role -> value; empty for an unknown word


def _sense_entries(brands: dict[tuple[str, ...], str]) -> list[tuple[str, str, object]]:
    """(phrase, role, value) for every phrase the judge knows."""
    out: list[tuple[str, str, object]] = []
    for t in L.TYPES:
        for ph in (t.name, *t.aliases, *t.regional):
            out.append((ph, "type", t.name))
    out += [(ph, "type", tb) for ph, tb in L.BASE_TYPE_PHRASES.items()]
    out += [(ph, "colour", ph) for ph in L.COLOURS]
    out += [(ph, "gender", v) for ph, v in L.GENDERS.items()]
    out += [(ph, "usage", v) for ph, v in L.USAGES.items()]
    out += [(ph, "base", v) for ph, v in L.BASES.items()]
    out += [(ph, "plain", True) for ph in L.PLAIN_WORDS]
    out += [(ph, "flavour", ph) for ph in L.FLAVOURS]
    out += [(ph, "fat", v) for ph, v in L.FATS.items()]
    out += [(ph, "organic", True) for ph in L.ORGANIC_WORDS]
    out += [(ph, "lactose", True) for ph in L.LACTOSE_FREE_WORDS]
    out += [(ph, "pulp", v) for ph, v in L.PULP.items()]
    out += [(ph, "conj", True) for ph in L.CONJUNCTIONS]
    out += [(ph, "set", True) for ph in L.SET_WORDS]
    out += [(ph, "keyword", v) for ph, v in L.KEYWORD_PHRASES.items()]
    out += [(ph, "stop", True) for ph in L.STOP_WORDS]
    out += [(ph, "for", True) for ph in L.FOR_WORDS]
    out += [(ph, "shade", True) for ph in L.SHADE_WORDS]
    out += [(" ".join(k), "brand", v) for k, v in brands.items()]
    return out


class Phrases:
    """Greedy longest-match spotting of known phrases in a token sequence."""

    def __init__(self, brands: dict[tuple[str, ...], str] | None = None):
        self.table: dict[tuple[str, ...], dict] = {}
        for ph, role, value in _sense_entries(brands or {}):
            key = phrase_key(ph)
            if not key:
                continue
            senses = self.table.setdefault(key, {})
            if role == "type" and isinstance(value, tuple):  # a phrase naming a type and its base
                senses.setdefault("type", value[0])
                senses.setdefault("base", value[1])
            else:
                senses.setdefault(role, value)
        self.max_len = max(len(k) for k in self.table)

    def spans(self, toks: tuple[str, ...]) -> list[Span]:
        out, i = [], 0
        while i < len(toks):
            for n in range(min(self.max_len, len(toks) - i), 0, -1):
                key = toks[i:i + n]
                if key in self.table:
                    out.append(Span(i, i + n, key, self.table[key]))
                    i += n
                    break
            else:
                out.append(Span(i, i + 1, toks[i:i + 1], {}))
                i += 1
        return out
