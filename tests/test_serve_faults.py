"""The ads server under Redis and request faults, each on a private redis-server: a frozen Redis
(SIGSTOP: deadline, circuit breaker, /health), a Redis back empty (marker, 503, repair by
incremental materialization), corrupt stored values, NaN / lone surrogates, 500s in /metrics and
a chunked body over the cap."""

from __future__ import annotations

import asyncio
import signal
from datetime import timedelta

import pytest
import redis
from fastapi.testclient import TestClient

from features import columns as FC
from features import redis_format as F
from features.store import CircuitBreaker, CircuitOpen, roundtrip, pack_command
from features.synthetic import T0
from ranking.serve import MAX_BODY_BYTES, create_app
from tests.redis_fixture import redis_server, redis_url, unique_project  # noqa: F401
from tests.test_serve import body, client, make_service  # noqa: F401

pytestmark = pytest.mark.redis


def requests_count(c: TestClient, route: str, status: str) -> float:
    """`ads_requests_total` for (route, status) as /metrics shows it. Importing Feast switches
    prometheus_client to its multiprocess value store, where a metric's value is shared by every
    registry of the process, so tests compare counts before and after, not absolute values."""
    c.app.state.metrics.requests.labels(route, status)  # make the series appear in the text
    line = f'ads_requests_total{{route="{route}",status="{status}"}} '
    return float(next(ln for ln in c.get("/metrics").text.splitlines() if ln.startswith(line))[len(line):])


class Clock:
    def __init__(self):
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_circuit_breaker_opens_probes_once_and_closes():
    clock, calls = Clock(), []
    b = CircuitBreaker(failures=2, reset_s=1.0, clock=clock)

    def fail():
        calls.append("fail")
        raise redis.TimeoutError("stalled")

    for _ in range(2):
        with pytest.raises(redis.TimeoutError):
            b.call(fail)
    assert b.state == "open"
    with pytest.raises(CircuitOpen, match="2 consecutive failures"):
        b.call(fail)
    assert calls == ["fail", "fail"]  # refused without calling
    clock.now = 1.0
    assert b.state == "half-open"
    with pytest.raises(redis.TimeoutError):  # the probe fails: open for another reset_s
        b.call(fail)
    assert b.state == "open" and len(calls) == 3
    clock.now = 2.0
    assert b.call(lambda: "ok") == "ok" and b.state == "closed"
    assert b.times_opened == 1


def test_roundtrip_past_its_deadline_sends_nothing(redis_server):  # noqa: F811
    import time

    c = redis.Redis.from_url(redis_server.url)
    with pytest.raises(redis.TimeoutError, match="deadline"):
        roundtrip(c, [pack_command(b"SET", b"k", b"v")], deadline=time.monotonic() - 1)
    assert c.get(b"k") is None


def test_frozen_redis_gets_503_by_the_deadline_then_the_circuit_opens(tmp_path, redis_server):  # noqa: F811
    service, _ = make_service(tmp_path, redis_server.url, unique_project(), lookup_timeout=0.05)
    clock = Clock()
    service.lookup.breaker = CircuitBreaker(failures=3, reset_s=5.0, clock=clock)
    c = TestClient(create_app(service))
    before = requests_count(c, "/rank", "503")
    assert c.post("/rank", json=body()).status_code == 200
    redis_server.proc.send_signal(signal.SIGSTOP)
    try:
        for _ in range(3):  # each waits out its own deadline, then the circuit opens
            r = c.post("/rank", json=body())
            assert r.status_code == 503 and "Timeout" in r.json()["reason"], r.text
        r = c.post("/rank", json=body())
        assert r.status_code == 503 and "circuit open" in r.json()["reason"]
        h = c.get("/health")
        assert h.status_code == 503 and h.json()["circuit"] == "open"
        clock.now += 5.0  # a probe is due; Redis is still frozen, so it fails and the circuit re-opens
        assert "Timeout" in c.post("/rank", json=body()).json()["reason"]
        assert "circuit open" in c.post("/rank", json=body()).json()["reason"]
    finally:
        redis_server.proc.send_signal(signal.SIGCONT)
    clock.now += 5.0
    r = c.post("/rank", json=body())
    assert r.status_code == 200 and r.json()["unknown"] == {}
    h = c.get("/health")
    assert h.status_code == 200 and h.json()["circuit"] == "closed"
    text = c.get("/metrics").text
    assert requests_count(c, "/rank", "503") == before + 6 and "ads_redis_circuit_open 0.0" in text, text


