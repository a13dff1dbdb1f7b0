"""Catalog ingestion: read a catalog in the canonical format, validate every row, write clean + rejects.

    python -m dashclip.catalog ingest --catalog PATH --out DIR      (or: dashclip ingest ...)

writes ``DIR/products.parquet`` (clean rows, normalised text, verified images, splits) and
``DIR/rejects.parquet`` (one row per rejected input row: source row, product id, field, value,
reason). A bad row never stops the run and is never silently dropped.

Rules (also in README):
- ``product_id`` must be non-empty (a null id is empty) and at most ``max_product_id_chars``
  long; the first *accepted* row of an id wins, later ones are rejected as duplicates naming the
  row that won. Integer ids read from parquet stay integers ("1", also from a float column of
  whole numbers, which is what pandas writes for integers with a missing value).
- Local images must lie in the image root (the catalog's folder unless ``image_root`` says
  otherwise; symlinks resolved): ``../``, absolute paths and symlinks leading out are rejected
  with one reason whether or not the target exists, unless ``allow_images_outside_root``. Only
  regular files of at most ``max_image_bytes`` are read (a FIFO, device or symlink loop is
  rejected, never waited on).
- An image that is referenced and present but undecodable, truncated, too small or too large is
  rejected (field ``image``). A referenced file that does not exist keeps the product as
  text-only (``image_status = missing``); an empty image field gives ``image_status = none``; a
  URL gives ``remote`` (fetched only when ``fetch_remote_images`` is set, see
  ``dashclip.image_source`` for its limits).
- Text is NFC-normalised, control characters removed, whitespace collapsed; over-long text is
  truncated and flagged (``text_truncated``), not rejected.
- A row with neither usable text (title or description) nor a usable image is rejected.
- CSV: a row with more (non-empty) fields than the header is rejected (field ``row``); a shorter
  one is padded with empty fields. A file that cannot be read as a whole (empty, not UTF-8, an
  unterminated quote that would swallow the rest of the file) stops the run with one line.
"""

from __future__ import annotations

if __name__ == "__main__":  # the command line lives in dashclip.cli: parsed (and --help answered) before pandas loads
    from dashclip.cli import ingest_main

    raise SystemExit(ingest_main())

import csv
import hashlib
import io
import json
import logging
import os
import re
import time
import unicodedata
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from PIL import Image, UnidentifiedImageError
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from tqdm import tqdm

from dashclip import columns as C
from dashclip.cli import clean_message
from dashclip.image_source import MAX_IMAGE_BYTES, ImageSourceError, fetch, read_local, within
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
    max_product_id_chars: int = Field(128, gt=0, description="longer ids are rejected (the ads server's limit)")
    min_image_side: int = Field(16, gt=0, description="smaller images are rejected")
    max_image_pixels: int = Field(40_000_000, gt=0, description="larger images are rejected")
    max_image_bytes: int = Field(MAX_IMAGE_BYTES, gt=0, description="larger image files are rejected before decoding")
    image_root: str | None = Field(None, description="folder local images must lie in (symlinks resolved); "
                                                     "default the folder image paths resolve against")
    allow_images_outside_root: bool = Field(False, description="read images wherever the paths lead: trusted catalogs only")
    fetch_remote_images: bool = False
    remote_timeout_s: float = Field(5.0, gt=0, description="per connect or read of a remote image")
    remote_total_timeout_s: float = Field(20.0, gt=0, description="whole fetch of one remote image, redirects included")
    remote_max_redirects: int = Field(3, ge=0)
    remote_allow_private_hosts: bool = Field(False, description="allow private and loopback addresses (an intranet "
                                                                 "image host); link-local ones never")
    val_fraction: float = Field(0.1, ge=0, lt=1)
    test_fraction: float = Field(0.1, ge=0, lt=1)
    split_salt: str = "dashclip-split-v1"
    workers: int = Field(4, ge=1)


