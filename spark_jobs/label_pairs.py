"""Label query-product pairs with a stage-2 teacher into a label table.

    spark-submit spark_jobs/label_pairs.py --checkpoint TEACHER --pairs PATH --out DIR

TEACHER is a stage-2 run's ``OUT/teacher`` folder; PATH holds query_id, query, product_id and the
product's catalog text columns (a stage-2 run writes its own as ``OUT/pairs.parquet``).
Output: ``OUT/model_version=TEACHER_VERSION/`` parquet (query_id, query, product_id, label,
content_hash, event_timestamp), ``OUT/_rejects/...`` and a run report in ``OUT/_runs/``.
See docs/gpu.md (labelling on a cluster).
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the driver finds spark_jobs in a checkout

from spark_jobs.lib.cli import labels_main

if __name__ == "__main__":
    sys.exit(labels_main())
