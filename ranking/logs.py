"""The ranker on a user's own ads logs: read, check and type the tables, then train and report.

    python -m ranking.train --logs DIR --checkpoint CKPT --products PRODUCTS

The tables are the ones the simulator writes (schemas in `dashclip.inputs`): ``impressions``
(request_id, event_timestamp, consumer_id, query_id, product_id, slot[, query, propensity]),
``clicks`` and ``conversions`` (request_id, product_id, event_timestamp), optionally
``purchases`` (consumer_id, product_id, event_timestamp: the consumer profiles and order counts)
``queries`` (query_id, query) and ``candidates`` (request_id, product_id: every product a request
could have shown). An impression is clicked when a click names its (request, product), converted
when a conversion does. The logged period runs from midnight UTC of the first impression's day.

Which estimates a log allows: AUC and logloss always; IPS/SNIPS only with the logging policy's
``propensity`` on every impression and a ``candidates`` table (a new ranking's slate is formed
from a request's candidates); an A/B never (it needs live traffic). The report says which ones
it made and why not the others.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from dashclip import columns as DC
from dashclip.events import EventLogs
from dashclip.inputs import InputError, check_logs, find_table, read_table
from ranking import columns as R
from ranking.pipeline import (EVENT_COLS, TrainConfig, feature_tables, frame_for, off_policy, offline_store, test_metrics,
                              time_split, train_rankers)
from ranking.simulator import SimConfig

log = logging.getLogger(__name__)
CANDIDATES = "candidates"
AB_NOT_POSSIBLE = "not possible from logs: an A/B test needs live traffic (the off-policy estimates stand in)"


@dataclass
class Logs:
    tables: EventLogs  # requests, candidates (empty without a candidates table), impressions, ...
    period: SimConfig  # start (midnight UTC of the first day) and days of the log
    queries: pd.DataFrame  # query_id, query of the logged requests
    source: str
    has_propensity: bool
    has_candidates: bool
    has_purchases: bool


def _ts(s: pd.Series) -> pd.Series:
    t = pd.to_datetime(s, utc=True, format="mixed") if s.dtype == object else pd.to_datetime(s, utc=True)
    return t.dt.as_unit("us")


def _events(df: pd.DataFrame) -> pd.DataFrame:
    df = df.copy()
    for c in (R.REQUEST_ID, R.PRODUCT_ID, R.CONSUMER_ID):
        if c in df:
            df[c] = df[c].astype(str).str.strip()
    df[R.EVENT_TIMESTAMP] = _ts(df[R.EVENT_TIMESTAMP])
    return df


def _flag(imp: pd.DataFrame, events: pd.DataFrame) -> np.ndarray:
    keys = pd.MultiIndex.from_frame(imp[[R.REQUEST_ID, R.PRODUCT_ID]])
    return keys.isin(pd.MultiIndex.from_frame(events[[R.REQUEST_ID, R.PRODUCT_ID]]))


def _query_texts(imp: pd.DataFrame, folder: Path, query_log: pd.DataFrame | None) -> pd.DataFrame:
    """query_id -> query for the logged requests: the impressions' own column, else the folder's
    queries table, else the query log."""
    if R.QUERY in imp:
        q = imp[[R.QUERY_ID, R.QUERY]]
    else:
        parts = [read_table(p) for p in [find_table(folder, "queries")] if p is not None]
        parts += [query_log] if query_log is not None else []
        q = pd.concat([p[[DC.QUERY_ID, DC.QUERY]] for p in parts], ignore_index=True)
    q = q.astype(str).apply(lambda s: s.str.strip()).drop_duplicates(DC.QUERY_ID)
    return q[q[DC.QUERY_ID].isin(set(imp[R.QUERY_ID]))].reset_index(drop=True)


def read_logs(folder: str | Path, products: pd.DataFrame, query_log: pd.DataFrame | None = None) -> Logs:
    """Check (every problem raised at once, `InputError`) and type the log tables of a folder."""
    folder = Path(folder)
    problems = check_logs(folder, set(products[DC.PRODUCT_ID].astype(str)), query_log)
    if problems:
        raise InputError(problems)
    imp = _events(read_table(find_table(folder, "impressions")))
    imp[R.QUERY_ID] = imp[R.QUERY_ID].astype(str).str.strip()
    imp[R.SLOT] = pd.to_numeric(imp[R.SLOT]).astype(np.int64)
    has_prop = R.PROPENSITY in imp
    if has_prop:
        imp[R.PROPENSITY] = pd.to_numeric(imp[R.PROPENSITY]).astype(float)
    clicks = _events(read_table(find_table(folder, "clicks")))
    conversions = _events(read_table(find_table(folder, "conversions")))
    imp[R.CLICKED] = _flag(imp, clicks)
    imp[R.CONVERTED] = _flag(imp, conversions) & imp[R.CLICKED].to_numpy()
    category = dict(zip(products[DC.PRODUCT_ID].astype(str), products[DC.CATEGORY].fillna("").astype(str)))
    imp[R.CATEGORY] = imp[R.PRODUCT_ID].map(category)
    start = imp[R.EVENT_TIMESTAMP].min().normalize()
    imp[R.DAY] = ((imp[R.EVENT_TIMESTAMP] - start) // pd.Timedelta(days=1)).astype(np.int64)
    imp = imp.sort_values([R.EVENT_TIMESTAMP, R.REQUEST_ID, R.SLOT], kind="stable").reset_index(drop=True)
    days = int(imp[R.DAY].max()) + 1
    queries = _query_texts(imp, folder, query_log)
    pur_path = find_table(folder, "purchases")
    purchases = (_events(read_table(pur_path))[[R.CONSUMER_ID, R.PRODUCT_ID, R.EVENT_TIMESTAMP]] if pur_path else
                 pd.DataFrame({R.CONSUMER_ID: pd.Series(dtype=str), R.PRODUCT_ID: pd.Series(dtype=str),
                               R.EVENT_TIMESTAMP: pd.Series(dtype="datetime64[us, UTC]")}))
    req_cols = [R.REQUEST_ID, R.EVENT_TIMESTAMP, R.DAY, R.CONSUMER_ID, R.QUERY_ID]
    requests = imp.drop_duplicates(R.REQUEST_ID)[req_cols].reset_index(drop=True)
    cand_path = find_table(folder, CANDIDATES)
    candidates = _candidates(read_table(cand_path), requests, category) if cand_path else pd.DataFrame(columns=EVENT_COLS)
    period = SimConfig(start=start.to_pydatetime(), days=max(days, 3), history_days=0, extra_days=0)
    return Logs(EventLogs(requests, candidates, imp, clicks, conversions, purchases), period, queries, str(folder),
                has_prop, cand_path is not None, pur_path is not None)


def _candidates(cand: pd.DataFrame, requests: pd.DataFrame, category: dict) -> pd.DataFrame:
    """Every candidate of each logged request, with its request's time, consumer and query."""
    cand = cand[[R.REQUEST_ID, R.PRODUCT_ID]].astype(str).apply(lambda s: s.str.strip())
    cand = cand.merge(requests, on=R.REQUEST_ID, how="inner")
    return cand.assign(**{R.CATEGORY: cand[R.PRODUCT_ID].map(category).fillna(""), R.SLOT: 0})[EVENT_COLS]


