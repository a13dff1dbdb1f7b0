"""Column and layout names of the tables the Spark jobs read and write (the rest are in dashclip.columns
and, for the event logs, dashclip.events)."""

import re

from dashclip.events import CONSUMER_ID  # noqa: F401

# purchase table as the consumer_profiles command line reads it (the event logs name it event_timestamp)
TIMESTAMP = "timestamp"

# consumer profile table
N_PURCHASES = "n_purchases"

# the ranker's statistics tables (spark_jobs.lib.stats) under the feature data folder, their columns
PRODUCT_STATS_TABLE = "product_stats.parquet"
CATEGORY_STATS_TABLE = "category_stats.parquet"
CONSUMER_STATS_TABLE = "consumer_stats.parquet"
CATEGORY_ID = "category"  # key of the category stats (the catalog's category path), the category entity's join key
PRODUCT_IMPRESSIONS = "product_impressions"
PRODUCT_CLICKS = "product_clicks"
PRODUCT_CONVERSIONS = "product_conversions"
PRODUCT_CTR = "product_ctr"
PRODUCT_CVR = "product_cvr"
CATEGORY_IMPRESSIONS = "category_impressions"
CATEGORY_CTR = "category_ctr"
CATEGORY_CVR = "category_cvr"
CONSUMER_ORDERS = "consumer_orders"
CONSUMER_CTR = "consumer_ctr"
CONSUMER_DAYS_SINCE_LAST_ORDER = "consumer_days_since_last_order"

# internal columns of the jobs
ROW_OK = "_ok"  # validation: True for an accepted row, False for a reject
PID_KEY = "_pid_key"  # normalised product id, the shuffle key of validation

# table layout under an output folder; names starting with "_" are invisible to parquet readers
REJECTS_DIR = "_rejects"
STAGING_DIR = "_staging"
TRASH_DIR = "_trash"
RUNS_DIR = "_runs"
JOURNAL = "_commit.json"
LOCK = "_writer.lock"  # flock()ed by the one job writing the table (never deleted)

# live model versions of a feature data folder (spark_jobs.lib.versions)
ENV_MODEL_VERSIONS = "DASHCLIP_MODEL_VERSIONS"  # comma list of live model versions
_SLUG = re.compile(r"[^0-9A-Za-z_]+")


def version_slug(model_version: str) -> str:
    """A model version as it appears in Feast object names ('2025-01-v1' -> '2025_01_v1')."""
    slug = _SLUG.sub("_", str(model_version)).strip("_")
    if not slug:
        raise ValueError(f"model_version {model_version!r} has no usable characters for a view name")
    return slug
