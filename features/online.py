"""Online lookups for one ads request: embeddings and stats from Redis, as numpy arrays.

Every online read of the project goes through this module. The ads server calls `OnlineLookup.lookup(consumer_id, product_ids, query_id=..., query_text=...)`
with up to a few hundred candidates. It reads the data Feast materialized, from the same Redis as
the repo's online store, but not through `FeatureStore.get_online_features`, whose per-value
protobuf objects and response assembly cost milliseconds. Instead:

- the Redis keys and hash fields are computed the way Feast computes them
  (`redis_format.entity_keys`, `feature_field`), for every entity of the request;
- all HGETs (consumer, query, candidates) go out in one write and their replies are read back
  in one pass (`store.roundtrip`);
- the embedding blobs are decoded together with numpy (`redis_format.decode_float_lists`).

Tests check the result equals `get_online_features` for the same entities, missing ones included.
Missing entities are reported in the result and counted in `OnlineLookup.counters`, never raised;
a stored value that does not decode (wrong Redis type, truncated blob) makes only its entity
missing (counted as `corrupt_<entity>`). A query that is not in the store (or given only as text)
is embedded by the query encoder, with an LRU cache.

Faults: every call has a deadline (`timeout`, or one the caller shares across its lookups) and
goes through a `CircuitBreaker`; Redis down or stalled gives `OnlineStoreUnavailable` by the
deadline (at once while the circuit is open), and calls recover by themselves once Redis is back.
The same round trip checks the materialization markers of the model version's views: a Redis
that lost its data gives `StoreEmpty` instead of answering every entity as unknown.

Stats (`StatsLookup`): the scalar features of the stats views in the model version's ranker
feature service (`ranker__<v>` in the feature repo: which views, their entities and features and
value types all come from there), one HMGET per entity, sent in the same round trip as the
embeddings (`lookup(extra=StatsLookup.commands(...))`), decoded a value type at a time with numpy
(`redis_format.decode_scalars`). A row with a value that does not decode (or a key of the wrong
Redis type) is NaN, counted as `corrupt_<entity>` and reported to the caller, never raised.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter, OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import redis
from feast import FeatureStore
from google.protobuf.message import DecodeError

from dashclip.columns import EMBEDDING
from features import columns as C
from features import redis_format as F
from features.feast_compat import versioned_view_name
from features.redis_format import Corrupt  # noqa: F401 (raised by redis_format.parse_scalar)
from features.store import (CircuitBreaker, OnlineStoreUnavailable, StoreEmpty, describe, marker_key, pack_command,
                            redis_client, roundtrip)

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
    extra_replies: list = field(default_factory=list)  # replies to `lookup(extra=...)` commands


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
                 connect_timeout: float = 0.5, timeout: float = 1.0, dim: int | None = None,
                 breaker: CircuitBreaker | None = None, require_marker: bool = True):
        """`timeout`: seconds a call may take in all (its deadline); `require_marker`: refuse to
        answer (StoreEmpty) when the views of the version carry no materialization marker."""
        self.store, self.model_version, self.timeout = store, model_version, timeout
        config = store.config
        self.project = config.project
        self.client: redis.Redis | redis.RedisCluster = redis_client(
            config, connect_timeout=min(connect_timeout, timeout), timeout=timeout)
        self.breaker = breaker or CircuitBreaker()
        self._field: dict[str, bytes] = {}
        views = []
        for entity in (C.PRODUCT_ENTITY, C.QUERY_ENTITY, C.CONSUMER_ENTITY):
            fv = store.get_feature_view(C.embedding_view_name(entity, model_version))
            views.append(versioned_view_name(fv, config))
            self._field[entity] = F.feature_field(views[-1], EMBEDDING)
        self._markers = [marker_key(v, self.project) for v in views] if require_marker else []
        self._marker_views = views
        if encode is None and query_checkpoint is not None:
            encode = default_encoder(query_checkpoint)
        self.queries = QueryCache(encode, cache_size)
        self.counters: Counter = Counter()
        self.dim: int | None = dim

    def _keys(self, entity: str, ids: Sequence[str]) -> list[bytes]:
        return F.entity_keys(C.JOIN_KEYS[entity], ids, self.project)

    def deadline(self) -> float:
        """The `time.monotonic()` instant by which a call started now must be answered."""
        return time.monotonic() + self.timeout

    def read(self, commands: list[bytes], deadline: float | None = None,
             keys: list[bytes | None] | None = None) -> list:
        """Pre-packed read commands -> replies (error replies left in place), through the circuit
        breaker, within the deadline and after the marker check (marker replies dropped). `keys`:
        each command's key, which a Redis Cluster needs to route it."""
        markers = [pack_command(b"EXISTS", *self._markers)] if self._markers else []
        cmds = markers + commands
        keys = (self._markers[:1] if markers else []) + (keys if keys is not None else [None] * len(commands))
        try:
            replies = self.breaker.call(lambda: roundtrip(
                self.client, cmds, keys=keys, deadline=deadline or self.deadline(), errors="keep")) if cmds else []
        except OnlineStoreUnavailable:
            self.counters["redis_errors"] += 1
            raise
        except (redis.ConnectionError, redis.TimeoutError) as e:
            self.counters["redis_errors"] += 1
            raise OnlineStoreUnavailable(
                f"online store unavailable: {describe(self.client)} did not answer ({e}); "
                "the lookup failed fast and the next call retries") from e
        if markers:
            if replies[0] != len(self._markers):
                self.counters["store_empty"] += 1
                raise StoreEmpty(f"store empty for version {self.model_version}: {describe(self.client)} holds no "
                                 f"materialization marker for {', '.join(self._marker_views)} (it lost its data or was "
                                 "never materialized); run `feast materialize-incremental`", self.model_version)
            replies = replies[1:]
        return replies

    def ping(self, deadline: float | None = None) -> None:
        """Raise OnlineStoreUnavailable / StoreEmpty unless Redis answers and holds the version."""
        self.read([pack_command(b"PING")], deadline)

    def fetch(self, requests: Sequence[tuple[str, Sequence[str]]],
              deadline: float | None = None) -> list[tuple[np.ndarray, np.ndarray]]:
        """[(entity, ids), ...] -> [((n, d) embeddings, (n,) found), ...] in one round trip."""
        return self._fetch(requests, deadline)[0]

    def _fetch(self, requests, deadline=None, extra=None) -> tuple[list[tuple[np.ndarray, np.ndarray]], list]:
        """`fetch`, plus the replies of `extra` = (pre-packed commands, their keys) sent in the same round trip."""
        extra_cmds, extra_keys = extra or ([], [])
        cmds, spans, keys = [], [], []
        for entity, ids in requests:
            fld = self._field[entity]
            start = len(cmds)
            keys += self._keys(entity, ids)
            cmds += [pack_command(b"HGET", k, fld) for k in keys[start:]]
            spans.append((entity, start, len(cmds)))
        replies = self.read(cmds + list(extra_cmds), deadline, keys + list(extra_keys))
        blobs, extra_replies = replies[: len(cmds)], replies[len(cmds) :]
        try:
            mat, found = F.decode_float_lists(blobs, self.dim)
        except (ValueError, TypeError, DecodeError):  # an error reply or an undecodable blob among them
            mat, found = self._decode_skipping_corrupt(blobs, spans, requests)
        if self.dim is None and found.any():
            self.dim = mat.shape[1]
        return [(mat[a:b], found[a:b]) for _, a, b in spans], extra_replies

    def _decode_skipping_corrupt(self, blobs: list, spans, requests) -> tuple[np.ndarray, np.ndarray]:
        """Decode row by row; rows that do not decode at the common dimension count as missing."""

        def ids_of(i: int) -> str:
            k = next(j for j, (_, a, b) in enumerate(spans) if a <= i < b)
            return repr(requests[k][1][i - spans[k][1]])

        clean, dims = list(blobs), {}
        head = F.float_list_header(self.dim) if self.dim else None
        for i, b in enumerate(blobs):
            if b is None or b == b"":
                continue
            if head is not None and isinstance(b, bytes) and len(b) == len(head) + 4 * self.dim and b.startswith(head):
                dims[i] = self.dim  # the usual row, in the canonical layout: no need to parse it
                continue
            try:
                dims[i] = len(F.decode_float_lists([b])[0][0]) if isinstance(b, bytes) else None
            except Exception:  # noqa: BLE001 (protobuf raises its own DecodeError)
                dims[i] = None
        good = [d for d in dims.values() if d]
        dim = self.dim or (max(set(good), key=good.count) if good else None)
        for i, d in dims.items():
            if d is None or d != dim:
                clean[i] = None
                entity = next(e for e, a, b in spans if a <= i < b)
                self.counters[f"corrupt_{entity}"] += 1
                if self.counters[f"corrupt_{entity}"] % 1000 == 1:  # the first, then every 1000th: no log flood
                    log.warning("corrupt %s embedding in the online store (%d so far; id %s): %s", entity,
                                self.counters[f"corrupt_{entity}"], ids_of(i),
                                blobs[i] if isinstance(blobs[i], Exception) else f"{len(blobs[i])} bytes")
        return F.decode_float_lists(clean, dim)

    def lookup(self, consumer_id: str | None, product_ids: Sequence[str], *, query_id: str | None = None,
               query_text: str | None = None, deadline: float | None = None, extra=None) -> RequestEmbeddings:
        """Embeddings for one request; missing entities are reported, not raised. `extra`: (pre-packed
        commands, their keys) to send in the same round trip; their replies come in `extra_replies`."""
        product_ids = [str(p) for p in product_ids]
        reqs = [(C.PRODUCT_ENTITY, product_ids)]
        if consumer_id is not None:
            reqs.append((C.CONSUMER_ENTITY, [str(consumer_id)]))
        if query_id is not None:
            reqs.append((C.QUERY_ENTITY, [str(query_id)]))
        fetched, extra_replies = self._fetch(reqs, deadline, extra)
        got = dict(zip([r[0] for r in reqs], fetched))
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
        return RequestEmbeddings(product_ids, products, pfound, consumer, cfound, query, qfound, qsource, missing,
                                 extra_replies)

    def _count(self, missing: dict[str, list[str]], qsource: str) -> None:
        c = self.counters
        c["requests"] += 1
        c[f"query_{qsource}"] += 1
        for entity, ids in missing.items():
            c[f"missing_{entity}"] += len(ids)


