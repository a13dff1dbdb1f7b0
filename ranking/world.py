"""The simulator's ground truth: consumers, bids, queries and relevance. SIMULATED, seeded.

Nothing here reads an embedding. Truth is built from catalog attributes only:

- **relevance** of a product to a query is an ESCI grade 0..3 from the grader `truth` names:
  `annotator`, the rule annotator that also labels stage 2 (`dashclip.queries.Annotator`, from
  category, colour, gender, usage, brand and title words), or `independent`, the ESCI judge written
  apart from it (`dashclip.judge.Judge`), so that a lift is not measured against the labeller's
  own rules;
- **consumer affinity** for a product comes from latent preferences drawn per consumer:
  a gender (men/women, ±`gender_pref` on products of that/the other gender), a weight per
  colour, per usage, per top-level department and per leaf category (normal, scales in
  `WorldConfig`). Utility u = sum of the weights of the product's attribute values (empty value
  = 0); affinity = 2·sigmoid(u), in (0, 2), 1 for a neutral product;
- **bids**: each product's cost-per-click bid is lognormal around a per-department base
  (`bid_sigma`), independent of relevance: advertisers do not know it.

Consumers also shop organically: purchases arrive as a Poisson process
(`organic_purchases_per_week`), each product drawn with probability ∝ exp(`purchase_beta`·u), so
purchase histories reflect the latent preferences (the ranker sees them only through the
consumer profile embedding and the consumer stats).
"""

from __future__ import annotations

import hashlib
import random
from dataclasses import dataclass
from typing import Literal

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field

from dashclip import columns as DC
from dashclip.catalog import departments
from dashclip.judge import Judge
from dashclip.queries import Annotator, generate_query

Truth = Literal["annotator", "independent"]
TRUTHS: tuple[str, ...] = ("annotator", "independent")


class WorldConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    seed: int = 0
    n_consumers: int = Field(2000, ge=1)
    gender_pref: float = 1.5  # utility bonus (penalty) for the consumer's (other) gender
    color_sigma: float = 1.0  # spread of per-colour preference weights
    usage_sigma: float = 0.7
    department_sigma: float = 0.6
    category_sigma: float = 1.0
    purchase_beta: float = 1.5  # organic purchase choice ∝ exp(beta · utility)
    organic_purchases_per_week: float = 0.5
    queries_per_category: int = Field(6, ge=1)  # query pool: generated from products of each leaf category
    bid_sigma: float = 0.5
    truth: Truth = "annotator"  # who grades relevance for the clicks: the stage-2 labeller or an independent judge


def _codes(values: pd.Series) -> tuple[np.ndarray, int]:
    """Attribute values -> integer codes, 0 reserved for empty (neutral) values."""
    s = values.fillna("").astype(str).str.strip().str.lower()
    codes, uniq = pd.factorize(s.where(s != "", None), use_na_sentinel=True)
    return codes + 1, len(uniq) + 1


@dataclass
class World:
    """Products with attribute codes, consumers with latent weights, bids and the query pool."""

    config: WorldConfig
    products: pd.DataFrame  # the ingested catalog, row i = product index i
    attr: dict[str, np.ndarray]  # attribute -> (n_products,) codes
    weights: dict[str, np.ndarray]  # attribute -> (n_consumers, n_values) preference weights
    consumer_ids: np.ndarray  # (n_consumers,) str
    bids: np.ndarray  # (n_products,) float
    queries: pd.DataFrame  # query_id, query, category (of the product it was generated from)
    grades: np.ndarray  # (n_queries, n_products) int8 ESCI grades

    @property
    def n_products(self) -> int:
        return len(self.products)

    def utility(self, consumer: np.ndarray, product: np.ndarray) -> np.ndarray:
        """Paired (consumer index, product index) arrays -> utility, same shape."""
        return sum(self.weights[a][consumer, self.attr[a][product]] for a in self.attr)

    def utility_matrix(self, consumers: np.ndarray) -> np.ndarray:
        """(m,) consumer indices -> (m, n_products) utilities."""
        return sum(self.weights[a][consumers][:, self.attr[a]] for a in self.attr)

    def affinity(self, consumer: np.ndarray, product: np.ndarray) -> np.ndarray:
        return 2.0 / (1.0 + np.exp(-self.utility(consumer, product)))


