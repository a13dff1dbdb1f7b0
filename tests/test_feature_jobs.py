"""The batch jobs' in-process engines (spark_jobs.lib.embed_local, consumer_profile): the table
protocol the Spark jobs use, the valid-from time, the profile definition's window."""

from __future__ import annotations

from datetime import timedelta

import numpy as np
import pandas as pd
import pytest

from dashclip import columns as C
from dashclip.events import CONSUMER_ID
from ranking.toy import toy_catalog
from spark_jobs.lib import table
from spark_jobs.lib.consumer_profile import WINDOW_DAYS, consumer_profiles, micros, window_means, write_consumer_profiles
from spark_jobs.lib.embed_local import embed_products

T0 = pd.Timestamp("2025-03-01", tz="UTC")
DAY = timedelta(days=1)


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    from dashclip.tiny import make_tiny_checkpoint

    return make_tiny_checkpoint(tmp_path_factory.mktemp("ckpt") / "tiny")


def _files(folder):
    """Every file but the writer lock (which each run's holder note rewrites) with its mtime."""
    return {str(p.relative_to(folder)): p.stat().st_mtime_ns for p in folder.rglob("*")
            if p.is_file() and p.name != table.S.LOCK}


def test_embedding_job_restamps_to_valid_from_in_one_committed_row_per_id(ckpt, tmp_path):
    products = toy_catalog(15, seed=0)
    products.iloc[:10].to_parquet(tmp_path / "first.parquet", index=False)
    products.to_parquet(tmp_path / "all.parquet", index=False)
    out = tmp_path / "product_embeddings"
    first = embed_products(tmp_path / "first.parquet", ckpt, out)  # no valid_from: stamped with the run time
    version = first["model_version"]
    part = out / table.partition(version)
    before = pd.read_parquet(part).set_index(C.PRODUCT_ID)
    assert len(before) == 10 and (before[C.EVENT_TIMESTAMP] > T0).all()

    second = embed_products(tmp_path / "all.parquet", ckpt, out, valid_from=T0)
    assert (second["rows_embedded"], second["rows_restamped"]) == (5, 10)
    after = pd.read_parquet(part).set_index(C.PRODUCT_ID)
    assert len(after) == 15 and after.index.is_unique and (after[C.EVENT_TIMESTAMP] == T0).all()
    for pid in before.index:  # the vectors stay; only the time they hold from moves
        np.testing.assert_array_equal(after.loc[pid, C.EMBEDDING], before.loc[pid, C.EMBEDDING])
    assert table.committed_run(out, version) == second["run_id"]
    assert table.verify(out, table.load_report(out, second["run_id"])["table"]) is None  # the manifest holds

    files = _files(out)
    third = embed_products(tmp_path / "all.parquet", ckpt, out, valid_from=T0)
    assert third.get("unchanged") and _files(out) == files  # nothing to do: nothing written


def test_the_profile_window_is_half_open_and_counts_repeat_purchases():
    t = int(micros([T0])[0])
    win = int(WINDOW_DAYS * 86400e6)
    ts = np.array([t, t - 1, t - win, t - win + 1, t + 1])  # at T in; at T - window out; after T out
    emb = np.eye(5, dtype=np.float32)
    mean, n = window_means(np.zeros(5, dtype=np.int64), 1, ts, emb, t)
    assert n.tolist() == [3]
    np.testing.assert_allclose(mean[0], [1 / 3, 1 / 3, 0, 1 / 3, 0], rtol=1e-6)
    assert mean.dtype == np.float32


def test_listed_consumers_without_a_purchase_get_a_null_profile_and_the_table_keeps_other_snapshots(ckpt, tmp_path):
    products = toy_catalog(6, seed=1)
    products.to_parquet(tmp_path / "p.parquet", index=False)
    emb_dir = tmp_path / "product_embeddings"
    version = embed_products(tmp_path / "p.parquet", ckpt, emb_dir, valid_from=T0 - 200 * DAY)["model_version"]
    pids = products[C.PRODUCT_ID].tolist()
    pur = pd.DataFrame({CONSUMER_ID: ["a", "a", "b"], C.PRODUCT_ID: [pids[0], pids[1], pids[2]],
                        C.EVENT_TIMESTAMP: [T0 - 2 * DAY, T0 - DAY, T0 - 100 * DAY]})
    pur.to_parquet(tmp_path / "purchases.parquet", index=False)
    out = tmp_path / "consumer_embeddings"
    write_consumer_profiles(tmp_path / "purchases.parquet", emb_dir, out, version, [T0 - 30 * DAY], ["a", "b", "c"])
    write_consumer_profiles(tmp_path / "purchases.parquet", emb_dir, out, version, [T0], ["a", "b", "c"])
    got = pd.read_parquet(out).set_index([CONSUMER_ID, C.EVENT_TIMESTAMP]).sort_index()
    assert len(got) == 6  # both snapshots, three consumers each
    assert got.loc[("a", T0), "n_purchases"] == 2 and got.loc[("b", T0), C.EMBEDDING] is None  # b's is 100 days old
    assert got.loc[("b", T0 - 30 * DAY), "n_purchases"] == 1 and got.loc[("c", T0), C.EMBEDDING] is None
    plain = consumer_profiles(pur, pd.read_parquet(emb_dir), [T0])  # without a list: only consumers with a profile
    assert plain[CONSUMER_ID].tolist() == ["a"]
