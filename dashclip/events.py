"""The ads event-log schema: tables and column names, defined once, below every producer and reader.

One folder of parquet files, one per table: the traffic simulator (`ranking.simulator`) writes
them, a user's own logs follow them (`dashclip.inputs` checks them), and the batch jobs that
turn them into feature tables (`spark_jobs.lib.stats`, `spark_jobs.lib.consumer_profile`) read
them. Catalog and embedding columns (product_id, query_id, category, event_timestamp) are
`dashclip.columns`.

- ``requests``: request_id, event_timestamp, day, consumer_id, query_id[, query, explored]
- ``candidates``: every ad a request could have shown (request columns + product_id, category,
  bid, legacy_score, legacy_rank, slot (-1: not shown), propensity)
- ``impressions``: the shown candidates, with clicked / converted flags
- ``clicks``, ``conversions``: request_id, consumer_id, product_id, slot, event_timestamp
- ``purchases``: consumer_id, product_id, event_timestamp, source (organic | ad)
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the names import nothing heavy (command lines answer --help with them)
    import pandas as pd

CONSUMER_ID = "consumer_id"
REQUEST_ID = "request_id"  # same name as features.offline.REQUEST_ID: similarity features group by it
DAY = "day"  # 0-based day of the logged period
SLOT = "slot"  # 0-based ad slot (position) on the page; -1 for a candidate that was not shown
LEGACY_RANK = "legacy_rank"  # rank of the candidate under the logging policy's deterministic ranker
LEGACY_SCORE = "legacy_score"
BID = "bid"  # advertiser's cost-per-click bid
PROPENSITY = "propensity"  # P(logging policy puts this product in this slot | request)
EXPLORED = "explored"  # the request's slate came from the uniform-random branch of the policy
CLICKED = "clicked"
CONVERTED = "converted"
PURCHASE_SOURCE = "source"  # organic | ad

REQUESTS_TABLE = "requests.parquet"
CANDIDATES_TABLE = "candidates.parquet"
IMPRESSIONS_TABLE = "impressions.parquet"
CLICKS_TABLE = "clicks.parquet"
CONVERSIONS_TABLE = "conversions.parquet"
PURCHASES_TABLE = "purchases.parquet"


@dataclass
class EventLogs:
    """The six log tables in memory; `write` / `read` use one parquet file each (names above)."""

    requests: pd.DataFrame
    candidates: pd.DataFrame
    impressions: pd.DataFrame
    clicks: pd.DataFrame
    conversions: pd.DataFrame
    purchases: pd.DataFrame

    def write(self, out_dir: str | Path) -> Path:
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        for f in fields(self):  # microsecond times, as Spark reads them (refused if that would truncate one)
            getattr(self, f.name).to_parquet(out / table_file(f.name), index=False, coerce_timestamps="us",
                                             allow_truncated_timestamps=False)
        return out

    @classmethod
    def read(cls, out_dir: str | Path) -> "EventLogs":
        import pandas as pd

        out = Path(out_dir)
        return cls(**{f.name: pd.read_parquet(out / table_file(f.name)) for f in fields(cls)})


def table_file(name: str) -> str:
    """'impressions' -> 'impressions.parquet' (the file of one log table)."""
    return f"{name}.parquet"
