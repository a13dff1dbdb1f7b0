"""Catalog ingestion: read a catalog in the canonical format, validate every row, write clean + rejects.

    python -m dashclip.catalog ingest --catalog PATH --out DIR

writes ``DIR/products.parquet`` (clean rows, normalised text, verified images, splits) and
``DIR/rejects.parquet`` (one row per rejected input row: source row, product id, field, value,
reason). A bad row never stops the run and is never silently dropped.

Rules (also in README):
- ``product_id`` must be non-empty; the first *accepted* row of an id wins, later ones are
  rejected as duplicates naming the row that won.
- An image that is referenced and present but undecodable, truncated, too small or too large is
  rejected (field ``image``). A referenced file that does not exist keeps the product as
  text-only (``image_status = missing``); an empty image field gives ``image_status = none``; a
  URL gives ``remote`` (fetched only when ``fetch_remote_images`` is set).
- Text is NFC-normalised, control characters removed, whitespace collapsed; over-long text is
  truncated and flagged (``text_truncated``), not rejected.
- A row with neither usable text (title or description) nor a usable image is rejected.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import logging
import os
import re
import sys
import time
import unicodedata
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
from PIL import Image, UnidentifiedImageError
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from tqdm import tqdm

from dashclip import columns as C
from dashclip.io import write_parquet_atomic

log = logging.getLogger(__name__)

TEXT_TRUNCATED = "text_truncated"
SPLITS = ("train", "val", "test")
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\u200b\ufeff]")
_WS = re.compile(r"\s+")


class CatalogSchemaError(ValueError):
    """The catalog file cannot be read as the canonical format (e.g. a required column is missing)."""


class IngestConfig(BaseModel):
    """Validation limits for ingestion; saved beside the outputs."""

    model_config = ConfigDict(extra="forbid")

    max_title_chars: int = Field(300, gt=0)
    max_description_chars: int = Field(4000, gt=0)
    min_image_side: int = Field(16, gt=0, description="smaller images are rejected")
    max_image_pixels: int = Field(40_000_000, gt=0, description="larger images are rejected")
    fetch_remote_images: bool = False
    remote_timeout_s: float = 5.0
    val_fraction: float = Field(0.1, ge=0, lt=1)
    test_fraction: float = Field(0.1, ge=0, lt=1)
    split_salt: str = "dashclip-split-v1"
    workers: int = Field(4, ge=1)


class CatalogRow(BaseModel):
    """One catalog row after text normalisation (images are checked separately)."""

    model_config = ConfigDict(extra="ignore", str_strip_whitespace=True)

    product_id: str = Field(min_length=1)
    title: str = ""
    description: str = ""
    category: str = ""
    image: str = ""
    color: str = ""
    gender: str = ""
    usage: str = ""
    source: str = ""

    @field_validator("product_id")
    @classmethod
    def _id_printable(cls, v: str) -> str:
        v = normalize_text(v)
        if not v:
            raise ValueError("empty product_id")
        return v

    @field_validator("category")
    @classmethod
    def _category_path(cls, v: str) -> str:
        return normalize_category(v)


def normalize_text(value: object) -> str:
    """NFC, no control characters, single spaces."""
    if value is None or (isinstance(value, float) and pd.isna(value)):
        return ""
    s = unicodedata.normalize("NFC", str(value))
    s = _CONTROL.sub(" ", s)
    return _WS.sub(" ", s).strip()


def normalize_category(value: object) -> str:
    """``a>b >  c`` -> ``a > b > c``; empty segments dropped."""
    parts = [normalize_text(p) for p in normalize_text(value).split(">")]
    return " > ".join(p for p in parts if p)


def canonical_header(name: str) -> str:
    """A catalog column name in canonical form (lower case, spaces and hyphens as underscores);
    the pandas ingestion and the Spark reader both map headers with it."""
    return re.sub(r"[\s\-]+", "_", str(name).strip().lower())


def read_catalog(path: str | os.PathLike) -> pd.DataFrame:
    """Read a CSV or parquet catalog as strings with canonical column names.

    Header names are matched case- and space-insensitively; a missing required column raises
    CatalogSchemaError naming it and the columns that were found.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"catalog not found: {path}")
    if path.suffix.lower() in (".parquet", ".pq"):
        df = pd.read_parquet(path)
    elif path.suffix.lower() in (".csv", ".tsv", ".txt"):
        sep = "\t" if path.suffix.lower() == ".tsv" else ","
        df = pd.read_csv(path, dtype=str, keep_default_na=False, sep=sep, encoding="utf-8")
    else:
        raise CatalogSchemaError(f"catalog {path}: unsupported extension {path.suffix!r} (csv, tsv or parquet)")
    rename = {c: canonical_header(c) for c in df.columns}
    df = df.rename(columns=rename)
    missing = [c for c in C.CATALOG_REQUIRED if c not in df.columns]
    if missing:
        raise CatalogSchemaError(
            f"catalog {path}: missing required column(s) {missing}; found {list(df.columns)}; "
            f"expected {list(C.CATALOG_COLUMNS)}"
        )
    for col in C.CATALOG_OPTIONAL:
        if col not in df.columns:
            df[col] = ""
    extra = [c for c in df.columns if c not in C.CATALOG_COLUMNS]
    if extra:
        log.info("catalog %s: ignoring extra columns %s", path, extra)
    df = df[list(C.CATALOG_COLUMNS)].astype(object).where(df[list(C.CATALOG_COLUMNS)].notna(), "")
    return df.astype(str).reset_index(drop=True)


