"""Ads ranker: simulator, off-policy estimators, point-in-time frames, the ranker's feature guard,
and a small end-to-end `ranking.pipeline.run` (tiny checkpoint, toy catalog, real Feast)."""

from __future__ import annotations

import json
from datetime import datetime, timezone

import numpy as np
import pandas as pd
import pytest

from dashclip import columns as DC
from features import columns as FC
from ranking import columns as R
from ranking import offpolicy as OPE
from ranking.model import FeatureMismatch, LGBParams, Ranker, RankerConfig, fit_binary
from ranking.simulator import SimConfig, simulate
from ranking.toy import toy_catalog
from ranking.world import WorldConfig, build_world

START = datetime(2025, 3, 1, tzinfo=timezone.utc)


@pytest.fixture(scope="module")
def products():
    return toy_catalog(240, seed=0)


@pytest.fixture(scope="module")
def world(products):
    return build_world(products, WorldConfig(n_consumers=80, seed=1, queries_per_category=4))


def small_sim(**kw) -> SimConfig:
    base = dict(start=START, days=6, requests_per_day=300, history_days=28, n_candidates=12, n_slots=4, seed=3)
    return SimConfig(**{**base, **kw})


def test_simulator_is_deterministic_given_seeds(products, world):
    a, b = simulate(world, small_sim()), simulate(world, small_sim())
    for name in ("requests", "candidates", "impressions", "clicks", "conversions", "purchases"):
        pd.testing.assert_frame_equal(getattr(a, name), getattr(b, name), obj=name)
    c = simulate(world, small_sim(seed=4))
    assert not c.impressions[R.PRODUCT_ID].equals(a.impressions[R.PRODUCT_ID])
    w2 = build_world(products, WorldConfig(n_consumers=80, seed=1, queries_per_category=4))
    assert np.array_equal(w2.bids, world.bids) and all(np.array_equal(w2.weights[k], world.weights[k]) for k in world.weights)


def test_clicks_respond_to_relevance_position_and_affinity(world):
    logs = simulate(world, small_sim(days=10, requests_per_day=600))
    imp = logs.impressions
    by_grade = imp.groupby(R.GRADE)[R.CLICKED].mean()
    # every grade present clicks more than the one below (the toy catalog holds no complements: no 1s)
    assert by_grade.loc[3] > by_grade.loc[2] > by_grade.loc[0] and by_grade.is_monotonic_increasing
    by_slot = imp[imp[R.REQUEST_ID].isin(logs.requests.loc[logs.requests[R.EXPLORED], R.REQUEST_ID])]
    slot_ctr = by_slot.groupby(R.SLOT)[R.CLICKED].mean()  # random slates: same items on average
    assert slot_ctr.loc[0] > slot_ctr.loc[3]
    hi, lo = imp[R.AFFINITY] > 1.3, imp[R.AFFINITY] < 0.7
    assert imp.loc[hi, R.CLICKED].mean() > 1.5 * imp.loc[lo, R.CLICKED].mean()
    # the ground-truth probabilities follow the documented formula exactly
    cfg = small_sim()
    expect = np.minimum(1, np.asarray(cfg.position_bias)[imp[R.SLOT]] * np.asarray(cfg.ctr_by_grade)[imp[R.GRADE]] * imp[R.AFFINITY])
    np.testing.assert_allclose(imp[R.P_CLICK], expect)
    assert not imp.loc[~imp[R.CLICKED], R.CONVERTED].any()  # no conversion without a click
    assert set(logs.purchases[R.PURCHASE_SOURCE]) == {"organic", "ad"}


