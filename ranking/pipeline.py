"""The ranker's training and lift measurement, as importable steps (`ranking.train` is the CLI).

simulate (event logs as parquet) -> the batch jobs that write the feature tables (`spark_jobs`) ->
point-in-time frames (Feast historical retrieval, `features.offline`)
-> LightGBM pCTR/pCVR with and without embedding features -> test-period AUC/logloss,
off-policy CTR/CVR (IPS/SNIPS) and a simulated A/B. Every simulated figure is labelled so.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from feast import FeatureStore
from pydantic import BaseModel, ConfigDict, Field
from sklearn.metrics import log_loss, roc_auc_score

from dashclip import columns as DC
from dashclip.events import EventLogs
from features import columns as FC
from features.offline import training_frame
from features.repo import open_repo_store
from ranking import ab as AB
from ranking import columns as R
from ranking import offpolicy as OPE
from ranking.model import LGBParams, Ranker, RankerConfig, fit_binary
from ranking.simulator import SimConfig, candidates_frame, draw_traffic, simulate
from ranking.world import World, WorldConfig, build_world, truth_note
from spark_jobs.lib.consumer_profile import write_consumer_profiles
from spark_jobs.lib.embed_local import embed_products, embed_queries
from spark_jobs.lib.stats import write_stats

log = logging.getLogger(__name__)


class TrainConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    world: WorldConfig = WorldConfig()
    sim: SimConfig = SimConfig()
    params: LGBParams = LGBParams()
    val_fraction: float = Field(0.15, gt=0, lt=0.5)  # of the logged days, after the training days
    test_fraction: float = Field(0.2, gt=0, lt=0.5)  # the last days
    ab_requests: int = Field(4000, ge=10)
    ope_requests: int = Field(3000, ge=10)  # test-period requests re-ranked for the off-policy estimates (a sample)
    n_boot: int = Field(500, ge=10)
    project: str = "dashclip"


@dataclass
class Split:
    train: np.ndarray  # boolean masks over impressions
    val: np.ndarray
    test: np.ndarray
    days: dict[str, list[int]]


def time_split(day: np.ndarray, n_days: int, val_fraction: float, test_fraction: float) -> Split:
    """Train on the first days, validate (early stopping) on the next, test on the last ones."""
    n_test = max(1, round(n_days * test_fraction))
    n_val = max(1, round(n_days * val_fraction))
    t1, t2 = n_days - n_test - n_val, n_days - n_test
    if t1 < 1:
        raise ValueError(f"{n_days} logged days leave no training days (val {n_val}, test {n_test})")
    days = {"train": [0, t1 - 1], "val": [t1, t2 - 1], "test": [t2, n_days - 1]}
    return Split(day < t1, (day >= t1) & (day < t2), day >= t2, days)


def offline_store(root: Path, data_dir: Path, version: str, project: str = "dashclip") -> FeatureStore:
    """The feature repo's store over the data folder, declaring `version`, for historical retrieval
    (registry under `root`)."""
    return open_repo_store(data_dir, root, project=project, model_versions=(version,))


EVENT_COLS = [R.REQUEST_ID, DC.EVENT_TIMESTAMP, R.DAY, R.CONSUMER_ID, R.QUERY_ID, R.PRODUCT_ID, R.CATEGORY, R.SLOT]


def frame_for(store: FeatureStore, events: pd.DataFrame, version: str) -> pd.DataFrame:
    """Point-in-time features for event rows, in their order (Feast historical retrieval)."""
    t = time.perf_counter()
    frame = training_frame(store, events, version)
    if len(frame) != len(events):
        raise RuntimeError(f"historical retrieval returned {len(frame)} rows for {len(events)} events: an entity "
                           "lacks a feature row before its first event (see spark_jobs.lib.stats)")
    log.info("point-in-time frame: %d rows in %.1fs", len(frame), time.perf_counter() - t)
    return frame


def train_rankers(frame: pd.DataFrame, split: Split, params: LGBParams, version: str) -> dict[str, Ranker]:
    rankers = {}
    clicked = frame[R.CLICKED].to_numpy(bool)
    for name, feats in R.FEATURE_SETS.items():
        feats = list(feats)
        X = frame[feats].astype(float)
        boosters, best, rows = {}, {}, {}
        for task, label, mask in (("ctr", R.CLICKED, np.ones(len(frame), bool)), ("cvr", R.CONVERTED, clicked)):
            tr, va = split.train & mask, split.val & mask
            y = frame[label].to_numpy(float)
            boosters[task] = fit_binary(X[tr], y[tr], X[va], y[va], params)
            best[task], rows[task] = int(boosters[task].best_iteration), int(tr.sum())
        rankers[name] = Ranker(boosters, RankerConfig(name=name, features=feats, model_version=version, params=params,
                                                      best_iteration=best, train_rows=rows))
        log.info("trained %s: best iterations %s", name, best)
    return rankers


def test_metrics(frame: pd.DataFrame, split: Split, rankers: dict[str, Ranker]) -> dict:
    """AUC and logloss on the test days: pCTR on impressions (logged slot), pCVR on clicks."""
    out = {"auc": {"ctr": {}, "cvr": {}}, "logloss": {"ctr": {}, "cvr": {}}}
    test = frame[split.test]
    clicked = test[test[R.CLICKED].astype(bool)]
    for name, rk in rankers.items():
        for task, rows, label in (("ctr", test, R.CLICKED), ("cvr", clicked, R.CONVERTED)):
            p = rk.predict_frame(rows, slot=None)[task]
            y = rows[label].to_numpy(int)
            out["auc"][task][name] = float(roc_auc_score(y, p)) if 0 < y.sum() < len(y) else float("nan")
            out["logloss"][task][name] = float(log_loss(y, np.clip(p, 1e-7, 1 - 1e-7), labels=[0, 1]))
    out["test_rows"] = {"ctr": int(len(test)), "cvr": int(len(clicked))}
    return out


def off_policy(store, logs: EventLogs, version: str, split_days: list[int], rankers: dict[str, Ranker], K: int,
               n_boot: int, max_requests: int, seed: int = 0, simulated: bool = True) -> dict:
    """IPS/SNIPS CTR and CVR of each policy on (a sample of) the test days' logged requests (and of
    the logging policy without exploration when the candidates carry its legacy rank)."""
    test_req = logs.requests.loc[logs.requests[R.DAY] >= split_days[0], R.REQUEST_ID]
    if len(test_req) > max_requests:
        test_req = test_req.sample(max_requests, random_state=seed)
    keep = set(test_req)
    cand = logs.candidates[logs.candidates[R.REQUEST_ID].isin(keep)].reset_index(drop=True)
    frame = frame_for(store, cand[EVENT_COLS], version)
    imp = logs.impressions[logs.impressions[R.REQUEST_ID].isin(keep)].reset_index(drop=True)
    key = pd.MultiIndex.from_frame(imp[[R.REQUEST_ID, R.PRODUCT_ID]])
    policies = {name: rk.predict_frame(frame, slot=0)["score"] for name, rk in rankers.items()}
    if R.LEGACY_RANK in cand:
        policies["legacy"] = -cand[R.LEGACY_RANK].to_numpy(float)  # the logging policy without exploration
    out = {"simulated": simulated, "estimator_note": "slot-level IPS/SNIPS; CVR = conversions / clicks (IPS and SNIPS coincide)"}
    for name, score in policies.items():
        slot = _target_slots(cand, score, K)
        target = pd.Series(slot, index=pd.MultiIndex.from_frame(cand[[R.REQUEST_ID, R.PRODUCT_ID]]))
        target = target[~target.index.duplicated()]
        sums = OPE.per_request_sums(imp, target.reindex(key).fillna(-1).to_numpy(int))
        out[name] = OPE.evaluate(sums, n_boot=n_boot)
    return out


def _target_slots(cand: pd.DataFrame, score: np.ndarray, K: int) -> np.ndarray:
    """Slot (0..K-1) each candidate row gets when its request is ranked by `score`; -1 if not shown."""
    order = np.lexsort((-np.asarray(score), cand[R.REQUEST_ID].to_numpy()))
    req_sorted = cand[R.REQUEST_ID].to_numpy()[order]
    starts = np.r_[0, np.flatnonzero(req_sorted[1:] != req_sorted[:-1]) + 1]
    pos = np.arange(len(order)) - np.repeat(starts, np.diff(np.r_[starts, len(order)]))
    slot = np.full(len(cand), -1)
    slot[order] = np.where(pos < K, pos, -1)
    return slot


def ab_test(store, world: World, cfg: TrainConfig, version: str, rankers: dict[str, Ranker]) -> dict:
    """Fresh traffic on the day after the log, served by each ranker (and the legacy policy)."""
    sim = cfg.sim
    rng = np.random.default_rng(sim.seed + 1_000_003)
    traffic = draw_traffic(world, sim, rng, cfg.ab_requests, float(sim.days), 1.0, prefix="ab")
    cand = candidates_frame(world, traffic).assign(**{R.SLOT: 0})
    frame = frame_for(store, cand[EVENT_COLS], version)
    n, N = traffic.cand.shape
    u_click, u_conv = AB.uniforms(n, sim.n_slots, sim.seed + 7)
    arms = {name: AB.serve_arm(world, sim, traffic, AB.candidate_scores(frame, rk.predict_frame(frame, slot=0)["score"], n, N),
                               u_click, u_conv) for name, rk in rankers.items()}
    arms["legacy"] = AB.serve_arm(world, sim, traffic, -traffic.legacy_rank.astype(float), u_click, u_conv)
    return AB.compare(arms, "with_embeddings", "baseline", n_boot=cfg.n_boot)


def feature_tables(logs_dir: Path, products: Path, queries: Path, checkpoint: str | Path, data_dir: Path,
                   period: SimConfig, consumer_ids, valid_from: pd.Timestamp, progress: bool = False) -> str:
    """Run the batch jobs (`spark_jobs`, in-process) that write the ranker's offline tables under
    ``data_dir`` from a written event-log folder; returns the model version.

    Embedding tables hold from ``valid_from`` (the log may start before the embedding run);
    stats cover the logged days; daily consumer profiles cover them and the days after (the A/B).
    """
    kw = dict(valid_from=valid_from, progress=progress)
    version = embed_products(products, checkpoint, data_dir / FC.PRODUCT_EMBEDDINGS_TABLE, **kw)["model_version"]
    embed_queries(queries, checkpoint, data_dir / FC.QUERY_EMBEDDINGS_TABLE, **kw)
    write_stats(logs_dir, data_dir, period.start_ts, period.days)
    as_of = [period.day_start(d) for d in range(period.days + period.extra_days + 1)]
    write_consumer_profiles(logs_dir / R.PURCHASES_TABLE, data_dir / FC.PRODUCT_EMBEDDINGS_TABLE,
                            data_dir / FC.CONSUMER_EMBEDDINGS_TABLE, version, as_of, consumer_ids)
    return version


def with_start(cfg: TrainConfig) -> TrainConfig:
    """A config whose log ends today (UTC) when it sets no start, so `feast materialize-incremental` covers it."""
    if cfg.sim.start is not None:
        return cfg
    today = pd.Timestamp.now(tz="UTC").normalize()
    start = (today - pd.Timedelta(days=cfg.sim.days + cfg.sim.extra_days)).to_pydatetime()
    return cfg.model_copy(update={"sim": cfg.sim.model_copy(update={"start": start})})


def simulate_to(products: pd.DataFrame, cfg: TrainConfig, folder: Path) -> tuple[World, EventLogs]:
    """Simulate and write the event logs, the world's products, queries, bids and settings to ``folder``."""
    world = build_world(products, cfg.world)
    logs = simulate(world, cfg.sim)
    logs.write(folder)
    world.products.to_parquet(folder / R.PRODUCTS_TABLE, index=False)
    world.queries.to_parquet(folder / R.QUERIES_TABLE, index=False)
    pd.DataFrame({R.PRODUCT_ID: world.products[DC.PRODUCT_ID], R.BID: world.bids}).to_parquet(folder / R.BIDS_TABLE, index=False)
    (folder / R.WORLD_FILE).write_text(json.dumps(world.config.model_dump(mode="json"), indent=2) + "\n")
    log.info("simulated %d requests, %d impressions, %d clicks, %d conversions", len(logs.requests),
             len(logs.impressions), len(logs.clicks), len(logs.conversions))
    return world, logs


