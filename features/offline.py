"""Point-in-time correct training frames for the ranker, through Feast's historical retrieval.

`training_frame(store, events, model_version)` takes logged (simulated) impressions, one row per
(request, candidate) with `event_timestamp`, `consumer_id`, `query_id`, `product_id` (and
`category` if the category stats are wanted), and joins, as of each row's timestamp, the
embeddings of the given model version and the ranker stats (`get_historical_features`: a feature
row counts only if its event_timestamp <= the impression's and it is within the view's TTL). The
similarity features are then computed per request with the same function the online path uses.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from feast import FeatureStore

from dashclip.columns import EMBEDDING, EVENT_TIMESTAMP, QUERY_ID
from features import columns as C
from features.similarity import similarity_features

REQUEST_ID = "request_id"


def _refs_by_join_keys(store: FeatureStore, model_version: str, columns) -> dict[tuple[str, ...], list[str]]:
    """Feature references of the ranker service whose join keys the frame has, grouped by join keys."""
    groups: dict[tuple[str, ...], list[str]] = {}
    for proj in store.get_feature_service(C.ranker_service_name(model_version)).feature_view_projections:
        keys = tuple(sorted(k.name for k in store.get_feature_view(proj.name).entity_columns))
        if all(k in columns for k in keys):
            groups.setdefault(keys, []).extend(f"{proj.name}:{f.name}" for f in proj.features)
    return groups


def feature_refs(store: FeatureStore, model_version: str, columns) -> list[str]:
    """Feature references of the ranker service whose join keys the frame has."""
    return [r for refs in _refs_by_join_keys(store, model_version, columns).values() for r in refs]


def _stack(col: pd.Series, d: int) -> tuple[np.ndarray, np.ndarray]:
    """Object column of lists/arrays (None where missing) -> ((n, d) float32, (n,) found)."""
    found = np.fromiter((v is not None and not (isinstance(v, float) and np.isnan(v)) and len(v) > 0 for v in col),
                        dtype=bool, count=len(col))
    out = np.zeros((len(col), d), dtype=np.float32)
    if found.any():
        out[found] = np.stack([np.asarray(v, dtype=np.float32) for v, ok in zip(col, found) if ok])
    return out, found


def training_frame(store: FeatureStore, events: pd.DataFrame, model_version: str, *,
                   with_similarity: bool = True, keep_embeddings: bool = False) -> pd.DataFrame:
    """Events + point-in-time features (+ similarity features), in the events' row order."""
    if EVENT_TIMESTAMP not in events:
        raise ValueError(f"events frame needs an {EVENT_TIMESTAMP!r} column; it has {list(events.columns)}")
    events = events.reset_index(drop=True).copy()
    events[EVENT_TIMESTAMP] = pd.to_datetime(events[EVENT_TIMESTAMP], utc=True)
    frame = events
    for keys, view_refs in _refs_by_join_keys(store, model_version, set(events.columns)).items():
        # One retrieval per join-key set, on the distinct (keys, timestamp) rows only: Feast's file
        # store merges every entity row with every feature row of its key before the as-of filter,
        # so a consumer view would otherwise be joined once per candidate of each request.
        on = [*keys, EVENT_TIMESTAMP]
        entity = events[on].drop_duplicates().reset_index(drop=True)
        got = store.get_historical_features(entity_df=entity, features=view_refs, full_feature_names=True).to_df()
        got[EVENT_TIMESTAMP] = pd.to_datetime(got[EVENT_TIMESTAMP], utc=True)
        if len(got) != len(entity):
            raise RuntimeError(f"historical retrieval for {keys}: {len(got)} rows back for {len(entity)} entity rows")
        frame = frame.merge(got, on=on, how="left", validate="many_to_one")
    frame = frame.reset_index(drop=True)
    emb = {e: f"{C.embedding_view_name(e, model_version)}__{EMBEDDING}"
           for e in (C.PRODUCT_ENTITY, C.QUERY_ENTITY, C.CONSUMER_ENTITY)}
    if with_similarity and emb[C.PRODUCT_ENTITY] in frame:
        frame = frame.join(pd.DataFrame(_similarity(frame, emb), index=frame.index))
    if not keep_embeddings:
        frame = frame.drop(columns=[c for c in emb.values() if c in frame])
    return frame


def _similarity(frame: pd.DataFrame, emb: dict[str, str]) -> dict[str, np.ndarray]:
    dims = [len(v) for c in emb.values() if c in frame for v in frame[c] if v is not None and not isinstance(v, float)]
    d = dims[0] if dims else 1
    cols = {}
    for entity, col in emb.items():
        cols[entity] = _stack(frame[col], d) if col in frame else (np.zeros((len(frame), d), np.float32), np.zeros(len(frame), bool))
    if REQUEST_ID in frame:
        group = frame[REQUEST_ID].to_numpy()
    else:  # a request = one consumer, one query, one moment
        keys = [k for k in (C.CONSUMER_ID, QUERY_ID, EVENT_TIMESTAMP) if k in frame]
        group = frame.groupby(keys, sort=False, dropna=False).ngroup().to_numpy()
    (p, pf), (q, qf), (c, cf) = cols[C.PRODUCT_ENTITY], cols[C.QUERY_ENTITY], cols[C.CONSUMER_ENTITY]
    return similarity_features(p, pf, q, qf, c, cf, group=group)


__all__ = ["training_frame", "feature_refs", "REQUEST_ID"]