def test_logging_propensities_are_the_policy_probabilities(world):
    cfg = small_sim(days=8, requests_per_day=500, epsilon=0.4)
    logs = simulate(world, cfg)
    imp = logs.impressions
    greedy = imp[R.LEGACY_RANK] == imp[R.SLOT]
    N = cfg.n_candidates
    np.testing.assert_allclose(imp.loc[greedy, R.PROPENSITY], 1 - cfg.epsilon + cfg.epsilon / N)
    np.testing.assert_allclose(imp.loc[~greedy, R.PROPENSITY], cfg.epsilon / N)
    # empirical P(legacy top item in slot 0) matches the logged propensity
    top = logs.candidates[logs.candidates[R.LEGACY_RANK] == 0]
    assert abs((top[R.SLOT] == 0).mean() - (1 - cfg.epsilon + cfg.epsilon / N)) < 0.04
    assert logs.requests[R.EXPLORED].mean() == pytest.approx(cfg.epsilon, abs=0.04)


def test_ips_and_snips_on_a_toy_log_with_known_answer():
    # one slot, two items logged uniformly (propensity 0.5); item A clicked in 30% of its
    # impressions, B in 10%. Target policy "always A": true CTR 0.3; "always B": 0.1.
    n = 1000
    item = np.array(["A", "B"] * (n // 2))
    click = np.zeros(n, bool)
    click[np.flatnonzero(item == "A")[:150]] = True  # 150 of 500
    click[np.flatnonzero(item == "B")[:50]] = True  # 50 of 500
    log = pd.DataFrame({R.REQUEST_ID: [f"r{i}" for i in range(n)], R.SLOT: 0, R.PROPENSITY: 0.5,
                        R.CLICKED: click, R.CONVERTED: click & (np.arange(n) % 3 == 0), R.PRODUCT_ID: item})
    for target, truth in (("A", 0.3), ("B", 0.1)):
        sums = OPE.per_request_sums(log, np.where(item == target, 0, -1))
        est = OPE.evaluate(sums, n_boot=200)
        assert est["ips_ctr"]["value"] == pytest.approx(truth)
        assert est["snips_ctr"]["value"] == pytest.approx(truth)
        lo, hi = est["ips_ctr"]["ci95"]
        assert lo < truth < hi
        conv = (click & (np.arange(n) % 3 == 0))[item == target].sum() / click[item == target].sum()
        assert est["snips_cvr"]["value"] == pytest.approx(conv)
    # SNIPS normalises by the realised weights: with propensities off by 2x IPS is off, SNIPS is not
    sums = OPE.per_request_sums(log.assign(**{R.PROPENSITY: 0.25}), np.where(item == "A", 0, -1))
    est = OPE.evaluate(sums, n_boot=50)
    assert est["ips_ctr"]["value"] == pytest.approx(0.6) and est["snips_ctr"]["value"] == pytest.approx(0.3)


def _toy_ranker(features: list[str]) -> Ranker:
    rng = np.random.default_rng(0)
    X = pd.DataFrame(rng.random((400, len(features))), columns=features)
    y = (X.iloc[:, 0] + 0.3 * rng.random(400) > 0.8).to_numpy(float)
    p = LGBParams(num_boost_round=5, early_stopping_rounds=2, min_data_in_leaf=5)
    b = {t: fit_binary(X[:300], y[:300], X[300:], y[300:], p) for t in R.TASKS}
    return Ranker(b, RankerConfig(name="toy", features=features, params=p))


def test_ranker_refuses_features_that_do_not_match_its_stored_order(tmp_path):
    feats = list(R.EMBEDDING_FEATURES)
    rk = _toy_ranker(feats)
    X = np.random.default_rng(1).random((3, len(feats)))
    assert rk.predict(X, feats)["score"].shape == (3,)
    with pytest.raises(FeatureMismatch, match="order differs"):
        rk.predict(X, feats[::-1])
    with pytest.raises(FeatureMismatch, match=f"missing \\['{FC.COS_QUERY_CONSUMER}'\\]"):
        rk.predict(X[:, :-1], feats[:-1])
    rk.save(tmp_path / "m")
    assert Ranker.load(tmp_path / "m").features == feats
    (tmp_path / "m" / "features.json").write_text(json.dumps(feats[::-1]))
    with pytest.raises(FeatureMismatch, match="differs"):
        Ranker.load(tmp_path / "m")


@pytest.fixture(scope="module")
def pipeline_run(tmp_path_factory, products):
    """One small end-to-end run: simulate, feature tables, Feast frames, training, report."""
    from dashclip.tiny import make_tiny_checkpoint
    from ranking import report as REPORT
    from ranking.pipeline import TrainConfig, run

    root = tmp_path_factory.mktemp("ranker")
    ckpt = make_tiny_checkpoint(root / "ckpt")
    cfg = TrainConfig(world=WorldConfig(n_consumers=60, seed=2, queries_per_category=3),
                      sim=small_sim(days=8, requests_per_day=150, n_candidates=8, n_slots=3, extra_days=1),
                      params=LGBParams(num_boost_round=30, early_stopping_rounds=5, min_data_in_leaf=10),
                      ab_requests=150, n_boot=50)
    out, data = root / "out", root / "data"
    report = run(products, ckpt, out, data, cfg)
    paths = REPORT.write(report, out)
    return dict(report=report, paths=paths, out=out, data=data, cfg=cfg)


def test_pipeline_writes_models_and_a_report_with_the_required_keys(pipeline_run):
    r = json.loads(pipeline_run["paths"]["json"].read_text())
    assert r["simulated"] is True
    for task in ("ctr", "cvr"):
        for name in ("with_embeddings", "baseline"):
            assert 0.0 <= r["auc"][task][name] <= 1.0 or np.isnan(r["auc"][task][name])
    ab = r["ab"]
    for key in ("ctr_lift", "cvr_lift"):
        assert isinstance(ab[key], float)
        lo, hi = ab[f"{key}_ci95"]
        assert lo <= hi
    assert r["off_policy"]["with_embeddings"]["snips_ctr"]["ci95"][0] <= r["off_policy"]["with_embeddings"]["snips_ctr"]["ci95"][1]
    md = pipeline_run["paths"]["markdown"].read_text()
    assert "SIMULATED" in md
    assert r["truth"] == "annotator" and "(`world.truth`): **annotator**" in md  # the default truth, said so
    assert json.loads((pipeline_run["out"] / "sim" / R.WORLD_FILE).read_text())["truth"] == "annotator"
    for png in ("auc", "off_policy", "ab"):
        assert pipeline_run["paths"][png].stat().st_size > 1000
    for name in ("with_embeddings", "baseline"):
        rk = Ranker.load(pipeline_run["out"] / "models" / name)
        assert rk.features == list(R.FEATURE_SETS[name])
        assert (pipeline_run["out"] / "models" / name / "ctr.txt").read_text().startswith("tree")


def test_training_frames_are_point_in_time_correct(pipeline_run):
    """Every joined feature is the latest row at or before the impression, never a later one."""
    from ranking.pipeline import EVENT_COLS, frame_for, offline_store

    out, data = pipeline_run["out"], pipeline_run["data"]
    version = pipeline_run["report"]["model_version"]
    imp = pd.read_parquet(out / "sim" / "impressions.parquet")
    ev = imp.sample(300, random_state=0).sort_values(DC.EVENT_TIMESTAMP).reset_index(drop=True)
    store = offline_store(out / "feast_pit", data, version)
    frame = frame_for(store, ev[EVENT_COLS], version)
    assert len(frame) == len(ev)
    stats = pd.read_parquet(data / FC.PRODUCT_STATS_TABLE)
    col = R.stats_feature(FC.PRODUCT_STATS_VIEW, FC.PRODUCT_IMPRESSIONS)
    checked_future = 0
    for row, got in zip(ev.itertuples(), frame[col]):
        rows = stats[stats[DC.PRODUCT_ID] == row.product_id]
        past = rows[rows[DC.EVENT_TIMESTAMP] <= row.event_timestamp]
        expect = past.sort_values(DC.EVENT_TIMESTAMP)[FC.PRODUCT_IMPRESSIONS].iloc[-1] if len(past) else None
        assert (pd.isna(got) and pd.isna(expect)) or got == expect
        checked_future += int((rows[DC.EVENT_TIMESTAMP] > row.event_timestamp).any())
    assert checked_future > 100  # most products have later rows that had to be ignored
    # the stats never count the impression itself: impressions so far < impressions by the end of the log
    cons = pd.read_parquet(data / FC.CONSUMER_EMBEDDINGS_TABLE)
    day0 = pipeline_run["cfg"].sim.start_ts
    assert cons[DC.EVENT_TIMESTAMP].min() == day0  # profiles valid from midnight, from past purchases only
    emb = frame[FC.COS_CONSUMER_PRODUCT]
    assert emb.notna().mean() > 0.5


def test_the_ranker_writes_nothing_under_the_feature_data_folder(pipeline_run, products, tmp_path):
    """The jobs (spark_jobs) write the tables; the ranker's part of a run only reads them."""
    from dashclip.events import EventLogs
    from ranking.pipeline import measure

    data, cfg = pipeline_run["data"], pipeline_run["cfg"]

    def files():
        return {str(p.relative_to(data)): (p.stat().st_mtime_ns, p.stat().st_size) for p in data.rglob("*")}

    before = files()
    assert any(k.endswith(".parquet") for k in before)
    world = build_world(products, cfg.world)
    logs = EventLogs.read(pipeline_run["out"] / "sim")
    again = measure(world, logs, cfg, "ckpt", pipeline_run["report"]["model_version"], tmp_path / "out", data)
    assert files() == before
    assert again["auc"] == pipeline_run["report"]["auc"]  # the same tables read, the same figures


# --- whose relevance the simulated clicks follow (world.truth) -------------------------------------
def test_each_truth_grades_the_world_with_its_own_grader_and_only_the_grades_differ(products, world):
    from dashclip.judge import Judge
    from dashclip.queries import Annotator

    assert world.config.truth == "annotator"
    indep = build_world(products, WorldConfig(n_consumers=80, seed=1, queries_per_category=4, truth="independent"))
    queries = list(world.queries[DC.QUERY])
    annotator = np.stack([Annotator(products).grade_all(q) for q in queries])
    judge = Judge(products).grade_matrix(queries)
    np.testing.assert_array_equal(world.grades, annotator)
    np.testing.assert_array_equal(indep.grades, judge)
    differ = annotator != judge
    assert differ.any()  # the two graders disagree on some pairs of this pool, so the worlds do there
    assert np.array_equal(world.grades != indep.grades, differ)
    # everything but relevance is the same world
    pd.testing.assert_frame_equal(indep.queries, world.queries)
    assert np.array_equal(indep.bids, world.bids)
    assert all(np.array_equal(indep.weights[k], world.weights[k]) for k in world.weights)


def test_clicks_in_an_independent_world_follow_the_judges_grades(products):
    from dashclip.judge import Judge

    w = build_world(products, WorldConfig(n_consumers=80, seed=1, queries_per_category=4, truth="independent"))
    imp = simulate(w, small_sim(days=3, requests_per_day=200)).impressions
    qi = pd.Index(w.queries[DC.QUERY_ID]).get_indexer(imp[R.QUERY_ID])
    pi = pd.Index(products[DC.PRODUCT_ID]).get_indexer(imp[R.PRODUCT_ID])
    judge = Judge(products).grade_matrix(list(w.queries[DC.QUERY]))
    np.testing.assert_array_equal(imp[R.GRADE].to_numpy(), judge[qi, pi])


def test_an_unknown_truth_is_refused_naming_the_field():
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="truth"):
        WorldConfig(truth="llm")


def _truth_report(report: dict, truth: str, ctr_lift: float) -> dict:
    from ranking.world import truth_note

    ab = {**report["ab"], "ctr_lift": ctr_lift, "ctr_lift_ci95": [ctr_lift - 0.05, ctr_lift + 0.05]}
    return {**report, "truth": truth, "truth_note": truth_note(truth), "ab": ab}


def test_lift_by_truth_compares_each_truths_auc_and_ab_lift(pipeline_run, tmp_path):
    from ranking import report as REPORT

    r = pipeline_run["report"]
    reports = {"annotator": _truth_report(r, "annotator", 0.12), "independent": _truth_report(r, "independent", 0.04)}
    paths = REPORT.write_by_truth(reports, tmp_path)
    c = json.loads(paths["json"].read_text())
    assert c["simulated"] is True and list(c["truths"]) == ["annotator", "independent"]
    for truth, t in c["truths"].items():
        auc = r["auc"]["ctr"]
        assert t["pctr_auc"]["with_embeddings"] == pytest.approx(auc["with_embeddings"])
        assert t["pctr_auc"]["difference"] == pytest.approx(auc["with_embeddings"] - auc["baseline"])
        assert t["ab"]["ctr_lift"] == reports[truth]["ab"]["ctr_lift"]
        assert t["ab"]["cvr_lift_ci95"] == r["ab"]["cvr_lift_ci95"]
    md = paths["markdown"].read_text()
    rows = [line for line in md.splitlines() if line.startswith("| annotator") or line.startswith("| independent")]
    assert len(rows) == 2 and "+12.0% [+7.0%, +17.0%]" in rows[0] and "+4.0% [-1.0%, +9.0%]" in rows[1]
    assert "SIMULATED" in md


def test_a_report_without_a_truth_says_it_followed_the_annotator(pipeline_run):
    from ranking import report as REPORT

    old = {k: v for k, v in pipeline_run["report"].items() if k not in ("truth", "truth_note")}
    assert "(`world.truth`): **annotator**, the rule annotator's grades" in REPORT.markdown(old)
    assert "**independent**, the independent ESCI judge's" in REPORT.markdown({**old, "truth": "independent"})


def test_train_cli_truth_both_runs_once_per_truth_and_writes_the_comparison(pipeline_run, products, tmp_path,
                                                                            monkeypatch):
    import ranking.pipeline
    from ranking import train

    calls = []

    def fake_run(products_, checkpoint, out, data_dir, cfg, progress=False):  # the measurement, already tested above
        calls.append((cfg.world.truth, out))
        lift = {"annotator": 0.1, "independent": 0.02}[cfg.world.truth]
        return _truth_report(pipeline_run["report"], cfg.world.truth, lift)

    monkeypatch.setattr(ranking.pipeline, "run", fake_run)
    catalog = tmp_path / "products.parquet"
    products.to_parquet(catalog, index=False)
    base = ["--checkpoint", "ckpt", "--catalog", str(catalog), "--feature-data", str(tmp_path / "data")]
    out = tmp_path / "both"
    assert train.main(base + ["--out", str(out), "--truth", "both"]) == 0
    # the default truth runs last, so the feature tables left behind are the default world's
    assert calls == [("independent", out / "truth=independent"), ("annotator", out / "truth=annotator")]
    for truth in ("annotator", "independent"):
        assert json.loads((out / f"truth={truth}" / "report.json").read_text())["truth"] == truth
        assert f"**{truth}**" in (out / f"truth={truth}" / "report.md").read_text()
    c = json.loads((out / "lift_by_truth.json").read_text())
    assert {t: v["ab"]["ctr_lift"] for t, v in c["truths"].items()} == {"annotator": 0.1, "independent": 0.02}
    assert "| independent |" in (out / "lift_by_truth.md").read_text()

    calls.clear()
    assert train.main(base + ["--out", str(tmp_path / "one"), "--truth", "independent"]) == 0
    assert calls == [("independent", tmp_path / "one")]
    assert json.loads((tmp_path / "one" / "report.json").read_text())["truth"] == "independent"


def test_train_cli_truth_is_for_simulated_traffic_only(tmp_path, capsys):
    from ranking import train
    from ranking.world import TRUTHS

    assert train.TRUTHS == TRUTHS  # spelled twice so that --help imports nothing heavy
    rc = train.main(["--checkpoint", "ckpt", "--logs", str(tmp_path), "--truth", "both"])
    assert rc == 2 and "--truth" in capsys.readouterr().err
