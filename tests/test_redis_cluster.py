"""The fast lookup and materialization on a Redis Cluster: a local 3-node cluster the test starts
(`redis-server --cluster-enabled yes`, `redis-cli --cluster create`), keys routed by hash slot,
compared byte for byte with Feast's own cluster writer and reader."""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from datetime import timedelta
from pathlib import Path

import numpy as np
import pytest
import redis
from feast import FeatureStore

from dashclip.columns import EMBEDDING, PRODUCT_ID
from features import columns as C
from features.materialize import ENGINE_TYPE
from features.online import OnlineLookup, StatsLookup
from features.repo import open_repo_store
from features.store import StoreEmpty
from features.synthetic import T0, write_stats, write_tables
from ranking.columns import stats_feature
from tests.redis_fixture import unique_project

pytestmark = pytest.mark.redis
START, END = T0 - timedelta(days=2), T0 + timedelta(days=5)
MARKER_PREFIX = b"_dashclip_materialized:"


def cluster_port() -> int:
    """A free port whose cluster bus port (port + 10000) is free and valid too."""
    rng = np.random.default_rng()
    while True:
        p = int(rng.integers(20000, 50000))
        try:
            for q in (p, p + 10000):
                with socket.socket() as s:
                    s.bind(("127.0.0.1", q))
            return p
        except OSError:
            continue


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    exe, cli = shutil.which("redis-server"), shutil.which("redis-cli")
    if exe is None or cli is None:
        pytest.skip("redis-server / redis-cli are not installed")
    root = tmp_path_factory.mktemp("cluster")
    ports, procs = [cluster_port() for _ in range(3)], []
    try:
        for p in ports:
            (root / str(p)).mkdir()
            procs.append(subprocess.Popen([exe, "--port", str(p), "--bind", "127.0.0.1", "--cluster-enabled", "yes",
                                           "--cluster-config-file", "nodes.conf", "--save", "", "--appendonly", "no"],
                                          cwd=root / str(p), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        for p, proc in zip(ports, procs):
            for _ in range(100):
                if proc.poll() is not None:
                    raise RuntimeError(f"cluster node on port {p} exited with {proc.returncode}")
                try:
                    redis.Redis(port=p, socket_timeout=0.5).ping()
                    break
                except redis.RedisError:
                    time.sleep(0.05)
        subprocess.run([cli, "--cluster", "create", *[f"127.0.0.1:{p}" for p in ports], "--cluster-replicas", "0",
                        "--cluster-yes"], check=True, capture_output=True, timeout=60)
        for _ in range(200):
            if all(redis.Redis(port=p).cluster("info")["cluster_state"] == "ok" for p in ports):
                break
            time.sleep(0.1)
        else:
            raise RuntimeError("the cluster did not reach cluster_state:ok")
        yield ports
    finally:
        for proc in procs:
            proc.terminate()
            proc.wait(timeout=10)


def make_store(root: Path, ports, project: str, data: Path, engine: str) -> FeatureStore:
    cluster = {"type": "redis", "redis_type": "redis_cluster", "connection_string": ",".join(f"127.0.0.1:{p}" for p in ports)}
    return open_repo_store(data, root, project=project, online_store=cluster, batch_engine=engine, model_versions=("v1",))


def hashes(ports, project: str) -> dict[bytes, dict]:
    out = {}
    for p in ports:
        r = redis.Redis(port=p)
        for k in r.scan_iter(match=b"*" + project.encode(), count=1000):
            if not k.startswith(MARKER_PREFIX):
                out[k] = r.hgetall(k)
    return out


def test_fast_path_on_a_cluster_equals_feasts_own(tmp_path, cluster):
    data = tmp_path / "data"
    tables = write_tables(data, versions=("v1",), n_products=200, n_queries=12, n_consumers=6, d=16)
    write_stats(data, tables.product_ids, tables.consumer_ids)
    fast_project, stock_project = unique_project(), unique_project()
    fast = make_store(tmp_path, cluster, fast_project, data, ENGINE_TYPE)
    stock = make_store(tmp_path, cluster, stock_project, data, "local")
    fast.materialize(START, END)
    stock.materialize(START, END)

    ours, theirs = hashes(cluster, fast_project), hashes(cluster, stock_project)
    strip = lambda h, proj: {k[: -len(proj)]: v for k, v in h.items()}  # noqa: E731
    assert len(ours) == len(theirs) > 200
    assert strip(ours, fast_project) == strip(theirs, stock_project)  # same keys, fields and bytes
    per_node = [sum(1 for _ in redis.Redis(port=p).scan_iter(match=b"*" + fast_project.encode())) for p in cluster]
    assert all(n > 0 for n in per_node)  # the rows really are spread over the three nodes

    pids = tables.product_ids[:60] + ["nope1", "nope2"]
    req = OnlineLookup(fast, "v1").lookup("c1", pids, query_id="q3")
    view = C.embedding_view_name(C.PRODUCT_ENTITY, "v1")
    ref = stock.get_online_features(features=[f"{view}:{EMBEDDING}"], entity_rows=[{PRODUCT_ID: p} for p in pids]).to_dict()
    found = np.array([v is not None for v in ref[EMBEDDING]])
    np.testing.assert_array_equal(req.product_found, found)
    np.testing.assert_array_equal(req.products[found], np.array([v for v in ref[EMBEDDING] if v is not None], np.float32))
    assert req.consumer_found and req.query_found and req.missing[C.PRODUCT_ENTITY] == ["nope1", "nope2"]

    lk = OnlineLookup(fast, "v1")
    stats = StatsLookup(fast, lk).fetch([(C.PRODUCT_ENTITY, pids)])[stats_feature(C.PRODUCT_STATS_VIEW, C.PRODUCT_CTR)]
    ref = stock.get_online_features(features=[f"{C.PRODUCT_STATS_VIEW}:{C.PRODUCT_CTR}"],
                                    entity_rows=[{PRODUCT_ID: p} for p in pids]).to_dict()[C.PRODUCT_CTR]
    np.testing.assert_allclose(stats, np.array([np.nan if v is None else v for v in ref], float), equal_nan=True)

    # the stock engine writes no markers: the fast lookup refuses its project as empty
    with pytest.raises(StoreEmpty, match="store empty for version v1"):
        OnlineLookup(stock, "v1").lookup("c1", pids[:3])
