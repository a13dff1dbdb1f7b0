"""Embed a catalog with the DashCLIP product tower into the product embedding table.

    spark-submit spark_jobs/embed_catalog.py --checkpoint DIR --catalog PATH --out DIR

Output: ``OUT/model_version=V/`` parquet (product_id, embedding, has_image, content_hash,
event_timestamp), ``OUT/_rejects/model_version=V/`` and a run report in ``OUT/_runs/``.
See README (Spark batch inference) for cluster and GPU submission.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the driver finds spark_jobs in a checkout

from spark_jobs.lib.cli import catalog_main

if __name__ == "__main__":
    sys.exit(catalog_main())
