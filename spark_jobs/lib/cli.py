"""Command lines of the five jobs: parse, validate the config once, start Spark, run, print.

Parsing needs only the standard library (``--help`` answers before pandas, pyarrow or Spark load);
errors are one line and exit status 2 (``--debug``: the traceback), a table locked by another
writer exits 75 so a scheduler can retry.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from dashclip.cli import CliError, configure_logging, parser, run_main

EXIT_LOCKED = 75  # EX_TEMPFAIL: the table is being written by another job
RENAMED = {"--ingest-config": "--config"}  # older spellings, still accepted


def _spark_args(ap: argparse.ArgumentParser) -> None:
    ap.add_argument("--master", help="overrides spark-submit's --master (e.g. local[2])")
    ap.add_argument("--conf", action="append", default=[], metavar="KEY=VALUE", help="extra Spark conf (repeatable)")
    ap.add_argument("--report", help="also write the run report (a JSON file) here")
    ap.add_argument("--lock-wait", type=float, default=0.0, metavar="SECONDS",
                    help="wait this long for another job writing the same table (0: refuse at once)")


def _inference_args(ap: argparse.ArgumentParser) -> None:
    ap.add_argument("--checkpoint", required=True, help="DashCLIP checkpoint folder (readable by executors)")
    ap.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N")
    ap.add_argument("--batch-size", type=int, default=64, help="rows per forward pass on CPU")
    ap.add_argument("--gpu-batch-size", type=int, default=256, help="rows per forward pass on a GPU")
    ap.add_argument("--threads", type=int, help="torch threads per CPU task (default: spark.task.cpus)")
    ap.add_argument("--partitions", type=int, help="embedding tasks (default: Spark's default parallelism)")
    ap.add_argument("--full", action="store_true", help="re-embed every row (ignore the incremental cache)")
    ap.add_argument("--revalidate", action="store_true",
                    help="validate every row even when the input fingerprint equals the committed run's")


def _valid_from_arg(ap: argparse.ArgumentParser) -> None:
    ap.add_argument("--valid-from", help="time the rows hold from, ISO 8601 (UTC if no zone): new rows get it, committed "
                                         "rows stamped later too (a log that starts before this run); default: the run time")


def _inference(a):
    from spark_jobs.lib.config import InferenceConfig

    amp = {"auto": None, "bf16": True, "fp32": False}[getattr(a, "precision", "auto")]
    return InferenceConfig(checkpoint=a.checkpoint, device=a.device, batch_size=a.batch_size,
                           gpu_batch_size=a.gpu_batch_size, threads=a.threads, partitions=a.partitions, amp=amp)


def _require_local(path: str, flag: str) -> None:
    """A local input that does not exist is named before Spark starts (a URI is Spark's to resolve)."""
    if "://" not in path and not Path(path).exists():
        raise CliError(f"{flag} {path}: no such file or folder")


def _run(app: str, a, job) -> int:
    from spark_jobs.lib.session import get_spark
    from spark_jobs.lib.table import TableError, TableLocked

    configure_logging("INFO", "%(levelname)s %(name)s: %(message)s")
    t0 = time.perf_counter()
    conf = dict(kv.split("=", 1) for kv in a.conf)
    spark = get_spark(app, a.master, conf)
    spark.sparkContext.setLogLevel("WARN")
    startup = time.perf_counter() - t0
    try:
        report = job(spark)
    except TableLocked as e:  # another job is writing the table: a scheduler may retry later
        if a.debug:
            raise
        print(f"error: {e}", file=sys.stderr)
        return EXIT_LOCKED
    except TableError as e:  # a table that is not ours or is damaged: the user's to fix
        raise CliError(str(e)) from e
    finally:
        spark.stop()
    report["seconds"]["spark_startup"] = round(startup, 3)
    if a.report:
        with open(a.report, "w") as f:
            json.dump(report, f, indent=2, default=str)
    counts = {k: v for k, v in report.items() if k.startswith("rows_")}
    version = f"  model_version: {report['model_version']}" if "model_version" in report else ""
    print(f"{app}: {counts}{version}  seconds: {report['seconds']}")
    return 0


def catalog_parser() -> argparse.ArgumentParser:
    ap = parser("spark-submit spark_jobs/embed_catalog.py",
                "Embed a catalog with the DashCLIP product tower into the product embedding table.")
    ap.add_argument("--catalog", required=True, help="catalog (csv/tsv/parquet), local path or Hadoop URI")
    ap.add_argument("--out", required=True, help="output folder: the product embedding table (local)")
    ap.add_argument("--image-root", help="folder images resolve against and must lie in (default: the catalog's folder)")
    _valid_from_arg(ap)
    ap.add_argument("--config", help="JSON file of IngestConfig fields (validation limits, image root rules)")
    _inference_args(ap)
    _spark_args(ap)
    return ap


def _catalog_job(a) -> int:
    from dashclip.catalog import IngestConfig
    from dashclip.cli import load_config
    from spark_jobs.lib import products
    from spark_jobs.lib.config import CatalogJobConfig

    _require_local(a.catalog, "--catalog")
    ingest = load_config(IngestConfig, a.config)
    cfg = CatalogJobConfig(catalog=a.catalog, out=a.out, image_root=a.image_root, full=a.full, revalidate=a.revalidate,
                           lock_wait_s=a.lock_wait, valid_from=a.valid_from, inference=_inference(a), ingest=ingest)
    return _run("embed_catalog", a, lambda spark: products.run(spark, cfg))


def catalog_main(argv: list[str] | None = None) -> int:
    return run_main(catalog_parser(), _catalog_job, argv, RENAMED)


def queries_parser() -> argparse.ArgumentParser:
    ap = parser("spark-submit spark_jobs/embed_queries.py",
                "Embed a query table (query_id, query) with the DashCLIP query tower.")
    ap.add_argument("--queries", required=True, help="query table (query_id, query), local path or Hadoop URI")
    ap.add_argument("--out", required=True, help="output folder: the query embedding table (local)")
    _valid_from_arg(ap)
    _inference_args(ap)
    _spark_args(ap)
    return ap


def _queries_job(a) -> int:
    from spark_jobs.lib import queries
    from spark_jobs.lib.config import QueryJobConfig

    _require_local(a.queries, "--queries")
    cfg = QueryJobConfig(queries=a.queries, out=a.out, full=a.full, revalidate=a.revalidate, lock_wait_s=a.lock_wait,
                         valid_from=a.valid_from, inference=_inference(a))
    return _run("embed_queries", a, lambda spark: queries.run(spark, cfg))


def queries_main(argv: list[str] | None = None) -> int:
    return run_main(queries_parser(), _queries_job, argv)


def labels_parser() -> argparse.ArgumentParser:
    ap = parser("spark-submit spark_jobs/label_pairs.py",
                "Score query-product pairs with a saved stage-2 teacher into the label table.")
    ap.add_argument("--pairs", required=True, help="pairs (query_id, query, product_id, title, ...), local path or Hadoop URI")
    ap.add_argument("--out", required=True, help="output folder: the label table (local)")
    _inference_args(ap)
    ap.add_argument("--precision", choices=("auto", "bf16", "fp32"), default="auto",
                    help="auto/bf16: bfloat16 autocast where the device does it fast (as stage 2 labels), else fp32")
    _spark_args(ap)
    return ap


def _labels_job(a) -> int:
    from spark_jobs.lib import labels
    from spark_jobs.lib.config import LabelJobConfig

    _require_local(a.pairs, "--pairs")
    cfg = LabelJobConfig(pairs=a.pairs, out=a.out, full=a.full, revalidate=a.revalidate, lock_wait_s=a.lock_wait,
                         inference=_inference(a))
    return _run("label_pairs", a, lambda spark: labels.run(spark, cfg))


def labels_main(argv: list[str] | None = None) -> int:
    return run_main(labels_parser(), _labels_job, argv)


def profiles_parser() -> argparse.ArgumentParser:
    ap = parser("spark-submit spark_jobs/consumer_profiles.py",
                "Consumer embeddings: the mean product embedding of each consumer's purchases in a trailing window.")
    ap.add_argument("--purchases", required=True, help="consumer_id, product_id, timestamp (csv or parquet)")
    ap.add_argument("--embeddings", required=True, help="product embedding table folder (embed_catalog's --out)")
    ap.add_argument("--out", required=True, help="output folder: the consumer profile table (local)")
    ap.add_argument("--model-version", help="default: the only model version in --embeddings")
    ap.add_argument("--window-days", type=float,
                    help="trailing purchase window in days (default: spark_jobs.lib.consumer_profile.WINDOW_DAYS)")
    ap.add_argument("--as-of", nargs="*", default=[], help="snapshot times, ISO 8601 (UTC if no zone); default now")
    _spark_args(ap)
    return ap


def _profiles_job(a) -> int:
    from spark_jobs.lib import profiles
    from spark_jobs.lib.config import ProfileJobConfig

    _require_local(a.purchases, "--purchases")
    _require_local(a.embeddings, "--embeddings")
    window = {} if a.window_days is None else {"window_days": a.window_days}
    cfg = ProfileJobConfig(purchases=a.purchases, embeddings=a.embeddings, out=a.out, model_version=a.model_version,
                           as_of=a.as_of, lock_wait_s=a.lock_wait, **window)
    return _run("consumer_profiles", a, lambda spark: profiles.run(spark, cfg))


def profiles_main(argv: list[str] | None = None) -> int:
    return run_main(profiles_parser(), _profiles_job, argv)


def stats_parser() -> argparse.ArgumentParser:
    ap = parser("spark-submit spark_jobs/feature_stats.py",
                "The ranker's statistics tables (product, category, consumer) from an event-log folder.")
    ap.add_argument("--logs", required=True, help="event-log folder: impressions, clicks, conversions, purchases (parquet)")
    ap.add_argument("--out", required=True, help="output folder: the feature data folder (the three stats files)")
    ap.add_argument("--start", required=True, metavar="TIME", help="first logged day, ISO 8601 (UTC if no zone)")
    ap.add_argument("--days", required=True, type=int, metavar="N", help="logged days from --start")
    ap.add_argument("--window-days", type=float,
                    help="consumer order-count window in days (default: spark_jobs.lib.consumer_profile.WINDOW_DAYS)")
    _spark_args(ap)
    return ap


def _stats_job(a) -> int:
    from spark_jobs.lib import stats_job
    from spark_jobs.lib.config import StatsJobConfig

    _require_local(a.logs, "--logs")
    window = {} if a.window_days is None else {"window_days": a.window_days}
    cfg = StatsJobConfig(logs=a.logs, out=a.out, start=a.start, days=a.days, **window)
    return _run("feature_stats", a, lambda spark: stats_job.run(spark, cfg))


def stats_main(argv: list[str] | None = None) -> int:
    return run_main(stats_parser(), _stats_job, argv)
