"""Online lookups for one ads request: embeddings from Redis, as numpy arrays.

The ads server calls `OnlineLookup.lookup(consumer_id, product_ids, query_id=..., query_text=...)`
with up to a few hundred candidates. It reads the data Feast materialized, from the same Redis as
the repo's online store, but not through `FeatureStore.get_online_features`, whose per-value
protobuf objects and response assembly cost milliseconds. Instead:

- the Redis keys and hash fields are computed the way Feast computes them
  (`redis_format.entity_keys`, `feature_field`), for every entity of the request;
- all HGETs (consumer, query, candidates) go out in one write and their replies are read back
  in one pass (`store.roundtrip`);
- the embedding blobs are decoded together with numpy (`redis_format.decode_float_lists`).

Tests check the result equals `get_online_features` for the same entities, missing ones included.
Missing entities are reported in the result and counted in `OnlineLookup.counters`, never raised.
A query that is not in the store (or given only as text) is embedded by the query encoder, with
an LRU cache. Redis down: `OnlineStoreUnavailable` within about the connect timeout; the next
call reconnects by itself once Redis is back.
"""

from __future__ import annotations

import logging
import threading
from collections import Counter, OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import redis
from feast import FeatureStore
from feast.infra.online_stores.redis import _versioned_fv_name

from dashclip.columns import EMBEDDING
from features import columns as C
from features import redis_format as F
from features.store import OnlineStoreUnavailable, describe, pack_command, redis_client, roundtrip

log = logging.getLogger(__name__)

Encoder = Callable[[list[str]], np.ndarray]  # list of n texts -> (n, d) float32


@dataclass
class RequestEmbeddings:
    """Embeddings of one request. Rows of missing entities are zeros with found=False."""

    product_ids: list[str]
    products: np.ndarray  # (n, d) float32
    product_found: np.ndarray  # (n,) bool
    consumer: np.ndarray  # (d,) float32
    consumer_found: bool
    query: np.ndarray  # (d,) float32
    query_found: bool
    query_source: str  # store | cache | encoded | missing
    missing: dict[str, list[str]] = field(default_factory=dict)  # entity -> ids not found


class QueryCache:
    """Thread-safe LRU of query text -> embedding, filled by the encoder on misses."""

    def __init__(self, encode: Encoder | None, maxsize: int = 10_000):
        self.encode, self.maxsize = encode, maxsize
        self._items: OrderedDict[str, np.ndarray] = OrderedDict()
        self._lock = threading.Lock()
        self.hits = self.misses = 0

    def get(self, text: str) -> tuple[np.ndarray | None, str]:
        key = " ".join(text.split())
        with self._lock:
            if key in self._items:
                self._items.move_to_end(key)
                self.hits += 1
                return self._items[key], "cache"
        if self.encode is None or not key:
            return None, "missing"
        vec = np.asarray(self.encode([key]), dtype=np.float32).reshape(-1)  # (d,)
        with self._lock:
            self.misses += 1
            self._items[key] = vec
            while len(self._items) > self.maxsize:
                self._items.popitem(last=False)
        return vec, "encoded"


def default_encoder(checkpoint_dir: str | Path) -> Encoder:
    """The trained query tower (imported lazily: the lookup itself needs no torch)."""
    from dashclip.inference import QueryEmbedder

    return QueryEmbedder(checkpoint_dir).embed


