"""Column and feature names of the simulated logs and the ranker, defined once.

Catalog and embedding columns come from `dashclip.columns`, feature-store names from
`features.columns`; this module adds the simulator's tables and the ranker's feature sets.
"""

from __future__ import annotations

from dashclip.columns import CATEGORY, EVENT_TIMESTAMP, PRODUCT_ID, QUERY, QUERY_ID  # noqa: F401
from features import columns as FC
from features.columns import CONSUMER_ID  # noqa: F401

# simulated logs (one parquet file each, under the simulation folder)
REQUEST_ID = "request_id"  # same name as features.offline.REQUEST_ID: similarity features group by it
DAY = "day"  # 0-based day of the logged period
SLOT = "slot"  # 0-based ad slot (position) on the page; -1 for a candidate that was not shown
LEGACY_RANK = "legacy_rank"  # rank of the candidate under the logging policy's deterministic ranker
LEGACY_SCORE = "legacy_score"
BID = "bid"  # advertiser's cost-per-click bid (synthetic)
PROPENSITY = "propensity"  # P(logging policy puts this product in this slot | request)
EXPLORED = "explored"  # the request's slate came from the uniform-random branch of the policy
GRADE = "grade"  # ground truth ESCI grade (simulator only; never a feature)
AFFINITY = "affinity"  # ground truth consumer affinity (simulator only; never a feature)
P_CLICK = "p_click"  # ground truth click probability (simulator only)
P_CONVERT = "p_convert"  # ground truth P(conversion | click) (simulator only)
CLICKED = "clicked"
CONVERTED = "converted"
PURCHASE_SOURCE = "source"  # organic | ad
ARM = "arm"

# tables written by the simulator
REQUESTS_TABLE = "requests.parquet"
CANDIDATES_TABLE = "candidates.parquet"
IMPRESSIONS_TABLE = "impressions.parquet"
CLICKS_TABLE = "clicks.parquet"
CONVERSIONS_TABLE = "conversions.parquet"
PURCHASES_TABLE = "purchases.parquet"
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