@dataclass
class ImageCheck:
    status: str  # ok | missing | none | remote | bad
    path: str | None = None
    width: int = 0
    height: int = 0
    sha256: str = ""
    error: str = ""


def is_url(ref: str) -> bool:
    return bool(re.match(r"^[a-z][a-z0-9+.-]*://", ref, flags=re.I)) and not ref.lower().startswith("file://")


def resolve_image(ref: str, base_dir: Path) -> str | None:
    """Image reference -> absolute path (or the URL itself); None when the field is empty."""
    ref = ref.strip()
    if not ref:
        return None
    if is_url(ref):
        return ref
    if ref.lower().startswith("file://"):
        ref = ref[7:]
    p = Path(ref)
    return str(p if p.is_absolute() else (base_dir / p).resolve())


def read_image_bytes(path: str, cfg: IngestConfig) -> bytes | None:
    """Bytes of an image, None when it does not exist (or is remote and not fetched)."""
    if is_url(path):
        if not cfg.fetch_remote_images:
            return None
        with urllib.request.urlopen(path, timeout=cfg.remote_timeout_s) as r:  # noqa: S310 - user URL
            return r.read()
    try:
        with open(path, "rb") as f:
            return f.read()
    except FileNotFoundError:
        return None


def check_image(ref: str, base_dir: Path, cfg: IngestConfig) -> ImageCheck:
    """Decode and verify one image fully (catches corrupt and truncated files)."""
    path = resolve_image(ref, base_dir)
    if path is None:
        return ImageCheck("none")
    try:
        data = read_image_bytes(path, cfg)
    except OSError as e:  # unreadable file or failed fetch
        if is_url(path):
            return ImageCheck("missing", path, error=f"fetch failed: {e}")
        return ImageCheck("bad", path, error=f"unreadable: {e}")
    if data is None:
        return ImageCheck("remote" if is_url(path) else "missing", path)
    if not data:
        return ImageCheck("bad", path, error="empty file")
    try:
        with Image.open(io.BytesIO(data)) as im:
            w, h = im.size
            if w * h > cfg.max_image_pixels:
                return ImageCheck("bad", path, w, h, error=f"too large: {w}x{h} > {cfg.max_image_pixels} pixels")
            im.load()  # full decode: raises on truncated data
            im.convert("RGB")
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, Image.DecompressionBombError) as e:
        return ImageCheck("bad", path, error=f"not a decodable image: {e}")
    if min(w, h) < cfg.min_image_side:
        return ImageCheck("bad", path, w, h, error=f"too small: {w}x{h} < {cfg.min_image_side}px side")
    return ImageCheck("ok", path, w, h, sha256=hashlib.sha256(data).hexdigest())


def split_hint(row_split: str, image_ref: str) -> str | None:
    """A dataset split the row already belongs to: the `split` column, else a path segment."""
    for cand in [row_split.strip().lower()] + [seg.lower() for seg in re.split(r"[\\/]", image_ref)[:-1]]:
        if cand in ("train", "training"):
            return "train"
        if cand in ("val", "valid", "validation", "dev", "test", "testing"):
            return "heldout"
    return None


def assign_split(product_id: str, hint: str | None, cfg: IngestConfig) -> str:
    """Deterministic split from a hash of the product id, respecting dataset splits.

    Rows of a dataset's train split never land in test, and rows of its held-out split never
    land in train/val, so no photo of one dataset split reaches another of ours.
    """
    u = int(hashlib.sha1(f"{cfg.split_salt}:{product_id}".encode()).hexdigest()[:12], 16) / 16**12
    if hint == "heldout":
        return "test"
    if hint == "train":
        return "val" if u < cfg.val_fraction else "train"
    if u < cfg.test_fraction:
        return "test"
    if u < cfg.test_fraction + cfg.val_fraction:
        return "val"
    return "train"


