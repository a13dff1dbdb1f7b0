"""Feast feature store on a real Redis: declarations, CLI, fast materialization, online and
offline lookups, reliability. Small tables (32-d) keep the module fast."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
import redis
from feast import FeatureStore

from dashclip.columns import EMBEDDING, EVENT_TIMESTAMP, PRODUCT_ID, QUERY_ID
from features import columns as C
from features import materialize as M
from features import redis_format as F
from features.offline import training_frame
from features.online import OnlineLookup, StatsLookup
from features.repo import TEMPLATE_FILES, init_repo, open_repo_store
from features.similarity import request_features
from features.store import OnlineStoreUnavailable, StoreEmpty, feast_connection_string
from features.synthetic import T0, product_table, unit_vectors, write_partition, write_stats, write_tables
from tests.redis_fixture import db_url, delete_project_keys, redis_server, redis_url, unique_project  # noqa: F401

pytestmark = pytest.mark.redis

REPO = Path(__file__).resolve().parents[1]
FAST = M.ENGINE_TYPE
START, END = T0 - timedelta(days=2), T0 + timedelta(days=5)
D = 32
MARKER_PREFIX = b"_dashclip_materialized:"


def make_store(root: Path, url: str, project: str, data_dir: Path, versions, engine: str = FAST) -> FeatureStore:
    return open_repo_store(data_dir, root, project=project, redis_url=url, batch_engine=engine, model_versions=versions)


@pytest.fixture(scope="module")
def env(tmp_path_factory, redis_url):  # noqa: F811
    root = tmp_path_factory.mktemp("feast")
    data = root / "data"
    tables = write_tables(data, versions=("v1", "v2"), n_products=120, n_queries=12, n_consumers=6, d=D)
    rng = np.random.default_rng(7)
    # later rows: p0..p4 get a newer embedding a day later; p5 an older one that must lose
    newer, older = unit_vectors(rng, 5, D), unit_vectors(rng, 1, D)
    ids = [f"p{i}" for i in range(6)]
    ts = [T0 + pd.Timedelta(days=1)] * 5 + [T0 - pd.Timedelta(days=1)]
    write_partition(data, C.PRODUCT_EMBEDDINGS_TABLE, "v1", product_table(ids, np.vstack([newer, older]), ts), "part-1.parquet")
    # v2 carries a product whose embedding is null
    tbl = product_table(["pnull"], np.zeros((1, D), np.float32), [T0])
    tbl = tbl.set_column(1, EMBEDDING, pa.array([None], pa.list_(pa.float32())))
    write_partition(data, C.PRODUCT_EMBEDDINGS_TABLE, "v2", tbl, "part-1.parquet")
    write_stats(data, tables.product_ids, tables.consumer_ids)
    url = db_url(redis_url)
    fast_project, stock_project = unique_project(), unique_project()
    store = make_store(root, url, fast_project, data, ("v1", "v2"))
    store.materialize(START, END)
    yield dict(root=root, data=data, tables=tables, url=url, store=store, newer=newer,
               fast_project=fast_project, stock_project=stock_project)
    for p in (fast_project, stock_project):
        delete_project_keys(url, p)


def _hashes(url: str, project: str) -> dict[bytes, dict]:
    """Feast's hashes of a project (materialization markers left out)."""
    r = redis.Redis.from_url(url)
    suffix = project.encode()
    return {k[: -len(suffix)]: r.hgetall(k) for k in r.scan_iter(match=b"*" + suffix, count=1000)
            if not k.startswith(MARKER_PREFIX)}


def test_fast_materialize_writes_exactly_what_feast_writes(env):
    stock = make_store(env["root"], env["url"], env["stock_project"], env["data"], ("v1", "v2"), engine="local")
    stock.materialize(START, END)
    ours, theirs = _hashes(env["url"], env["fast_project"]), _hashes(env["url"], env["stock_project"])
    assert len(ours) == len(theirs) > 120
    assert ours == theirs  # same keys, same hash fields, same bytes (embeddings, scalars, nulls, _ts)