def run(products: pd.DataFrame, checkpoint: str | Path, out: Path, data_dir: Path, cfg: TrainConfig,
        progress: bool = False) -> dict:
    """The whole measurement: simulate, run the feature jobs, then `measure`; returns the report."""
    t0 = time.perf_counter()
    cfg = with_start(cfg)
    sim = out / "sim"
    world, logs = simulate_to(products, cfg, sim)
    valid_from = cfg.sim.day_start(-cfg.sim.history_days - 1)
    version = feature_tables(sim, sim / R.PRODUCTS_TABLE, sim / R.QUERIES_TABLE, checkpoint, data_dir, cfg.sim,
                             world.consumer_ids, valid_from, progress)
    report = measure(world, logs, cfg, checkpoint, version, out, data_dir)
    report["seconds"] = round(time.perf_counter() - t0, 1)
    return report


def measure(world: World, logs: EventLogs, cfg: TrainConfig, checkpoint: str | Path, version: str, out: Path,
            data_dir: Path) -> dict:
    """The ranker's part, which only reads the feature data: point-in-time frames, the two rankers
    (saved under ``out/models``), test metrics, off-policy estimates and the simulated A/B."""
    store = offline_store(out / "feast", data_dir, version, cfg.project)
    imp = logs.impressions
    frame = frame_for(store, imp[EVENT_COLS + [R.CLICKED, R.CONVERTED]], version)
    split = time_split(frame[R.DAY].to_numpy(), cfg.sim.days, cfg.val_fraction, cfg.test_fraction)
    rankers = train_rankers(frame, split, cfg.params, version)
    for name, rk in rankers.items():
        rk.save(out / "models" / name)
    metrics = test_metrics(frame, split, rankers)
    ope = off_policy(store, logs, version, split.days["test"], rankers, cfg.sim.n_slots, cfg.n_boot, cfg.ope_requests)
    ab = ab_test(store, world, cfg, version, rankers)
    return {
        "simulated": True,
        "note": "all clicks, conversions and rates come from the traffic simulator (ranking/simulator.py), not real users",
        "truth": cfg.world.truth, "truth_note": truth_note(cfg.world.truth),
        "checkpoint": str(checkpoint), "model_version": version,
        "auc": metrics["auc"], "logloss": metrics["logloss"], "test_rows": metrics["test_rows"],
        "off_policy": ope, "ab": ab, "split_days": split.days,
        "log": {"requests": len(logs.requests), "impressions": len(imp), "clicks": len(logs.clicks),
                "conversions": len(logs.conversions), "purchases": len(logs.purchases),
                "logged_ctr": float(imp[R.CLICKED].mean())},
        "features": {name: rk.features for name, rk in rankers.items()},
        "config": cfg.model_dump(mode="json"),
    }