def _query_pool(products: pd.DataFrame, per_category: int, seed: int) -> pd.DataFrame:
    """Unique shopper queries, `per_category` tries per leaf category (dashclip.queries generator)."""
    rng = random.Random(seed)
    rows, seen = [], set()
    for cat, group in products.groupby(DC.CATEGORY, sort=True):
        recs = group.to_dict("records")
        for _ in range(per_category):
            q = generate_query(rng.choice(recs), rng)
            if len(q) >= 2 and q not in seen:
                seen.add(q)
                rows.append({DC.QUERY_ID: f"sq-{hashlib.sha1(q.encode()).hexdigest()[:10]}", DC.QUERY: q,
                             DC.CATEGORY: cat})
    return pd.DataFrame(rows)


def _weights(cfg: WorldConfig, rng: np.random.Generator, attr: dict[str, np.ndarray], sizes: dict[str, int],
             gender_values: list[str]) -> dict[str, np.ndarray]:
    n = cfg.n_consumers
    sigma = {DC.COLOR: cfg.color_sigma, DC.USAGE: cfg.usage_sigma, "department": cfg.department_sigma,
             DC.CATEGORY: cfg.category_sigma}
    w = {a: rng.normal(0.0, s, size=(n, sizes[a])) for a, s in sigma.items()}
    for a in w:
        w[a][:, 0] = 0.0  # empty attribute value: neutral
    # gender: each consumer shops for men or women; unisex / empty neutral
    own = rng.integers(0, 2, size=n)  # 0 men, 1 women
    g = np.zeros((n, sizes[DC.GENDER]))
    for code, value in enumerate(gender_values, start=1):
        if value in ("men", "women"):
            g[:, code] = np.where(own == (value == "women"), cfg.gender_pref, -cfg.gender_pref)
    w[DC.GENDER] = g
    return w


def truth_note(truth: Truth) -> str:
    """One line for reports: whose relevance grades the simulated clicks follow."""
    if truth == "annotator":
        return ("the rule annotator's grades (dashclip.queries.Annotator), the same rules that label stage 2: "
                "part of the lift can come from sharing the labeller")
    return ("the independent ESCI judge's grades (dashclip.judge.Judge), written apart from the rule annotator "
            "that labels stage 2")


def grader(products: pd.DataFrame, truth: Truth):
    """The relevance grader a truth names; ``.grade_all(query)`` -> (n_products,) grades 0..3."""
    return Annotator(products) if truth == "annotator" else Judge(products)


def relevance_grades(products: pd.DataFrame, queries: list[str], truth: Truth) -> np.ndarray:
    """(n_queries, n_products) int8 ESCI grades of every product for every query under `truth`."""
    if not queries:
        return np.zeros((0, len(products)), np.int8)
    g = grader(products, truth)
    return np.stack([g.grade_all(q) for q in queries]).astype(np.int8)


def build_world(products: pd.DataFrame, cfg: WorldConfig | None = None) -> World:
    """Draw a world for a catalog (ingested products frame). Deterministic given cfg.seed."""
    cfg = cfg or WorldConfig()
    products = products.reset_index(drop=True)
    rng = np.random.default_rng(cfg.seed)
    dept = departments(products)
    attr, sizes = {}, {}
    for name, values in ((DC.COLOR, products[DC.COLOR]), (DC.USAGE, products[DC.USAGE]), ("department", dept),
                         (DC.CATEGORY, products[DC.CATEGORY]), (DC.GENDER, products[DC.GENDER])):
        attr[name], sizes[name] = _codes(values)
    gvals = products[DC.GENDER].fillna("").astype(str).str.strip().str.lower()
    gender_values = list(pd.factorize(gvals.where(gvals != "", None), use_na_sentinel=True)[1])
    weights = _weights(cfg, rng, attr, sizes, gender_values)
    dept_codes, _ = _codes(dept)
    base = np.exp(rng.normal(0.0, 0.3, size=dept_codes.max() + 1))  # per-department bid level
    bids = np.round(base[dept_codes] * np.exp(rng.normal(0.0, cfg.bid_sigma, size=len(products))), 4)
    queries = _query_pool(products, cfg.queries_per_category, cfg.seed)
    grades = relevance_grades(products, list(queries[DC.QUERY]), cfg.truth)
    ids = np.array([f"c{i:06d}" for i in range(cfg.n_consumers)], dtype=object)
    return World(cfg, products, attr, weights, ids, bids, queries, grades)