def test_online_lookup_equals_get_online_features(env):
    store, t = env["store"], env["tables"]
    pids = t.product_ids[:40] + ["nope1", "p0", "pnull", "nope2"]
    for version in ("v1", "v2"):
        lk = OnlineLookup(store, version)
        req = lk.lookup("c1", pids, query_id="q3")
        view = C.embedding_view_name(C.PRODUCT_ENTITY, version)
        ref = store.get_online_features(features=[f"{view}:{EMBEDDING}"], entity_rows=[{PRODUCT_ID: p} for p in pids]).to_dict()
        ref_found = np.array([v is not None for v in ref[EMBEDDING]])
        np.testing.assert_array_equal(req.product_found, ref_found)
        np.testing.assert_array_equal(req.products[ref_found], np.array([v for v in ref[EMBEDDING] if v is not None], np.float32))
        assert not req.products[~ref_found].any()
        assert set(req.missing[C.PRODUCT_ENTITY]) == {"nope1", "nope2", "pnull"}  # v2 stores a null, v1 nothing
        qview = C.embedding_view_name(C.QUERY_ENTITY, version)
        q = store.get_online_features(features=[f"{qview}:{EMBEDDING}"], entity_rows=[{QUERY_ID: "q3"}]).to_dict()[EMBEDDING][0]
        np.testing.assert_array_equal(req.query, np.asarray(q, np.float32))
        np.testing.assert_array_equal(req.consumer, t.consumers[version][1])
        assert req.query_source == "store" and req.consumer_found
        assert lk.counters["missing_product"] == len(req.missing[C.PRODUCT_ENTITY])
    # the newer row won, the older one was ignored
    np.testing.assert_array_equal(OnlineLookup(store, "v1").lookup(None, ["p0", "p5"]).products,
                                  np.vstack([env["newer"][0], t.products["v1"][5]]))


def test_stats_lookup_equals_get_online_features(env):
    """Every stats feature of the three views (int64 and double), missing ids included, as Feast reads it."""
    store, t = env["store"], env["tables"]
    lk = OnlineLookup(store, "v1")
    stats = StatsLookup(store, lk)
    entities = {C.PRODUCT_ENTITY: (C.PRODUCT_ID, t.product_ids[:40] + ["nope"]),
                C.CONSUMER_ENTITY: (C.CONSUMER_ID, t.consumer_ids[:3] + ["nobody"]), C.CATEGORY_ENTITY: (C.CATEGORY_ID, ["A", "Z"])}
    got = stats.fetch([(e, ids) for e, (_, ids) in entities.items()])
    for entity, (key, ids) in entities.items():
        view = stats.views[entity]
        ref = store.get_online_features(features=[f"{view.name}:{f}" for f in view.features],
                                        entity_rows=[{key: i} for i in ids]).to_dict()
        for f in view.features:
            want = np.array([np.nan if v is None else v for v in ref[f]], float)
            np.testing.assert_array_equal(got[C.full_feature_name(view.name, f)], want, err_msg=f)
            assert np.isnan(want[-1]) and not np.isnan(want[:-1]).any()
    assert set(stats.views) == set(entities) and lk.counters["corrupt_product"] == 0