class CatalogRow(BaseModel):
    """One catalog row after text normalisation (images are checked separately)."""

    model_config = ConfigDict(extra="ignore", str_strip_whitespace=True)

    product_id: str
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


def too_many_fields(n_header: int, first_extra: str) -> str:
    """Reject reason of a CSV row with more fields than its header (the Spark reader says the same)."""
    return f"more fields than the header's {n_header} columns; first extra field: {first_extra[:50]}"


def _csv_error(path: Path, problem: str) -> CatalogSchemaError:
    return CatalogSchemaError(f"catalog {path}: {problem}")


def _decode(path: Path, data: bytes) -> str:
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        line = data[: e.start].count(b"\n") + 1
        raise _csv_error(path, f"not UTF-8 text (byte 0x{data[e.start]:02x} on line {line}); save it as UTF-8, "
                               f"e.g. iconv -f latin1 -t utf-8") from None
    if not text.strip():
        raise _csv_error(path, "empty file (no header row)")
    return text


def _unterminated(lines: list[str], start: int, sep: str) -> bool:
    """True when the record starting at ``lines[start]`` opens a quote that the file never closes
    (the lenient reader then takes the rest of the file as one field)."""
    reader = csv.reader(lines[start:], delimiter=sep, strict=True)
    while True:
        try:
            next(reader)
        except StopIteration:
            return False
        except csv.Error as e:
            if "unexpected end of data" in str(e):
                return True


def _read_csv_strings(path: Path, sep: str) -> pd.DataFrame:
    """Parse a CSV/TSV as pandas' default dialect does (RFC 4180 quoting, blank lines skipped), one
    record at a time, so a malformed row is rejected instead of failing the file."""
    lines = io.StringIO(_decode(path, path.read_bytes()), newline="").readlines()
    csv.field_size_limit(max(csv.field_size_limit(), 2**31 - 1))  # process-wide; long descriptions are valid
    reader = csv.reader(lines, delimiter=sep)
    header, records, errors, start, last = None, [], [], 0, 0
    for rec in reader:
        start, last = last, reader.line_num
        if not rec:
            continue
        if header is None:
            header = _unique(rec)
            continue
        n = len(header)
        extra = next((x for x in rec[n:] if x != ""), None)
        errors.append("" if extra is None else too_many_fields(n, extra))
        records.append(rec[:n] + [""] * (n - len(rec)))
    if header is None:
        raise _csv_error(path, "empty file (no header row)")
    if records and _unterminated(lines, start, sep):
        raise _csv_error(path, f"unterminated quote in data row {len(records) - 1} (line {start + 1}): it would take "
                               f"the rest of the file as one field; close or escape the quote (\"\")")
    df = pd.DataFrame(records, columns=header, dtype=object)
    df[C.ROW_ERROR] = errors
    return df


def _unique(names: list[str]) -> list[str]:
    """Header names made unique as pandas does (``a``, ``a.1``): later copies end up ignored."""
    seen: dict[str, int] = {}
    out = []
    for name in names:
        k = seen.get(name, 0)
        out.append(name if k == 0 else f"{name}.{k}")
        seen[name] = k + 1
    return out


def arrow_strings(col: pa.ChunkedArray) -> list[str]:
    """A parquet column as strings, nulls as "": integers and whole floats print as integers
    (``1``, not ``1.0``), other values as Arrow casts them (the Spark reader follows the same rule)."""
    if pa.types.is_floating(col.type):
        return ["" if x is None or x != x else str(int(x)) if x.is_integer() and abs(x) < 2**53 else repr(x)
                for x in col.to_pylist()]
    return ["" if x is None else x for x in pc.cast(col, pa.string()).to_pylist()]


def _read_parquet_strings(path: Path) -> pd.DataFrame:
    tbl = pq.read_table(path)
    names = _unique(tbl.column_names)
    df = pd.DataFrame({name: arrow_strings(tbl.column(i)) for i, name in enumerate(names)}, dtype=object)
    df[C.ROW_ERROR] = ""
    return df


