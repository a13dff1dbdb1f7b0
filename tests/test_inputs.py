"""Bring-your-own-data inputs: one validation pass naming file, row, column and value of every problem."""

from __future__ import annotations

from datetime import datetime, timezone

import pandas as pd
import pytest

from dashclip import columns as DC
from dashclip import inputs as I
from ranking import columns as R
from ranking.simulator import SimConfig, simulate
from ranking.toy import toy_catalog
from ranking.world import WorldConfig, build_world

START = datetime(2025, 3, 1, tzinfo=timezone.utc)


@pytest.fixture(scope="module")
def sim_dir(tmp_path_factory):
    """A catalog and a small log written by the simulator (its own schema)."""
    root = tmp_path_factory.mktemp("inputs")
    products = toy_catalog(120, seed=0)
    products.to_parquet(root / "products.parquet", index=False)
    world = build_world(products, WorldConfig(n_consumers=30, seed=1, queries_per_category=2))
    logs = simulate(world, SimConfig(start=START, days=4, requests_per_day=40, history_days=7, n_candidates=8,
                                     n_slots=3, seed=3))
    logs.write(root / "logs")
    world.queries[[DC.QUERY_ID, DC.QUERY]].to_parquet(root / "logs" / "queries.parquet", index=False)
    return root


def lines(problems) -> list[str]:
    return [p.line() for p in problems]


def test_a_simulator_log_and_good_files_pass(sim_dir, tmp_path):
    prods = pd.read_parquet(sim_dir / "products.parquet")
    pd.DataFrame({"query_id": ["q1", "q2"], "query": ["black shirt", "red shoes"], "count": ["3", ""]}).to_csv(
        tmp_path / "q.csv", index=False)
    pd.DataFrame({"query_id": ["q1", "q1"], "query": ["black shirt"] * 2, "product_id": prods[DC.PRODUCT_ID][:2],
                  "label": [3, 0]}).to_csv(tmp_path / "j.csv", index=False)
    assert I.check_inputs(sim_dir / "products.parquet", tmp_path / "q.csv", tmp_path / "j.csv", sim_dir / "logs") == []
    assert I.main(["check", "--catalog", str(sim_dir), "--logs", str(sim_dir / "logs")]) == 0


def test_judgments_problems_each_name_file_row_column_and_value(sim_dir, tmp_path):
    pid = pd.read_parquet(sim_dir / "products.parquet")[DC.PRODUCT_ID].iloc[0]
    path = tmp_path / "judg.csv"
    pd.DataFrame({"query_id": ["q1", "q1", "q2", "", "q1"], "query": ["a", "a", "b", "c", "other"],
                  "product_id": [pid, "nope-7", pid, pid, pid], "label": ["3", "5", "x", "1", "2"]}).to_csv(path, index=False)
    got = lines(I.check_judgments(path, {pid}))
    assert f"{path}, row 1, column 'product_id', value 'nope-7': product_id not in the catalog" in got
    assert f"{path}, row 1, column 'label', value '5': not an integer in [0, 3]" in got
    assert f"{path}, row 2, column 'label', value 'x': not an integer in [0, 3]" in got
    assert f"{path}, row 3, column 'query_id', value '': empty" in got
    assert any(s.startswith(f"{path}, row 4, column 'product_id'") and "duplicate" in s and "row 0" in s for s in got)
    assert any(s.startswith(f"{path}, row 4, column 'query'") and "another text" in s for s in got)
    assert len(got) == 6