@dataclass(frozen=True)
class StatsView:
    """One stats view as the online reader reads it (from the feature repo's declaration)."""

    name: str
    entity: str
    join_key: str
    features: tuple[str, ...]
    value_types: tuple[str, ...]  # Feast ValueType names: INT64, DOUBLE, ...
    fields: tuple[bytes, ...]  # the Redis hash field of each feature


def hmget_parts(fields: Sequence[bytes]) -> tuple[bytes, bytes]:
    """`HMGET key field...` in RESP is a fixed head, the key, then the same fields every time:
    head + b"$%d\\r\\n%b\\r\\n" % (len(key), key) + tail == pack_command(b"HMGET", key, *fields)."""
    return b"*%d\r\n$5\r\nHMGET\r\n" % (2 + len(fields)), pack_command(*fields)[len(b"*%d\r\n" % len(fields)):]


def stats_views(store: FeatureStore, model_version: str) -> dict[str, StatsView]:
    """entity -> its stats view, for the views tagged `kind=stats` in the version's ranker service."""
    service = store.get_feature_service(C.ranker_service_name(model_version))
    out: dict[str, StatsView] = {}
    for proj in service.feature_view_projections:
        fv = store.get_feature_view(proj.name)
        if fv.tags.get("kind") != "stats":
            continue
        if len(fv.entity_columns) != 1 or len(fv.entities) != 1:
            raise ValueError(f"stats view {fv.name}: the online reader needs one entity with one join key, "
                             f"it has {fv.entities} / {[c.name for c in fv.entity_columns]}")
        if fv.entities[0] in out:
            raise ValueError(f"ranker service {service.name}: two stats views on entity {fv.entities[0]!r} "
                             f"({out[fv.entities[0]].name}, {fv.name})")
        versioned = versioned_view_name(fv, store.config)
        feats = list(proj.features)
        out[fv.entities[0]] = StatsView(fv.name, fv.entities[0], fv.entity_columns[0].name,
                                        tuple(f.name for f in feats), tuple(f.dtype.to_value_type().name for f in feats),
                                        tuple(F.feature_field(versioned, f.name) for f in feats))
    return out


