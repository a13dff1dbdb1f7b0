"""Reading input tables with Spark (CSV, TSV or parquet; local paths or Hadoop-compatible URIs)."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlparse

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.types import DoubleType, FloatType, StringType, StructField, StructType

from dashclip import columns as C
from dashclip.catalog import CatalogSchemaError, canonical_header, too_many_fields


def is_local(uri: str) -> bool:
    scheme = urlparse(uri).scheme
    return scheme in ("", "file") or len(scheme) == 1


def local_dir_of(uri: str) -> str:
    """The folder of a local file given as a path or file:// URI (where catalog images resolve)."""
    if not is_local(uri):
        raise ValueError(f"catalog {uri!r} is not local: pass --image-root with the local folder its images resolve against")
    p = urlparse(uri).path if uri.startswith("file:") else uri
    return str(Path(p).resolve().parent)


def _format(uri: str) -> str:
    path = urlparse(uri).path.rstrip("/").lower()
    if path.endswith((".parquet", ".pq")):
        return "parquet"
    if path.endswith(".tsv"):
        return "tsv"
    if path.endswith((".csv", ".txt")):
        return "csv"
    raise CatalogSchemaError(f"table {uri}: unsupported extension (csv, tsv or parquet)")


N_EXTRA = 8  # fields past the header a CSV row is checked for; Spark's reader drops any further ones
_CSV = {"header": True, "multiLine": True, "escape": '"', "quote": '"', "encoding": "UTF-8", "inferSchema": False}


def _read_csv(spark: SparkSession, uri: str, sep: str, row_errors: bool) -> DataFrame:
    """A CSV with its header's columns; with ``row_errors``, plus ``C.ROW_ERROR``: the reason
    ingestion gives a row with more (non-empty) fields than the header, "" for the others."""
    # multiLine: descriptions may hold newlines; escape: pandas/RFC 4180 double the quote
    df = spark.read.options(**_CSV, sep=sep).csv(uri)
    if not row_errors or not df.columns:
        return df
    extras = [f"_extra{i}" for i in range(N_EXTRA)]
    schema = StructType([StructField(c, StringType()) for c in [*df.columns, *extras]])
    df = spark.read.schema(schema).options(**_CSV, sep=sep, enforceSchema=True).csv(uri)
    first = F.coalesce(*[F.when(F.col(e) != "", F.col(e)) for e in extras])  # empty fields read as null
    reason = F.concat(F.lit(too_many_fields(len(schema) - N_EXTRA, "")), F.substring(first, 1, 50))
    return df.withColumn(C.ROW_ERROR, F.when(first.isNotNull(), reason).otherwise(F.lit(""))).drop(*extras)


def _as_string(df: DataFrame, name: str):
    """A parquet column as a string, as ``dashclip.catalog.arrow_strings`` gives it: whole floats as
    integers (``1``, not ``1.0``), NaN as null."""
    col = F.col(name)
    if isinstance(df.schema[name].dataType, (FloatType, DoubleType)):
        whole = (F.abs(col) < 2**53) & (col % 1 == 0)
        col = F.when(F.isnan(col), F.lit(None)).when(whole, col.cast("long").cast("string")).otherwise(col.cast("string"))
    return col.cast("string")


def read_strings(spark: SparkSession, uri: str, required: tuple[str, ...], optional: tuple[str, ...] = (),
                 row_errors: bool = False) -> DataFrame:
    """All columns as strings (nulls as ''), canonical header names, optional columns added empty;
    with ``row_errors``, plus ``C.ROW_ERROR`` (see ``_read_csv``; "" for parquet).

    Headers are matched case- and space-insensitively, as ``dashclip.catalog.read_catalog`` does;
    a missing required column raises ``CatalogSchemaError`` naming it and the columns found.
    """
    fmt = _format(uri)
    if fmt == "parquet":
        df = spark.read.parquet(uri)
        df = df.select(*[_as_string(df, c).alias(c) for c in df.columns])
    else:
        df = _read_csv(spark, uri, "\t" if fmt == "tsv" else ",", row_errors)
    if not df.columns:
        raise CatalogSchemaError(f"table {uri}: empty file (no header row)")
    df = df.toDF(*[c if c == C.ROW_ERROR else canonical_header(c) for c in df.columns])
    missing = [c for c in required if c not in df.columns]
    if missing:
        raise CatalogSchemaError(f"table {uri}: missing required column(s) {missing}; found {df.columns}")
    cols = [F.coalesce(F.col(c).cast("string"), F.lit("")).alias(c) if c in df.columns else F.lit("").alias(c)
            for c in (*required, *optional)]
    if row_errors:
        cols.append(F.col(C.ROW_ERROR) if C.ROW_ERROR in df.columns else F.lit("").alias(C.ROW_ERROR))
    return df.select(*cols)


def with_source_row(df: DataFrame) -> DataFrame:
    """Adds ``source_row`` (0-based row in read order, the file order for one file).

    Computed on the JVM from per-partition counts, so rows never round-trip through Python.
    """
    if df.rdd.getNumPartitions() == 1:  # one CSV file (multiLine reads are not split): ids are row numbers
        return df.withColumn(C.SOURCE_ROW, F.monotonically_increasing_id())
    tagged = df.withColumn("_part", F.spark_partition_id()).withColumn("_mid", F.monotonically_increasing_id())
    counts = dict(tagged.groupBy("_part").count().collect())
    n_parts = max(counts, default=-1) + 1
    offsets, acc = [], 0
    for p in range(n_parts):
        offsets.append(acc)
        acc += counts.get(p, 0)
    if n_parts == 0:
        return df.withColumn(C.SOURCE_ROW, F.lit(0).cast("long")).limit(0)
    offset = F.element_at(F.array(*[F.lit(o).cast("long") for o in offsets]), F.col("_part") + 1)
    # monotonically_increasing_id = partition id << 33 | row within partition
    row = F.col("_mid") - F.shiftleft(F.col("_part").cast("long"), 33) + offset
    return tagged.withColumn(C.SOURCE_ROW, row).drop("_part", "_mid")
