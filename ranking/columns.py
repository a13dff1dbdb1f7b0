"""Column and feature names of the ranker, defined once.

Catalog and embedding columns come from `dashclip.columns`, the event-log schema from
`dashclip.events`, feature-store names from `features.columns`; this module adds the simulator's
ground truth and files and the ranker's feature sets.
"""

from __future__ import annotations

from dashclip.columns import CATEGORY, EVENT_TIMESTAMP, PRODUCT_ID, QUERY, QUERY_ID  # noqa: F401
from dashclip.events import (BID, CANDIDATES_TABLE, CLICKED, CLICKS_TABLE, CONSUMER_ID, CONVERSIONS_TABLE,  # noqa: F401
                             CONVERTED, DAY, EXPLORED, IMPRESSIONS_TABLE, LEGACY_RANK, LEGACY_SCORE, PROPENSITY,
                             PURCHASE_SOURCE, PURCHASES_TABLE, REQUEST_ID, REQUESTS_TABLE, SLOT)
from features import columns as FC

# the simulator's ground truth (never a feature)
GRADE = "grade"  # ESCI grade of (query, product)
AFFINITY = "affinity"  # consumer affinity
P_CLICK = "p_click"  # click probability
P_CONVERT = "p_convert"  # P(conversion | click)
ARM = "arm"

# files the simulator writes beside the event logs (dashclip.events)
PRODUCTS_TABLE = "products.parquet"  # the world's products (ingested catalog rows), the embedding job's input
QUERIES_TABLE = "queries.parquet"
BIDS_TABLE = "bids.parquet"
WORLD_FILE = "world.json"  # the world's settings, its relevance truth among them

# ranker features (Feast full names: "<view>__<feature>")
def stats_feature(view: str, feature: str) -> str:
    return FC.full_feature_name(view, feature)


STATS_FEATURES = (
    stats_feature(FC.PRODUCT_STATS_VIEW, FC.PRODUCT_IMPRESSIONS),
    stats_feature(FC.PRODUCT_STATS_VIEW, FC.PRODUCT_CLICKS),
    stats_feature(FC.PRODUCT_STATS_VIEW, FC.PRODUCT_CONVERSIONS),
    stats_feature(FC.PRODUCT_STATS_VIEW, FC.PRODUCT_CTR),
    stats_feature(FC.PRODUCT_STATS_VIEW, FC.PRODUCT_CVR),
    stats_feature(FC.CATEGORY_STATS_VIEW, FC.CATEGORY_IMPRESSIONS),
    stats_feature(FC.CATEGORY_STATS_VIEW, FC.CATEGORY_CTR),
    stats_feature(FC.CATEGORY_STATS_VIEW, FC.CATEGORY_CVR),
    stats_feature(FC.CONSUMER_STATS_VIEW, FC.CONSUMER_ORDERS),
    stats_feature(FC.CONSUMER_STATS_VIEW, FC.CONSUMER_CTR),
    stats_feature(FC.CONSUMER_STATS_VIEW, FC.CONSUMER_DAYS_SINCE_LAST_ORDER),
)
# position is a training feature (position-bias debiasing); every candidate is scored at slot 0
BASELINE_FEATURES = (SLOT, *STATS_FEATURES)
# the pointwise similarity features: the request-relative ones (ranks, gap to best, z-score,
# centroid) depend on the size of the candidate set, which differs between the logs (the
# simulator's candidates) and serving (any list, or faiss top-k), so the ranker leaves them out
POINTWISE_SIMILARITY = (FC.COS_QUERY_PRODUCT, FC.COS_CONSUMER_PRODUCT, FC.COS_QUERY_CONSUMER)
EMBEDDING_FEATURES = (*BASELINE_FEATURES, *POINTWISE_SIMILARITY)
FEATURE_SETS = {"with_embeddings": EMBEDDING_FEATURES, "baseline": BASELINE_FEATURES}
TASKS = ("ctr", "cvr")
