"""Online scoring of one ads request: features from Redis, then the LightGBM ranker.

`RankService.rank(...)` reads the embeddings and the stats views through `features.online`
(`OnlineLookup`, `StatsLookup`: every online read lives there), all in one round trip, computes
the similarity features with the same function as the training frames, assembles the ranker's
features in its stored order and scores. Unknown products, consumers and queries are
scored with missing values (LightGBM's default branch) and flagged in the answer; so is a
product whose stored embedding or stats value does not decode (corrupt), without failing the
request. Candidates come from the request or, when it gives none, from the faiss index over
product embeddings. All Redis reads of one request share one deadline (`lookup_timeout`) and the
lookup's circuit breaker.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from feast import FeatureStore

from features import columns as FC
from features.online import OnlineLookup, StatsLookup
from features.similarity import request_features
from ranking import columns as R
from ranking.model import Ranker


@dataclass
class Ranked:
    product_ids: list[str]
    pctr: np.ndarray
    pcvr: np.ndarray
    score: np.ndarray
    product_found: np.ndarray
    consumer_found: bool
    query_found: bool
    query_source: str
    retrieval: str
    missing: dict[str, list[str]] = field(default_factory=dict)


class RankService:
    def __init__(self, store: FeatureStore, ranker: Ranker, model_version: str, categories: dict[str, str], *,
                 encode=None, retriever=None, retrieve_k: int = 100, lookup: OnlineLookup | None = None,
                 lookup_timeout: float = 0.05, require_marker: bool = True):
        """`lookup_timeout`: seconds all Redis reads of one request may take together (its deadline)."""
        self.ranker, self.model_version, self.categories = ranker, model_version, categories
        self.lookup = lookup or OnlineLookup(store, model_version, encode=encode, timeout=lookup_timeout,
                                             require_marker=require_marker)
        self.stats = StatsLookup(store, self.lookup)
        self.retriever, self.retrieve_k = retriever, retrieve_k

    def ping(self) -> None:
        """Raise OnlineStoreUnavailable (StoreEmpty, CircuitOpen) unless the store can serve."""
        self.lookup.ping()

    def _retrieve(self, query_id: str | None, query: str, deadline: float) -> list[str]:
        if self.retriever is None:
            raise ValueError("candidate_ids: required, this server has no retrieval index")
        vec = None
        if query_id is not None:
            (emb, found), = self.lookup.fetch([(FC.QUERY_ENTITY, [query_id])], deadline)
            vec = emb[0] if found[0] else None
        if vec is None:
            vec, _ = self.lookup.queries.get(query)
        if vec is None:
            return []
        ids, _ = self.retriever.search(vec, self.retrieve_k)
        return [p for p in ids[0] if p is not None]

    def rank(self, consumer_id: str, query: str, candidate_ids: list[str] | None, k: int,
             query_id: str | None = None) -> Ranked:
        retrieval, deadline = "request", self.lookup.deadline()
        if not candidate_ids:
            candidate_ids, retrieval = self._retrieve(query_id, query, deadline), "faiss"
        pids = list(dict.fromkeys(candidate_ids))  # duplicates scored once, first position kept
        cats = [self.categories.get(p, "") for p in pids]
        uniq_cats = sorted(set(cats))
        stats_reqs = [(FC.PRODUCT_ENTITY, pids), (FC.CONSUMER_ENTITY, [consumer_id]),
                      (FC.CATEGORY_ENTITY, uniq_cats)]
        cmds, keys, spans = self.stats.commands(stats_reqs)  # sent with the embedding reads: one round trip
        req = self.lookup.lookup(consumer_id, pids, query_id=query_id, query_text=query, deadline=deadline,
                                 extra=(cmds, keys))
        corrupt: dict[str, set[int]] = {}
        stats = self.stats.decode(req.extra_replies, spans, stats_reqs, corrupt)
        bad = sorted(i for i in corrupt.get(FC.PRODUCT_ENTITY, ()) if req.product_found[i])
        if bad:  # a product with an unreadable stats value is scored as unknown, like a missing one
            req.product_found[bad] = False
            req.products[bad] = 0.0
            req.missing[FC.PRODUCT_ENTITY] = [p for p, ok in zip(pids, req.product_found) if not ok]
        X = self._features(req, stats, cats, uniq_cats)
        pred = self.ranker.predict(X, self.ranker.features) if len(pids) else {"ctr": np.zeros(0), "cvr": np.zeros(0), "score": np.zeros(0)}
        order = np.argsort(-pred["score"], kind="stable")[:k]
        return Ranked([pids[i] for i in order], pred["ctr"][order], pred["cvr"][order], pred["score"][order],
                      req.product_found[order], req.consumer_found, req.query_found, req.query_source, retrieval,
                      req.missing)

    def _features(self, req, stats: dict[str, np.ndarray], cats: list[str], uniq_cats: list[str]) -> np.ndarray:
        n = len(req.product_ids)
        sim = request_features(req)
        cat_row = {c: i for i, c in enumerate(uniq_cats)}
        idx = np.array([cat_row[c] for c in cats], dtype=np.int64)
        cols = {R.SLOT: np.zeros(n)}
        for name, v in stats.items():
            if name.startswith(FC.CONSUMER_STATS_VIEW):
                cols[name] = np.repeat(v, n)
            elif name.startswith(FC.CATEGORY_STATS_VIEW):
                cols[name] = np.where(np.array(cats) == "", np.nan, v[idx]) if n else np.zeros(0)
            else:
                cols[name] = v
        cols.update(sim)
        return np.column_stack([np.asarray(cols[f], dtype=float) for f in self.ranker.features]) if n else np.zeros((0, len(self.ranker.features)))
