"""faiss retriever: exact equals brute force, approximate recall, save/load, table input."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

from dashclip.columns import MODEL_VERSION, PRODUCT_ID
from features import columns as C
from features.retriever import FaissRetriever, RetrieverConfig, neighbour_recall_at_k, recall_at_k_ties
from features.synthetic import T0, product_table, unit_vectors, write_partition


def _clustered(rng, n=3000, d=32, k=30):
    centres = unit_vectors(rng, k, d)
    x = centres[rng.integers(0, k, n)] + 0.35 * rng.standard_normal((n, d)).astype(np.float32) / np.sqrt(d)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(0)
    x = _clustered(rng)
    q = _clustered(np.random.default_rng(1), n=200)
    return x, np.array([f"p{i}" for i in range(len(x))], dtype=object), q


def test_exact_equals_brute_force(data):
    x, ids, q = data
    r = FaissRetriever.build(x, ids, RetrieverConfig(kind="flat"))
    got_ids, scores = r.search(q, k=10)
    sims = q @ x.T
    top = np.argsort(-sims, axis=1)[:, :10]
    np.testing.assert_allclose(scores, np.take_along_axis(sims, top, 1), rtol=1e-5, atol=1e-5)
    assert (got_ids[:, 0] == ids[top[:, 0]]).mean() > 0.99  # ties aside
    one_ids, _ = r.search(q[0], k=3)  # a single (d,) query
    assert one_ids.shape == (1, 3)


@pytest.mark.parametrize("cfg", [RetrieverConfig(kind="hnsw"), RetrieverConfig(kind="ivf"),
                                 RetrieverConfig(kind="ivfpq", ivf_nlist=16, ivf_nprobe=8, pq_m=8, refine="fp16")])
def test_approximate_recall_at_10(data, cfg):
    x, ids, q = data
    exact = FaissRetriever.build(x, ids, RetrieverConfig(kind="flat"))
    truth, scores = exact.search_indices(q, 10), exact.index.search(q, 10)[0]
    approx = FaissRetriever.build(x, ids, cfg).search_indices(q, 10)
    assert neighbour_recall_at_k(approx, truth, 10) >= 0.9
    assert recall_at_k_ties(x, q, approx, scores, 10) >= neighbour_recall_at_k(approx, truth, 10) - 1e-9


def test_recall_with_ties_counts_an_equal_product_as_a_hit():
    x = np.array([[1, 0], [1, 0], [0, 1]], np.float32)  # products 0 and 1 are duplicates
    q = np.array([[1, 0]], np.float32)
    scores = np.array([[1.0, 1.0]], np.float32)
    assert neighbour_recall_at_k(np.array([[1, 2]]), np.array([[0, 1]]), 2) == 0.5
    assert recall_at_k_ties(x, q, np.array([[1, 0]]), scores, 1) == 1.0  # 1 instead of 0: a tie
    assert recall_at_k_ties(x, q, np.array([[2, 0]]), scores, 1) == 0.0


def test_ivfpq_pq_m_must_divide_the_dimension(data):
    x, ids, _ = data
    with pytest.raises(ValueError, match="pq_m: 5 does not divide the embedding dimension 32"):
        FaissRetriever.build(x, ids, RetrieverConfig(kind="ivfpq", pq_m=5))


def test_save_and_load_roundtrip(data, tmp_path):
    x, ids, q = data
    r = FaissRetriever.build(x, ids, RetrieverConfig(kind="hnsw", hnsw_ef_search=64))
    r.save(tmp_path / "idx")
    back = FaissRetriever.load(tmp_path / "idx")
    assert back.config == r.config and back.config.count == len(x)
    a, sa = r.search(q, 10)
    b, sb = back.search(q, 10)
    np.testing.assert_array_equal(a, b)
    np.testing.assert_allclose(sa, sb)
    mapped = FaissRetriever.load(tmp_path / "idx", mmap=True)
    np.testing.assert_array_equal(mapped.search(q, 10)[0], a)


def test_from_partitioned_table_picks_the_version(tmp_path):
    rng = np.random.default_rng(4)
    v1, v2 = unit_vectors(rng, 50, 16), unit_vectors(rng, 40, 16)
    write_partition(tmp_path, C.PRODUCT_EMBEDDINGS_TABLE, "v1", product_table([f"a{i}" for i in range(50)], v1, T0))
    write_partition(tmp_path, C.PRODUCT_EMBEDDINGS_TABLE, "v2", product_table([f"b{i}" for i in range(40)], v2, T0))
    r = FaissRetriever.from_table(tmp_path / C.PRODUCT_EMBEDDINGS_TABLE, model_version="v2", config=RetrieverConfig(kind="flat"))
    assert r.config.count == 40 and r.config.model_version == "v2"
    ids, scores = r.search(v2[7], k=1)
    assert ids[0, 0] == "b7" and scores[0, 0] == pytest.approx(1.0, abs=1e-5)
    big, _ = r.search(v2[0], k=100)  # k beyond the index size pads with None
    assert big[0, 39] is not None and big[0, 40] is None
    with pytest.raises(ValueError, match="model_version='v9'"):
        FaissRetriever.from_table(tmp_path / C.PRODUCT_EMBEDDINGS_TABLE, model_version="v9")


def test_mismatched_ids_are_rejected():
    with pytest.raises(ValueError, match="3 ids for 2 embeddings"):
        FaissRetriever.build(np.ones((2, 4), np.float32), ["a", "b", "c"])
    assert MODEL_VERSION and PRODUCT_ID and pa  # columns come from dashclip.columns