def estimates_possible(logs: Logs) -> dict[str, str]:
    """Per estimate: "made" or why it cannot be made from this log."""
    ope = "made"
    if not logs.has_propensity:
        ope = "not made: the impressions carry no logging propensity (column 'propensity')"
    elif not logs.has_candidates:
        ope = ("not made: no candidates table (every product a request could have shown), so another "
               "ranking's slate cannot be formed")
    return {"auc_logloss": "made", "off_policy": ope, "ab": AB_NOT_POSSIBLE}


def run_on_logs(logs: Logs, products: pd.DataFrame, checkpoint: str | Path, out: Path, data_dir: Path,
                cfg: TrainConfig, progress: bool = False) -> dict:
    """Feature tables from the log -> point-in-time frames -> the two rankers -> the report."""
    t0 = time.perf_counter()
    period, t = logs.period, logs.tables
    first = min([period.start_ts] + ([t.purchases[R.EVENT_TIMESTAMP].min()] if len(t.purchases) else []))
    valid_from = pd.Timestamp(first).normalize() - pd.Timedelta(days=1)
    typed = t.write(out / "logs")  # the checked, typed tables: the feature jobs' input
    products.to_parquet(typed / R.PRODUCTS_TABLE, index=False)
    logs.queries.to_parquet(typed / R.QUERIES_TABLE, index=False)
    version = feature_tables(typed, typed / R.PRODUCTS_TABLE, typed / R.QUERIES_TABLE, checkpoint, data_dir, period,
                             np.unique(t.impressions[R.CONSUMER_ID]), valid_from, progress)
    store = offline_store(out / "feast", data_dir, version, cfg.project)
    imp = t.impressions
    frame = frame_for(store, imp[EVENT_COLS + [R.CLICKED, R.CONVERTED]], version)
    split = time_split(frame[R.DAY].to_numpy(), period.days, cfg.val_fraction, cfg.test_fraction)
    rankers = train_rankers(frame, split, cfg.params, version)
    for name, rk in rankers.items():
        rk.save(out / "models" / name)
    metrics = test_metrics(frame, split, rankers)
    possible = estimates_possible(logs)
    ope = None
    if possible["off_policy"] == "made":
        K = int(imp[R.SLOT].max()) + 1
        ope = off_policy(store, t, version, split.days["test"], rankers, K, cfg.n_boot, cfg.ope_requests, simulated=False)
    return {
        "simulated": False, "source": logs.source,
        "note": f"clicks and conversions from the logs in {logs.source}",
        "estimates": possible, "checkpoint": str(checkpoint), "model_version": version,
        "auc": metrics["auc"], "logloss": metrics["logloss"], "test_rows": metrics["test_rows"],
        "off_policy": ope, "split_days": split.days, "log_start": str(period.start_ts), "log_days": period.days,
        "log": {"requests": len(t.requests), "impressions": len(imp), "clicks": int(imp[R.CLICKED].sum()),
                "conversions": int(imp[R.CONVERTED].sum()), "purchases": len(t.purchases),
                "logged_ctr": float(imp[R.CLICKED].mean()), "has_propensity": logs.has_propensity,
                "has_candidates": logs.has_candidates, "has_purchases": logs.has_purchases},
        "features": {name: rk.features for name, rk in rankers.items()},
        "config": cfg.model_dump(mode="json", include={"params", "val_fraction", "test_fraction", "n_boot", "ope_requests"}),
        "seconds": round(time.perf_counter() - t0, 1),
    }


