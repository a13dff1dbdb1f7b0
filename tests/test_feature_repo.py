"""The feature repo's declarations (feature_repo/repo.py) and the data folder's list of live model
versions: what `feast apply` declares comes from the list the jobs update, not from the folders on disk."""

from __future__ import annotations

import json
import re

import pytest

from features import columns as C
from features.repo import declarations, template_dir
from spark_jobs.lib.versions import (MODEL_VERSIONS_FILE, live_model_versions, read_model_versions, register_model_version)
from ranking import columns as R


@pytest.fixture(autouse=True)
def no_env_versions(monkeypatch):
    monkeypatch.delenv(C.ENV_MODEL_VERSIONS, raising=False)


def _names(objs, kind: str) -> set[str]:
    return {o.name for o in objs if type(o).__name__ == kind}


def test_register_is_idempotent_ordered_and_atomic(tmp_path):
    assert read_model_versions(tmp_path) == ()
    assert register_model_version(tmp_path, "2025-01-v1") == ("2025-01-v1",)
    assert register_model_version(tmp_path, "v2") == ("2025-01-v1", "v2")
    assert register_model_version(tmp_path, "2025-01-v1") == ("2025-01-v1", "v2")
    assert json.loads((tmp_path / MODEL_VERSIONS_FILE).read_text()) == {"model_versions": ["2025-01-v1", "v2"]}
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")) == []
    with pytest.raises(ValueError, match="no usable characters"):
        register_model_version(tmp_path, "//")


def test_the_file_not_the_folders_decides_the_declared_versions(tmp_path, monkeypatch):
    (tmp_path / C.PRODUCT_EMBEDDINGS_TABLE / "model_version=old").mkdir(parents=True)  # on disk, not registered
    with pytest.raises(FileNotFoundError, match=f"{MODEL_VERSIONS_FILE}: no model version registered"):
        declarations(tmp_path)
    register_model_version(tmp_path, "v1")
    register_model_version(tmp_path, "v2")
    objs = declarations(tmp_path)
    assert _names(objs, "FeatureService") == {C.ranker_service_name("v1"), C.ranker_service_name("v2")}
    assert C.embedding_view_name(C.PRODUCT_ENTITY, "old") not in _names(objs, "FeatureView")
    monkeypatch.setenv(C.ENV_MODEL_VERSIONS, "v2")  # the override: declare only the version being rolled out
    assert live_model_versions(tmp_path) == ("v2",)
    assert _names(declarations(tmp_path), "FeatureService") == {C.ranker_service_name("v2")}


def test_a_malformed_versions_file_names_the_file_and_field(tmp_path):
    (tmp_path / MODEL_VERSIONS_FILE).write_text('{"model_versions": "v1"}')
    with pytest.raises(ValueError, match=rf"{MODEL_VERSIONS_FILE}: field 'model_versions' must be a list"):
        live_model_versions(tmp_path)


def test_each_version_gets_its_views_and_ranker_service_over_its_partition(tmp_path):
    objs = declarations(tmp_path, ("v1",))
    views = {o.name: o for o in objs if type(o).__name__ == "FeatureView"}
    assert set(views) == {C.PRODUCT_STATS_VIEW, C.CATEGORY_STATS_VIEW, C.CONSUMER_STATS_VIEW,
                          *(C.embedding_view_name(e, "v1") for e in (C.PRODUCT_ENTITY, C.QUERY_ENTITY, C.CONSUMER_ENTITY))}
    src = views[C.embedding_view_name(C.PRODUCT_ENTITY, "v1")].batch_source
    assert src.path == str(tmp_path.resolve() / C.PRODUCT_EMBEDDINGS_TABLE / "model_version=v1")
    assert _names(objs, "Entity") == set(C.JOIN_KEYS)


def test_the_rankers_stats_features_are_the_declared_stats_views():
    """ranking.columns names the stats features the ranker uses; they are exactly the features of the
    views tagged kind=stats in the ranker service (which the online reader and the offline frames read)."""
    objs = declarations("/nonexistent", ("v1",))
    service = next(o for o in objs if type(o).__name__ == "FeatureService")
    views = {o.name: o for o in objs if type(o).__name__ == "FeatureView"}
    declared = [C.full_feature_name(p.name, f.name) for p in service.feature_view_projections
                if views[p.name].tags.get("kind") == "stats" for f in p.features]
    assert sorted(declared) == sorted(R.STATS_FEATURES)


def test_repo_py_is_plain_declarations():
    text = (template_dir() / "repo.py").read_text()
    assert "globals().update" not in text and not re.search(r"\bglob\(|iterdir\(|listdir\(", text)