def test_a_log_with_a_missing_column_and_orphan_clicks(sim_dir, tmp_path):
    logs = tmp_path / "logs"
    logs.mkdir()
    imp = pd.read_parquet(sim_dir / "logs" / "impressions.parquet").drop(columns=[R.SLOT])
    imp.to_parquet(logs / "impressions.parquet", index=False)
    clicks = pd.read_parquet(sim_dir / "logs" / "clicks.parquet")
    clicks.loc[0, R.PRODUCT_ID] = "ghost"
    clicks.to_csv(logs / "clicks.csv", index=False)  # CSV tables read as well
    pd.read_parquet(sim_dir / "logs" / "conversions.parquet").to_parquet(logs / "conversions.parquet", index=False)
    pd.read_parquet(sim_dir / "logs" / "queries.parquet").to_parquet(logs / "queries.parquet", index=False)
    got = lines(I.check_logs(logs, None))
    assert any(s.startswith(f"{logs / 'impressions.parquet'}, column 'slot': missing required column") for s in got)
    assert f"{logs / 'clicks.csv'}, row 0, column 'product_id', value 'ghost': no impression of this product " \
           f"in request {clicks.loc[0, R.REQUEST_ID]!r}" in got


def test_logs_without_propensity_or_query_texts(sim_dir, tmp_path):
    logs = tmp_path / "logs"
    logs.mkdir()
    imp = pd.read_parquet(sim_dir / "logs" / "impressions.parquet").drop(columns=[R.PROPENSITY])
    imp.to_parquet(logs / "impressions.parquet", index=False)
    for t in ("clicks", "conversions"):
        pd.read_parquet(sim_dir / "logs" / f"{t}.parquet").to_parquet(logs / f"{t}.parquet", index=False)
    got = I.check_logs(logs, None)  # propensity is optional; the query texts are not
    assert got and all(p.column == R.QUERY_ID and "no query text" in p.reason for p in got)
    assert len(got) == len(imp)
    qlog = pd.read_parquet(sim_dir / "logs" / "queries.parquet")
    assert I.check_logs(logs, None, qlog) == []  # texts from the query log
    imp.loc[[2, 5], R.EVENT_TIMESTAMP] = pd.NaT
    imp.assign(**{R.PROPENSITY: 0.5}).astype({R.PROPENSITY: object}).assign(
        **{R.PROPENSITY: lambda d: d[R.PROPENSITY].where(d.index != 4, "1.5")}).astype(str).to_csv(
        logs / "impressions.csv", index=False)
    (logs / "impressions.parquet").unlink()
    got = lines(I.check_logs(logs, None, qlog))
    path = logs / "impressions.csv"
    assert f"{path}, row 4, column 'propensity', value '1.5': not a number in (0, 1]" in got
    assert any(s.startswith(f"{path}, row 2, column 'event_timestamp'") for s in got)


def test_cli_exits_2_listing_every_problem(sim_dir, tmp_path, capsys):
    path = tmp_path / "q.csv"
    pd.DataFrame({"query_id": ["a", "a", "b"], "query": ["x", "y", ""]}).to_csv(path, index=False)
    rc = I.main(["check", "--catalog", str(sim_dir / "products.parquet"), "--queries", str(path),
                 "--logs", str(tmp_path / "nowhere")])
    err = capsys.readouterr().err
    assert rc == 2
    assert f"error: {path}, row 1, column 'query_id', value 'a': duplicate query_id (first at row 0)" in err
    assert f"error: {path}, row 2, column 'query', value '': empty" in err
    assert f"error: {tmp_path / 'nowhere'}: logs folder not found" in err
    assert "3 input problem(s)" in err


def test_tables_missing_key_columns_are_reported_not_a_crash(sim_dir, tmp_path):
    logs = tmp_path / "logs"
    logs.mkdir()
    for t, drop in (("impressions", R.REQUEST_ID), ("clicks", R.PRODUCT_ID), ("conversions", None)):
        df = pd.read_parquet(sim_dir / "logs" / f"{t}.parquet")
        (df.drop(columns=[drop]) if drop else df).to_parquet(logs / f"{t}.parquet", index=False)
    got = lines(I.check_logs(logs, None, pd.read_parquet(sim_dir / "logs" / "queries.parquet")))
    assert any(s.startswith(f"{logs / 'impressions.parquet'}, column 'request_id': missing required column") for s in got)
    assert any(s.startswith(f"{logs / 'clicks.parquet'}, column 'product_id': missing required column") for s in got)
    assert len(got) == 2
