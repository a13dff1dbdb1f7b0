"""The ads server against a real Redis and real Feast: ranking, unknown ids, faiss retrieval,
422/413 validation, metrics, and Redis outages (503 with a reason, recovery when it returns)."""

from __future__ import annotations

import json
from datetime import timedelta

import numpy as np
import pytest
from fastapi.testclient import TestClient

from features import columns as FC
from features.materialize import ENGINE_TYPE
from features.retriever import FaissRetriever, RetrieverConfig
from features.repo import open_repo_store
from features.synthetic import T0, unit_vectors, write_stats, write_tables
from ranking.toy import toy_ranker
from ranking.online import RankService
from ranking.serve import MAX_CANDIDATES, create_app
from tests.redis_fixture import db_url, delete_project_keys, redis_server, redis_url, unique_project  # noqa: F401

pytestmark = pytest.mark.redis
D = 16


def encoder(texts):
    return np.stack([unit_vectors(np.random.default_rng(abs(hash(t)) % 2**32), 1, D)[0] for t in texts])


def make_service(root, url: str, project: str, **kw) -> tuple[RankService, dict]:
    data = root / "data"
    if not data.exists():
        tables = write_tables(data, versions=("v1",), n_products=150, n_queries=10, n_consumers=6, d=D)
        write_stats(data, tables.product_ids, tables.consumer_ids, categories=("A", "B"))
    store = open_repo_store(data, root, project=project, redis_url=url, batch_engine=ENGINE_TYPE, model_versions=("v1",))
    store.materialize(T0 - timedelta(days=2), T0 + timedelta(days=5))
    cats = {f"p{i}": "AB"[i % 2] for i in range(150)}
    retriever = FaissRetriever.from_table(data / FC.PRODUCT_EMBEDDINGS_TABLE, "v1", RetrieverConfig(kind="flat"))
    kw.setdefault("lookup_timeout", 1.0)  # a shared test Redis may be busy; the fault tests set their own
    service = RankService(store, toy_ranker(), "v1", cats, encode=encoder, retriever=retriever, retrieve_k=50, **kw)
    return service, {"data": data, "store": store}


@pytest.fixture(scope="module")
def client(tmp_path_factory, redis_url):  # noqa: F811
    root = tmp_path_factory.mktemp("serve")
    url, project = db_url(redis_url), unique_project()
    service, _ = make_service(root, url, project)
    with TestClient(create_app(service)) as c:
        yield c
    delete_project_keys(url, project)


def body(**kw):
    return {"consumer_id": "c1", "query": "query text 1", "query_id": "q1",
            "candidate_ids": [f"p{i}" for i in range(100)], "k": 10, **kw}


def test_rank_scores_and_orders_the_candidates(client):
    r = client.post("/rank", json=body())
    assert r.status_code == 200, r.text
    out = r.json()
    ads = out["ads"]
    assert len(ads) == 10 and [a["rank"] for a in ads] == list(range(1, 11))
    scores = [a["score"] for a in ads]
    assert scores == sorted(scores, reverse=True)
    assert all(a["score"] == pytest.approx(a["pctr"] * a["pcvr"]) and a["known"] for a in ads)
    assert out["retrieval"] == "request" and out["unknown"] == {} and out["query_source"] == "store"
    assert out["model_version"] == "v1"


def test_unknown_ids_are_scored_with_defaults_and_flagged(client):
    r = client.post("/rank", json=body(consumer_id="ghost", query_id=None, query="never seen",
                                       candidate_ids=["p1", "nope", "p2"], k=3))
    assert r.status_code == 200, r.text
    out = r.json()
    assert {a["product_id"]: a["known"] for a in out["ads"]} == {"p1": True, "nope": False, "p2": True}
    assert out["unknown"]["product"] == ["nope"] and out["unknown"]["consumer"] == ["ghost"]
    assert out["query_source"] == "encoded"  # embedded by the query encoder, then cached
    assert client.post("/rank", json=body(query_id=None, query="never seen")).json()["query_source"] == "cache"


def test_without_candidates_the_faiss_index_retrieves_them(client):
    r = client.post("/rank", json={"consumer_id": "c2", "query": "query text 3", "query_id": "q3", "k": 7})
    assert r.status_code == 200, r.text
    out = r.json()
    assert out["retrieval"] == "faiss" and len(out["ads"]) == 7
    assert all(a["product_id"].startswith("p") and a["known"] for a in out["ads"])


@pytest.mark.parametrize("payload, field", [
    ({"query": "x", "k": 3}, "consumer_id"),
    (body(k=0), "k"),
    (body(k="ten"), "k"),
    (body(query=""), "query"),
    (body(candidate_ids=[f"p{i}" for i in range(MAX_CANDIDATES + 1)]), "candidate_ids"),
    (body(candidate_ids=["p1", ""]), "candidate_ids"),
    (body(surprise=1), "surprise"),
])
def test_malformed_requests_get_422_naming_the_field(client, payload, field):
    r = client.post("/rank", json=payload)
    assert r.status_code == 422
    assert field in [str(x) for d in r.json()["detail"] for x in d["loc"]]


def test_oversized_bodies_are_refused(client):
    r = client.post("/rank", content=json.dumps(body(query="x" * 300_000)), headers={"content-type": "application/json"})
    assert r.status_code == 413 and "bytes" in r.json()["detail"]
    assert client.post("/rank", content=b"{not json", headers={"content-type": "application/json"}).status_code == 422


def test_health_and_metrics(client):
    h = client.get("/health")
    assert h.status_code == 200 and h.json()["status"] == "ok"
    client.post("/rank", json=body())
    text = client.get("/metrics").text
    assert 'ads_requests_total{route="/rank",status="200"}' in text
    assert 'ads_request_latency_seconds_bucket{le="0.025",route="/rank"}' in text
    assert 'ads_unknown_entities_total{entity="product"}' in text


def test_redis_down_gives_503_with_reason_and_recovers(tmp_path, redis_server):  # noqa: F811
    service, _ = make_service(tmp_path, redis_server.url, unique_project())
    c = TestClient(create_app(service))
    assert c.post("/rank", json=body()).status_code == 200
    unavailable = _unavailable_count(c)
    redis_server.stop(save=True)
    r = c.post("/rank", json=body())
    assert r.status_code == 503
    assert f"127.0.0.1:{redis_server.port}" in r.json()["reason"]
    h = c.get("/health")
    assert h.status_code == 503 and str(redis_server.port) in h.json()["reason"]
    redis_server.start()  # data back from its RDB file
    r = c.post("/rank", json=body())
    assert r.status_code == 200 and r.json()["unknown"] == {}
    assert c.get("/health").status_code == 200
    assert _unavailable_count(c) == unavailable + 1


def _unavailable_count(c: TestClient) -> float:
    """``ads_redis_unavailable_total`` now: a process-wide value once Feast has switched
    prometheus_client to its multiprocess store, so compared before and after."""
    line = next(ln for ln in c.get("/metrics").text.splitlines() if ln.startswith("ads_redis_unavailable_total "))
    return float(line.split()[-1])