class StatsLookup:
    """The ranker's stats features of one request, in one round trip (HMGET per entity)."""

    def __init__(self, store: FeatureStore, lookup: OnlineLookup):
        self.lookup, self.project = lookup, store.config.project
        self.views = stats_views(store, lookup.model_version)
        self.fields = {entity: list(v.fields) for entity, v in self.views.items()}
        self._hmget = {e: hmget_parts(f) for e, f in self.fields.items()}

    def fetch(self, requests: Sequence[tuple[str, Sequence[str]]], deadline: float | None = None,
              corrupt: dict[str, set[int]] | None = None) -> dict[str, np.ndarray]:
        """[(entity, ids)] -> {"<view>__<feature>": (n_ids,) float}, NaN where missing, in one round trip."""
        cmds, keys, spans = self.commands(requests)
        return self.decode(self.lookup.read(cmds, deadline, keys) if cmds else [], spans, requests, corrupt)

    def commands(self, requests: Sequence[tuple[str, Sequence[str]]]) -> tuple[list[bytes], list[bytes], list]:
        """The HMGETs of `requests`: (pre-packed commands, their keys, spans for `decode`)."""
        cmds, spans, keys = [], [], []
        for entity, ids in requests:
            start = len(cmds)
            keys += F.entity_keys(self.views[entity].join_key, ids, self.project)
            head, tail = self._hmget[entity]
            cmds += [b"%b$%d\r\n%b\r\n%b" % (head, len(k), k, tail) for k in keys[start:]]
            spans.append((entity, start, len(cmds)))
        return cmds, keys, spans

    def decode(self, replies: list, spans: list, requests,
               corrupt: dict[str, set[int]] | None = None) -> dict[str, np.ndarray]:
        """HMGET replies -> features. Rows whose stored values do not decode (or whose key has the
        wrong Redis type) are NaN and their positions are added to `corrupt[entity]`."""
        views = [self.views[entity] for entity, _, _ in spans]
        decoded = decode_stats_rows([(replies[a:b], v.value_types) for v, (_, a, b) in zip(views, spans)])
        out = {}
        for k, (view, (vals, bad)) in enumerate(zip(views, decoded)):
            for i, why in bad.items():
                self._count_corrupt(view.entity, requests[k][1][i], why)
                if corrupt is not None:
                    corrupt.setdefault(view.entity, set()).add(i)
            for j, f in enumerate(view.features):
                out[C.full_feature_name(view.name, f)] = vals[:, j]
        return out

    def _count_corrupt(self, entity: str, entity_id: str, why: str) -> None:
        counters = self.lookup.counters
        counters[f"corrupt_{entity}"] += 1
        n = counters[f"corrupt_{entity}"]
        if n % 1000 == 1:  # the first, then every 1000th: no log flood
            log.warning("corrupt %s stats value in the online store (%d so far; id %r): %s", entity, n, entity_id, why)


