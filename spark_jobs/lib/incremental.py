"""Incremental embedding: reuse rows whose content hash and model version are unchanged.

Shared by the product and query jobs. The committed partition ``model_version=V`` of the output
table is the cache: a row whose (id, content_hash) is already there keeps its embedding and its
``event_timestamp`` (when that embedding was computed), so a rerun on unchanged input writes the
same table; every other row is embedded again.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from dashclip import columns as C
from spark_jobs.lib import table
from spark_jobs.lib.table import has_rows, partition

_OLD_EMB, _OLD_TS = "_old_embedding", "_old_event_timestamp"


def existing_partition(spark: SparkSession, out: Path, model_version: str, key: str) -> DataFrame | None:
    """The committed rows of ``model_version`` (one per key), or None when there are none."""
    part = out / partition(model_version)
    if not has_rows(part):
        return None
    return spark.read.parquet(table.uri(part)).dropDuplicates([key])  # file://: not the cluster default FS


@dataclass
class Increment:
    todo: DataFrame  # accepted rows to embed
    reused: DataFrame | None  # accepted rows with their previous embedding + event_timestamp


def split_increment(accepted: DataFrame, existing: DataFrame | None, key: str, full: bool) -> Increment:
    if existing is None or full:
        return Increment(accepted, None)
    old = existing.select(key, C.CONTENT_HASH, F.col(C.EMBEDDING).alias(_OLD_EMB),
                          F.col(C.EVENT_TIMESTAMP).alias(_OLD_TS))
    j = accepted.join(old, [key, C.CONTENT_HASH], "left")
    todo = j.filter(F.col(_OLD_EMB).isNull()).drop(_OLD_EMB, _OLD_TS)
    reused = (j.filter(F.col(_OLD_EMB).isNotNull())
              .withColumn(C.EMBEDDING, F.col(_OLD_EMB)).withColumn(C.EVENT_TIMESTAMP, F.col(_OLD_TS))
              .drop(_OLD_EMB, _OLD_TS))
    return Increment(todo, reused)


def assemble(embedded: DataFrame | None, reused: DataFrame | None, columns: list[str], run_ts) -> DataFrame:
    """New rows stamped with this run's time, plus reused rows, in the table's column order."""
    parts = []
    if embedded is not None:
        parts.append(embedded.withColumn(C.EVENT_TIMESTAMP, F.lit(run_ts).cast("timestamp")).select(*columns))
    if reused is not None:
        parts.append(reused.select(*columns))
    out = parts[0]
    for p in parts[1:]:
        out = out.unionByName(p)
    return out


def stage_and_commit(out: Path, run_id: str, model_version: str, result: DataFrame, rejects: DataFrame | None,
                     report_fn: Callable[[], dict], before_commit: Callable[[], None] | None = None) -> dict:
    """Write the table partition (and rejects) to staging, then commit them together.

    ``report_fn`` is called after the writes, when accumulators and counts are final.
    """
    stage = table.staging(out, run_id)
    dirs = [table.partition(model_version)]
    result.write.parquet(table.uri(stage / dirs[0]))
    if rejects is not None:
        dirs.append(table.rejects_partition(model_version))
        rejects.coalesce(1).write.parquet(table.uri(stage / dirs[1]))
    report = report_fn()
    if before_commit is not None:
        before_commit()
    table.commit(out, run_id, dirs, report)
    return report