def read_catalog(path: str | os.PathLike) -> pd.DataFrame:
    """Read a CSV or parquet catalog as strings with canonical column names, plus ``_row_error``
    (``C.ROW_ERROR``: why a row could not be read as its header describes, "" when it could).

    Header names are matched case- and space-insensitively; a missing required column, or a file
    that cannot be read as a whole (empty, not UTF-8, an unterminated quote), raises
    CatalogSchemaError with one line naming the file and the problem.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"catalog not found: {path}")
    if path.suffix.lower() in (".parquet", ".pq"):
        df = _read_parquet_strings(path)
    elif path.suffix.lower() in (".csv", ".tsv", ".txt"):
        df = _read_csv_strings(path, "\t" if path.suffix.lower() == ".tsv" else ",")
    else:
        raise CatalogSchemaError(f"catalog {path}: unsupported extension {path.suffix!r} (csv, tsv or parquet)")
    rename = {c: canonical_header(c) for c in df.columns if c != C.ROW_ERROR}
    df = df.rename(columns=rename)
    missing = [c for c in C.CATALOG_REQUIRED if c not in df.columns]
    if missing:
        found = [c for c in df.columns if c != C.ROW_ERROR]
        raise CatalogSchemaError(
            f"catalog {path}: missing required column(s) {missing}; found {found}; "
            f"expected {list(C.CATALOG_COLUMNS)}"
        )
    for col in C.CATALOG_OPTIONAL:
        if col not in df.columns:
            df[col] = ""
    extra = [c for c in df.columns if c not in C.CATALOG_COLUMNS and c != C.ROW_ERROR]
    if extra:
        log.info("catalog %s: ignoring extra columns %s", path, extra)
    return df[[*C.CATALOG_COLUMNS, C.ROW_ERROR]].astype(str).reset_index(drop=True)


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
    """Image reference -> absolute path, symlinks resolved (or the URL itself); None when the field is empty."""
    ref = ref.strip()
    if not ref:
        return None
    if is_url(ref):
        return ref
    if ref.lower().startswith("file://"):
        ref = ref[7:]
    return os.path.realpath(os.path.join(base_dir, ref))  # a loop stays unresolved here; opening it fails


def image_root(base_dir: Path, cfg: IngestConfig) -> str:
    """The folder local images must lie in: ``cfg.image_root``, else the folder they resolve against."""
    return os.path.realpath(cfg.image_root or base_dir)


def read_image_bytes(path: str, cfg: IngestConfig, root: str) -> bytes | None:
    """Bytes of an image, None when it does not exist (or is remote and not fetched).
    ImageSourceError when the path or URL is refused (``reason`` is the reject reason)."""
    if is_url(path):
        if not cfg.fetch_remote_images:
            return None
        return fetch(path, cfg.max_image_bytes, cfg.remote_timeout_s, cfg.remote_total_timeout_s,
                     cfg.remote_allow_private_hosts, cfg.remote_max_redirects)
    if not cfg.allow_images_outside_root and not within(path, root):
        raise ImageSourceError(path, f"outside the image root {root}")  # decided before any look at the file
    try:
        return read_local(path, cfg.max_image_bytes)
    except FileNotFoundError:
        return None


def check_image(ref: str, base_dir: Path, cfg: IngestConfig, root: str | None = None) -> ImageCheck:
    """Decode and verify one image fully (catches corrupt and truncated files)."""
    path = resolve_image(ref, base_dir)
    if path is None:
        return ImageCheck("none")
    try:
        data = read_image_bytes(path, cfg, root or image_root(base_dir, cfg))
    except ImageSourceError as e:
        return ImageCheck("bad", path, error=e.reason)
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
        why = "unrecognised image format" if isinstance(e, UnidentifiedImageError) else clean_message(str(e))
        return ImageCheck("bad", path, error=f"not a decodable image: {why}")
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
    rows.append({C.SOURCE_ROW: i, C.PRODUCT_ID: pid[:200], C.REJECT_FIELD: field,
                 C.REJECT_VALUE: v[:200], C.REJECT_REASON: reason})


def _truncate(text: str, limit: int) -> tuple[str, bool]:
    return (text[:limit].rstrip(), True) if len(text) > limit else (text, False)


def _parse_rows(raw: pd.DataFrame, cfg: IngestConfig, rejects: list[dict]) -> list[tuple[int, dict]]:
    """(row number, normalised row) of every row whose fields are valid; the others go to ``rejects``."""
    candidates = []
    for i, rec in enumerate(raw.to_dict("records")):
        pid = normalize_text(rec.get(C.PRODUCT_ID, ""))
        if rec.get(C.ROW_ERROR):
            _reject(rejects, i, pid, "row", "", rec[C.ROW_ERROR])
            continue
        try:
            row = CatalogRow(**{k: normalize_text(rec.get(k, "")) for k in C.CATALOG_COLUMNS if k != C.SPLIT_HINT})
        except ValidationError as e:
            err = e.errors()[0]
            field = str(err["loc"][0]) if err.get("loc") else "row"
            _reject(rejects, i, pid, field, rec.get(field, ""), err["msg"].removeprefix("Value error, "))
            continue
        if len(row.product_id) > cfg.max_product_id_chars:
            _reject(rejects, i, pid, C.PRODUCT_ID, pid, f"product_id is {len(row.product_id)} characters, over the "
                                                        f"{cfg.max_product_id_chars}-character limit (max_product_id_chars)")
            continue
        d = row.model_dump()
        d[C.TITLE], t1 = _truncate(d[C.TITLE], cfg.max_title_chars)
        d[C.DESCRIPTION], t2 = _truncate(d[C.DESCRIPTION], cfg.max_description_chars)
        d[TEXT_TRUNCATED] = t1 or t2
        d[C.SPLIT_HINT] = str(rec.get(C.SPLIT_HINT, "") or "")
        candidates.append((i, d))
    return candidates


def ingest_frame(raw: pd.DataFrame, base_dir: Path, cfg: IngestConfig | None = None,
                 progress: bool = True) -> IngestResult:
    """Validate a catalog frame (canonical columns, strings) whose images resolve against base_dir
    and must lie in ``cfg.image_root`` (default base_dir)."""
    cfg = cfg or IngestConfig()
    t0 = time.perf_counter()
    rejects: list[dict] = []
    candidates = _parse_rows(raw, cfg, rejects)
    root = image_root(base_dir, cfg)

    with ThreadPoolExecutor(cfg.workers) as pool:  # PIL decodes outside the GIL
        checks = list(tqdm(pool.map(lambda c: check_image(c[1][C.IMAGE], base_dir, cfg, root), candidates),
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
    """Ingest a catalog file; images resolve relative to the catalog's folder (and must lie in
    ``cfg.image_root``, by default that folder). Writes outputs if out_dir."""
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


def departments(products: pd.DataFrame) -> pd.Series:
    """Each product's department: the first part of its category path ("" without one)."""
    return products[C.CATEGORY].fillna("").str.split(" > ").str[0]


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
    """``python -m dashclip.catalog ingest ...`` (the parser is ``dashclip.cli.ingest_main``)."""
    from dashclip.cli import ingest_main

    return ingest_main(argv)


def run_cli(args) -> int:
    """``ingest`` after parsing: ingest, print the summary."""
    from dashclip.cli import load_config

    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    cfg = load_config(IngestConfig, args.config, {"image_root": args.image_root})
    res = ingest(args.catalog, args.out, cfg)
    s = res.summary()
    print(f"rows in: {s['rows_in']}  rows out: {s['rows_out']}  rows rejected: {s['rows_rejected']}  "
          f"text-only: {s['text_only']}  ({s['seconds']} s)")
    if s["rejected_by_field"]:
        print(f"rejected by field: {s['rejected_by_field']}")
    print(f"splits: {s['splits']}")
    print(f"wrote {Path(args.out) / 'products.parquet'} and {Path(args.out) / 'rejects.parquet'}")
    return 0
