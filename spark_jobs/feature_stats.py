"""The ranker's statistics tables from an event-log folder (the product, category and consumer stats).

    spark-submit spark_jobs/feature_stats.py --logs DIR --out DATA_DIR --start 2025-03-01 --days 28 \
        [--window-days DAYS]
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the driver finds spark_jobs in a checkout

from spark_jobs.lib.cli import stats_main

if __name__ == "__main__":
    sys.exit(stats_main())
