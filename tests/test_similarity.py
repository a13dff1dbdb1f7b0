"""Similarity features: values, ranks, missing inputs, and online == offline batching."""

from __future__ import annotations

import numpy as np

from features import columns as C
from features.similarity import similarity_features
from features.synthetic import unit_vectors


def _one_request(rng, n=6, d=8):
    return unit_vectors(rng, n, d), unit_vectors(rng, 1, d)[0], unit_vectors(rng, 1, d)[0]


def test_cosines_and_ranks_match_a_direct_computation():
    rng = np.random.default_rng(0)
    p, q, c = _one_request(rng)
    f = similarity_features(p * 3.0, np.ones(6, bool), q * 2.0, True, c, True)  # scale must not matter
    cos = p @ q
    np.testing.assert_allclose(f[C.COS_QUERY_PRODUCT], cos, rtol=1e-5)
    np.testing.assert_allclose(f[C.COS_CONSUMER_PRODUCT], p @ c, rtol=1e-5)
    np.testing.assert_array_equal(f[C.RANK_QUERY_PRODUCT], np.argsort(np.argsort(-cos)) + 1)
    np.testing.assert_allclose(f[C.COS_QUERY_PRODUCT_GAP], cos.max() - cos, atol=1e-6)
    np.testing.assert_allclose(f[C.COS_QUERY_PRODUCT_Z], (cos - cos.mean()) / (cos.std() + 1e-6), rtol=1e-5)
    np.testing.assert_allclose(f[C.COS_QUERY_CONSUMER], np.full(6, q @ c), rtol=1e-5)
    centroid = p.mean(0)
    np.testing.assert_allclose(f[C.COS_PRODUCT_TO_CENTROID], p @ centroid / np.linalg.norm(centroid), rtol=1e-5)


def test_missing_embeddings_give_nan_and_rank_last():
    rng = np.random.default_rng(1)
    p, q, c = _one_request(rng, n=4)
    found = np.array([True, False, True, True])
    f = similarity_features(p, found, q, True, c, False)
    assert np.isnan(f[C.COS_QUERY_PRODUCT][1]) and np.isnan(f[C.RANK_QUERY_PRODUCT][1])
    assert sorted(f[C.RANK_QUERY_PRODUCT][found].tolist()) == [1.0, 2.0, 3.0]
    assert np.isnan(f[C.COS_CONSUMER_PRODUCT]).all() and np.isnan(f[C.RANK_CONSUMER_PRODUCT]).all()
    assert np.isnan(f[C.COS_QUERY_CONSUMER]).all()
    nothing = similarity_features(p, np.zeros(4, bool), q, False, c, False)
    assert all(np.isnan(v).all() for v in nothing.values())


def test_ties_rank_by_candidate_order():
    p = np.array([[1, 0], [1, 0], [0, 1]], np.float32)
    f = similarity_features(p, np.ones(3, bool), np.array([1, 0], np.float32), True, np.array([0, 1], np.float32), True)
    np.testing.assert_array_equal(f[C.RANK_QUERY_PRODUCT], [1, 2, 3])


def test_batched_offline_equals_per_request_online():
    rng = np.random.default_rng(2)
    requests = [_one_request(rng, n=n, d=16) for n in (5, 1, 9, 3)]
    founds = [rng.random(len(r[0])) > 0.2 for r in requests]
    online = [similarity_features(p, pf, q, True, c, i % 2 == 0) for i, ((p, q, c), pf) in enumerate(zip(requests, founds))]
    sizes = [len(r[0]) for r in requests]
    group = np.repeat(np.array([30, 10, 20, 0]), sizes)  # arbitrary, unsorted request ids
    P = np.vstack([r[0] for r in requests])
    Q = np.vstack([np.tile(r[1], (len(r[0]), 1)) for r in requests])
    Cm = np.vstack([np.tile(r[2], (len(r[0]), 1)) for r in requests])
    cf = np.repeat([i % 2 == 0 for i in range(4)], sizes)
    offline = similarity_features(P, np.concatenate(founds), Q, np.ones(len(P), bool), Cm, cf, group=group)
    for name in C.SIMILARITY_FEATURES:
        np.testing.assert_array_equal(offline[name], np.concatenate([o[name] for o in online]), err_msg=name)
