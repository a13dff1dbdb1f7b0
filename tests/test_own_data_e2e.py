"""A user's own data through the whole stack, with tiny models: an electronics catalog (generated
images and titles, none of the annotator's vocabulary), a query log, a human seed and an ads log,
all made here -> input check -> ingest -> stage 1 -> stage 2 from the seed -> embed + feature
tables + point-in-time frames (`ranking.train --logs`) -> Feast online store -> a served /rank.
The rule annotator is never called."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from dashclip import columns as C
from ranking import columns as R
from tests.redis_fixture import db_url, delete_project_keys, redis_url, unique_project  # noqa: F401

pytestmark = [pytest.mark.slow, pytest.mark.redis]

KINDS = [("Electronics > Audio > Headphones", "wireless headphones"), ("Electronics > Power > Chargers", "usb charger"),
         ("Electronics > Input > Keyboards", "mechanical keyboard"), ("Electronics > Audio > Speakers", "bluetooth speaker"),
         ("Electronics > Input > Mice", "gaming mouse"), ("Electronics > Cables > HDMI", "hdmi cable")]
BRANDS = ["Zentra", "Voltix", "Kestrel", "Orbion"]
START = datetime(2025, 3, 3, tzinfo=timezone.utc)


def make_inputs(root):
    """Catalog (60 products with images), query log, seed judgments and a 5-day ads log."""
    rng = np.random.default_rng(0)
    (root / "img").mkdir(parents=True)
    rows = []
    for i in range(60):
        k = i % len(KINDS)
        arr = np.full((32, 32, 3), 40 * k, dtype=np.uint8)
        arr[4 * (k + 1):4 * (k + 2)] = 255
        Image.fromarray(arr).save(root / "img" / f"{i}.png")
        cat, noun = KINDS[k]
        rows.append({"product_id": f"e{i:03d}", "title": f"{BRANDS[i % 4]} {noun} model {i}", "category": cat,
                     "description": f"{noun} with {2 + i % 5} year warranty", "image": f"img/{i}.png"})
    pd.DataFrame(rows).to_csv(root / "catalog.csv", index=False)
    queries = pd.DataFrame({"query_id": [f"u{k}" for k in range(len(KINDS))], "query": [n for _, n in KINDS],
                            "count": rng.integers(10, 1000, len(KINDS))})
    queries.to_csv(root / "queries.csv", index=False)
    judg = [{"query_id": f"u{k}", "query": noun, "product_id": f"e{i:03d}", "label": 3 if i % len(KINDS) == k else 0}
            for k, (_, noun) in enumerate(KINDS) for i in range(60)]
    pd.DataFrame(judg).to_csv(root / "judgments.csv", index=False)
    write_log(root / "logs", rng)
    return root


def write_log(out, rng):
    """Uniformly random slates of 3 from 6 candidates (propensity 1/6); clicks favour the query's kind."""
    out.mkdir()
    imp, cand, clicks, convs = [], [], [], []
    for r in range(5 * 80):
        ts = pd.Timestamp(START) + pd.Timedelta(hours=24 * 5 * r / 400)
        k = int(rng.integers(len(KINDS)))
        match = [f"e{i:03d}" for i in range(k, 60, len(KINDS))]
        pool = list(rng.choice(match, 3, replace=False)) + [f"e{i:03d}" for i in rng.choice(60, 3, replace=False)]
        pool = list(dict.fromkeys(pool))
        consumer = f"c{int(rng.integers(30))}"
        cand += [{"request_id": f"r{r}", "product_id": p} for p in pool]
        for slot, p in enumerate(rng.permutation(pool)[:3]):
            imp.append({"request_id": f"r{r}", "event_timestamp": ts, "consumer_id": consumer, "query_id": f"u{k}",
                        "product_id": p, "slot": slot, "propensity": 1 / len(pool)})
            if rng.random() < (0.5 if p in match else 0.05) * (1.0, 0.7, 0.5)[slot]:
                clicks.append({"request_id": f"r{r}", "product_id": p, "event_timestamp": ts + pd.Timedelta(seconds=9)})
                if rng.random() < 0.4:
                    convs.append({"request_id": f"r{r}", "product_id": p, "event_timestamp": ts + pd.Timedelta(hours=1)})
    for name, rows in (("impressions", imp), ("candidates", cand), ("clicks", clicks), ("conversions", convs)):
        pd.DataFrame(rows).to_parquet(out / f"{name}.parquet", index=False)
    pur = pd.DataFrame([{"consumer_id": f"c{c}", "product_id": f"e{int(rng.integers(60)):03d}",
                         "event_timestamp": pd.Timestamp(START) - pd.Timedelta(days=float(rng.random() * 20))}
                        for c in range(30) for _ in range(2)])
    pur.to_parquet(out / "purchases.parquet", index=False)


