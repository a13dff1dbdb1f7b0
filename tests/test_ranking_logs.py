"""`ranking.train --logs`: the ranker on logs in the simulator's schema, with and without propensities."""

from __future__ import annotations

import json
from datetime import datetime, timezone

import numpy as np
import pandas as pd
import pytest

from dashclip import columns as DC
from ranking import columns as R
from ranking.model import LGBParams, Ranker
from ranking.simulator import SimConfig, simulate
from ranking.toy import toy_catalog
from ranking.world import WorldConfig, build_world

START = datetime(2025, 3, 1, tzinfo=timezone.utc)


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    from dashclip.tiny import make_tiny_checkpoint

    root = tmp_path_factory.mktemp("ranker_logs")
    products = toy_catalog(200, seed=0)
    products.to_parquet(root / "products.parquet", index=False)
    world = build_world(products, WorldConfig(n_consumers=60, seed=2, queries_per_category=3))
    logs = simulate(world, SimConfig(start=START, days=8, requests_per_day=150, history_days=14, n_candidates=8,
                                     n_slots=3, extra_days=0, seed=3))
    full = logs.write(root / "full")
    world.queries[[DC.QUERY_ID, DC.QUERY]].to_parquet(full / "queries.parquet", index=False)
    # a log without propensities or candidates, as CSV, query texts on the impressions
    bare = root / "bare"
    bare.mkdir()
    texts = dict(zip(world.queries[DC.QUERY_ID], world.queries[DC.QUERY]))
    imp = logs.impressions.drop(columns=[R.PROPENSITY]).assign(**{R.QUERY: lambda d: d[R.QUERY_ID].map(texts)})
    imp.to_csv(bare / "impressions.csv", index=False)
    logs.clicks.to_csv(bare / "clicks.csv", index=False)
    logs.conversions.to_csv(bare / "conversions.csv", index=False)
    return dict(root=root, full=full, bare=bare, ckpt=make_tiny_checkpoint(root / "ckpt"), logs=logs)


def _train(setup, logs_dir, name, *extra) -> tuple[int, dict | None]:
    from ranking.train import main

    out = setup["root"] / f"out_{name}"
    cfg = setup["root"] / "cfg.json"
    cfg.write_text(json.dumps({"params": LGBParams(num_boost_round=30, early_stopping_rounds=5,
                                                   min_data_in_leaf=10).model_dump(), "n_boot": 50}))
    rc = main(["--logs", str(logs_dir), "--checkpoint", str(setup["ckpt"]), "--products", str(setup["root"] / "products.parquet"),
               "--out", str(out), "--feature-data", str(setup["root"] / f"data_{name}"), "--config", str(cfg), *extra])
    return rc, (json.loads((out / "report.json").read_text()) if rc == 0 else None)


def test_logs_with_propensities_give_auc_and_off_policy_estimates(setup):
    rc, r = _train(setup, setup["full"], "full")
    assert rc == 0
    assert r["simulated"] is False and r["source"] == str(setup["full"])
    assert r["estimates"]["off_policy"] == "made" and "live traffic" in r["estimates"]["ab"]
    imp = setup["logs"].impressions
    assert r["log"]["impressions"] == len(imp) and r["log"]["clicks"] == int(imp[R.CLICKED].sum())
    assert r["log"]["conversions"] == int(imp[R.CONVERTED].sum())
    for task in ("ctr", "cvr"):
        for name in ("with_embeddings", "baseline"):
            assert 0.0 <= r["auc"][task][name] <= 1.0 or np.isnan(r["auc"][task][name])
    ope = r["off_policy"]
    assert {"with_embeddings", "baseline"} <= set(ope) and "legacy" not in ope  # no legacy rank in a log
    assert 0.0 <= ope["with_embeddings"]["snips_ctr"]["value"] <= 1.0
    # the logged CTR the estimator sees is the log's own
    test_days = imp[imp[R.DAY] >= r["split_days"]["test"][0]]
    assert ope["baseline"]["logged_ctr"]["value"] == pytest.approx(test_days[R.CLICKED].mean())
    rk = Ranker.load(setup["root"] / "out_full" / "models" / "with_embeddings")
    assert rk.features == list(R.FEATURE_SETS["with_embeddings"])
    assert "Off-policy" in (setup["root"] / "out_full" / "report.md").read_text()


def test_logs_without_propensity_say_why_there_is_no_off_policy_estimate(setup, capsys):
    rc, r = _train(setup, setup["bare"], "bare")
    assert rc == 0
    assert r["off_policy"] is None
    assert "no logging propensity" in r["estimates"]["off_policy"]
    assert r["estimates"]["auc_logloss"] == "made"
    assert "no logging propensity" in capsys.readouterr().out
    assert r["log"]["purchases"] == 0 and r["log"]["has_purchases"] is False


def test_a_log_with_a_missing_column_stops_naming_file_and_column(setup, tmp_path, capsys):
    bad = tmp_path / "bad"
    bad.mkdir()
    for t in ("impressions", "clicks", "conversions"):
        df = pd.read_csv(setup["bare"] / f"{t}.csv", dtype=str)
        (df.drop(columns=[R.CONSUMER_ID]) if t == "impressions" else df).to_csv(bad / f"{t}.csv", index=False)
    rc, _ = _train(setup, bad, "bad")
    assert rc == 2
    assert f"error: {bad / 'impressions.csv'}, column 'consumer_id': missing required column" in capsys.readouterr().err
