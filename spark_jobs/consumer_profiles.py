"""Consumer embeddings: the mean product embedding of each consumer's purchases in a trailing window.

    spark-submit spark_jobs/consumer_profiles.py --purchases PATH --embeddings DIR --out DIR \
        [--window-days DAYS] [--as-of 2024-06-30T00:00:00Z ...]
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the driver finds spark_jobs in a checkout

from spark_jobs.lib.cli import profiles_main

if __name__ == "__main__":
    sys.exit(profiles_main())