def markdown(r: dict) -> str:
    from ranking.report import _ci, _f

    auc, ll = r["auc"], r["logloss"]
    lines = [f"# Ads ranker report (logs: `{r['source']}`)", "",
             f"Embeddings: `{r['model_version']}` from `{r['checkpoint']}`. Logged period from {r['log_start']}, "
             f"{r['log_days']} days: {r['log']['requests']:,} requests, {r['log']['impressions']:,} impressions, "
             f"{r['log']['clicks']:,} clicks, {r['log']['conversions']:,} conversions. Days: train "
             f"{r['split_days']['train']}, validation {r['split_days']['val']}, test {r['split_days']['test']}.", "",
             "Estimates: " + "; ".join(f"{k}: {v}" for k, v in r["estimates"].items()) + ".", "",
             "## Test period, offline metrics", "",
             "| model | pCTR AUC | pCTR logloss | pCVR AUC | pCVR logloss |", "| --- | --- | --- | --- | --- |"]
    for name in ("with_embeddings", "baseline"):
        lines.append(f"| {name} | {_f(auc['ctr'][name])} | {_f(ll['ctr'][name])} | {_f(auc['cvr'][name])} | {_f(ll['cvr'][name])} |")
    if r["off_policy"]:
        lines += ["", "## Off-policy estimates on the test period (logged propensities)", "",
                  "| policy | CTR IPS [95% CI] | CTR SNIPS [95% CI] | CVR [95% CI] |", "| --- | --- | --- | --- |"]
        for name, e in r["off_policy"].items():
            if isinstance(e, dict) and "ips_ctr" in e:
                lines.append(f"| {name} | {_f(e['ips_ctr']['value'])} {_ci(e['ips_ctr']['ci95'])} | "
                             f"{_f(e['snips_ctr']['value'])} {_ci(e['snips_ctr']['ci95'])} | "
                             f"{_f(e['snips_cvr']['value'])} {_ci(e['snips_cvr']['ci95'])} |")
    return "\n".join(lines) + "\n"


def write_report(r: dict, out: str | Path) -> dict[str, Path]:
    import json

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "report.json").write_text(json.dumps(r, indent=2, default=float) + "\n")
    (out / "report.md").write_text(markdown(r))
    return {"json": out / "report.json", "markdown": out / "report.md"}
