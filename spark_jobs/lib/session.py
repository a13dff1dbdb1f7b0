"""The SparkSession the jobs run in: UTC, parquet timestamps Feast reads, Arrow on."""

from __future__ import annotations

import os
import sys

from pyspark.sql import SparkSession

DEFAULTS = {
    "spark.sql.session.timeZone": "UTC",
    # INT96 is Spark's default; Feast/pyarrow want timestamp[us, tz=UTC]
    "spark.sql.parquet.outputTimestampType": "TIMESTAMP_MICROS",
    "spark.sql.execution.arrow.pyspark.enabled": "true",
    "spark.sql.adaptive.enabled": "true",
    "spark.python.worker.reuse": "true",
    "spark.log.level": "WARN",  # keeps the model loaded between tasks
}


def get_spark(app: str, master: str | None = None, conf: dict[str, str] | None = None) -> SparkSession:
    """Session for a job; ``master`` and ``conf`` override what spark-submit passed."""
    # workers launched by a JVM started from this process run this interpreter (spark-submit
    # users set PYSPARK_PYTHON themselves, see README)
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    b = SparkSession.builder.appName(app)
    if master:
        b = b.master(master)
    for k, v in {**DEFAULTS, **(conf or {})}.items():
        b = b.config(k, v)
    return b.getOrCreate()