def content_hash(row: dict, image_sha: str) -> str:
    """Hash of what the encoders see: text fields and the image bytes."""
    parts = [row[C.TITLE], row[C.DESCRIPTION], row[C.CATEGORY], row[C.COLOR], row[C.GENDER], row[C.USAGE], image_sha]
    return hashlib.sha256("\x1f".join(parts).encode()).hexdigest()


@dataclass
class IngestResult:
    products: pd.DataFrame
    rejects: pd.DataFrame
    rows_in: int
    seconds: float

    def summary(self) -> dict:
        reasons = (
            self.rejects[C.REJECT_FIELD].value_counts().to_dict() if len(self.rejects) else {}
        )
        return {
            "rows_in": self.rows_in,
            "rows_out": len(self.products),
            "rows_rejected": len(self.rejects),
            "rejected_by_field": reasons,
            "text_only": int((~self.products[C.HAS_IMAGE]).sum()) if len(self.products) else 0,
            "splits": self.products[C.SPLIT].value_counts().to_dict() if len(self.products) else {},
            "seconds": round(self.seconds, 2),
        }


def _reject(rows: list, i: int, pid: str, field: str, value: object, reason: str) -> None:
    v = "" if value is None else str(value)
    rows.append({C.SOURCE_ROW: i, C.PRODUCT_ID: pid, C.REJECT_FIELD: field,
                 C.REJECT_VALUE: v[:200], C.REJECT_REASON: reason})


def _truncate(text: str, limit: int) -> tuple[str, bool]:
    return (text[:limit].rstrip(), True) if len(text) > limit else (text, False)


def ingest_frame(raw: pd.DataFrame, base_dir: Path, cfg: IngestConfig | None = None,
                 progress: bool = True) -> IngestResult:
    """Validate a catalog frame (canonical columns, strings) whose images resolve against base_dir."""
    cfg = cfg or IngestConfig()
    t0 = time.perf_counter()
    rejects: list[dict] = []
    candidates: list[tuple[int, dict]] = []
    for i, rec in enumerate(raw.to_dict("records")):
        pid = normalize_text(rec.get(C.PRODUCT_ID, ""))
        try:
            row = CatalogRow(**{k: normalize_text(rec.get(k, "")) for k in C.CATALOG_COLUMNS if k != C.SPLIT_HINT})
        except ValidationError as e:
            err = e.errors()[0]
            field = str(err["loc"][0]) if err.get("loc") else "row"
            _reject(rejects, i, pid, field, rec.get(field, ""), err["msg"])
            continue
        d = row.model_dump()
        d[C.TITLE], t1 = _truncate(d[C.TITLE], cfg.max_title_chars)
        d[C.DESCRIPTION], t2 = _truncate(d[C.DESCRIPTION], cfg.max_description_chars)
        d[TEXT_TRUNCATED] = t1 or t2
        d[C.SPLIT_HINT] = str(rec.get(C.SPLIT_HINT, "") or "")
        candidates.append((i, d))

    with ThreadPoolExecutor(cfg.workers) as pool:  # PIL decodes outside the GIL
        checks = list(tqdm(pool.map(lambda c: check_image(c[1][C.IMAGE], base_dir, cfg), candidates),
                           total=len(candidates), desc="verify images", disable=not progress, unit="img"))

    seen: dict[str, int] = {}
    out: list[dict] = []
    for (i, d), chk in zip(candidates, checks):
        pid = d[C.PRODUCT_ID]
        if chk.status == "bad":
            _reject(rejects, i, pid, C.IMAGE, d[C.IMAGE], chk.error)
            continue
        has_text = bool(d[C.TITLE] or d[C.DESCRIPTION])
        if not has_text and chk.status != "ok":
            _reject(rejects, i, pid, C.TITLE, d[C.TITLE], "empty title and description and no usable image")
            continue
        if pid in seen:
            _reject(rejects, i, pid, C.PRODUCT_ID, pid, f"duplicate product_id (first accepted at row {seen[pid]})")
            continue
        seen[pid] = i
        hint = split_hint(d.pop(C.SPLIT_HINT), d[C.IMAGE])
        d.update({
            C.SOURCE_ROW: i,
            C.IMAGE_PATH: chk.path,
            C.IMAGE_STATUS: chk.status,
            C.HAS_IMAGE: chk.status == "ok",
            C.HAS_TEXT: has_text,
            C.IMAGE_WIDTH: chk.width,
            C.IMAGE_HEIGHT: chk.height,
            C.SPLIT: assign_split(pid, hint, cfg),
            C.CONTENT_HASH: content_hash(d, chk.sha256),
        })
        out.append(d)
    products = pd.DataFrame(out, columns=PRODUCT_COLUMNS)
    products[C.SOURCE_ROW] = products[C.SOURCE_ROW].astype("int64")
    for col in (C.HAS_IMAGE, C.HAS_TEXT, TEXT_TRUNCATED):
        products[col] = products[col].astype(bool)
    for col in (C.IMAGE_WIDTH, C.IMAGE_HEIGHT):
        products[col] = products[col].astype("int32")
    rej = pd.DataFrame(rejects, columns=REJECT_COLUMNS).sort_values(C.SOURCE_ROW, kind="stable")
    rej[C.SOURCE_ROW] = rej[C.SOURCE_ROW].astype("int64")
    return IngestResult(products, rej.reset_index(drop=True), len(raw), time.perf_counter() - t0)