def decode_stats_rows(blocks: Sequence[tuple[list, Sequence[str]]]) -> list[tuple[np.ndarray, dict[int, str]]]:
    """[(HMGET replies of one view: a list of stored values per row or an error reply, the value
    types of its features)] -> [((n, f) float64, {row: why it does not decode})], one per block.

    The values of each value type, across all blocks, are decoded in one `decode_scalars` call. A
    row with any undecodable value is NaN throughout, like a missing row."""
    pending: dict[str, list] = {}  # value type -> (blobs, [(block, cols, start)]), column after column
    results = []
    for k, (rows, types) in enumerate(blocks):
        n, f = len(rows), len(types)
        bad = {} if _all_rows_of(rows, f) else {i: f"{r}" for i, r in enumerate(rows) if not isinstance(r, list) or len(r) != f}
        if bad:
            rows = [[None] * f if i in bad else r for i, r in enumerate(rows)]
        results.append((np.full((n, f), np.nan), bad))
        columns = list(zip(*rows)) if n else [()] * f
        for vt in dict.fromkeys(types):
            cols = [j for j, t in enumerate(types) if t == vt]
            blobs, where = pending.setdefault(vt, ([], []))
            where.append((k, cols, len(blobs)))
            for j in cols:
                blobs += columns[j]
    for vt, (blobs, where) in pending.items():
        got, errors = F.decode_scalars(blobs, vt)
        for k, cols, start in where:
            vals, bad = results[k]
            n, m = len(vals), len(vals) * len(cols)
            vals[:, cols] = got[start:start + m].reshape(len(cols), n).T
            for pos in (p for p in errors if start <= p < start + m):
                bad.setdefault((pos - start) % n, errors[pos])
    for vals, bad in results:
        if bad:
            vals[sorted(bad)] = np.nan
    return [(vals, dict(sorted(bad.items()))) for vals, bad in results]


def _all_rows_of(rows: list, f: int) -> bool:
    """Every reply is a list of f values (no error reply among them), checked at C speed."""
    try:
        return sum(map(len, rows)) == len(rows) * f and all(map(list.__instancecheck__, rows))
    except TypeError:  # an error reply has no length
        return False
