"""Job configurations, validated once (pydantic) and saved with every run report."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from dashclip.catalog import IngestConfig
from spark_jobs.lib.consumer_profile import WINDOW_DAYS


class InferenceConfig(BaseModel):
    """How the workers run a tower: device, batch sizes, threads, precision."""

    model_config = ConfigDict(extra="forbid")

    checkpoint: str = Field(description="DashCLIP checkpoint folder, readable by every executor")
    device: str = Field("auto", description="auto: the GPU Spark assigned to the task, else cuda:0 if any, else cpu")
    batch_size: int = Field(64, gt=0, description="rows per forward pass on CPU")
    gpu_batch_size: int = Field(256, gt=0, description="rows per forward pass on a GPU")
    threads: int | None = Field(None, gt=0, description="torch threads per CPU task; default spark.task.cpus")
    amp: bool | None = Field(None, description="bf16 autocast; default on for CUDA, off on CPU")
    partitions: int | None = Field(None, gt=0, description="embedding tasks; default the default parallelism")
    rows_per_arrow_batch: int = Field(1024, gt=0, description="rows handed to a worker at a time")


class CatalogJobConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    catalog: str = Field(description="catalog file (csv, tsv or parquet): a local path or a Hadoop-compatible URI")
    out: str = Field(description="product embedding table folder (local or mounted path)")
    image_root: str | None = Field(None, description="folder image paths resolve against; default the catalog's folder")
    full: bool = Field(False, description="re-embed every row even when content hash and model version match")
    revalidate: bool = Field(False, description="validate and join every row even when the input fingerprint is unchanged")
    lock_wait_s: float = Field(0.0, ge=0, description="how long to wait for another job writing the same table")
    valid_from: str | None = Field(None, description="time the rows hold from (ISO, UTC if no zone; their event_timestamp): "
                                                 "new rows get it, committed rows stamped later too; default the run time")
    inference: InferenceConfig
    ingest: IngestConfig = Field(default_factory=IngestConfig)


class QueryJobConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    queries: str = Field(description="query table (query_id, query; csv or parquet), local path or URI")
    out: str = Field(description="query embedding table folder")
    full: bool = False
    revalidate: bool = False
    lock_wait_s: float = Field(0.0, ge=0, description="how long to wait for another job writing the same table")
    valid_from: str | None = Field(None, description="time the rows hold from (ISO, UTC if no zone; their event_timestamp): "
                                                 "new rows get it, committed rows stamped later too; default the run time")
    inference: InferenceConfig


class LabelJobConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    pairs: str = Field(description="pairs to label (query_id, query, product_id and the product's catalog text "
                                   "columns; csv or parquet), local path or URI")
    out: str = Field(description="label table folder")
    full: bool = Field(False, description="label every pair again, ignoring labels the table holds")
    revalidate: bool = Field(False, description="validate and join every row even when the input fingerprint is unchanged")
    lock_wait_s: float = Field(0.0, ge=0, description="how long to wait for another job writing the same table")
    inference: InferenceConfig = Field(description="checkpoint: a teacher folder (a stage-2 run's OUT/teacher); "
                                                   "amp: bf16 autocast where fast, default on as in stage 2")


class ProfileJobConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    purchases: str = Field(description="purchase table (consumer_id, product_id, timestamp; csv or parquet)")
    embeddings: str = Field(description="product embedding table folder written by embed_catalog")
    out: str = Field(description="consumer profile table folder")
    model_version: str | None = Field(None, description="product embeddings to use; default the only one present")
    window_days: float = Field(WINDOW_DAYS, gt=0, description="trailing window in days (the profile definition's)")
    as_of: list[str] = Field(default_factory=list, description="snapshot times (ISO, UTC); default now")
    lock_wait_s: float = Field(0.0, ge=0, description="how long to wait for another job writing the same table")


class StatsJobConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    logs: str = Field(description="event-log folder (dashclip.events: impressions, clicks, conversions, purchases parquet)")
    out: str = Field(description="feature data folder: product_stats, category_stats and consumer_stats .parquet go here")
    start: str = Field(description="first logged day, ISO (UTC if no zone); rows are stamped at the end of each day")
    days: int = Field(gt=0, description="logged days from start")
    window_days: float = Field(WINDOW_DAYS, gt=0, description="trailing window of the consumer order counts, in days")
