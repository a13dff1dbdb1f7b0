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
path; ``--revalidate`` or ``--full`` skip it. The shortcut also requires the committed table to
match the manifest its run recorded at commit (``table.verify``): a damaged table (a part file
lost or changed) is rebuilt in full by a plain rerun, reusing nothing from it.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from dashclip import columns as C
from dashclip.image_source import open_regular
from spark_jobs.lib import table
from spark_jobs.lib.table import has_rows, partition

log = logging.getLogger(__name__)

_OLD = "_old_"  # prefix of the committed values while joined to this run's rows
_CHUNK = 1 << 20


def _hash_file(h: "hashlib._Hash", path: str, max_bytes: int | None) -> None:
    """The file's bytes, or a marker when it is not read: missing, not a regular file, over ``max_bytes``."""
    try:
        fd, st = open_regular(path)
    except FileNotFoundError:
        h.update(b"<missing>")
        return
    except OSError as e:  # not a regular file, a symlink loop, unreadable: validation rejects the row
        h.update(f"<{getattr(e, 'reason', None) or e.strerror}>".encode())
        return
    with os.fdopen(fd, "rb") as f:
        if max_bytes is not None and st.st_size > max_bytes:
            h.update(f"<{st.st_size} bytes>".encode())
            return
        while chunk := f.read(_CHUNK):
            h.update(chunk)


def hash_files(h: "hashlib._Hash", paths: list[str | Path], max_bytes: int | None = None,
               readable: Callable[[str], bool] | None = None) -> None:
    """Feed each path and its bytes to ``h``. A path ``readable`` refuses (outside the image root) is
    never opened, and no file is read past ``max_bytes`` or when it is not a regular file."""
    for p in paths:
        h.update(str(p).encode() + b"\0")
        if readable is not None and not readable(str(p)):
            h.update(b"<not read>")
        else:
            _hash_file(h, str(p), max_bytes)
        h.update(b"\0")


def fingerprint(inputs: list[str | Path], settings: dict, images: list[str] = (), max_bytes: int | None = None,
                readable: Callable[[str], bool] | None = None) -> str:
    """Hash of the settings (JSON) that determine the output table, the input files' bytes and the
    images' bytes (read under ``max_bytes`` and ``readable``, as validation reads them)."""
    h = hashlib.sha256(json.dumps(settings, sort_keys=True, default=str).encode())
    hash_files(h, inputs)
    hash_files(h, list(images), max_bytes, readable)
    return h.hexdigest()


@dataclass
class Committed:
    """The committed partition of a model version, as its run recorded it."""

    report: dict | None  # the report of the run that committed it; None when there is none
    damage: str | None  # how the folders differ from that run's manifest; None when they do not

    @property
    def verified(self) -> bool:
        return self.report is not None and "table" in self.report and self.damage is None


def committed(out: Path, model_version: str) -> Committed:
    """What is committed for ``model_version``, checked against the manifest recorded at its commit
    (a run committed before manifests were recorded is trusted for reuse, not for the shortcut)."""
    part = out / partition(model_version)
    run_id = table.committed_run(out, model_version)
    report = table.load_report(out, run_id) if run_id else None
    if report is None:
        return Committed(None, f"{part.name}: no run marker or run report" if has_rows(part) else None)
    damage = table.verify(out, report["table"]) if "table" in report else None
    if damage:
        log.warning("table %s: the committed partition of %s is damaged (%s); rebuilding it in full", out,
                    model_version, damage)
    return Committed(report, damage)


def end_if_unchanged(out: Path, done: Committed, fp: str | None, run_id: str, t0: float, config: dict) -> dict | None:
    """When ``fp`` equals the fingerprint recorded by the run that wrote the committed partition and
    that partition still matches its manifest, save and return this run's report (nothing to do:
    the committed table stands); else None."""
    previous = done.report
    if fp is None or not done.verified or previous.get("input_fingerprint") != fp:
        return None
    seconds = round(time.perf_counter() - t0, 3)
    report = {**{k: previous[k] for k in ("job", "model_version", "rows_in", "rows_out", "rows_rejected",
                                          "input_fingerprint", "table") if k in previous},
              "run_id": run_id, "unchanged_input": True, "unchanged_since_run": previous["run_id"],
              "rows_embedded": 0, "rows_reused": previous.get("rows_out", 0), "recovered": None,
              "seconds": {"fingerprint": seconds, "total": seconds}, "config": config}
    table.save_report(out, report)
    log.info("%s %s: input unchanged since run %s; the committed table stands", report.get("job"),
             report.get("model_version"), previous["run_id"])
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


def split_increment(accepted: DataFrame, existing: DataFrame | None, key: str, full: bool,
                    carried: tuple[str, ...] = (C.EMBEDDING,)) -> Increment:
    """Rows whose (``key``, content hash) the committed partition holds reuse its ``carried`` columns
    and ``event_timestamp``; the others are to be computed (``key`` may be the content hash itself)."""
    if existing is None or full:
        return Increment(accepted, None)
    on = list(dict.fromkeys([key, C.CONTENT_HASH]))
    kept = (*carried, C.EVENT_TIMESTAMP)
    old = existing.select(*on, *[F.col(c).alias(_OLD + c) for c in kept])
    j = accepted.join(old, on, "left")
    olds = [_OLD + c for c in kept]
    todo = j.filter(F.col(olds[0]).isNull()).drop(*olds)
    reused = j.filter(F.col(olds[0]).isNotNull())
    for c in kept:
        reused = reused.withColumn(c, F.col(_OLD + c))
    return Increment(todo, reused.drop(*olds))


def parse_time(value: str) -> datetime:
    """ISO 8601 -> aware UTC datetime (a time without a zone is taken as UTC)."""
    t = datetime.fromisoformat(value.replace("Z", "+00:00"))
    return (t if t.tzinfo else t.replace(tzinfo=timezone.utc)).astimezone(timezone.utc)


def valid_from_setting(valid_from: str | None) -> dict:
    """The valid-from time as a fingerprint setting (absent when not set, so fingerprints recorded
    before the option existed still match)."""
    return {"valid_from": valid_from} if valid_from else {}


def assemble(embedded: DataFrame | None, reused: DataFrame | None, columns: list[str], run_ts,
             valid_from: str | None = None) -> DataFrame:
    """New rows stamped with this run's time (or ``valid_from``), plus reused rows (stamped
    ``valid_from`` where theirs is later), in the table's column order."""
    parts = []
    stamp = F.lit(parse_time(valid_from) if valid_from else run_ts).cast("timestamp")
    if embedded is not None:
        parts.append(embedded.withColumn(C.EVENT_TIMESTAMP, stamp).select(*columns))
    if reused is not None:
        if valid_from:
            reused = reused.withColumn(C.EVENT_TIMESTAMP, F.least(F.col(C.EVENT_TIMESTAMP), stamp))
        parts.append(reused.select(*columns))
    out = parts[0]
    for p in parts[1:]:
        out = out.unionByName(p)
    return out


def stage_and_commit(out: Path, run_id: str, model_version: str, result: DataFrame, rejects: DataFrame | None,
                     report_fn: Callable[[], dict], before_commit: Callable[[], None] | None = None) -> dict:
    """Write the table partition (and rejects) to staging, check that staging holds the rows the
    report counts (``rows_out``, ``rows_rejected``), then commit them with their manifest.

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
    expected = {dirs[0]: report["rows_out"], **({dirs[1]: report["rows_rejected"]} if rejects is not None else {})}
    report["table"] = table.check_staged(out, run_id, expected)
    table.commit(out, run_id, dirs, report)
    return report
