"""Ads traffic simulator: sessions, ad candidates, a logging policy and clicks. SIMULATED, seeded.

There are no public ad logs with query and ad text (DESIGN.md, Data), so the ranker learns from
this simulator. Ground truth (`ranking.world`) comes from catalog attributes and consumers'
latent preferences, never from embeddings. One request:

1. **session**: a consumer (uniform) wants a product drawn ∝ exp(beta·utility); the query is one
   of the pool's queries generated from that product's leaf category (uniform).
2. **candidates**: `n_candidates` ads retrieved by keyword targeting, independent of embeddings:
   products the query matches (grade ≥ 1) sampled without replacement ∝ (1, 2, 4) by grade
   1/2/3 (Gumbel top-k), topped up with random products of the query's department.
3. **logging policy**: the legacy ranker scores log(bid) + `legacy_text_weight` × the share of
   query words found in the title. With probability 1 - `epsilon` the slate is its top
   `n_slots`; with probability `epsilon` it is a uniformly random ordering of the candidates.
   So P(product i in slot k) = (1 - eps)·[legacy rank of i = k] + eps / n_candidates, exactly;
   that is the logged `propensity` of each impression.
4. **clicks**: P(click) = position_bias[slot] × ctr_by_grade[grade] × affinity (capped at 1),
   a position-based model: a slot's click depends only on what is in that slot.
   **conversions** given a click: cvr_by_grade[grade] × affinity (capped). A conversion is an
   ad purchase, an hour later.

Organic purchases (`World`) run through the whole period, starting `history_days` before the
first request, so every consumer has a purchase history for the profile embedding.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, model_validator

from dashclip import columns as DC
from dashclip.events import EventLogs
from ranking import columns as R
from ranking.world import World
from spark_jobs.lib.consumer_profile import WINDOW_DAYS

DAY_NS = 86_400 * 10**9
_WORD = re.compile(r"[a-z0-9]+")


class SimConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    seed: int = 0  # traffic seed (the world has its own, WorldConfig.seed)
    start: datetime | None = None  # first logged day, 00:00 UTC; None: the log ends today (ranking.pipeline)
    days: int = Field(28, ge=3)  # logged period
    requests_per_day: int = Field(1500, ge=1)
    history_days: int = Field(int(WINDOW_DAYS), ge=0)  # organic purchases before the first request: a profile window
    extra_days: int = Field(2, ge=0)  # organic purchases after the log (the A/B runs there)
    n_candidates: int = Field(20, ge=2)
    n_slots: int = Field(4, ge=1)
    epsilon: float = Field(0.3, gt=0.0, le=1.0)  # share of requests with a uniformly random slate
    legacy_text_weight: float = 1.0
    purchase_beta: float = 1.5  # what a shopper looks for ∝ exp(beta · utility)
    position_bias: list[float] = [1.0, 0.7, 0.5, 0.35, 0.25, 0.2, 0.15, 0.1]
    ctr_by_grade: list[float] = [0.01, 0.04, 0.10, 0.22]
    cvr_by_grade: list[float] = [0.02, 0.05, 0.12, 0.25]
    convert_delay_s: float = 3600.0

    @model_validator(mode="after")
    def _check(self):
        if len(self.position_bias) < self.n_slots:
            raise ValueError(f"position_bias has {len(self.position_bias)} values for n_slots={self.n_slots}")
        if self.n_slots > self.n_candidates:
            raise ValueError(f"n_slots={self.n_slots} > n_candidates={self.n_candidates}")
        for name in ("ctr_by_grade", "cvr_by_grade"):
            if len(getattr(self, name)) != 4:
                raise ValueError(f"{name} needs 4 values (grades 0..3), got {getattr(self, name)}")
        return self

    @property
    def start_ts(self) -> pd.Timestamp:
        if self.start is None:
            raise ValueError("SimConfig.start is not set")
        t = pd.Timestamp(self.start)
        return t.tz_convert("UTC") if t.tzinfo else t.tz_localize("UTC")

    def day_start(self, day: float) -> pd.Timestamp:
        return self.start_ts + pd.Timedelta(days=day)


@dataclass
class Traffic:
    """Requests and their candidate ads (before the slate is chosen)."""

    requests: pd.DataFrame  # request_id, event_timestamp, day, consumer_id, query_id, query + _c, _q indices
    cand: np.ndarray  # (n_requests, n_candidates) product indices
    legacy_score: np.ndarray  # (n_requests, n_candidates)
    legacy_rank: np.ndarray  # (n_requests, n_candidates) 0-based


# --- sampling helpers -----------------------------------------------------------------------
def sample_products(world: World, consumers: np.ndarray, rng: np.random.Generator, beta: float,
                    chunk: int = 256) -> np.ndarray:
    """One product per entry of `consumers`, drawn ∝ exp(beta · utility) (inverse CDF per consumer)."""
    out = np.empty(len(consumers), dtype=np.int64)
    u = rng.random(len(consumers))
    uniq, inv = np.unique(consumers, return_inverse=True)
    for s in range(0, len(uniq), chunk):
        block = uniq[s:s + chunk]
        util = world.utility_matrix(block)  # (b, n_products)
        w = np.exp(beta * (util - util.max(axis=1, keepdims=True)))
        cdf = np.cumsum(w, axis=1)
        cdf /= cdf[:, -1:]
        for j in range(len(block)):  # one vectorised searchsorted per consumer of the block
            rows = np.flatnonzero(inv == s + j)
            out[rows] = np.minimum(np.searchsorted(cdf[j], u[rows]), world.n_products - 1)
    return out


def organic_purchases(world: World, cfg: SimConfig, rng: np.random.Generator) -> pd.DataFrame:
    """Poisson purchase stream per consumer over [start - history_days, end + extra_days)."""
    span = cfg.history_days + cfg.days + cfg.extra_days
    rate = world.config.organic_purchases_per_week / 7.0 * span
    n = rng.poisson(rate, size=len(world.consumer_ids))
    cons = np.repeat(np.arange(len(n)), n)
    prod = sample_products(world, cons, rng, world.config.purchase_beta)
    offset = rng.random(len(cons)) * span - cfg.history_days  # days from start
    return _purchase_frame(world, cfg, cons, prod, offset, "organic")


def _purchase_frame(world, cfg, cons, prod, offset_days, source) -> pd.DataFrame:
    ts = cfg.start_ts + pd.to_timedelta(np.asarray(offset_days) * 86400.0, unit="s")
    return pd.DataFrame({R.CONSUMER_ID: world.consumer_ids[cons], R.PRODUCT_ID: world.products[DC.PRODUCT_ID].to_numpy()[prod],
                         R.EVENT_TIMESTAMP: pd.DatetimeIndex(ts).as_unit("us"), R.PURCHASE_SOURCE: source})


def _words(text: str) -> set[str]:
    return set(_WORD.findall(str(text).lower()))


def _legacy_text_match(world: World, qi: int, prods: np.ndarray) -> np.ndarray:
    """Share of the query's words found in each product's title (the legacy ranker's text signal)."""
    qw = _words(world.queries[DC.QUERY].iat[qi])
    if not qw:
        return np.zeros(len(prods))
    titles = world.products[DC.TITLE].to_numpy()
    return np.array([len(qw & _words(titles[p])) / len(qw) for p in prods])


def draw_traffic(world: World, cfg: SimConfig, rng: np.random.Generator, n_requests: int, day_from: float,
                 n_days: float, prefix: str = "r") -> Traffic:
    """Sessions (consumer, query, time) and their keyword-targeted candidate ads."""
    cons = rng.integers(0, len(world.consumer_ids), size=n_requests)
    wanted = sample_products(world, cons, rng, cfg.purchase_beta)
    q = _queries_for(world, wanted, rng)
    offset = np.sort(day_from + rng.random(n_requests) * n_days)
    ts = cfg.start_ts + pd.to_timedelta(offset * 86400.0, unit="s")
    N = cfg.n_candidates
    cand = np.empty((n_requests, N), dtype=np.int64)
    score = np.empty((n_requests, N))
    weight_by_grade = np.array([0.0, 1.0, 2.0, 4.0])
    dept = world.attr["department"]
    for qi in np.unique(q):
        rows = np.flatnonzero(q == qi)
        g = world.grades[qi]
        elig = np.flatnonzero(g >= 1)
        qdept = dept[world.products.index[world.products[DC.CATEGORY] == world.queries[DC.CATEGORY].iat[qi]][0]]
        pool = np.flatnonzero((dept == qdept) & (g == 0))
        if len(pool) < N:
            pool = np.flatnonzero(g == 0)
        fill = rng.choice(pool, size=min(len(pool), 2 * N), replace=False)
        if len(elig) + len(fill) < N:  # tiny catalogs: top up from anything not yet in
            rest = np.setdiff1d(np.arange(world.n_products), np.r_[elig, fill])
            fill = np.r_[fill, rng.choice(rest, size=N - len(elig) - len(fill), replace=False)]
        items = np.r_[elig, fill]
        logw = np.log(np.r_[weight_by_grade[g[elig]], np.full(len(fill), 0.05)])  # fillers rarely win
        keys = logw + rng.gumbel(size=(len(rows), len(items)))  # Gumbel top-k = sampling w/o replacement
        top = np.argpartition(-keys, N - 1, axis=1)[:, :N]
        cand[rows] = items[top]
        text = dict(zip(items.tolist(), _legacy_text_match(world, qi, items)))
        score[rows] = np.log(world.bids[cand[rows]]) + cfg.legacy_text_weight * np.vectorize(text.get)(cand[rows])
    order = np.argsort(-score, axis=1, kind="stable")
    rank = np.empty_like(order)
    np.put_along_axis(rank, order, np.arange(N)[None, :].repeat(n_requests, 0), axis=1)
    req = pd.DataFrame({
        R.REQUEST_ID: [f"{prefix}{i:07d}" for i in range(n_requests)],
        R.EVENT_TIMESTAMP: pd.DatetimeIndex(ts).as_unit("us"),
        R.DAY: np.floor(offset).astype(np.int64),
        R.CONSUMER_ID: world.consumer_ids[cons],
        R.QUERY_ID: world.queries[DC.QUERY_ID].to_numpy()[q],
        R.QUERY: world.queries[DC.QUERY].to_numpy()[q],
        "_c": cons, "_q": q,
    })
    return Traffic(req, cand, score, rank)


def _queries_for(world: World, wanted: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A pool query of each wanted product's leaf category (uniform among them)."""
    by_cat = world.queries.groupby(DC.CATEGORY).indices
    cats = world.products[DC.CATEGORY].to_numpy()[wanted]
    out = np.empty(len(wanted), dtype=np.int64)
    allq = np.arange(len(world.queries))
    for cat in np.unique(cats):
        rows = np.flatnonzero(cats == cat)
        choices = by_cat.get(cat, allq)
        out[rows] = rng.choice(choices, size=len(rows))
    return out


def logging_slates(traffic: Traffic, cfg: SimConfig, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Logging policy -> (slate column indices (n, K), propensities (n, K), explored (n,))."""
    n, N, K = traffic.cand.shape[0], cfg.n_candidates, cfg.n_slots
    explored = rng.random(n) < cfg.epsilon
    greedy = np.argsort(traffic.legacy_rank, axis=1)[:, :K]  # column of legacy rank 0..K-1
    random_perm = np.argsort(rng.random((n, N)), axis=1)[:, :K]
    slate = np.where(explored[:, None], random_perm, greedy)
    rank_at = np.take_along_axis(traffic.legacy_rank, slate, axis=1)
    prop = (1 - cfg.epsilon) * (rank_at == np.arange(K)[None, :]) + cfg.epsilon / N
    return slate, prop, explored


def outcomes(world: World, cfg: SimConfig, cons: np.ndarray, query: np.ndarray, prod: np.ndarray, slot: np.ndarray,
             u_click: np.ndarray, u_conv: np.ndarray) -> dict[str, np.ndarray]:
    """Ground truth and draws for shown ads (flat arrays); uniforms passed in (common random numbers)."""
    grade = world.grades[query, prod].astype(np.int64)
    aff = world.affinity(cons, prod)
    p_click = np.minimum(1.0, np.asarray(cfg.position_bias)[slot] * np.asarray(cfg.ctr_by_grade)[grade] * aff)
    p_conv = np.minimum(1.0, np.asarray(cfg.cvr_by_grade)[grade] * aff)
    clicked = u_click < p_click
    return {R.GRADE: grade, R.AFFINITY: aff, R.P_CLICK: p_click, R.P_CONVERT: p_conv,
            R.CLICKED: clicked, R.CONVERTED: clicked & (u_conv < p_conv)}


def candidates_frame(world: World, traffic: Traffic) -> pd.DataFrame:
    """One row per (request, candidate): ids, category, bid, legacy score/rank."""
    n, N = traffic.cand.shape
    req = traffic.requests
    flat = traffic.cand.ravel()
    return pd.DataFrame({
        R.REQUEST_ID: np.repeat(req[R.REQUEST_ID].to_numpy(), N),
        R.EVENT_TIMESTAMP: np.repeat(req[R.EVENT_TIMESTAMP].to_numpy(), N),
        R.DAY: np.repeat(req[R.DAY].to_numpy(), N),
        R.CONSUMER_ID: np.repeat(req[R.CONSUMER_ID].to_numpy(), N),
        R.QUERY_ID: np.repeat(req[R.QUERY_ID].to_numpy(), N),
        R.PRODUCT_ID: world.products[DC.PRODUCT_ID].to_numpy()[flat],
        R.CATEGORY: world.products[DC.CATEGORY].to_numpy()[flat],
        R.BID: world.bids[flat],
        R.LEGACY_SCORE: traffic.legacy_score.ravel(),
        R.LEGACY_RANK: traffic.legacy_rank.ravel(),
    })


def simulate(world: World, cfg: SimConfig) -> EventLogs:
    """The logged period: organic purchases, requests, logged slates, clicks and conversions."""
    rng = np.random.default_rng(cfg.seed)
    purchases = organic_purchases(world, cfg, rng)
    traffic = draw_traffic(world, cfg, rng, cfg.requests_per_day * cfg.days, 0.0, cfg.days)
    slate, prop, explored = logging_slates(traffic, cfg, rng)
    n, K = slate.shape
    cands = candidates_frame(world, traffic)
    flat_idx = (np.arange(n)[:, None] * cfg.n_candidates + slate).ravel()  # rows of `cands` shown
    cands[R.SLOT] = -1
    cands.loc[flat_idx, R.SLOT] = np.tile(np.arange(K), n)
    cands[R.PROPENSITY] = np.nan
    cands.loc[flat_idx, R.PROPENSITY] = prop.ravel()
    req = traffic.requests
    req[R.EXPLORED] = explored
    imp = cands.loc[flat_idx].reset_index(drop=True)
    out = outcomes(world, cfg, np.repeat(req["_c"].to_numpy(), K), np.repeat(req["_q"].to_numpy(), K),
                   traffic.cand[np.arange(n)[:, None], slate].ravel(), imp[R.SLOT].to_numpy(),
                   rng.random(n * K), rng.random(n * K))
    for k, v in out.items():
        imp[k] = v
    click_ts = imp[R.EVENT_TIMESTAMP] + pd.to_timedelta(rng.integers(1, 60, len(imp)), unit="s")
    clicks = imp.loc[imp[R.CLICKED], [R.REQUEST_ID, R.CONSUMER_ID, R.PRODUCT_ID, R.SLOT]].assign(
        **{R.EVENT_TIMESTAMP: click_ts[imp[R.CLICKED]]})
    conv_ts = click_ts + pd.Timedelta(seconds=cfg.convert_delay_s)
    conversions = imp.loc[imp[R.CONVERTED], [R.REQUEST_ID, R.CONSUMER_ID, R.PRODUCT_ID, R.SLOT]].assign(
        **{R.EVENT_TIMESTAMP: conv_ts[imp[R.CONVERTED]]})
    ad_purchases = conversions[[R.CONSUMER_ID, R.PRODUCT_ID, R.EVENT_TIMESTAMP]].assign(**{R.PURCHASE_SOURCE: "ad"})
    purchases = pd.concat([purchases, ad_purchases], ignore_index=True).sort_values(R.EVENT_TIMESTAMP, kind="stable")
    return EventLogs(req.drop(columns=["_c", "_q"]), cands, imp, clicks.reset_index(drop=True),
                   conversions.reset_index(drop=True), purchases.reset_index(drop=True))