@pytest.fixture()
def no_annotator(monkeypatch):
    import dashclip.queries

    def never(*a, **k):
        raise AssertionError("the rule annotator was called")

    monkeypatch.setattr(dashclip.queries.Annotator, "__init__", never)


def test_own_data_through_the_whole_stack(tmp_path, no_annotator, redis_url):  # noqa: F811
    from fastapi.testclient import TestClient

    from dashclip.catalog import ingest
    from dashclip.inputs import check_inputs
    from dashclip.stage1 import Stage1Config, train_stage1
    from dashclip.stage2 import Stage2Config, train_stage2
    from features.materialize import ENGINE_TYPE
    from features.online import default_encoder
    from features.repo import open_repo_store
    from ranking.model import LGBParams, Ranker
    from ranking.online import RankService
    from ranking.serve import create_app
    from ranking.train import main as ranker_main

    root = make_inputs(tmp_path / "in")
    assert check_inputs(root / "catalog.csv", root / "queries.csv", root / "judgments.csv", root / "logs") == []
    ingest(root / "catalog.csv", tmp_path / "ingest", progress=False)
    products = tmp_path / "ingest" / "products.parquet"
    train_stage1(Stage1Config(catalog=str(products), model="tiny-random", epochs=1, batch_size=8, cache_dir=None,
                              warmup_steps=2, workers=0), tmp_path / "s1", progress=False)
    s2 = train_stage2(Stage2Config(catalog=str(products), queries_file=str(root / "queries.csv"),
                                   seed_judgments=str(root / "judgments.csv"), epochs=1, batch_size=4,
                                   random_negatives=8, cache_dir=None, teacher_epochs=1, cand_bm25=3, cand_dense=3,
                                   cand_random=2), tmp_path / "s1", tmp_path / "s2", progress=False)
    assert s2["seed_source"].startswith("human judgments") and s2["queries"] == len(KINDS)
    assert s2["validation_judged_by"].startswith("held-out human seed")

    cfg = tmp_path / "rank.json"
    cfg.write_text(json.dumps({"params": LGBParams(num_boost_round=20, early_stopping_rounds=5,
                                                   min_data_in_leaf=5).model_dump(), "n_boot": 30}))
    data = tmp_path / "feature_data"
    assert ranker_main(["--logs", str(root / "logs"), "--queries", str(root / "queries.csv"), "--checkpoint",
                        str(tmp_path / "s2"), "--products", str(tmp_path / "ingest"), "--out", str(tmp_path / "ranker"),
                        "--feature-data", str(data), "--config", str(cfg)]) == 0
    report = json.loads((tmp_path / "ranker" / "report.json").read_text())
    assert report["simulated"] is False and report["estimates"]["off_policy"] == "made"
    assert report["log"]["impressions"] == len(pd.read_parquet(root / "logs" / "impressions.parquet"))

    # the online path: Feast over the same tables, materialized to Redis, and the /rank endpoint
    ranker = Ranker.load(tmp_path / "ranker" / "models" / "with_embeddings")
    url, project = db_url(redis_url), unique_project()
    try:
        store = open_repo_store(data, tmp_path, project=project, redis_url=url, batch_engine=ENGINE_TYPE,
                                model_versions=(ranker.config.model_version,))
        store.materialize(START - timedelta(days=30), datetime.now(timezone.utc))
        prods = pd.read_parquet(products)
        service = RankService(store, ranker, ranker.config.model_version, dict(zip(prods[C.PRODUCT_ID], prods[C.CATEGORY])),
                              encode=default_encoder(tmp_path / "s2"))
        with TestClient(create_app(service)) as client:
            body = {"consumer_id": "c1", "query": "wireless headphones", "query_id": "u0",
                    "candidate_ids": prods[C.PRODUCT_ID].tolist()[:20], "k": 5}
            r = client.post("/rank", json=body)
        assert r.status_code == 200, r.text
        ads = r.json()["ads"]
        assert len(ads) == 5 and {a[R.PRODUCT_ID] for a in ads} <= set(body["candidate_ids"])
    finally:
        delete_project_keys(url, project)