def test_unknown_query_is_encoded_once_and_cached(env):
    calls = []

    def encode(texts):
        calls.append(list(texts))
        return np.stack([unit_vectors(np.random.default_rng(len(s)), 1, D)[0] for s in texts])

    lk = OnlineLookup(env["store"], "v1", encode=encode, cache_size=2)
    a = lk.lookup("nobody", ["p1"], query_id="unknown-q", query_text="red  shoes")
    assert a.query_found and a.query_source == "encoded" and not a.consumer_found
    assert a.missing[C.CONSUMER_ENTITY] == ["nobody"]
    b = lk.lookup("c1", ["p1"], query_text="red shoes ")  # same text after whitespace normalisation
    assert b.query_source == "cache" and np.array_equal(a.query, b.query)
    assert calls == [["red shoes"]]
    lk.lookup("c1", ["p1"], query_text="a")
    lk.lookup("c1", ["p1"], query_text="b")  # evicts "red shoes" (LRU of 2)
    assert lk.lookup("c1", ["p1"], query_text="red shoes").query_source == "encoded"
    nothing = OnlineLookup(env["store"], "v1").lookup("c1", ["p1"], query_text="no encoder")
    assert not nothing.query_found and nothing.missing[C.QUERY_ENTITY] == ["no encoder"]


def test_training_frame_is_point_in_time_correct_and_matches_online(env):
    store, t = env["store"], env["tables"]
    at = lambda days: T0 + pd.Timedelta(days=days)  # noqa: E731
    events = pd.DataFrame({
        EVENT_TIMESTAMP: [at(0.5), at(1.5), at(3), at(3), at(3)],
        C.CONSUMER_ID: ["c1"] * 5, QUERY_ID: ["q3"] * 5, PRODUCT_ID: ["p0", "p0", "p0", "p7", "nope"],
        C.CATEGORY_ID: ["A"] * 5,
    })
    frame = training_frame(store, events, "v1", keep_embeddings=True)
    emb = frame[f"{C.embedding_view_name(C.PRODUCT_ENTITY, 'v1')}__{EMBEDDING}"]
    np.testing.assert_allclose(np.asarray(emb[0], np.float32), t.products["v1"][0])  # before the update
    np.testing.assert_allclose(np.asarray(emb[1], np.float32), env["newer"][0])  # after it
    stats = pd.read_parquet(env["data"] / C.PRODUCT_STATS_TABLE)
    ctr = frame[f"{C.PRODUCT_STATS_VIEW}__{C.PRODUCT_CTR}"]
    expect = stats[(stats[PRODUCT_ID] == "p0") & (stats[EVENT_TIMESTAMP] == at(1))][C.PRODUCT_CTR].item()
    assert ctr[1] == pytest.approx(expect)  # the stats row of day 1, not day 2 (future)
    assert f"{C.CATEGORY_STATS_VIEW}__{C.CATEGORY_CTR}" in frame
    # the last request (t=3 days, after all updates) equals the online computation
    online = request_features(OnlineLookup(store, "v1").lookup("c1", ["p0", "p7", "nope"], query_id="q3"))
    for name in C.SIMILARITY_FEATURES:
        np.testing.assert_allclose(frame[name].to_numpy()[2:], online[name], rtol=1e-6, equal_nan=True, err_msg=name)


def test_feast_cli_apply_and_materialize_from_repo_folder(env, tmp_path):
    repo = tmp_path / "feature_repo"
    assert sorted(p.name for p in init_repo(repo)) == sorted(TEMPLATE_FILES)  # the packaged template
    project = unique_project()
    yaml = (repo / "feature_store.yaml").read_text().replace("project: dashclip", f"project: {project}")
    (repo / "feature_store.yaml").write_text(yaml)
    # the data folder lists v1 and v2 (model_versions.json); the override declares only v1, keeping the run short
    envv = {**os.environ, C.ENV_FEAST_REDIS: feast_connection_string(env["url"]), C.ENV_DATA_DIR: str(env["data"]),
            C.ENV_MODEL_VERSIONS: "v1", "PYTHONPATH": str(REPO)}
    feast = [sys.executable, "-m", "feast.cli.cli"] if not shutil.which("feast", path=str(Path(sys.executable).parent)) \
        else [str(Path(sys.executable).parent / "feast")]
    run = lambda *a: subprocess.run([*feast, *a], cwd=repo, env=envv, capture_output=True, text=True, timeout=120)  # noqa: E731
    try:
        for args in (("apply",), ("materialize", START.isoformat(), T0.isoformat()),
                     ("materialize-incremental", END.isoformat())):
            res = run(*args)
            assert res.returncode == 0, f"feast {' '.join(args)} failed:\n{res.stdout}\n{res.stderr}"
        os.environ[C.ENV_FEAST_REDIS] = envv[C.ENV_FEAST_REDIS]
        os.environ[C.ENV_DATA_DIR] = str(env["data"])
        store = FeatureStore(repo_path=str(repo))
        assert {s.name for s in store.list_feature_services()} == {C.ranker_service_name("v1")}
        req = OnlineLookup(store, "v1").lookup("c2", ["p0", "p9"], query_id="q1")
        assert req.product_found.all() and req.consumer_found and req.query_found
        np.testing.assert_array_equal(req.products[0], env["newer"][0])  # written by materialize-incremental
    finally:
        os.environ.pop(C.ENV_FEAST_REDIS, None)
        os.environ.pop(C.ENV_DATA_DIR, None)
        delete_project_keys(env["url"], project)


