"""Online scoring of one ads request: features from Redis, then the LightGBM ranker.

`RankService.rank(...)` reads the embeddings with `features.online.OnlineLookup` and the stats
views with one HMGET per entity (`StatsLookup`, Feast's Redis layout), all in one round trip,
computes the similarity features with the same function as the training frames, assembles the
ranker's features in its stored order and scores. Unknown products, consumers and queries are
scored with missing values (LightGBM's default branch) and flagged in the answer; so is a
product whose stored embedding or stats value does not decode (corrupt), without failing the
request. Candidates come from the request or, when it gives none, from the faiss index over
product embeddings. All Redis reads of one request share one deadline (`lookup_timeout`) and the
lookup's circuit breaker.
"""

from __future__ import annotations

from dataclasses import dataclass, field
import logging
from typing import Sequence

import numpy as np
import redis
from feast import FeatureStore
from google.protobuf.message import DecodeError
from feast.infra.online_stores.redis import _versioned_fv_name

from features import columns as FC
from features import redis_format as F
from features.online import OnlineLookup
from features.similarity import request_features
from features.store import pack_command
from ranking import columns as R
from ranking.model import Ranker

log = logging.getLogger(__name__)

# entity -> (join key, stats view, features)
STATS_VIEWS = {
    FC.PRODUCT_ENTITY: (FC.PRODUCT_ID, FC.PRODUCT_STATS_VIEW, (FC.PRODUCT_IMPRESSIONS, FC.PRODUCT_CLICKS,
                        FC.PRODUCT_CONVERSIONS, FC.PRODUCT_CTR, FC.PRODUCT_CVR)),
    FC.CATEGORY_ENTITY: (FC.CATEGORY_ID, FC.CATEGORY_STATS_VIEW, (FC.CATEGORY_IMPRESSIONS, FC.CATEGORY_CTR, FC.CATEGORY_CVR)),
    FC.CONSUMER_ENTITY: (FC.CONSUMER_ID, FC.CONSUMER_STATS_VIEW, (FC.CONSUMER_ORDERS, FC.CONSUMER_CTR,
                         FC.CONSUMER_DAYS_SINCE_LAST_ORDER)),
}


class Corrupt(ValueError):
    """A stored value that does not decode as the scalar the view declares."""


def _scalar(blob: bytes | None) -> float:
    """A stored ValueProto scalar -> float (NaN when missing or null); Corrupt when undecodable."""
    if not blob:
        return np.nan
    v = F.ValueProto()
    try:
        v.ParseFromString(blob)
        kind = v.WhichOneof("val")
        return float(getattr(v, kind)) if kind and kind != "null_val" else np.nan
    except (DecodeError, TypeError, ValueError) as e:
        raise Corrupt(f"{len(blob)} bytes: {e}") from e


class StatsLookup:
    """The ranker's stats features of one request, in one round trip (HMGET per entity)."""

    def __init__(self, store: FeatureStore, lookup: OnlineLookup):
        self.lookup, self.project = lookup, store.config.project
        self.fields = {}
        for entity, (_, view, feats) in STATS_VIEWS.items():
            fv = store.get_feature_view(view)
            name = _versioned_fv_name(fv, store.config)
            self.fields[entity] = [F.feature_field(name, f) for f in feats]

    def fetch(self, requests: Sequence[tuple[str, Sequence[str]]], deadline: float | None = None,
              corrupt: dict[str, set[int]] | None = None) -> dict[str, np.ndarray]:
        """[(entity, ids)] -> {"<view>__<feature>": (n_ids,) float}, NaN where missing, in one round trip."""
        cmds, keys, spans = self.commands(requests)
        return self.decode(self.lookup.read(cmds, deadline, keys) if cmds else [], spans, requests, corrupt)

    def commands(self, requests: Sequence[tuple[str, Sequence[str]]]) -> tuple[list[bytes], list[bytes], list]:
        """The HMGETs of `requests`: (pre-packed commands, their keys, spans for `decode`)."""
        cmds, spans, keys = [], [], []
        for entity, ids in requests:
            key, _, _ = STATS_VIEWS[entity]
            start = len(cmds)
            keys += F.entity_keys(key, ids, self.project)
            cmds += [pack_command(b"HMGET", k, *self.fields[entity]) for k in keys[start:]]
            spans.append((entity, start, len(cmds)))
        return cmds, keys, spans

    def decode(self, replies: list, spans: list, requests,
               corrupt: dict[str, set[int]] | None = None) -> dict[str, np.ndarray]:
        """HMGET replies -> features. Rows whose stored values do not decode (or whose key has the
        wrong Redis type) are NaN and their positions are added to `corrupt[entity]`."""
        out = {}
        for entity, a, b in spans:
            _, view, feats = STATS_VIEWS[entity]
            vals = np.full((b - a, len(feats)), np.nan)
            for i, r in enumerate(replies[a:b]):
                try:
                    if isinstance(r, redis.ResponseError):
                        raise Corrupt(str(r))
                    vals[i] = [_scalar(x) for x in r]
                except Corrupt as e:
                    n = self.lookup.counters[f"corrupt_{entity}"] = self.lookup.counters[f"corrupt_{entity}"] + 1
                    if n % 1000 == 1:  # the first, then every 1000th: no log flood
                        log.warning("corrupt %s stats value in the online store (%d so far; id %r): %s", entity, n,
                                    requests[[s[0] for s in spans].index(entity)][1][i], e)
                    if corrupt is not None:
                        corrupt.setdefault(entity, set()).add(i)
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
