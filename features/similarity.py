"""Similarity features from DashCLIP embeddings, one code path for training frames and requests.

Everything is computed on a flat batch of (request, candidate) rows with a request id per row:
online, one request is a batch with a single group; offline, a training frame holds many groups.
Both call `similarity_features`, so the numbers are identical by construction (tested).

Features (NaN where an input embedding is missing):
- cos_query_product: cosine(query, product).
- cos_consumer_product: cosine(consumer profile, product); the profile is the mean of the
  embeddings of the consumer's recent purchases (`spark_jobs.lib.consumer_profile`, the table the
  consumer embedding view reads), as in the DashCLIP paper.
- rank_query_product / rank_consumer_product: 1-based rank of the candidate within its request
  by those cosines (descending; ties by candidate order; missing last with NaN rank).
- cos_query_consumer: cosine(query, consumer profile), the same for all candidates of a request.
- cos_query_product_gap_to_best: best cos_query_product in the request minus this one.
- cos_query_product_z: cos_query_product standardised within the request.
- cos_product_to_request_centroid: cosine(product, mean of the request's candidate embeddings),
  how typical a candidate is of the slate.
"""

from __future__ import annotations

import numpy as np

from features import columns as C

EPS = 1e-12


def _row_dot(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Row-wise dot products of float64 arrays whose last axis is contiguous (a row may be a
    broadcast view of one vector: no (n, d) temporary). Each row's sum runs over its own d values
    in one order, whatever the number of rows or the row stride: a request scored alone and
    inside a batch get the same bits."""
    return np.einsum("...i,...i->...", a, b)


def l2_normalize(x: np.ndarray) -> np.ndarray:
    """Rows to unit length (zero rows stay zero). float64 for stable, order-free arithmetic."""
    x = np.array(x, dtype=np.float64, order="C")  # a fresh copy, normalised in place
    norm = np.sqrt(_row_dot(x, x))[..., None]
    small = norm <= EPS
    np.divide(x, norm, out=x, where=~small)
    if small.any():
        x[np.broadcast_to(small, x.shape)] = 0.0
    return x


def _unit_rows(x: np.ndarray, n: int) -> np.ndarray:
    """x (d,) or (n, d) -> (n, d) float64 unit rows. A single vector is normalised once and
    broadcast (a view): the same numbers per row as normalising each copy, at 1/n of the cost."""
    x = np.asarray(x)
    if x.ndim == 1:
        return np.broadcast_to(l2_normalize(x), (n, x.shape[0]))
    return l2_normalize(x)


def _unit_cos(a: np.ndarray, b: np.ndarray, ok: np.ndarray) -> np.ndarray:
    """Row cosines of already unit-length (n, d) rows; NaN where not ok."""
    return np.where(ok, _row_dot(a, b), np.nan)


def _group_sums(x: np.ndarray, inv: np.ndarray, ngroups: int) -> np.ndarray:
    """(ngroups, d) sums of the rows of x (n, d) by group id `inv` (every id in range(ngroups)
    present), rows added in their order within each group: one `add.reduceat` over the rows
    sorted by group (no copy when they already are, as in one request)."""
    if inv.size and np.any(inv[1:] < inv[:-1]):
        order = np.argsort(inv, kind="stable")
        x, inv = x[order], inv[order]
    starts = np.r_[0, np.flatnonzero(inv[1:] != inv[:-1]) + 1] if inv.size else np.zeros(0, np.int64)
    out = np.zeros((ngroups, x.shape[1]))
    out[inv[starts]] = np.add.reduceat(x, starts, axis=0) if inv.size else out[:0]
    return out


def _group_rank(score: np.ndarray, group: np.ndarray) -> np.ndarray:
    """1-based descending rank within each group; NaN scores rank last and get NaN."""
    n = score.shape[0]
    nan = np.isnan(score)
    order = np.lexsort((np.arange(n), np.where(nan, np.inf, -score), group))  # by group, -score, position
    g_sorted = group[order]
    starts = np.r_[0, np.flatnonzero(g_sorted[1:] != g_sorted[:-1]) + 1]
    first = np.repeat(starts, np.diff(np.r_[starts, n]))  # start index of each row's group run
    rank = np.empty(n, dtype=np.float64)
    rank[order] = np.arange(n) - first + 1
    rank[nan] = np.nan
    return rank


def _group_stats(x: np.ndarray, inv: np.ndarray, ngroups: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-row (max, mean, std) of x over its group, ignoring NaN."""
    ok = ~np.isnan(x)
    xv = np.where(ok, x, 0.0)
    cnt = np.bincount(inv, weights=ok, minlength=ngroups)
    mean = np.bincount(inv, weights=xv, minlength=ngroups) / np.maximum(cnt, 1)
    var = np.bincount(inv, weights=np.where(ok, (x - mean[inv]) ** 2, 0.0), minlength=ngroups) / np.maximum(cnt, 1)
    mx = np.full(ngroups, -np.inf)
    np.maximum.at(mx, inv[ok], x[ok])
    empty = cnt == 0
    mean[empty], mx[empty] = np.nan, np.nan
    return mx[inv], mean[inv], np.sqrt(var)[inv]


def similarity_features(products: np.ndarray, product_found: np.ndarray, query: np.ndarray, query_found: np.ndarray,
                        consumer: np.ndarray, consumer_found: np.ndarray, group: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """Flat batch of n candidate rows -> {feature name: (n,) float64}.

    products (n, d); query and consumer (n, d) or (d,) (broadcast: one request); *_found (n,) or
    scalar bool; group (n,) request id of each row (None: all rows are one request).
    """
    products = np.asarray(products)
    n = products.shape[0]
    pf = np.asarray(product_found, dtype=bool)
    qf = np.broadcast_to(np.asarray(query_found, dtype=bool), (n,))
    cf = np.broadcast_to(np.asarray(consumer_found, dtype=bool), (n,))
    group = np.zeros(n, dtype=np.int64) if group is None else np.asarray(group)
    _, inv = np.unique(group, return_inverse=True)
    inv = inv.ravel()
    ngroups = int(inv.max()) + 1 if n else 0

    # every input normalised once (one request: the query and consumer vectors once, not per row)
    pu = l2_normalize(products)  # (n, d)
    qu, cu = _unit_rows(query, n), _unit_rows(consumer, n)
    cos_qp = _unit_cos(qu, pu, qf & pf)
    cos_cp = _unit_cos(cu, pu, cf & pf)
    best, mean, std = _group_stats(cos_qp, inv, ngroups)

    centroid = l2_normalize(_group_sums(pu if pf.all() else pu * pf[:, None], inv, ngroups))  # missing rows: zero
    has = np.bincount(inv, weights=pf, minlength=ngroups) > 0
    rows = np.broadcast_to(centroid[0], pu.shape) if ngroups == 1 else centroid[inv]
    cos_centroid = _unit_cos(rows, pu, pf & has[inv])

    return {
        C.COS_QUERY_PRODUCT: cos_qp,
        C.COS_CONSUMER_PRODUCT: cos_cp,
        C.RANK_QUERY_PRODUCT: _group_rank(cos_qp, inv),
        C.RANK_CONSUMER_PRODUCT: _group_rank(cos_cp, inv),
        C.COS_QUERY_CONSUMER: _unit_cos(qu, cu, qf & cf),
        C.COS_QUERY_PRODUCT_GAP: best - cos_qp,
        C.COS_QUERY_PRODUCT_Z: (cos_qp - mean) / (std + 1e-6),
        C.COS_PRODUCT_TO_CENTROID: cos_centroid,
    }


def request_features(req) -> dict[str, np.ndarray]:
    """Similarity features of one online request (`online.RequestEmbeddings`)."""
    return similarity_features(req.products, req.product_found, req.query, req.query_found,
                               req.consumer, req.consumer_found)
