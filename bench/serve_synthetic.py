"""A self-contained ads server setup for load tests: synthetic tables in a Feast repo folder on
$REDIS_URL (bench DB), materialized by our engine, a LightGBM ranker with the real feature list
(bench/serve_breakdown.py's) and a catalog with product categories. `python -m ranking.serve`
starts on it like on a pipeline's artifacts (`--workers` included), so a load test needs no
pipeline run.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import numpy as np
import pandas as pd
from feast import FeatureStore

from bench.common import drop_project, redis_url
from dashclip import columns as DC
from features.materialize import ENGINE_TYPE
from features.repo import declarations
from features.store import feast_connection_string
from features.synthetic import T0, write_stats, write_tables

CATEGORIES = ("A", "B", "C")


@dataclass
class Setup:
    serve_args: str  # for python -m ranking.serve
    bodies: list[bytes]  # POST /rank bodies
    project: str

    def drop(self) -> None:
        drop_project(self.project)


def _repo(root: Path, project: str) -> Path:
    repo = root / "repo"
    (repo / "data").mkdir(parents=True)
    (repo / "feature_store.yaml").write_text(
        f"project: {project}\nprovider: local\nregistry: data/registry.db\n"
        f"online_store:\n  type: redis\n  connection_string: \"{feast_connection_string(redis_url())}\"\n"
        f"offline_store:\n  type: file\nbatch_engine:\n  type: {ENGINE_TYPE}\nentity_key_serialization_version: 3\n")
    return repo


def build(root: Path, n_products: int = 10000, dim: int = 640, candidates: int = 100, n_bodies: int = 2000,
          seed: int = 0) -> Setup:
    from bench.serve_breakdown import _ranker

    project = f"bench_{uuid.uuid4().hex[:8]}"
    repo = _repo(root, project)
    t = write_tables(repo / "data", ("v1",), n_products=n_products, n_queries=500, n_consumers=500, d=dim)
    write_stats(repo / "data", t.product_ids, t.consumer_ids, categories=CATEGORIES)
    store = FeatureStore(repo_path=str(repo))
    store.apply(declarations(repo / "data", ("v1",)))
    store.materialize(T0 - timedelta(days=2), T0 + timedelta(days=5))
    _ranker("v1").save(root / "ranker")
    (root / "ingest").mkdir()
    pd.DataFrame({DC.PRODUCT_ID: t.product_ids, DC.CATEGORY: [CATEGORIES[i % 3] for i in range(n_products)]}
                 ).to_parquet(root / "ingest" / "products.parquet")
    rng = np.random.default_rng(seed)
    bodies = []
    for _ in range(n_bodies):
        q = int(rng.integers(len(t.query_ids)))
        cands = rng.choice(n_products, size=min(candidates, n_products), replace=False)
        bodies.append(json.dumps({"consumer_id": t.consumer_ids[rng.integers(len(t.consumer_ids))],
                                  "query": f"query text {q}", "query_id": t.query_ids[q],
                                  "candidate_ids": [t.product_ids[i] for i in cands], "k": 10}).encode())
    args = f"--ranker {root / 'ranker'} --feature-repo {repo} --catalog {root / 'ingest'}"
    return Setup(args, bodies, project)
