"""Feast objects for the DashCLIP feature repo, built by one factory.

A feature repo's `repo.py` (the top-level `feature_repo/`, shipped in the package as
`features/repo_template`; copied by `python -m features.repo init DIR`) calls `build_definitions()` at import time and exposes every object at module level
(what `feast apply` collects); tests call it with their own data folder.

Offline tables under the data folder (`$DASHCLIP_FEATURE_DATA`, default `data/` in the repo folder):

| path | columns |
| --- | --- |
| `product_embeddings/model_version=<v>/*.parquet` | product_id str, embedding list<float32>, has_image bool, content_hash str, event_timestamp timestamp[us, UTC] |
| `query_embeddings/model_version=<v>/*.parquet` | query_id str, query str, embedding list<float32>, event_timestamp |
| `consumer_embeddings/model_version=<v>/*.parquet` | consumer_id str, embedding list<float32>, event_timestamp |
| `product_stats.parquet` | product_id str, event_timestamp, product_impressions int64, product_clicks int64, product_conversions int64, product_ctr float64, product_cvr float64 |
| `category_stats.parquet` | category str, event_timestamp, category_impressions int64, category_ctr float64, category_cvr float64 |
| `consumer_stats.parquet` | consumer_id str, event_timestamp, consumer_orders int64, consumer_ctr float64, consumer_days_since_last_order float64 |

The embedding folders are the Spark jobs' output (partitioned by `model_version`); the three
stats files are written by the ranking issue from the (simulated) logs, one row per entity and
day, `event_timestamp` being the end of the day the statistics cover. Each model version gets its
own embedding views (`product_embedding__<v>`, ...) and its own ranker feature service
(`ranker__<v>`), so two versions can be live side by side while the ranker switches.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

from feast import Entity, FeatureService, FeatureView, Field, FileSource, ValueType
from feast.types import Array, Bool, Float32, Float64, Int64, String

from dashclip.columns import CONTENT_HASH, EMBEDDING, EVENT_TIMESTAMP, HAS_IMAGE, PRODUCT_ID, QUERY, QUERY_ID
from features import columns as C

STATS_TTL = timedelta(days=30)  # a stats row older than this is treated as missing offline


@dataclass
class Definitions:
    entities: dict[str, Entity]
    sources: dict
    views: dict[str, FeatureView]
    services: dict[str, FeatureService]
    model_versions: tuple[str, ...] = field(default=())

    def objects(self) -> list:
        """Everything `FeatureStore.apply` needs, in one list."""
        return [*self.entities.values(), *self.sources.values(), *self.views.values(), *self.services.values()]

    def embedding_view(self, entity: str, model_version: str) -> FeatureView:
        return self.views[C.embedding_view_name(entity, model_version)]


def _source(name: str, path: Path):
    """FileSource for the file offline store; SparkSource when `$DASHCLIP_FEAST_SOURCES=spark`."""
    if os.environ.get(C.ENV_SOURCES, "file").strip().lower() == "spark":
        from feast.infra.offline_stores.contrib.spark_offline_store.spark_source import SparkSource

        return SparkSource(name=name, path=str(path), file_format="parquet", timestamp_field=EVENT_TIMESTAMP)
    return FileSource(name=name, path=str(path), timestamp_field=EVENT_TIMESTAMP)


def default_data_dir(repo_dir: Path) -> Path:
    return Path(os.environ.get(C.ENV_DATA_DIR) or repo_dir / "data").resolve()


def discover_model_versions(data_dir: Path) -> tuple[str, ...]:
    """Live versions: `$DASHCLIP_MODEL_VERSIONS`, else the `model_version=` partitions on disk."""
    env = os.environ.get(C.ENV_MODEL_VERSIONS, "").strip()
    if env:
        return tuple(v.strip() for v in env.split(",") if v.strip())
    table = data_dir / C.PRODUCT_EMBEDDINGS_TABLE
    found = sorted(p.name.split("=", 1)[1] for p in table.glob("model_version=*") if p.is_dir())
    return tuple(found)


def _entities() -> dict[str, Entity]:
    desc = {
        C.PRODUCT_ENTITY: "a catalog product (ad candidate)",
        C.QUERY_ENTITY: "a shopper search query from the query log",
        C.CONSUMER_ENTITY: "a shopper; profile embedding = mean of recent purchases",
        C.CATEGORY_ENTITY: "a catalog category path",
    }
    return {
        name: Entity(name=name, join_keys=[key], value_type=ValueType.STRING, description=desc[name])
        for name, key in C.JOIN_KEYS.items()
    }


def _embedding_views(data_dir: Path, version: str, ents: dict[str, Entity]) -> tuple[dict, dict]:
    specs = {
        C.PRODUCT_ENTITY: (C.PRODUCT_EMBEDDINGS_TABLE, [Field(name=HAS_IMAGE, dtype=Bool), Field(name=CONTENT_HASH, dtype=String)]),
        C.QUERY_ENTITY: (C.QUERY_EMBEDDINGS_TABLE, [Field(name=QUERY, dtype=String)]),
        C.CONSUMER_ENTITY: (C.CONSUMER_EMBEDDINGS_TABLE, []),
    }
    sources, views = {}, {}
    for entity, (table, extra) in specs.items():
        name = C.embedding_view_name(entity, version)
        src = _source(f"{name}_source", data_dir / table / f"model_version={version}")
        key = C.JOIN_KEYS[entity]
        views[name] = FeatureView(
            name=name,
            entities=[ents[entity]],
            ttl=timedelta(0),  # an embedding stays valid until a newer row replaces it
            schema=[Field(name=key, dtype=String), Field(name=EMBEDDING, dtype=Array(Float32)), *extra],
            source=src,
            online=True,
            tags={"model_version": version, "kind": "embedding"},
        )
        sources[src.name] = src
    return sources, views


def _stats_views(data_dir: Path, ents: dict[str, Entity]) -> tuple[dict, dict]:
    specs = {
        C.PRODUCT_STATS_VIEW: (C.PRODUCT_ENTITY, C.PRODUCT_STATS_TABLE, [
            (C.PRODUCT_IMPRESSIONS, Int64), (C.PRODUCT_CLICKS, Int64), (C.PRODUCT_CONVERSIONS, Int64),
            (C.PRODUCT_CTR, Float64), (C.PRODUCT_CVR, Float64)]),
        C.CATEGORY_STATS_VIEW: (C.CATEGORY_ENTITY, C.CATEGORY_STATS_TABLE, [
            (C.CATEGORY_IMPRESSIONS, Int64), (C.CATEGORY_CTR, Float64), (C.CATEGORY_CVR, Float64)]),
        C.CONSUMER_STATS_VIEW: (C.CONSUMER_ENTITY, C.CONSUMER_STATS_TABLE, [
            (C.CONSUMER_ORDERS, Int64), (C.CONSUMER_CTR, Float64), (C.CONSUMER_DAYS_SINCE_LAST_ORDER, Float64)]),
    }
    sources, views = {}, {}
    for name, (entity, table, fields) in specs.items():
        src = _source(f"{name}_source", data_dir / table)
        key = C.JOIN_KEYS[entity]
        views[name] = FeatureView(
            name=name,
            entities=[ents[entity]],
            ttl=STATS_TTL,
            schema=[Field(name=key, dtype=String), *(Field(name=f, dtype=t) for f, t in fields)],
            source=src,
            online=True,
            tags={"kind": "stats"},
        )
        sources[src.name] = src
    return sources, views


def build_definitions(data_dir: Path, model_versions: tuple[str, ...] | list[str]) -> Definitions:
    """Entities, sources, views and ranker services for the given data folder and model versions."""
    if not model_versions:
        raise ValueError(
            f"no model versions to declare: set ${C.ENV_MODEL_VERSIONS} (e.g. 'v1,v2') or write "
            f"embeddings under {data_dir / C.PRODUCT_EMBEDDINGS_TABLE}/model_version=<v>/"
        )
    data_dir = Path(data_dir).resolve()
    ents = _entities()
    sources, views = _stats_views(data_dir, ents)
    services = {}
    for version in model_versions:
        s, v = _embedding_views(data_dir, version, ents)
        sources.update(s)
        views.update(v)
        name = C.ranker_service_name(version)
        services[name] = FeatureService(
            name=name,
            features=[
                *(views[C.embedding_view_name(e, version)] for e in (C.PRODUCT_ENTITY, C.QUERY_ENTITY, C.CONSUMER_ENTITY)),
                views[C.PRODUCT_STATS_VIEW], views[C.CATEGORY_STATS_VIEW], views[C.CONSUMER_STATS_VIEW],
            ],
            tags={"model_version": version},
            description=f"ranker features with DashCLIP embeddings of model version {version}",
        )
    return Definitions(ents, sources, views, services, tuple(model_versions))
