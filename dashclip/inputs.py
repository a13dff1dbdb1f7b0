"""A user's inputs, their schemas and one validation pass over all of them before any training.

    python -m dashclip.inputs check --catalog C [--queries Q] [--judgments J] [--logs DIR]

prints every problem as one line naming the file, the row (0-based data row; CSV line = row + 2),
the column and the value, and exits 2 when there is any (0 when all given inputs are usable).

- **query log** (`QUERY_LOG`): ``query_id, query[, count]``;
- **relevance judgments** (`JUDGMENTS`): ``query_id, query, product_id, label`` (0..3), products
  of the given catalog;
- **ads logs** (`LOG_TABLES`): a folder with the tables the traffic simulator writes
  (``impressions``, ``clicks``, ``conversions``, ``purchases``; parquet or CSV), the logging
  policy's ``propensity`` optional. The query texts of the impressions come from a ``query``
  column, a ``queries`` table in the folder (``query_id, query``) or the query log.

The catalog itself is validated row by row by ingestion (`dashclip.catalog`: bad rows are
rejected, never fatal); here it only has to be readable and supplies the known product ids.
The log tables and their column names are `dashclip.events`.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from dashclip import columns as C
from dashclip import events as E

COUNT = "count"  # query log: how often the query was searched (optional)
TABLE_SUFFIXES = (".parquet", ".csv")


@dataclass(frozen=True)
class Col:
    name: str
    kind: str  # id | text | int | float | timestamp
    required: bool = True  # the column must be there
    lo: float | None = None  # inclusive bounds for int, (lo, hi] for float
    hi: float | None = None
    nullable: bool = False  # an empty value is allowed where the column is there


@dataclass(frozen=True)
class Schema:
    name: str
    cols: tuple[Col, ...]

    @property
    def required(self) -> list[str]:
        return [c.name for c in self.cols if c.required]


QUERY_LOG = Schema("query log", (Col(C.QUERY_ID, "id"), Col(C.QUERY, "text"), Col(COUNT, "int", False, 0, nullable=True)))
JUDGMENTS = Schema("judgments", (Col(C.QUERY_ID, "id"), Col(C.QUERY, "text"), Col(C.PRODUCT_ID, "id"),
                                 Col(C.LABEL, "int", True, 0, 3)))
IMPRESSIONS = Schema("impressions", (
    Col(E.REQUEST_ID, "id"), Col(C.EVENT_TIMESTAMP, "timestamp"), Col(E.CONSUMER_ID, "id"), Col(C.QUERY_ID, "id"),
    Col(C.PRODUCT_ID, "id"), Col(E.SLOT, "int", True, 0), Col(C.QUERY, "text", False),
    Col(E.PROPENSITY, "float", False, 0.0, 1.0)))
CLICKS = Schema("clicks", (Col(E.REQUEST_ID, "id"), Col(C.PRODUCT_ID, "id"), Col(C.EVENT_TIMESTAMP, "timestamp")))
CONVERSIONS = Schema("conversions", CLICKS.cols)
PURCHASES = Schema("purchases", (Col(E.CONSUMER_ID, "id"), Col(C.PRODUCT_ID, "id"), Col(C.EVENT_TIMESTAMP, "timestamp")))
LOG_QUERIES = Schema("queries", (Col(C.QUERY_ID, "id"), Col(C.QUERY, "text")))
CANDIDATES = Schema("candidates", (Col(E.REQUEST_ID, "id"), Col(C.PRODUCT_ID, "id")))
# table stem -> (schema, required)
LOG_TABLES = {"impressions": (IMPRESSIONS, True), "clicks": (CLICKS, True), "conversions": (CONVERSIONS, True),
              "purchases": (PURCHASES, False), "queries": (LOG_QUERIES, False),
              "candidates": (CANDIDATES, False)}
MIN_LOG_DAYS = 3  # train, validation and test days


@dataclass(frozen=True)
class Problem:
    file: str
    row: int | None  # 0-based data row; None for a problem of the whole file or column
    column: str | None
    value: object
    reason: str

    def line(self) -> str:
        parts = [self.file] + ([f"row {self.row}"] if self.row is not None else [])
        parts += [f"column {self.column!r}"] if self.column else []
        parts += [f"value {self.value!r}"] if self.value is not None else []
        return ", ".join(parts) + f": {self.reason}"


class InputError(ValueError):
    """Given inputs have problems; ``problems`` lists them all."""

    def __init__(self, problems: list[Problem]):
        self.problems = problems
        super().__init__(problems[0].line() + (f" (and {len(problems) - 1} more problems)" if len(problems) > 1 else ""))


# --- reading ----------------------------------------------------------------------------------
def read_table(path: str | Path) -> pd.DataFrame:
    """A CSV (all columns as strings, empty = "") or parquet table; header names lower-cased."""
    path = Path(path)
    if path.suffix.lower() in (".parquet", ".pq"):
        df = pd.read_parquet(path)
    else:
        df = pd.read_csv(path, dtype=str, keep_default_na=False, sep="\t" if path.suffix.lower() == ".tsv" else ",")
    df.columns = [str(c).strip().lower() for c in df.columns]
    return df.reset_index(drop=True)


def find_table(folder: str | Path, stem: str) -> Path | None:
    for suffix in TABLE_SUFFIXES:
        p = Path(folder) / f"{stem}{suffix}"
        if p.exists():
            return p
    return None


def _blank(s: pd.Series) -> np.ndarray:
    if s.dtype != object and not pd.api.types.is_string_dtype(s):
        return s.isna().to_numpy()  # typed (parquet) numbers and timestamps: only nulls are blank
    try:  # strings (or nulls) only: trimmed in Arrow, several times faster than pandas' per-value strip
        arr = pa.array(s, type=pa.string(), from_pandas=True)
        return pc.fill_null(pc.equal(pc.utf8_trim_whitespace(arr), ""), True).to_numpy(zero_copy_only=False)
    except (pa.ArrowInvalid, pa.ArrowTypeError):  # mixed values
        return (s.isna() | (s.astype(str).str.strip() == "")).to_numpy()


def _value(v):
    return v.item() if hasattr(v, "item") else v


def check_columns(df: pd.DataFrame, schema: Schema, name: str) -> list[Problem]:
    """Every row's value of every schema column present: non-empty ids and texts, numbers in range,
    parseable timestamps; a missing required column is one problem naming what was found."""
    probs = [Problem(name, None, c, None, f"missing required column (found {list(df.columns)})")
             for c in schema.required if c not in df.columns]
    for col in schema.cols:
        if col.name not in df.columns:
            continue
        s = df[col.name]
        blank = _blank(s)
        bad, reason = blank & ~col.nullable, "empty"
        if col.kind in ("int", "float"):
            x = pd.to_numeric(s.where(~blank), errors="coerce").to_numpy(dtype=float)
            ok = np.isfinite(x)
            if col.kind == "int":
                ok &= x == np.round(np.where(ok, x, 0))
            if col.lo is not None:
                ok &= (x >= col.lo) if col.kind == "int" else (x > col.lo)
            if col.hi is not None:
                ok &= x <= col.hi
            bad = bad | (~blank & ~ok)
            span = f" in [{col.lo:g}, {col.hi:g}]" if col.hi is not None else (f" >= {col.lo:g}" if col.lo is not None else "")
            interval = f" in ({col.lo:g}, {col.hi:g}]" if col.kind == "float" else span
            reason = f"not {'an integer' if col.kind == 'int' else 'a number'}{interval}"
        elif col.kind == "timestamp":
            t = pd.to_datetime(s.where(~blank), errors="coerce", utc=True, format="mixed") if s.dtype == object else s
            bad = bad | (~blank & pd.isna(t).to_numpy())
            reason = "not a timestamp (ISO 8601, e.g. 2025-03-01T12:00:00Z)"
        for i in np.flatnonzero(bad):
            probs.append(Problem(name, int(i), col.name, _value(s.iat[i]), "empty" if blank[i] else reason))
    return probs


def _duplicates(df: pd.DataFrame, keys: list[str], name: str, what: str) -> list[Problem]:
    if any(k not in df.columns for k in keys):
        return []
    dup = df.duplicated(keys, keep="first").to_numpy()
    if not dup.any():
        return []
    first = df.reset_index().groupby(keys, sort=False)["index"].transform("first").to_numpy()
    return [Problem(name, int(i), keys[-1], _value(df[keys[-1]].iat[i]), f"duplicate {what} (first at row {first[i]})")
            for i in np.flatnonzero(dup)]


def _unknown(df: pd.DataFrame, col: str, known: set, name: str, reason: str) -> list[Problem]:
    if col not in df.columns:
        return []
    vals = df[col].astype(str).str.strip()
    bad = ~vals.isin(known).to_numpy() & ~_blank(df[col])
    return [Problem(name, int(i), col, vals.iat[i], reason) for i in np.flatnonzero(bad)]


def _read(path: Path, problems: list[Problem]) -> pd.DataFrame | None:
    try:
        return read_table(path)
    except FileNotFoundError:
        problems.append(Problem(str(path), None, None, None, "file not found"))
    except Exception as e:  # noqa: BLE001 - any unreadable file is one problem line
        problems.append(Problem(str(path), None, None, None, f"cannot be read: {type(e).__name__}: {e}".split("\n")[0]))
    return None


# --- the checks -------------------------------------------------------------------------------
def catalog_ids(catalog: str | Path, problems: list[Problem]) -> set[str] | None:
    """Product ids of a raw catalog (csv/parquet), an ingested products.parquet or its folder."""
    from dashclip.catalog import CatalogSchemaError, read_catalog

    p = Path(catalog)
    if p.is_dir():
        p = p / "products.parquet"
    try:
        df = pd.read_parquet(p, columns=[C.PRODUCT_ID]) if p.name == "products.parquet" else read_catalog(p)
    except (FileNotFoundError, CatalogSchemaError) as e:
        problems.append(Problem(str(p), None, None, None, str(e)))
        return None
    except Exception as e:  # noqa: BLE001
        problems.append(Problem(str(p), None, None, None, f"cannot be read: {type(e).__name__}: {e}".split("\n")[0]))
        return None
    ids = set(df[C.PRODUCT_ID].astype(str).str.strip()) - {""}
    if not ids:
        problems.append(Problem(str(p), None, C.PRODUCT_ID, None, "no product ids"))
    return ids


def check_query_log(path: str | Path) -> tuple[list[Problem], pd.DataFrame | None]:
    problems: list[Problem] = []
    df = _read(Path(path), problems)
    if df is None:
        return problems, None
    name = str(path)
    problems += check_columns(df, QUERY_LOG, name)
    problems += _duplicates(df, [C.QUERY_ID], name, "query_id")
    if df.empty:
        problems.append(Problem(name, None, None, None, "no rows"))
    return problems, df


def check_judgments(path: str | Path, product_ids: set[str] | None) -> list[Problem]:
    problems: list[Problem] = []
    df = _read(Path(path), problems)
    if df is None:
        return problems
    name = str(path)
    problems += check_columns(df, JUDGMENTS, name)
    if df.empty:
        problems.append(Problem(name, None, None, None, "no rows"))
    if product_ids is not None:
        problems += _unknown(df, C.PRODUCT_ID, product_ids, name, "product_id not in the catalog")
    problems += _duplicates(df, [C.QUERY_ID, C.PRODUCT_ID], name, "(query_id, product_id) pair")
    if {C.QUERY_ID, C.QUERY} <= set(df.columns):
        q = df[C.QUERY].astype(str).str.strip()
        first = q.groupby(df[C.QUERY_ID].astype(str)).transform("first")
        for i in np.flatnonzero((q != first).to_numpy()):
            problems.append(Problem(name, int(i), C.QUERY, q.iat[i], f"query_id {df[C.QUERY_ID].iat[i]!r} has "
                                                                        f"another text earlier ({first.iat[i]!r})"))
    return problems


def check_logs(folder: str | Path, product_ids: set[str] | None, query_log: pd.DataFrame | None = None
               ) -> list[Problem]:
    """The ads log tables of a folder, each against its schema, and against each other: every click
    is of an impression, every conversion of a click, every impression's product is in the catalog
    and its query has a text; the log spans at least `MIN_LOG_DAYS` days."""
    folder = Path(folder)
    if not folder.is_dir():
        return [Problem(str(folder), None, None, None, "logs folder not found")]
    problems: list[Problem] = []
    tables: dict[str, tuple[str, pd.DataFrame]] = {}
    for stem, (schema, required) in LOG_TABLES.items():
        path = find_table(folder, stem)
        if path is None:
            if required:
                problems.append(Problem(str(folder / f"{stem}.parquet"), None, None, None,
                                        f"missing table ({stem}.parquet or {stem}.csv)"))
            continue
        df = _read(path, problems)
        if df is None:
            continue
        problems += check_columns(df, schema, str(path))
        tables[stem] = (str(path), df)
    if "impressions" not in tables:
        return problems
    name, imp = tables["impressions"]
    if product_ids is not None:
        problems += _unknown(imp, C.PRODUCT_ID, product_ids, name, "product_id not in the catalog")
    problems += _duplicates(imp, [E.REQUEST_ID, C.PRODUCT_ID], name, "(request_id, product_id) impression")
    problems += _query_texts(imp, name, tables.get("queries", (None, None))[1], query_log)
    if "candidates" in tables and product_ids is not None:
        cname, cand = tables["candidates"]
        problems += _unknown(cand, C.PRODUCT_ID, product_ids, cname, "product_id not in the catalog")
    for child, parent in (("clicks", "impressions"), ("conversions", "clicks")):
        problems += _orphans(tables, child, parent)
    if C.EVENT_TIMESTAMP in imp and not any(p.file == name and p.column == C.EVENT_TIMESTAMP for p in problems):
        days = log_days(imp[C.EVENT_TIMESTAMP])
        if days < MIN_LOG_DAYS:
            problems.append(Problem(name, None, C.EVENT_TIMESTAMP, None, f"the log spans {days} day(s); the ranker "
                                    f"needs at least {MIN_LOG_DAYS} (train, validation and test days)"))
    return problems


def _orphans(tables: dict[str, tuple[str, pd.DataFrame]], child: str, parent: str) -> list[Problem]:
    """Rows of the ``child`` table whose (request_id, product_id) has no row in ``parent``."""
    if child not in tables or parent not in tables:
        return []
    (name, c), (_, p) = tables[child], tables[parent]
    if any(k not in d for d in (c, p) for k in (E.REQUEST_ID, C.PRODUCT_ID)):
        return []  # a missing key column is reported with the table
    orphan = ~_keys(c).isin(_keys(p))
    return [Problem(name, int(i), C.PRODUCT_ID, c[C.PRODUCT_ID].iat[i],
                    f"no {parent[:-1]} of this product in request {c[E.REQUEST_ID].iat[i]!r}")
            for i in np.flatnonzero(orphan)]


def log_days(ts: pd.Series) -> int:
    t = pd.to_datetime(ts, utc=True, format="mixed") if ts.dtype == object else pd.to_datetime(ts, utc=True)
    return int((t.max().normalize() - t.min().normalize()).days) + 1 if len(t) else 0


def _keys(df: pd.DataFrame) -> pd.Index:
    return pd.MultiIndex.from_arrays([df[E.REQUEST_ID].astype(str).to_numpy(), df[C.PRODUCT_ID].astype(str).to_numpy()])


def _query_texts(imp: pd.DataFrame, name: str, log_queries: pd.DataFrame | None,
                 query_log: pd.DataFrame | None) -> list[Problem]:
    if C.QUERY_ID not in imp:
        return []
    if C.QUERY in imp:
        return []  # row-level emptiness is checked with the column
    known: set[str] = set()
    for q in (log_queries, query_log):
        if q is not None and C.QUERY_ID in q:
            known |= set(q[C.QUERY_ID].astype(str).str.strip())
    qid = imp[C.QUERY_ID].astype(str).str.strip()
    bad = ~qid.isin(known).to_numpy() & ~_blank(imp[C.QUERY_ID])
    return [Problem(name, int(i), C.QUERY_ID, qid.iat[i], "no query text: no 'query' column, and the query_id is in "
                    "neither the folder's queries table nor the query log") for i in np.flatnonzero(bad)]


def file_digests(*paths: str | Path | None) -> dict[str, str]:
    """sha256 of each given file, by path: a checkpoint records what it was trained from."""
    import hashlib

    out = {}
    for p in paths:
        if p:
            h = hashlib.sha256()
            with open(p, "rb") as f:
                for block in iter(lambda: f.read(1 << 20), b""):
                    h.update(block)
            out[str(p)] = h.hexdigest()
    return out


def check_inputs(catalog: str | Path, queries: str | Path | None = None, judgments: str | Path | None = None,
                 logs: str | Path | None = None) -> list[Problem]:
    """Every problem of every given input (empty when all are usable)."""
    problems: list[Problem] = []
    ids = catalog_ids(catalog, problems)
    qlog = None
    if queries:
        qp, qlog = check_query_log(queries)
        problems += qp
    if judgments:
        problems += check_judgments(judgments, ids)
    if logs:
        problems += check_logs(logs, ids, qlog)
    return problems


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m dashclip.inputs", description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    c = sub.add_parser("check", help="validate the given inputs; exit 2 listing every problem")
    c.add_argument("--catalog", required=True, help="catalog (csv/parquet), or an ingested products.parquet or folder")
    c.add_argument("--queries", help="query log: query_id, query[, count]")
    c.add_argument("--judgments", help="relevance judgments: query_id, query, product_id, label (0-3)")
    c.add_argument("--logs", help="folder of ads log tables (impressions, clicks, conversions[, purchases, queries])")
    c.add_argument("--limit", type=int, default=1000, help="print at most this many problems (0: all)")
    args = ap.parse_args(argv)
    problems = check_inputs(args.catalog, args.queries, args.judgments, args.logs)
    if not problems:
        given = [k for k in ("catalog", "queries", "judgments", "logs") if getattr(args, k)]
        print(f"inputs ok: {', '.join(given)}")
        return 0
    shown = problems if args.limit <= 0 else problems[: args.limit]
    for p in shown:
        print(f"error: {p.line()}", file=sys.stderr)
    if len(shown) < len(problems):
        print(f"error: ... and {len(problems) - len(shown)} more problems (--limit 0 prints all)", file=sys.stderr)
    print(f"{len(problems)} input problem(s); nothing was trained", file=sys.stderr)
    return 2


if __name__ == "__main__":
    raise SystemExit(main())