def test_redis_back_empty_is_503_until_incremental_materialize_reloads_it(tmp_path, redis_server):  # noqa: F811
    service, extra = make_service(tmp_path, redis_server.url, unique_project())
    c = TestClient(create_app(service))
    assert c.post("/rank", json=body()).status_code == 200
    redis.Redis.from_url(redis_server.url).flushall()  # as a restart without persistence leaves it
    r = c.post("/rank", json=body())
    assert r.status_code == 503 and r.json()["detail"] == "store empty for version v1", r.text
    h = c.get("/health")
    assert h.status_code == 503 and h.json()["detail"] == "store empty for version v1"
    # the window Feast plans is empty (same end as the last run): the missing marker forces a full reload
    extra["store"].materialize_incremental(T0 + timedelta(days=5))
    r = c.post("/rank", json=body())
    assert r.status_code == 200 and r.json()["unknown"] == {}
    assert c.get("/health").status_code == 200


def test_one_corrupt_value_marks_only_its_candidate_unknown(tmp_path, redis_server):  # noqa: F811
    project = unique_project()
    service, _ = make_service(tmp_path, redis_server.url, project)
    c = TestClient(create_app(service))
    r = redis.Redis.from_url(redis_server.url)
    k3, k4, k5 = F.entity_keys(FC.PRODUCT_ID, ["p3", "p4", "p5"], project)
    emb = service.lookup._field[FC.PRODUCT_ENTITY]
    r.hset(k3, emb, r.hget(k3, emb)[:-7])  # truncated embedding blob
    r.delete(k4)
    r.set(k4, b"not a hash")  # wrong Redis type: WRONGTYPE for every read of this product
    r.hset(k5, service.stats.fields[FC.PRODUCT_ENTITY][0], F.ValueProto(string_val="x").SerializeToString())
    out = c.post("/rank", json=body(candidate_ids=[f"p{i}" for i in range(10)], k=10))
    assert out.status_code == 200, out.text
    known = {a["product_id"]: a["known"] for a in out.json()["ads"]}
    assert {p for p, ok in known.items() if not ok} == {"p3", "p4", "p5"} and len(known) == 10
    assert sorted(out.json()["unknown"]["product"]) == ["p3", "p4", "p5"]
    assert 'ads_corrupt_values{entity="product"}' in c.get("/metrics").text


@pytest.mark.parametrize("raw, field", [
    ('{"consumer_id": NaN, "query": "q"}', "consumer_id"),
    ('{"consumer_id": "c1", "query": "q", "k": NaN}', "k"),
    ('{"consumer_id": "c1", "query": "q", "k": Infinity}', "k"),
    ('{"consumer_id": "c1", "query": "q", "candidate_ids": ["p1", NaN]}', "candidate_ids"),
    ('{"consumer_id": "\\ud800", "query": "q"}', "consumer_id"),
    ('{"consumer_id": "c1", "query": "a\\udfffb"}', "query"),
    ('{"consumer_id": "c1", "query": "q", "query_id": "\\ud800"}', "query_id"),
    ('{"consumer_id": "c1", "query": "q", "candidate_ids": ["p1", "\\ud800"]}', "candidate_ids"),
    ('{"consumer_id": "c1", "query": "q", "\\ud800": 1}', "body"),  # a field name pydantic cannot read
])
def test_nan_and_lone_surrogates_get_422_naming_the_field(client, raw, field):  # noqa: F811
    r = client.post("/rank", content=raw.encode(), headers={"content-type": "application/json"})
    assert r.status_code == 422, r.text
    assert field in [str(x) for d in r.json()["detail"] for x in d["loc"]]


def test_unexpected_errors_are_500_and_counted(client, monkeypatch):  # noqa: F811
    def boom(*a, **k):
        raise RuntimeError("unexpected")

    monkeypatch.setattr(client.app.state.service, "rank", boom)
    before = requests_count(client, "/rank", "500")
    r = client.post("/rank", json=body())
    assert r.status_code == 500 and r.json()["detail"] == "internal server error"
    assert requests_count(client, "/rank", "500") == before + 1


def test_chunked_body_over_the_cap_is_refused_before_it_is_read(client):  # noqa: F811
    app = create_app(client.app.state.service)
    chunk, n_chunks, taken, sent = 64 * 1024, 1000, [], []  # a 64 MB body, no Content-Length

    async def receive():
        taken.append(1)
        return {"type": "http.request", "body": b"x" * chunk, "more_body": len(taken) < n_chunks}

    async def send(message):
        sent.append(message)

    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST", "scheme": "http",
             "path": "/rank", "raw_path": b"/rank", "query_string": b"", "root_path": "", "client": ("test", 1),
             "server": ("test", 80), "headers": [(b"content-type", b"application/json"), (b"transfer-encoding", b"chunked")]}
    asyncio.run(app(scope, receive, send))
    assert sent[0]["type"] == "http.response.start" and sent[0]["status"] == 413
    assert len(taken) == MAX_BODY_BYTES // chunk + 1  # stopped at the first chunk past the cap
