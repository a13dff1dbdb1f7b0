"""Incremental embedding: reuse rows whose content hash and model version are unchanged.

Shared by the product and query jobs. The committed partition ``model_version=V`` of the output
table is the cache: a row whose (id, content_hash) is already there keeps its embedding and its
``event_timestamp`` (when that embedding was computed), so a rerun on unchanged input writes the
same table; every other row is embedded again.

Before any of that, a job may compare an *input fingerprint* (a hash of the input file's bytes,
of every local image it references, of the model version and of the job settings that change
the table) with the one recorded by the run that wrote the committed partition. Equal means the
run would rewrite the same table, so it stops there: an unchanged rerun costs the hashing (about
a second for the shipped catalog and its 10k images) instead of validating and joining every
row. Inputs that cannot be hashed cheaply on the driver (remote URIs, image URLs) never take this
path; ``--revalidate`` or ``--full`` skip it.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from dashclip import columns as C
from spark_jobs.lib import table
from spark_jobs.lib.table import has_rows, partition

log = logging.getLogger(__name__)

_OLD_EMB, _OLD_TS = "_old_embedding", "_old_event_timestamp"
_CHUNK = 1 << 20


def hash_files(h: "hashlib._Hash", paths: list[str | Path]) -> None:
    """Feed each path and its bytes (or 'missing') to ``h``."""
    for p in paths:
        h.update(str(p).encode() + b"\0")
        try:
            with open(p, "rb") as f:
                while chunk := f.read(_CHUNK):
                    h.update(chunk)
        except FileNotFoundError:
            h.update(b"<missing>")
        except IsADirectoryError:
            h.update(b"<directory>")
        h.update(b"\0")


def fingerprint(inputs: list[str | Path], settings: dict) -> str:
    """Hash of the input files' bytes and the settings (JSON) that determine the output table."""
    h = hashlib.sha256(json.dumps(settings, sort_keys=True, default=str).encode())
    hash_files(h, inputs)
    return h.hexdigest()


def _committed_report(out: Path, model_version: str) -> dict | None:
    """The report of the run that wrote the committed partition of ``model_version``."""
    run_id = table.committed_run(out, model_version)
    return table.load_report(out, run_id) if run_id else None


def end_if_unchanged(out: Path, model_version: str, fp: str | None, run_id: str, t0: float,
                     config: dict) -> dict | None:
    """When ``fp`` equals the fingerprint recorded by the run that wrote the committed partition,
    save and return this run's report (nothing to do: the committed table stands); else None."""
    previous = _committed_report(out, model_version) if fp is not None else None
    if previous is None or previous.get("input_fingerprint") != fp:
        return None
    seconds = round(time.perf_counter() - t0, 3)
    report = {**{k: previous[k] for k in ("job", "model_version", "rows_in", "rows_out", "rows_rejected",
                                          "input_fingerprint") if k in previous},
              "run_id": run_id, "unchanged_input": True, "unchanged_since_run": previous["run_id"],
              "rows_embedded": 0, "rows_reused": previous.get("rows_out", 0), "recovered": None,
              "seconds": {"fingerprint": seconds, "total": seconds}, "config": config}
    table.save_report(out, report)
    log.info("%s %s: input unchanged since run %s; the committed table stands", report.get("job"), model_version,
             previous["run_id"])
    return report


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
