"""Online scoring of one ads request: features from Redis, then the LightGBM ranker.

`RankService.rank(...)` reads the embeddings with `features.online.OnlineLookup` (one round trip)
and the stats views with one pipelined HMGET per entity (`StatsLookup`, Feast's Redis layout),
computes the similarity features with the same function as the training frames, assembles the
ranker's features in its stored order and scores. Unknown products, consumers and queries are
scored with missing values (LightGBM's default branch) and flagged in the answer. Candidates
come from the request or, when it gives none, from the faiss index over product embeddings.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import numpy as np
import redis
from feast import FeatureStore
from feast.infra.online_stores.redis import _versioned_fv_name

from features import columns as FC
from features import redis_format as F
from features.online import OnlineLookup
from features.similarity import request_features
from features.store import OnlineStoreUnavailable, describe, pack_command, roundtrip
from ranking import columns as R
from ranking.model import Ranker

# entity -> (join key, stats view, features)
STATS_VIEWS = {
    FC.PRODUCT_ENTITY: (FC.PRODUCT_ID, FC.PRODUCT_STATS_VIEW, (FC.PRODUCT_IMPRESSIONS, FC.PRODUCT_CLICKS,
                        FC.PRODUCT_CONVERSIONS, FC.PRODUCT_CTR, FC.PRODUCT_CVR)),
    FC.CATEGORY_ENTITY: (FC.CATEGORY_ID, FC.CATEGORY_STATS_VIEW, (FC.CATEGORY_IMPRESSIONS, FC.CATEGORY_CTR, FC.CATEGORY_CVR)),
    FC.CONSUMER_ENTITY: (FC.CONSUMER_ID, FC.CONSUMER_STATS_VIEW, (FC.CONSUMER_ORDERS, FC.CONSUMER_CTR,
                         FC.CONSUMER_DAYS_SINCE_LAST_ORDER)),
}


def _scalar(blob: bytes | None) -> float:
    """A stored ValueProto scalar -> float (NaN when missing or null)."""
    if not blob:
        return np.nan
    v = F.ValueProto()
    v.ParseFromString(blob)
    kind = v.WhichOneof("val")
    return float(getattr(v, kind)) if kind and kind != "null_val" else np.nan


class StatsLookup:
    """The ranker's stats features of one request, in one round trip (HMGET per entity)."""

    def __init__(self, store: FeatureStore, client: redis.Redis):
        self.client, self.project = client, store.config.project
        self.fields = {}
        for entity, (_, view, feats) in STATS_VIEWS.items():
            fv = store.get_feature_view(view)
            name = _versioned_fv_name(fv, store.config)
            self.fields[entity] = [F.feature_field(name, f) for f in feats]

    def fetch(self, requests: Sequence[tuple[str, Sequence[str]]]) -> dict[str, np.ndarray]:
        """[(entity, ids)] -> {"<view>__<feature>": (n_ids,) float}, NaN where missing."""
        cmds, spans = [], []
        for entity, ids in requests:
            key, _, _ = STATS_VIEWS[entity]
            start = len(cmds)
            cmds += [pack_command(b"HMGET", k, *self.fields[entity]) for k in F.entity_keys(key, ids, self.project)]
            spans.append((entity, start, len(cmds)))
        try:
            replies = roundtrip(self.client, cmds) if cmds else []
        except (redis.ConnectionError, redis.TimeoutError) as e:
            raise OnlineStoreUnavailable(f"online store unavailable: {describe(self.client)} did not answer ({e})") from e
        out = {}
        for entity, a, b in spans:
            _, view, feats = STATS_VIEWS[entity]
            vals = np.array([[_scalar(x) for x in r] for r in replies[a:b]], dtype=float).reshape(b - a, len(feats))
            for j, f in enumerate(feats):
                out[R.stats_feature(view, f)] = vals[:, j]
        return out


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
                 encode=None, retriever=None, retrieve_k: int = 100, lookup: OnlineLookup | None = None):
        self.ranker, self.model_version, self.categories = ranker, model_version, categories
        self.lookup = lookup or OnlineLookup(store, model_version, encode=encode)
        self.stats = StatsLookup(store, self.lookup.client)
        self.retriever, self.retrieve_k = retriever, retrieve_k

    def ping(self) -> None:
        try:
            self.lookup.client.ping()
        except (redis.ConnectionError, redis.TimeoutError) as e:
            raise OnlineStoreUnavailable(f"online store unavailable: {describe(self.lookup.client)} did not answer ({e})") from e

    def _retrieve(self, query_id: str | None, query: str) -> list[str]:
        if self.retriever is None:
            raise ValueError("candidate_ids: required, this server has no retrieval index")
        vec = None
        if query_id is not None:
            (emb, found), = self.lookup.fetch([(FC.QUERY_ENTITY, [query_id])])
            vec = emb[0] if found[0] else None
        if vec is None:
            vec, _ = self.lookup.queries.get(query)
        if vec is None:
            return []
        ids, _ = self.retriever.search(vec, self.retrieve_k)
        return [p for p in ids[0] if p is not None]

    def rank(self, consumer_id: str, query: str, candidate_ids: list[str] | None, k: int,
             query_id: str | None = None) -> Ranked:
        retrieval = "request"
        if not candidate_ids:
            candidate_ids, retrieval = self._retrieve(query_id, query), "faiss"
        pids = list(dict.fromkeys(candidate_ids))  # duplicates scored once, first position kept
        req = self.lookup.lookup(consumer_id, pids, query_id=query_id, query_text=query)
        cats = [self.categories.get(p, "") for p in pids]
        uniq_cats = sorted(set(cats))
        stats = self.stats.fetch([(FC.PRODUCT_ENTITY, pids), (FC.CONSUMER_ENTITY, [consumer_id]),
                                  (FC.CATEGORY_ENTITY, uniq_cats)])
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