def test_interrupted_materialization_rerun_completes_the_store(env, monkeypatch):
    project = unique_project()
    store = make_store(env["root"], env["url"], project, env["data"], ("v1",))
    store._get_provider().batch_engine.chunk_rows = 16
    real, calls = M._write_chunk, []

    def crash_after_two_chunks(*a, **k):
        calls.append(1)
        if len(calls) > 2:
            raise KeyboardInterrupt("simulated kill mid-run")
        return real(*a, **k)

    monkeypatch.setattr(M, "_write_chunk", crash_after_two_chunks)
    with pytest.raises(KeyboardInterrupt):
        store.materialize(START, END)
    partial = _hashes(env["url"], project)
    assert 0 < len(partial) < 120
    monkeypatch.setattr(M, "_write_chunk", real)
    store.materialize(START, END)
    full = _hashes(env["url"], project)
    views = [C.embedding_view_name(e, "v2") for e in (C.PRODUCT_ENTITY, C.QUERY_ENTITY, C.CONSUMER_ENTITY)]
    v2_fields = {F.ts_field(v) for v in views} | {F.feature_field(v, f) for v in views for f in (EMBEDDING, "has_image", "content_hash", "query")}
    ref = {k: {f: v for f, v in h.items() if f not in v2_fields} for k, h in _hashes(env["url"], env["fast_project"]).items()}
    ref = {k: h for k, h in ref.items() if h}
    assert full == ref
    delete_project_keys(env["url"], project)


def test_redis_down_fails_fast_and_recovers(env, redis_server):  # noqa: F811
    project = unique_project()
    store = make_store(env["root"], redis_server.url, project, env["data"], ("v1",))
    store.materialize(START, END)
    lk = OnlineLookup(store, "v1")
    assert lk.lookup("c1", ["p1", "p2"], query_id="q1").product_found.all()

    redis_server.restart()  # pooled connection is now dead; the lookup reconnects by itself
    assert lk.lookup("c1", ["p1", "p2"], query_id="q1").product_found.all()

    redis_server.stop()
    t = time.perf_counter()
    with pytest.raises(OnlineStoreUnavailable, match=f"127.0.0.1:{redis_server.port}"):
        lk.lookup("c1", ["p1"], query_id="q1")
    assert time.perf_counter() - t < 2.0
    assert lk.counters["redis_errors"] == 1
    with pytest.raises(OnlineStoreUnavailable, match="rerun"):
        store.materialize(START, END)

    redis_server.start()  # back, but say it lost its data: refused as empty, a materialize rerun refills it
    redis.Redis.from_url(redis_server.url).flushall()
    with pytest.raises(StoreEmpty, match="store empty for version v1"):
        lk.lookup("c1", ["p1"])
    store.materialize(START, END)
    req = lk.lookup("c1", ["p1", "p2"], query_id="q1")
    assert req.product_found.all() and req.consumer_found and req.query_found
