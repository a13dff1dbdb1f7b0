"""Feast declarations for DashCLIP, collected by `feast apply`.

Entities product / query / consumer / category; the ranker's stats views (`product_stats`,
`category_stats`, `consumer_stats`); per live model version, embedding views
(`product_embedding__<v>`, `query_embedding__<v>`, `consumer_embedding__<v>`) and one ranker
feature service (`ranker__<v>`). Tables and columns: `features.definitions`. Data folder:
`$DASHCLIP_FEATURE_DATA` (default `data/` here); live versions: `<data>/model_versions.json`,
which the product embedding job updates when it commits a version (`spark_jobs.lib.versions`).
"""

from pathlib import Path

from feast import Entity, FeatureService, FeatureView, Field, ValueType
from feast.types import Array, Bool, Float32, Float64, Int64, String

from dashclip.columns import CONTENT_HASH, EMBEDDING, HAS_IMAGE, QUERY
from features import columns as C
from features.definitions import EMBEDDING_TTL, STATS_TTL, default_data_dir, parquet_source
from spark_jobs.lib.versions import live_model_versions

DATA = default_data_dir(Path(__file__).resolve().parent)
MODEL_VERSIONS = live_model_versions(DATA)

# --- entities -------------------------------------------------------------------------------------

product = Entity(name=C.PRODUCT_ENTITY, join_keys=[C.PRODUCT_ID], value_type=ValueType.STRING,
                 description="a catalog product (ad candidate)")
query = Entity(name=C.QUERY_ENTITY, join_keys=[C.QUERY_ID], value_type=ValueType.STRING,
               description="a shopper search query from the query log")
consumer = Entity(name=C.CONSUMER_ENTITY, join_keys=[C.CONSUMER_ID], value_type=ValueType.STRING,
                  description="a shopper; profile embedding = mean of recent purchases")
category = Entity(name=C.CATEGORY_ENTITY, join_keys=[C.CATEGORY_ID], value_type=ValueType.STRING,
                  description="a catalog category path")

# --- the ranker's stats views (one row per entity and day) -----------------------------------------

product_stats = FeatureView(
    name=C.PRODUCT_STATS_VIEW,
    entities=[product],
    ttl=STATS_TTL,
    schema=[
        Field(name=C.PRODUCT_ID, dtype=String),
        Field(name=C.PRODUCT_IMPRESSIONS, dtype=Int64),
        Field(name=C.PRODUCT_CLICKS, dtype=Int64),
        Field(name=C.PRODUCT_CONVERSIONS, dtype=Int64),
        Field(name=C.PRODUCT_CTR, dtype=Float64),
        Field(name=C.PRODUCT_CVR, dtype=Float64),
    ],
    source=parquet_source(f"{C.PRODUCT_STATS_VIEW}_source", DATA / C.PRODUCT_STATS_TABLE),
    online=True,
    tags={"kind": "stats"},
)

category_stats = FeatureView(
    name=C.CATEGORY_STATS_VIEW,
    entities=[category],
    ttl=STATS_TTL,
    schema=[
        Field(name=C.CATEGORY_ID, dtype=String),
        Field(name=C.CATEGORY_IMPRESSIONS, dtype=Int64),
        Field(name=C.CATEGORY_CTR, dtype=Float64),
        Field(name=C.CATEGORY_CVR, dtype=Float64),
    ],
    source=parquet_source(f"{C.CATEGORY_STATS_VIEW}_source", DATA / C.CATEGORY_STATS_TABLE),
    online=True,
    tags={"kind": "stats"},
)

consumer_stats = FeatureView(
    name=C.CONSUMER_STATS_VIEW,
    entities=[consumer],
    ttl=STATS_TTL,
    schema=[
        Field(name=C.CONSUMER_ID, dtype=String),
        Field(name=C.CONSUMER_ORDERS, dtype=Int64),
        Field(name=C.CONSUMER_CTR, dtype=Float64),
        Field(name=C.CONSUMER_DAYS_SINCE_LAST_ORDER, dtype=Float64),
    ],
    source=parquet_source(f"{C.CONSUMER_STATS_VIEW}_source", DATA / C.CONSUMER_STATS_TABLE),
    online=True,
    tags={"kind": "stats"},
)

# --- per model version: embedding views and the ranker's feature service --------------------------


def embedding_view(entity: Entity, table: str, version: str, extra: list[Field]) -> FeatureView:
    """The `<entity>_embedding__<version>` view over `<data>/<table>/model_version=<version>/`."""
    name = C.embedding_view_name(entity.name, version)
    return FeatureView(
        name=name,
        entities=[entity],
        ttl=EMBEDDING_TTL,
        schema=[Field(name=entity.join_key, dtype=String), Field(name=EMBEDDING, dtype=Array(Float32)), *extra],
        source=parquet_source(f"{name}_source", DATA / table / f"model_version={version}"),
        online=True,
        tags={"model_version": version, "kind": "embedding"},
    )


def ranker_service(version: str, embeddings: list[FeatureView]) -> FeatureService:
    return FeatureService(
        name=C.ranker_service_name(version),
        features=[*embeddings, product_stats, category_stats, consumer_stats],
        tags={"model_version": version},
        description=f"ranker features with DashCLIP embeddings of model version {version}",
    )


for _version in MODEL_VERSIONS:  # feast apply collects module attributes: bind each by its name
    _views = [
        embedding_view(product, C.PRODUCT_EMBEDDINGS_TABLE, _version,
                       [Field(name=HAS_IMAGE, dtype=Bool), Field(name=CONTENT_HASH, dtype=String)]),
        embedding_view(query, C.QUERY_EMBEDDINGS_TABLE, _version, [Field(name=QUERY, dtype=String)]),
        embedding_view(consumer, C.CONSUMER_EMBEDDINGS_TABLE, _version, []),
    ]
    for _obj in (*_views, ranker_service(_version, _views)):
        globals()[_obj.name] = _obj
del _version, _views, _obj