PRODUCT_COLUMNS = [
    C.PRODUCT_ID, C.TITLE, C.DESCRIPTION, C.CATEGORY, C.IMAGE, C.COLOR, C.GENDER, C.USAGE, C.SOURCE,
    C.SOURCE_ROW, C.IMAGE_PATH, C.IMAGE_STATUS, C.HAS_IMAGE, C.HAS_TEXT, C.IMAGE_WIDTH, C.IMAGE_HEIGHT,
    TEXT_TRUNCATED, C.SPLIT, C.CONTENT_HASH,
]
REJECT_COLUMNS = [C.SOURCE_ROW, C.PRODUCT_ID, C.REJECT_FIELD, C.REJECT_VALUE, C.REJECT_REASON]


def ingest(catalog: str | os.PathLike, out_dir: str | os.PathLike | None = None,
           cfg: IngestConfig | None = None, progress: bool = True) -> IngestResult:
    """Ingest a catalog file; images resolve relative to the catalog's folder. Writes outputs if out_dir."""
    cfg = cfg or IngestConfig()
    catalog = Path(catalog)
    raw = read_catalog(catalog)
    res = ingest_frame(raw, catalog.resolve().parent, cfg, progress=progress)
    if out_dir is not None:
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        write_parquet_atomic(res.products, out / "products.parquet")
        write_parquet_atomic(res.rejects, out / "rejects.parquet")
        report = {"catalog": str(catalog.resolve()), **res.summary(), "config": cfg.model_dump()}
        (out / "ingest_report.json").write_text(json.dumps(report, indent=2))
    return res


# columns only ingestion writes: a parquet file holding them is an ingested products frame
INGESTED_COLUMNS = (C.IMAGE_PATH, C.IMAGE_STATUS, C.HAS_IMAGE, C.SPLIT, C.CONTENT_HASH)


def load_products(path: str | os.PathLike) -> pd.DataFrame:
    """Ingested products: from an ingested parquet file (``products.parquet`` or any parquet holding
    ingestion's columns, e.g. a filtered copy), a folder holding products.parquet, or a raw
    catalog file (ingested now; its images resolve relative to its folder)."""
    p = Path(path)
    if p.is_dir():
        p = p / "products.parquet"
    if p.name == "products.parquet":
        return pd.read_parquet(p)
    if p.suffix in (".parquet", ".pq") and p.exists() and set(INGESTED_COLUMNS) <= set(pq.read_schema(p).names):
        return pd.read_parquet(p)
    return ingest(p, progress=False).products


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m dashclip.catalog", description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    ing = sub.add_parser("ingest", help="validate a catalog and write products/rejects parquet")
    ing.add_argument("--catalog", required=True, help="catalog file (csv or parquet)")
    ing.add_argument("--out", required=True, help="output folder")
    ing.add_argument("--config", help="JSON file with IngestConfig fields")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    cfg = IngestConfig.model_validate_json(Path(args.config).read_text()) if args.config else IngestConfig()
    try:
        res = ingest(args.catalog, args.out, cfg)
    except (CatalogSchemaError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    s = res.summary()
    print(f"rows in: {s['rows_in']}  rows out: {s['rows_out']}  rows rejected: {s['rows_rejected']}  "
          f"text-only: {s['text_only']}  ({s['seconds']} s)")
    if s["rejected_by_field"]:
        print(f"rejected by field: {s['rejected_by_field']}")
    print(f"splits: {s['splits']}")
    print(f"wrote {Path(args.out) / 'products.parquet'} and {Path(args.out) / 'rejects.parquet'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
