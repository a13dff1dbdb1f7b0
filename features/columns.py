"""Feature-side names, defined once: entities, feature views, stats columns, environment variables.

Embedding-table columns (product_id, embedding, model_version, event_timestamp, ...) live in
`dashclip.columns`; this module adds what only the feature store and the ranker use.
"""

from __future__ import annotations

from dashclip.columns import EMBEDDING, EVENT_TIMESTAMP, PRODUCT_ID, QUERY_ID  # noqa: F401
from dashclip.events import CONSUMER_ID  # noqa: F401
# the ranker's statistics tables and columns, named where the stats job (their writer) names them
from spark_jobs.lib.columns import (CATEGORY_CTR, CATEGORY_CVR, CATEGORY_ID, CATEGORY_IMPRESSIONS,  # noqa: F401
                                    CATEGORY_STATS_TABLE, CONSUMER_CTR, CONSUMER_DAYS_SINCE_LAST_ORDER, CONSUMER_ORDERS,
                                    CONSUMER_STATS_TABLE, PRODUCT_CLICKS, PRODUCT_CONVERSIONS, PRODUCT_CTR, PRODUCT_CVR,
                                    PRODUCT_IMPRESSIONS, PRODUCT_STATS_TABLE)
from spark_jobs.lib.columns import ENV_MODEL_VERSIONS, version_slug  # noqa: F401  (the live-versions file's names)

CREATED_TIMESTAMP = "created_timestamp"

# Feast entities (entity name -> join key)
PRODUCT_ENTITY = "product"
QUERY_ENTITY = "query"
CONSUMER_ENTITY = "consumer"
CATEGORY_ENTITY = "category"
JOIN_KEYS = {
    PRODUCT_ENTITY: PRODUCT_ID,
    QUERY_ENTITY: QUERY_ID,
    CONSUMER_ENTITY: CONSUMER_ID,
    CATEGORY_ENTITY: CATEGORY_ID,
}

HAS_IMAGE_FEATURE = "has_image"

# similarity features (features/similarity.py)
COS_QUERY_PRODUCT = "cos_query_product"
COS_CONSUMER_PRODUCT = "cos_consumer_product"
RANK_QUERY_PRODUCT = "rank_query_product"
RANK_CONSUMER_PRODUCT = "rank_consumer_product"
COS_QUERY_CONSUMER = "cos_query_consumer"
COS_QUERY_PRODUCT_GAP = "cos_query_product_gap_to_best"
COS_QUERY_PRODUCT_Z = "cos_query_product_z"
COS_PRODUCT_TO_CENTROID = "cos_product_to_request_centroid"
SIMILARITY_FEATURES = (
    COS_QUERY_PRODUCT,
    COS_CONSUMER_PRODUCT,
    RANK_QUERY_PRODUCT,
    RANK_CONSUMER_PRODUCT,
    COS_QUERY_CONSUMER,
    COS_QUERY_PRODUCT_GAP,
    COS_QUERY_PRODUCT_Z,
    COS_PRODUCT_TO_CENTROID,
)

# environment variables read by feature_repo/ and features/
ENV_REDIS_URL = "REDIS_URL"  # redis://[:password@]host:port[/db] or rediss:// for TLS
ENV_FEAST_REDIS = "FEAST_REDIS_CONNECTION"  # Feast format: host:port,db=0,password=..,ssl=true
ENV_DATA_DIR = "DASHCLIP_FEATURE_DATA"  # folder with the offline parquet tables
ENV_SOURCES = "DASHCLIP_FEAST_SOURCES"  # file (default) or spark (feature_store.spark.yaml)

# offline tables under the data folder (each a parquet file or a folder of parquet files)
PRODUCT_EMBEDDINGS_TABLE = "product_embeddings"
QUERY_EMBEDDINGS_TABLE = "query_embeddings"
CONSUMER_EMBEDDINGS_TABLE = "consumer_embeddings"

PRODUCT_STATS_VIEW = "product_stats"
CATEGORY_STATS_VIEW = "category_stats"
CONSUMER_STATS_VIEW = "consumer_stats"
RANKER_SERVICE_PREFIX = "ranker"

def embedding_view_name(entity: str, model_version: str) -> str:
    """'product', 'v1' -> 'product_embedding__v1': one view per entity and model version."""
    return f"{entity}_embedding__{version_slug(model_version)}"


def full_feature_name(view: str, feature: str) -> str:
    """Feast's full feature name (`full_feature_names=True`): 'product_stats', 'product_ctr' -> 'product_stats__product_ctr'."""
    return f"{view}__{feature}"


def ranker_service_name(model_version: str) -> str:
    return f"{RANKER_SERVICE_PREFIX}__{version_slug(model_version)}"

