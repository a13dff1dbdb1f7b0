"""The ads server as operators start it: `create_app()` with no arguments (uvicorn --factory,
gunicorn workers) built from DASHCLIP_SERVE_* settings, `python -m ranking.serve` logging one
start-up line (address, model version, ranker, store), and --workers handing the settings to the
worker processes through the environment."""

from __future__ import annotations

import logging

import pytest
import uvicorn
from fastapi.testclient import TestClient

from ranking import serve
from ranking.cli import env_name, serve_parser, settings
from tests.redis_fixture import db_url, delete_project_keys, redis_server, redis_url, unique_project  # noqa: F401
from tests.test_serve import body, make_service

pytestmark = pytest.mark.redis


@pytest.fixture(scope="module")
def service(tmp_path_factory, redis_url):  # noqa: F811
    url, project = db_url(redis_url), unique_project()
    svc, _ = make_service(tmp_path_factory.mktemp("factory"), url, project)
    yield svc
    delete_project_keys(url, project)


@pytest.fixture
def folders(tmp_path):
    """The folders the settings name (their contents are the replaced build_service's business)."""
    for sub, name in (("ranker", "config.json"), ("repo", "feature_store.yaml"), ("ck", "meta.json")):
        (tmp_path / sub).mkdir()
        (tmp_path / sub / name).write_text("{}")
    (tmp_path / "ingest").mkdir()
    return {k: str(tmp_path / k) for k in ("ranker", "repo", "ck", "ingest")}


@pytest.fixture
def built(service, monkeypatch):
    """build_service replaced by one that records its arguments and returns the test service."""
    for action in serve_parser()._actions:  # a clean DASHCLIP_SERVE_* environment, restored afterwards
        if action.option_strings:
            monkeypatch.delenv(env_name(action.option_strings[0]), raising=False)
    calls = []

    def build(ranker, repo, catalog, checkpoint, retrieve_k, retriever, lookup_timeout_ms, breaker_failures,
              breaker_reset_s, require_marker):
        calls.append(dict(ranker=ranker, repo=repo, catalog=catalog, checkpoint=checkpoint, retrieve_k=retrieve_k,
                          retriever=retriever, lookup_timeout_ms=lookup_timeout_ms, breaker_failures=breaker_failures,
                          breaker_reset_s=breaker_reset_s, require_marker=require_marker))
        return service

    monkeypatch.setattr(serve, "build_service", build)
    return calls


def test_create_app_with_no_arguments_reads_the_environment(built, folders, monkeypatch, caplog):
    monkeypatch.setenv("DASHCLIP_SERVE_RANKER", folders["ranker"])
    monkeypatch.setenv("DASHCLIP_SERVE_FEATURE_REPO", folders["repo"])
    monkeypatch.setenv("DASHCLIP_SERVE_CATALOG", folders["ingest"])
    monkeypatch.setenv("DASHCLIP_SERVE_RETRIEVE_K", "50")
    monkeypatch.setenv("DASHCLIP_SERVE_MAX_BODY_BYTES", "1200")  # body() is ~800 bytes
    monkeypatch.setenv("DASHCLIP_SERVE_LOOKUP_TIMEOUT_MS", "25")
    monkeypatch.setenv("DASHCLIP_SERVE_NO_STORE_MARKER", "1")
    with caplog.at_level(logging.INFO, logger="ranking.serve"):
        app = serve.create_app()
    assert built == [dict(ranker=folders["ranker"], repo=folders["repo"], catalog=folders["ingest"], checkpoint=None,
                          retrieve_k=50, retriever="flat", lookup_timeout_ms=25.0, breaker_failures=5,
                          breaker_reset_s=1.0, require_marker=False)]
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("ads server")]
    assert len(lines) == 1
    assert "model version v1" in lines[0] and "ranker with_embeddings" in lines[0] and "store redis at " in lines[0]
    assert "faiss flat over 150 products" in lines[0]
    with TestClient(app) as c:
        assert c.post("/rank", json=body()).status_code == 200
        big = body(query="x" * 400, candidate_ids=[f"p{i}" for i in range(150)])
        assert c.post("/rank", json=big).status_code == 413  # the body limit came from the environment too


def test_python_m_ranking_serve_logs_address_version_and_store(built, folders, monkeypatch, caplog):
    ran = {}
    monkeypatch.setattr(uvicorn, "run", lambda app, **kw: ran.update(app=app, **kw))
    args = settings(["--port", "8123", "--ranker", folders["ranker"], "--feature-repo", folders["repo"],
                     "--catalog", folders["ingest"]])
    with caplog.at_level(logging.INFO, logger="ranking.serve"):
        assert serve.run_cli(args) == 0
    line = next(r.getMessage() for r in caplog.records if r.getMessage().startswith("ads server"))
    assert line.startswith("ads server on http://127.0.0.1:8123: model version v1, ranker with_embeddings")
    assert "store redis at " in line
    assert ran["host"] == "127.0.0.1" and ran["port"] == 8123 and ran["app"].state.service is not None


def test_workers_get_the_settings_through_the_environment(built, folders, monkeypatch):
    ran = {}
    monkeypatch.setattr(uvicorn, "run", lambda app, **kw: ran.update(app=app, **kw))
    assert serve.run_cli(settings(["--workers", "3", "--ranker", "/srv/r", "--checkpoint", "/srv/ck"])) == 0
    assert ran["app"] == "ranking.serve:create_app" and ran["factory"] is True and ran["workers"] == 3
    assert built == []  # the workers build the service, not the parent
    again = settings()  # what a worker's create_app() reads
    assert (again.ranker, again.checkpoint, again.workers) == ("/srv/r", "/srv/ck", 3)


def test_rank_threads_reach_the_app_from_flag_and_environment(built, folders, monkeypatch):
    ran = {}
    monkeypatch.setattr(uvicorn, "run", lambda app, **kw: ran.update(app=app, **kw))
    paths = ["--ranker", folders["ranker"], "--feature-repo", folders["repo"], "--catalog", folders["ingest"]]
    assert serve.run_cli(settings([*paths, "--rank-threads", "3"])) == 0
    assert ran["app"].state.rank_limiter.total_tokens == 3
    for name, value in (("RANKER", folders["ranker"]), ("FEATURE_REPO", folders["repo"]), ("CATALOG", folders["ingest"]),
                        ("RANK_THREADS", "1")):
        monkeypatch.setenv(f"DASHCLIP_SERVE_{name}", value)
    assert serve.create_app().state.rank_limiter.total_tokens == 1  # a worker process reads the environment
    with pytest.raises(ValueError, match="rank_threads: 0"):
        serve.create_app(ran["app"].state.service, rank_threads=0)


def test_a_missing_folder_is_one_line_naming_flag_variable_and_value(folders, monkeypatch, capsys):
    from ranking.cli import serve_main

    for action in serve_parser()._actions:
        if action.option_strings:
            monkeypatch.delenv(env_name(action.option_strings[0]), raising=False)
    assert serve_main(["--ranker", "/nope", "--feature-repo", folders["repo"], "--catalog", folders["ingest"]]) == 2
    err = capsys.readouterr().err.strip()
    assert err == ("error: --ranker /nope ($DASHCLIP_SERVE_RANKER): no config.json there "
                   "(ranking.train writes OUT/models/with_embeddings)")
    monkeypatch.setenv("DASHCLIP_SERVE_RANKER", folders["ranker"])
    assert serve_main(["--feature-repo", folders["ranker"], "--catalog", folders["ingest"]]) == 2
    assert "--feature-repo" in capsys.readouterr().err
