"""Embed a query table (query_id, query) with the DashCLIP query tower.

    spark-submit spark_jobs/embed_queries.py --checkpoint DIR --queries PATH --out DIR
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the driver finds spark_jobs in a checkout

from spark_jobs.lib.cli import queries_main

if __name__ == "__main__":
    sys.exit(queries_main())