class OnlineLookup:
    """Reads the embedding views of one model version for ads requests."""

    def __init__(self, store: FeatureStore, model_version: str, *, encode: Encoder | None = None,
                 query_checkpoint: str | Path | None = None, cache_size: int = 10_000,
                 connect_timeout: float = 0.5, timeout: float = 1.0, dim: int | None = None):
        self.store, self.model_version = store, model_version
        config = store.config
        self.project = config.project
        self.client: redis.Redis = redis_client(config, connect_timeout=connect_timeout, timeout=timeout)
        self._field: dict[str, bytes] = {}
        for entity in (C.PRODUCT_ENTITY, C.QUERY_ENTITY, C.CONSUMER_ENTITY):
            fv = store.get_feature_view(C.embedding_view_name(entity, model_version))
            self._field[entity] = F.feature_field(_versioned_fv_name(fv, config), EMBEDDING)
        if encode is None and query_checkpoint is not None:
            encode = default_encoder(query_checkpoint)
        self.queries = QueryCache(encode, cache_size)
        self.counters: Counter = Counter()
        self.dim: int | None = dim

    def _keys(self, entity: str, ids: Sequence[str]) -> list[bytes]:
        return F.entity_keys(C.JOIN_KEYS[entity], ids, self.project)

    def fetch(self, requests: Sequence[tuple[str, Sequence[str]]]) -> list[tuple[np.ndarray, np.ndarray]]:
        """[(entity, ids), ...] -> [((n, d) embeddings, (n,) found), ...] in one round trip."""
        cmds, spans = [], []
        for entity, ids in requests:
            fld = self._field[entity]
            start = len(cmds)
            cmds += [pack_command(b"HGET", k, fld) for k in self._keys(entity, ids)]
            spans.append((start, len(cmds)))
        try:
            blobs = roundtrip(self.client, cmds) if cmds else []
        except (redis.ConnectionError, redis.TimeoutError) as e:
            self.counters["redis_errors"] += 1
            raise OnlineStoreUnavailable(
                f"online store unavailable: {describe(self.client)} did not answer ({e}); "
                "the lookup failed fast and the next call retries") from e
        mat, found = F.decode_float_lists(blobs, self.dim)
        if self.dim is None and found.any():
            self.dim = mat.shape[1]
        return [(mat[a:b], found[a:b]) for a, b in spans]

    def lookup(self, consumer_id: str | None, product_ids: Sequence[str], *, query_id: str | None = None,
               query_text: str | None = None) -> RequestEmbeddings:
        """Embeddings for one request; missing entities are reported, not raised."""
        product_ids = [str(p) for p in product_ids]
        reqs = [(C.PRODUCT_ENTITY, product_ids)]
        if consumer_id is not None:
            reqs.append((C.CONSUMER_ENTITY, [str(consumer_id)]))
        if query_id is not None:
            reqs.append((C.QUERY_ENTITY, [str(query_id)]))
        got = dict(zip([r[0] for r in reqs], self.fetch(reqs)))
        products, pfound = got[C.PRODUCT_ENTITY]
        d = products.shape[1] if self.dim is None else self.dim
        zero = np.zeros(d, dtype=np.float32)
        consumer, cfound = (got[C.CONSUMER_ENTITY][0][0], bool(got[C.CONSUMER_ENTITY][1][0])) if consumer_id is not None else (zero, False)
        query, qfound, qsource = zero, False, "missing"
        if query_id is not None and got[C.QUERY_ENTITY][1][0]:
            query, qfound, qsource = got[C.QUERY_ENTITY][0][0], True, "store"
        elif query_text:
            vec, qsource = self.queries.get(query_text)
            if vec is not None:
                if self.dim is not None and vec.shape[0] != self.dim:
                    raise ValueError(f"query encoder returned dimension {vec.shape[0]}, the store holds {self.dim}")
                query, qfound = vec, True
        if products.shape[1] != d:  # nothing found at all yet: give every array the same width
            products = np.zeros((len(product_ids), d), dtype=np.float32)
        missing = {C.PRODUCT_ENTITY: [p for p, ok in zip(product_ids, pfound) if not ok]}
        if consumer_id is not None and not cfound:
            missing[C.CONSUMER_ENTITY] = [str(consumer_id)]
        if not qfound and (query_id is not None or query_text):
            missing[C.QUERY_ENTITY] = [str(query_id if query_id is not None else query_text)]
        self._count(missing, qsource)
        return RequestEmbeddings(product_ids, products, pfound, consumer, cfound, query, qfound, qsource, missing)

    def _count(self, missing: dict[str, list[str]], qsource: str) -> None:
        c = self.counters
        c["requests"] += 1
        c[f"query_{qsource}"] += 1
        for entity, ids in missing.items():
            c[f"missing_{entity}"] += len(ids)
