"""What the feature repo's declarations (`feature_repo/repo.py`) need besides Feast: the data folder,
the batch source of a parquet table, the stats TTL.

The declarations themselves are plain Feast objects written out in `feature_repo/repo.py` (shipped
in the package as `features/repo_template`; copied by `python -m features.repo init DIR`), the one
place that says which views exist and which features each holds; the online reader
(`features.online`) and the offline frames (`features.offline`) read them back from the registry.
Programs load them for a data folder with `features.repo.declarations` / `open_repo_store`.

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
(`ranker__<v>`), so two versions can be live side by side while the ranker switches; the live
versions are listed in `<data>/model_versions.json` (`spark_jobs.lib.versions`).
"""

from __future__ import annotations

import os
from datetime import timedelta
from pathlib import Path

from feast import FileSource

from dashclip.columns import EVENT_TIMESTAMP
from features import columns as C

STATS_TTL = timedelta(days=30)  # a stats row older than this is treated as missing offline
EMBEDDING_TTL = timedelta(0)  # an embedding stays valid until a newer row replaces it


def default_data_dir(repo_dir: Path) -> Path:
    """`$DASHCLIP_FEATURE_DATA`, else `data/` in the repo folder."""
    return Path(os.environ.get(C.ENV_DATA_DIR) or Path(repo_dir) / "data").resolve()


def parquet_source(name: str, path: Path):
    """FileSource of a parquet table; SparkSource when `$DASHCLIP_FEAST_SOURCES=spark`."""
    if os.environ.get(C.ENV_SOURCES, "file").strip().lower() == "spark":
        from feast.infra.offline_stores.contrib.spark_offline_store.spark_source import SparkSource

        return SparkSource(name=name, path=str(path), file_format="parquet", timestamp_field=EVENT_TIMESTAMP)
    return FileSource(name=name, path=str(path), timestamp_field=EVENT_TIMESTAMP)
