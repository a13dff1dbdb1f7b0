"""Spark batch inference on a real local Spark (local[2]) with a tiny random checkpoint."""

from __future__ import annotations

import os
import shutil
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.dataset as pads
import pytest

from dashclip import columns as C
from spark_jobs.lib.versions import read_model_versions
from tests.hostile import jpeg_bytes, make_hostile_catalog

pytestmark = pytest.mark.spark

if shutil.which("java") is None and not os.environ.get("JAVA_HOME"):
    pytest.skip("Spark needs Java 17", allow_module_level=True)

from spark_jobs.lib import columns as S  # noqa: E402
from spark_jobs.lib import products, profiles, queries, table  # noqa: E402
from spark_jobs.lib.config import CatalogJobConfig, InferenceConfig, ProfileJobConfig, QueryJobConfig  # noqa: E402

EXTRA = 8  # good rows added to the hostile catalog, so an increment has unchanged rows to skip


@pytest.fixture(scope="module")
def spark():
    from spark_jobs.lib.session import get_spark

    s = get_spark("test_spark_jobs", "local[2]", {
        "spark.ui.enabled": "false", "spark.sql.shuffle.partitions": "2", "spark.default.parallelism": "2",
        "spark.sql.adaptive.enabled": "false", "spark.driver.memory": "1g",
    })
    yield s
    s.stop()


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory) -> Path:
    from dashclip.tiny import make_tiny_checkpoint

    return make_tiny_checkpoint(tmp_path_factory.mktemp("ckpt") / "tiny")


def make_catalog(root: Path) -> Path:
    """The hostile catalog (one corrupt JPEG, a truncated one, duplicates...) plus EXTRA good rows."""
    path = make_hostile_catalog(root)
    df = pd.read_csv(path, dtype=str, keep_default_na=False)
    extra = []
    for i in range(EXTRA):
        (root / "img" / f"extra{i}.jpg").write_bytes(jpeg_bytes(100 + i))
        extra.append({"product_id": f"x{i}", "title": f"Extra item {i}", "description": f"number {i}",
                      "category": "Fruit > Extra", "image": f"img/extra{i}.jpg", "color": "", "gender": "",
                      "usage": "", "source": "extra"})
    pd.concat([df, pd.DataFrame(extra)], ignore_index=True).to_csv(path, index=False)
    return path


def job(ckpt: Path, catalog: Path, out: Path, **kw) -> CatalogJobConfig:
    return CatalogJobConfig(catalog=str(catalog), out=str(out),
                            inference=InferenceConfig(checkpoint=str(ckpt), batch_size=4, rows_per_arrow_batch=8), **kw)


def read_table(out: Path) -> pd.DataFrame:
    return pd.read_parquet(out).astype({C.MODEL_VERSION: str}).sort_values(C.PRODUCT_ID).reset_index(drop=True)


@pytest.fixture(scope="module")
def base(spark, ckpt, tmp_path_factory):
    """One full run on the v1 catalog; tests copy its table before changing anything."""
    root = tmp_path_factory.mktemp("cat")
    catalog = make_catalog(root)
    out = root / "table"
    report = products.run(spark, job(ckpt, catalog, out))
    return {"catalog": catalog, "out": out, "report": report}


def copy_table(base: dict, dst: Path) -> Path:
    shutil.copytree(base["out"], dst)
    return dst


def test_spark_embeddings_equal_the_cli(base, ckpt, tmp_path):
    from dashclip.embed import main as embed_cli

    cli_out = tmp_path / "cli.parquet"
    assert embed_cli(["products", "--checkpoint", str(ckpt), "--catalog", str(base["catalog"]),
                      "--out", str(cli_out), "--batch-size", "5", "--device", "cpu"]) == 0
    cli = pd.read_parquet(cli_out).sort_values(C.PRODUCT_ID).reset_index(drop=True)
    got = read_table(base["out"])
    assert got[C.PRODUCT_ID].tolist() == cli[C.PRODUCT_ID].tolist()
    assert got[C.HAS_IMAGE].tolist() == cli[C.HAS_IMAGE].tolist()
    assert got[C.CONTENT_HASH].tolist() == cli[C.CONTENT_HASH].tolist()
    assert (got[C.MODEL_VERSION] == cli[C.MODEL_VERSION]).all()
    np.testing.assert_allclose(np.stack(got[C.EMBEDDING]), np.stack(cli[C.EMBEDDING]), rtol=0, atol=1e-5)
    # the commit listed the version in the data folder's live versions, which `feast apply` declares
    assert read_model_versions(base["out"].parent) == (base["report"]["model_version"],)

    # the rejects are the CLI's too, with the same source rows and reasons
    cli_rej = pd.read_parquet(cli_out.with_name("cli.rejects.parquet"))
    rej = pd.read_parquet(base["out"] / S.REJECTS_DIR)
    cols = [C.SOURCE_ROW, C.PRODUCT_ID, C.REJECT_FIELD, C.REJECT_REASON]
    assert rej[cols].reset_index(drop=True).equals(cli_rej[cols].reset_index(drop=True))

    # the Feast offline source: exact columns and types
    schema = pads.dataset(base["out"], format="parquet", partitioning="hive").schema
    assert schema.names == [C.PRODUCT_ID, C.EMBEDDING, C.HAS_IMAGE, C.CONTENT_HASH, C.EVENT_TIMESTAMP, C.MODEL_VERSION]
    assert schema.field(C.EMBEDDING).type == pa.list_(pa.float32())
    assert schema.field(C.EVENT_TIMESTAMP).type == pa.timestamp("us", tz="UTC")
    assert base["report"]["rows_in"] == 12 + EXTRA and base["report"]["rows_embedded"] == len(cli)


def test_bad_image_row_goes_to_rejects(base):
    rej = pd.read_parquet(base["out"] / S.REJECTS_DIR).set_index(C.PRODUCT_ID)
    assert rej.loc["p1", C.REJECT_FIELD] == C.IMAGE and "not a decodable image" in rej.loc["p1", C.REJECT_REASON]
    assert rej.loc["p1", C.REJECT_VALUE] == "img/corrupt.jpg" and rej.loc["p1", C.SOURCE_ROW] == 1
    assert "truncated" in rej.loc["p2", C.REJECT_REASON]
    dup = rej[rej[C.REJECT_FIELD] == C.PRODUCT_ID].loc["p0"]
    assert dup[C.SOURCE_ROW] == 6 and dup[C.REJECT_REASON] == "duplicate product_id (first accepted at row 0)"
    got = read_table(base["out"])
    assert "p1" not in set(got[C.PRODUCT_ID]) and got[C.PRODUCT_ID].is_unique
    assert base["report"]["rows_out"] + base["report"]["rows_rejected"] == base["report"]["rows_in"]


def change_catalog(catalog: Path) -> set[str]:
    """v2: one title edited, one image's bytes replaced, one row removed, one row added."""
    df = pd.read_csv(catalog, dtype=str, keep_default_na=False)
    df.loc[df[C.PRODUCT_ID] == "x0", C.TITLE] = "Extra item zero, renamed"
    (catalog.parent / "img" / "extra1.jpg").write_bytes(jpeg_bytes(999))
    df = df[df[C.PRODUCT_ID] != "x2"]
    (catalog.parent / "img" / "new.jpg").write_bytes(jpeg_bytes(555))
    new = {c: "" for c in df.columns} | {C.PRODUCT_ID: "n1", C.TITLE: "New thing", C.IMAGE: "img/new.jpg"}
    pd.concat([df, pd.DataFrame([new])], ignore_index=True).to_csv(catalog, index=False)
    return {"x0", "x1", "n1"}


def test_incremental_rerun_embeds_only_changed_rows(spark, ckpt, base, tmp_path):
    shutil.copytree(base["catalog"].parent, tmp_path / "cat", ignore=shutil.ignore_patterns("table"))
    catalog, out = tmp_path / "cat" / "catalog.csv", copy_table(base, tmp_path / "table")
    before = read_table(out).set_index(C.PRODUCT_ID)

    same = products.run(spark, job(ckpt, catalog, out))  # unchanged catalog: nothing embedded, same table
    assert same["rows_embedded"] == 0 and same["rows_reused"] == len(before)
    assert read_table(out).set_index(C.PRODUCT_ID).drop(columns=C.EMBEDDING).equals(before.drop(columns=C.EMBEDDING))

    changed = change_catalog(catalog)
    rep = products.run(spark, job(ckpt, catalog, out))
    assert rep["rows_embedded"] == len(changed)
    after = read_table(out).set_index(C.PRODUCT_ID)
    assert "x2" not in after.index and after.index.is_unique
    kept = sorted(set(after.index) - changed)
    for pid in kept:  # untouched rows keep their vector and the time it was computed
        assert np.array_equal(after.loc[pid, C.EMBEDDING], before.loc[pid, C.EMBEDDING])
        assert after.loc[pid, C.EVENT_TIMESTAMP] == before.loc[pid, C.EVENT_TIMESTAMP]
    for pid in changed:
        assert after.loc[pid, C.EVENT_TIMESTAMP] > before[C.EVENT_TIMESTAMP].max()
    assert not np.allclose(after.loc["x1", C.EMBEDDING], before.loc["x1", C.EMBEDDING])

    full = products.run(spark, job(ckpt, catalog, tmp_path / "full", full=True))
    ref = read_table(tmp_path / "full").set_index(C.PRODUCT_ID)
    assert full["rows_embedded"] == len(ref)
    assert after.index.tolist() == ref.index.tolist()
    assert after[C.CONTENT_HASH].equals(ref[C.CONTENT_HASH]) and after[C.HAS_IMAGE].equals(ref[C.HAS_IMAGE])
    np.testing.assert_allclose(np.stack(after[C.EMBEDDING]), np.stack(ref[C.EMBEDDING]), rtol=0, atol=1e-5)


def test_unchanged_input_fingerprint_ends_the_rerun_early(spark, ckpt, base, tmp_path):
    shutil.copytree(base["catalog"].parent, tmp_path / "cat", ignore=shutil.ignore_patterns("table"))
    catalog, out = tmp_path / "cat" / "catalog.csv", tmp_path / "table"
    first = products.run(spark, job(ckpt, catalog, out))
    assert first["input_fingerprint"] and first["rows_embedded"] == first["rows_out"]
    before = read_table(out)

    same = products.run(spark, job(ckpt, catalog, out))  # same bytes everywhere: nothing read by Spark
    assert same["unchanged_input"] and same["unchanged_since_run"] == first["run_id"]
    assert same["rows_embedded"] == 0 and same["rows_reused"] == first["rows_out"]
    assert same["rows_rejected"] == first["rows_rejected"]
    pd.testing.assert_frame_equal(read_table(out), before)

    forced = products.run(spark, job(ckpt, catalog, out, revalidate=True))  # validated, joined, nothing embedded
    assert "unchanged_input" not in forced and forced["rows_embedded"] == 0

    # an image rewritten in place (same path, same catalog file) changes the fingerprint
    (catalog.parent / "img" / "extra3.jpg").write_bytes(jpeg_bytes(4242))
    rep = products.run(spark, job(ckpt, catalog, out))
    assert "unchanged_input" not in rep and rep["rows_embedded"] == 1
    after = read_table(out).set_index(C.PRODUCT_ID)
    assert not np.allclose(after.loc["x3", C.EMBEDDING], before.set_index(C.PRODUCT_ID).loc["x3", C.EMBEDDING])


def test_crash_between_staging_and_commit_keeps_previous_table(spark, ckpt, base, tmp_path):
    shutil.copytree(base["catalog"].parent, tmp_path / "cat", ignore=shutil.ignore_patterns("table"))
    catalog, out = tmp_path / "cat" / "catalog.csv", copy_table(base, tmp_path / "table")
    before = read_table(out)
    changed = change_catalog(catalog)

    def crash():
        raise KeyboardInterrupt("killed between staging and commit")

    with pytest.raises(KeyboardInterrupt):
        products.run(spark, job(ckpt, catalog, out), before_commit=crash)
    assert any((out / S.STAGING_DIR).iterdir())  # the complete staged run is there, uncommitted
    kept = read_table(out)
    assert kept.drop(columns=C.EMBEDDING).equals(before.drop(columns=C.EMBEDDING))
    assert np.array_equal(np.stack(kept[C.EMBEDDING]), np.stack(before[C.EMBEDDING]))

    rep = products.run(spark, job(ckpt, catalog, out))  # the rerun drops the abandoned staging
    assert "abandoned staging" in rep["recovered"]
    after = read_table(out)
    assert after[C.PRODUCT_ID].is_unique and "n1" in set(after[C.PRODUCT_ID]) and "x2" not in set(after[C.PRODUCT_ID])
    assert rep["rows_embedded"] == len(changed) and not (out / S.STAGING_DIR).exists()


def _folder(path: Path, text: str) -> Path:
    path.mkdir(parents=True)
    (path / "part-0.parquet").write_text(text)
    return path


@pytest.mark.parametrize("applied", ["nothing", "old_moved_out", "swapped"])
def test_commit_rolls_forward_after_a_crash_inside_it(tmp_path, applied):
    """A journal means the commit was decided: recover finishes it whatever step the crash hit."""
    out, run, rel = tmp_path / "t", "r1", "model_version=v"
    _folder(out / rel, "old")
    src = _folder(table.staging(out, run) / rel, "new")
    (src / table.RUN_MARKER).write_text(run)
    (out / S.JOURNAL).write_text(f'{{"run_id": "{run}", "dirs": ["{rel}"], "report": {{"run_id": "{run}"}}}}')
    if applied == "old_moved_out":
        (out / S.TRASH_DIR / run).mkdir(parents=True)
        os.rename(out / rel, out / S.TRASH_DIR / run / rel)
    elif applied == "swapped" and not table._exchange(src, out / rel):
        pytest.skip("no renameat2 exchange here")
    assert "rolled forward" in table.recover(out)
    assert (out / rel / "part-0.parquet").read_text() == "new"
    assert not (out / S.JOURNAL).exists() and not (out / S.STAGING_DIR).exists()
    assert (out / S.RUNS_DIR / f"{run}.json").exists()


def test_embed_queries_matches_query_tower(spark, ckpt, tmp_path):
    from dashclip.inference import QueryEmbedder

    path = tmp_path / "queries.csv"
    pd.DataFrame({"Query_ID": ["q1", "q2", "q1", "q3", "", "q4"],
                  "query": ["red shirt", "  granny\tsmith ", "dup", "", "no id", "tea"]}).to_csv(path, index=False)
    cfg = QueryJobConfig(queries=str(path), out=str(tmp_path / "q"),
                         inference=InferenceConfig(checkpoint=str(ckpt), batch_size=2))
    rep = queries.run(spark, cfg)
    got = pd.read_parquet(tmp_path / "q").sort_values(C.QUERY_ID).reset_index(drop=True)
    assert got[C.QUERY_ID].tolist() == ["q1", "q2", "q4"] and got[C.QUERY].tolist()[1] == "granny smith"
    ref = QueryEmbedder(ckpt, device="cpu").embed(got[C.QUERY].tolist())
    np.testing.assert_allclose(np.stack(got[C.EMBEDDING]), ref, rtol=0, atol=1e-5)
    rej = pd.read_parquet(tmp_path / "q" / S.REJECTS_DIR)
    assert rej[C.REJECT_REASON].tolist() == ["duplicate query_id", "empty query", "empty query_id"]
    assert rej[C.SOURCE_ROW].tolist() == [2, 3, 4] and rep["rows_rejected"] == 3
    again = queries.run(spark, cfg)  # unchanged file: ends at the fingerprint
    assert again["rows_embedded"] == 0 and again["unchanged_input"] and again["rows_rejected"] == 3
    forced = queries.run(spark, cfg.model_copy(update={"revalidate": True}))  # content-hash path
    assert forced["rows_embedded"] == 0 and "unchanged_input" not in forced and forced["rows_reused"] == 3


def test_consumer_profile_is_the_window_mean(spark, base, tmp_path):
    emb = read_table(base["out"]).set_index(C.PRODUCT_ID)[C.EMBEDDING]
    t = datetime(2024, 6, 30, tzinfo=timezone.utc)
    day = timedelta(days=1)
    rows = [
        ("c1", "p0", t - 10 * day), ("c1", "p3", t - 100 * day), ("c1", "p7", t), ("c1", "p0", t - 1 * day),
        ("c2", "p10", t - 84 * day), ("c2", "p4", t - 83.9 * day), ("c2", "x3", t + day),  # after T: not yet
        ("c3", "unknown", t - day), ("c3", "p0", None), ("", "p0", t),
    ]
    pur = pd.DataFrame(rows, columns=[S.CONSUMER_ID, C.PRODUCT_ID, S.TIMESTAMP])
    pur[S.TIMESTAMP] = [r.isoformat() if r is not None else "yesterday" for r in pur[S.TIMESTAMP]]
    pur.to_csv(tmp_path / "purchases.csv", index=False)
    cfg = ProfileJobConfig(purchases=str(tmp_path / "purchases.csv"), embeddings=str(base["out"]),
                           out=str(tmp_path / "prof"), as_of=[t.isoformat(), (t + 2 * day).isoformat()])
    rep = profiles.run(spark, cfg)
    got = pd.read_parquet(tmp_path / "prof").set_index([S.CONSUMER_ID, C.EVENT_TIMESTAMP]).sort_index()
    at_t = pd.Timestamp(t)
    want = {"c1": ["p0", "p7", "p0"], "c2": ["p4"]}
    for cid, pids in want.items():
        row = got.loc[(cid, at_t)]
        np.testing.assert_allclose(row[C.EMBEDDING], np.mean([emb[p] for p in pids], axis=0), atol=1e-6)
        assert row[S.N_PURCHASES] == len(pids)
    assert got.loc[("c2", pd.Timestamp(t + 2 * day)), S.N_PURCHASES] == 1  # x3 only: p4 has left the window
    assert ("c3", at_t) not in got.index and len(got) == 4
    assert str(got.reset_index()[C.EVENT_TIMESTAMP].dt.tz) == "UTC"
    rej = pd.read_parquet(tmp_path / "prof" / S.REJECTS_DIR)
    assert sorted(rej[C.REJECT_REASON]) == sorted(["no embedding for this product in the model version",
                                                    "not a timestamp", "empty consumer_id"])
    assert rep["rows_rejected"] == 3

    # another snapshot time keeps the first; the same times again replace their rows (no duplicates)
    profiles.run(spark, cfg.model_copy(update={"as_of": [(t + 30 * day).isoformat()]}))
    profiles.run(spark, cfg)
    again = pd.read_parquet(tmp_path / "prof")
    assert len(again) == 4 + 2 and not again.duplicated([S.CONSUMER_ID, C.EVENT_TIMESTAMP]).any()


def test_in_process_profiles_equal_the_spark_job(spark, base, tmp_path):
    """The two engines of the consumer profile table call one definition; their tables agree."""
    from spark_jobs.lib.consumer_profile import write_consumer_profiles

    t = datetime(2024, 6, 30, tzinfo=timezone.utc)
    rng = np.random.default_rng(0)
    pids = read_table(base["out"])[C.PRODUCT_ID].tolist()
    n = 60
    pur = pd.DataFrame({S.CONSUMER_ID: [f"c{i}" for i in rng.integers(0, 8, n)], C.PRODUCT_ID: rng.choice(pids, n),
                        C.EVENT_TIMESTAMP: [t - timedelta(days=float(d)) for d in rng.uniform(-5, 120, n)]})
    as_of = [t, t - timedelta(days=30), t + timedelta(days=3)]
    pur.rename(columns={C.EVENT_TIMESTAMP: S.TIMESTAMP}).assign(**{S.TIMESTAMP: lambda d: d[S.TIMESTAMP].map(
        datetime.isoformat)}).to_csv(tmp_path / "purchases.csv", index=False)
    profiles.run(spark, ProfileJobConfig(purchases=str(tmp_path / "purchases.csv"), embeddings=str(base["out"]),
                                         out=str(tmp_path / "spark"), as_of=[x.isoformat() for x in as_of]))
    pur.to_parquet(tmp_path / "purchases.parquet", index=False)
    version = profiles.pick_model_version(base["out"], None)
    write_consumer_profiles(tmp_path / "purchases.parquet", base["out"], tmp_path / "local", version,
                            [pd.Timestamp(x) for x in as_of])
    key = [S.CONSUMER_ID, C.EVENT_TIMESTAMP]
    a = pd.read_parquet(tmp_path / "spark").sort_values(key).reset_index(drop=True)
    b = pd.read_parquet(tmp_path / "local").sort_values(key).reset_index(drop=True)
    assert len(a) > 10 and a[key + [S.N_PURCHASES]].astype(str).equals(b[key + [S.N_PURCHASES]].astype(str))
    np.testing.assert_allclose(np.stack(a[C.EMBEDDING]), np.stack(b[C.EMBEDDING]), rtol=0, atol=1e-6)


def test_valid_from_stamps_new_rows_and_moves_later_ones_back_alike_on_both_engines(spark, ckpt, tmp_path):
    from spark_jobs.lib.embed_local import embed_queries

    texts = {"q1": "red shirt", "q2": "green tea", "q3": "usb c charger"}
    pd.DataFrame({C.QUERY_ID: ["q1", "q2"], C.QUERY: ["red shirt", "green tea"]}).to_csv(tmp_path / "two.csv", index=False)
    pd.DataFrame({C.QUERY_ID: list(texts), C.QUERY: list(texts.values())}).to_csv(tmp_path / "three.csv", index=False)
    inference = InferenceConfig(checkpoint=str(ckpt), batch_size=2)
    first = queries.run(spark, QueryJobConfig(queries=str(tmp_path / "two.csv"), out=str(tmp_path / "q"), inference=inference))
    run_ts = pd.Timestamp(first["event_timestamp"])
    t = "2024-01-01T00:00:00+00:00"
    cfg = QueryJobConfig(queries=str(tmp_path / "three.csv"), out=str(tmp_path / "q"), inference=inference, valid_from=t)
    again = queries.run(spark, cfg)
    assert (again["rows_embedded"], again["rows_reused"]) == (1, 2)
    got = pd.read_parquet(tmp_path / "q").sort_values(C.QUERY_ID).reset_index(drop=True)
    assert (got[C.EVENT_TIMESTAMP] == pd.Timestamp(t)).all() and run_ts > pd.Timestamp(t)
    assert queries.run(spark, cfg).get("unchanged_input")  # the same valid-from again: nothing to do

    pd.read_csv(tmp_path / "three.csv").to_parquet(tmp_path / "three.parquet", index=False)
    embed_queries(tmp_path / "three.parquet", ckpt, tmp_path / "local", valid_from=pd.Timestamp(t))
    local = pd.read_parquet(tmp_path / "local").sort_values(C.QUERY_ID).reset_index(drop=True)
    assert local[[C.QUERY_ID, C.EVENT_TIMESTAMP, C.CONTENT_HASH]].equals(got[[C.QUERY_ID, C.EVENT_TIMESTAMP, C.CONTENT_HASH]])
    np.testing.assert_allclose(np.stack(local[C.EMBEDDING]), np.stack(got[C.EMBEDDING]), rtol=0, atol=1e-5)


def test_spark_stats_equal_the_in_process_stats(spark, tmp_path):
    """The stats job's two engines run one definition (spark_jobs.lib.stats) and write equal tables."""
    from ranking.simulator import SimConfig, simulate
    from ranking.toy import toy_catalog
    from ranking.world import WorldConfig, build_world
    from spark_jobs.lib import stats, stats_job
    from spark_jobs.lib.config import StatsJobConfig

    world = build_world(toy_catalog(80, seed=0), WorldConfig(n_consumers=30, seed=2, queries_per_category=2))
    sim = SimConfig(start=datetime(2025, 3, 1, tzinfo=timezone.utc), days=4, requests_per_day=60, history_days=20,
                    n_candidates=6, n_slots=3, seed=3)
    logs = simulate(world, sim).write(tmp_path / "logs")
    stats.write_stats(logs, tmp_path / "local", sim.start_ts, sim.days)
    stats_job.run(spark, StatsJobConfig(logs=str(logs), out=str(tmp_path / "spark"), start=sim.start_ts.isoformat(),
                                        days=sim.days))
    for name in ("product_stats.parquet", "category_stats.parquet", "consumer_stats.parquet"):
        a, b = (pd.read_parquet(tmp_path / side / name) for side in ("local", "spark"))
        key = [a.columns[0], C.EVENT_TIMESTAMP]
        a, b = (d.sort_values(key, kind="stable").reset_index(drop=True) for d in (a, b))
        assert len(a) > 20, name
        pd.testing.assert_frame_equal(a, b, check_exact=False, rtol=1e-12, obj=name)


# --- hostile catalogs, ids and malformed files: the Spark job does what ingestion does ----------------
def _append_malformed_rows(catalog: Path) -> None:
    """Rows 11-15 after make_hostile_files' rows 0-10: extra fields (rejected), a trailing empty
    field (kept), ids over the 128-character cap (rejected), a short row (padded, kept)."""
    with open(catalog, "a", encoding="utf-8") as f:
        f.write("h11,Too many,,Fruit > Test,img/good.jpg,,,,x,EXTRA,more\n")
        f.write("h12,Trailing comma,,Fruit > Test,img/good.jpg,,,,x,\n")
        f.write(f"{'a' * 129},Long id,,Fruit > Test,,,,,x\n")
        f.write(f"{'b' * 10_000_000},Huge id,,Fruit > Test,,,,,x\n")
        f.write("h15,Short row\n")


def test_hostile_rows_are_rejected_alike_by_spark_and_ingestion(spark, ckpt, tmp_path):
    from dashclip.catalog import ingest
    from tests.hostile import fifo_watchdog, make_hostile_files

    catalog, _ = make_hostile_files(tmp_path / "cat", dev_zero=False)
    _append_malformed_rows(catalog)
    with fifo_watchdog(catalog.parent / "img" / "pipe.jpg"):
        rep = products.run(spark, job(ckpt, catalog, tmp_path / "table"))
        cli = ingest(catalog, progress=False)
    got = read_table(tmp_path / "table")
    assert got[C.PRODUCT_ID].tolist() == sorted(cli.products[C.PRODUCT_ID]) == ["h0", "h10", "h12", "h15", "h9"]
    rej = pd.read_parquet(tmp_path / "table" / S.REJECTS_DIR)
    cols = [C.SOURCE_ROW, C.PRODUCT_ID, C.REJECT_FIELD, C.REJECT_REASON]
    pd.testing.assert_frame_equal(rej[cols].reset_index(drop=True), cli.rejects[cols].reset_index(drop=True))
    by_row = rej.set_index(C.SOURCE_ROW)[C.REJECT_REASON]
    assert by_row[1] == "symbolic link loop" and by_row[2] == "not a regular file (fifo)"
    assert by_row[3].startswith("60000000 bytes, over the 50000000-byte limit")
    assert by_row[4] == by_row[5] == f"outside the image root {catalog.parent}"
    assert by_row[11] == "more fields than the header's 9 columns; first extra field: EXTRA"
    assert by_row[13].startswith("product_id is 129 characters") and by_row[14].startswith("product_id is 10000000")
    assert rep["rows_in"] == 16 and rep["rows_out"] == 5


def test_parquet_integer_ids_are_the_same_strings_as_ingestion_gives(spark, ckpt, tmp_path):
    import pyarrow.parquet as papq

    from dashclip.catalog import ingest

    path = tmp_path / "ints.parquet"
    papq.write_table(pa.table({"product_id": pa.array([1, None, 30], pa.int64()), "title": ["a", "b", "c"],
                               "rank": pa.array([1.0, None, 2.5])}), path)
    products.run(spark, job(ckpt, path, tmp_path / "table"))
    assert read_table(tmp_path / "table")[C.PRODUCT_ID].tolist() == ["1", "30"]
    rej = pd.read_parquet(tmp_path / "table" / S.REJECTS_DIR)
    cli = ingest(path, progress=False).rejects
    cols = [C.SOURCE_ROW, C.PRODUCT_ID, C.REJECT_FIELD, C.REJECT_REASON]
    assert rej[cols].values.tolist() == cli[cols].values.tolist() == [[1, "", "product_id", "empty product_id"]]


@pytest.mark.parametrize("full", [False, True])
def test_an_unreadable_local_csv_stops_the_job_with_ingestions_message(spark, ckpt, tmp_path, full):
    from dashclip.catalog import CatalogSchemaError

    path = tmp_path / "c.csv"
    path.write_bytes(b'product_id,title\np0,ok\np1,"Unterminated,x\np2,y\n')
    with pytest.raises(CatalogSchemaError, match=r"unterminated quote in data row 1 \(line 3\)"):
        products.run(spark, job(ckpt, path, tmp_path / "table", full=full))
    assert not table.has_rows(tmp_path / "table")


# --- one writer per table, commits that hold what the run reports, a verified shortcut ------------
def _fresh(base: dict, tmp_path: Path) -> Path:
    shutil.copytree(base["catalog"].parent, tmp_path / "cat", ignore=shutil.ignore_patterns("table"))
    return tmp_path / "cat" / "catalog.csv"


def test_a_second_writer_is_refused_while_the_first_holds_the_table(spark, ckpt, base, tmp_path):
    import socket

    catalog, out = _fresh(base, tmp_path), tmp_path / "table"
    seen = {}

    def second_writer():  # starts while the first run has staged everything and not yet committed
        try:
            products.run(spark, job(ckpt, catalog, out))
        except Exception as e:  # noqa: BLE001 - the test asserts on what it was
            seen["error"] = e

    first = products.run(spark, job(ckpt, catalog, out), before_commit=second_writer)
    err = seen.get("error")
    assert isinstance(err, table.TableLocked), repr(err)
    assert str(err).startswith(f"table {out} is being written by run {first['run_id']} (pid {os.getpid()} "
                               f"on {socket.gethostname()}, since ")
    assert "\n" not in str(err)
    got = read_table(out)  # the first run committed every row it reported
    assert len(got) == first["rows_out"] and got[C.PRODUCT_ID].is_unique
    assert len(pd.read_parquet(out / S.REJECTS_DIR)) == first["rows_rejected"]


def test_the_writer_lock_is_exclusive_between_processes_and_can_be_waited_for(tmp_path):
    import subprocess
    import sys
    import time

    out = tmp_path / "t"
    holder = subprocess.Popen([sys.executable, "-c", (
        "import sys, time; from pathlib import Path; from spark_jobs.lib import table\n"
        "with table.writer_lock(Path(sys.argv[1]), 0, 'holder-run'):\n"
        "    print('held', flush=True); time.sleep(3)\n"), str(out)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(table.TableLocked, match=rf"run holder-run \(pid {holder.pid} on .*waited 0 s"):
            with table.writer_lock(out, 0.0, "mine"):
                pass
        t0 = time.perf_counter()
        with table.writer_lock(out, 30.0, "mine"):  # waits for the holder to finish
            waited = time.perf_counter() - t0
        assert 0.5 < waited < 30
    finally:
        holder.kill()
        holder.wait()
    with table.writer_lock(out, 0.0, "again"):  # released: a killed holder leaves no stale lock
        pass


def test_a_commit_whose_staging_lost_rows_is_refused(spark, ckpt, base, tmp_path):
    catalog, out = _fresh(base, tmp_path), copy_table(base, tmp_path / "table")
    before = read_table(out)

    def lose_a_part_file():  # what a second writer's start-up recover() did to a running job
        parts = sorted((table.staging(out, "*").parent).glob(f"*/{C.MODEL_VERSION}=*/part-*.parquet"))
        assert len(parts) >= 2
        parts[0].unlink()

    with pytest.raises(table.CommitRefused, match=r"commit refused: staged model_version=.* holds \d+ rows but run "
                                                  r"\S+ reports \d+; the committed table is unchanged"):
        products.run(spark, job(ckpt, catalog, out, full=True), before_commit=lose_a_part_file)
    pd.testing.assert_frame_equal(read_table(out), before)


def test_the_unchanged_shortcut_verifies_the_committed_table_and_a_rerun_repairs_it(spark, ckpt, base, tmp_path):
    catalog, out = _fresh(base, tmp_path), tmp_path / "table"
    first = products.run(spark, job(ckpt, catalog, out))
    before = read_table(out)
    part = out / table.partition(first["model_version"])
    files = sorted(part.glob("part-*.parquet"))
    assert len(files) >= 2
    files[0].unlink()  # a lost part file: rows gone, the input unchanged

    rep = products.run(spark, job(ckpt, catalog, out))
    assert "unchanged_input" not in rep and "missing" in rep["repaired"]
    assert rep["rows_embedded"] == first["rows_out"]  # nothing reused from a damaged partition
    after = read_table(out)
    assert after[C.PRODUCT_ID].tolist() == before[C.PRODUCT_ID].tolist()
    np.testing.assert_allclose(np.stack(after[C.EMBEDDING]), np.stack(before[C.EMBEDDING]), rtol=0, atol=1e-5)

    same = products.run(spark, job(ckpt, catalog, out))  # intact again: the shortcut holds
    assert same["unchanged_input"]

    files = sorted(part.glob("part-*.parquet"))  # same file names, other bytes
    files[0].write_bytes(files[1].read_bytes())
    rep = products.run(spark, job(ckpt, catalog, out))
    assert "unchanged_input" not in rep and "changed since it was committed" in rep["repaired"]
    assert read_table(out)[C.PRODUCT_ID].tolist() == before[C.PRODUCT_ID].tolist()


# --- labelling pairs with the stage-2 teacher ------------------------------------------------------
@pytest.fixture(scope="module")
def stage2_run(tmp_path_factory):
    """A tiny stage-2 run labelling in process (float32, so the Spark job can match it closely):
    it saves its teacher in OUT/teacher and the pairs the teacher labelled in OUT/pairs.parquet."""
    from dashclip.stage2 import Stage2Config, train_stage2
    from dashclip.tiny import make_tiny_checkpoint
    from tests.test_stage1 import small_catalog

    root = tmp_path_factory.mktemp("s2")
    cat = small_catalog(root / "cat", n=40)
    ck1 = make_tiny_checkpoint(root / "ck1", with_query_tower=False)
    cfg = Stage2Config(catalog=str(cat), queries_per_category=3, queries_per_product=0.5, seed_budget=40, epochs=1,
                       batch_size=8, random_negatives=8, val_queries=8, cache_dir=None, teacher_epochs=1,
                       cand_bm25=3, cand_dense=3, cand_random=2, teacher_bf16=False, teacher_device="cpu")
    summary = train_stage2(cfg, ck1, root / "ck2", progress=False)
    return {"cfg": cfg, "ck1": ck1, "out": root / "ck2", "summary": summary}


def label_job(run: dict, out: Path, **kw):
    from spark_jobs.lib.config import LabelJobConfig

    return LabelJobConfig(pairs=str(run["out"] / "pairs.parquet"), out=str(out),
                          inference=InferenceConfig(checkpoint=str(run["out"] / "teacher"), batch_size=16,
                                                    rows_per_arrow_batch=50, amp=False), **kw)


def test_label_pairs_job_gives_the_in_process_labels_and_reruns_label_nothing(spark, stage2_run, tmp_path):
    from spark_jobs.lib import labels

    run = stage2_run
    out = tmp_path / "labels"
    rep = labels.run(spark, label_job(run, out))
    version = run["summary"]["teacher_version"]
    assert rep["model_version"] == version and version.startswith("teacher-")
    pairs = pd.read_parquet(run["out"] / "pairs.parquet")
    assert rep["rows_in"] == len(pairs) == run["summary"]["teacher_labelled_pairs"] and rep["rows_rejected"] == 0
    assert rep["rows_labelled"] == rep["rows_out"] > 0
    got = pd.read_parquet(out / f"model_version={version}")
    assert list(got.columns) == [C.QUERY_ID, C.QUERY, C.PRODUCT_ID, C.LABEL, C.CONTENT_HASH, C.EVENT_TIMESTAMP]
    ref = pd.read_parquet(run["out"] / "labels.parquet")
    ref = ref[ref["source"] == "teacher"]
    m = ref.merge(got, on=[C.QUERY_ID, C.PRODUCT_ID], suffixes=("_ref", ""))
    assert len(m) == len(ref) == len(got)
    # float32 both ways; batches differ (other pairs, other padding), so equal to float rounding
    np.testing.assert_allclose(m[C.LABEL].to_numpy(), m[C.LABEL + "_ref"].to_numpy(), rtol=0, atol=1e-5)
    # unchanged pairs: the fingerprint ends the rerun; forced through validation, the content hash reuses every label
    again = labels.run(spark, label_job(run, out))
    assert again["rows_labelled"] == 0 and again["unchanged_input"] and "rows_embedded" not in again
    forced = labels.run(spark, label_job(run, out, revalidate=True))
    assert forced["rows_labelled"] == 0 and forced["rows_reused"] == len(got) and "unchanged_input" not in forced
    # one product's text changes: only its pairs are labelled again
    changed = pairs.copy()
    pid = changed[C.PRODUCT_ID].iloc[0]
    changed.loc[changed[C.PRODUCT_ID] == pid, C.TITLE] = "renamed product"
    changed.to_parquet(tmp_path / "changed.parquet", index=False)
    inc = labels.run(spark, label_job(run, out).model_copy(update={"pairs": str(tmp_path / "changed.parquet")}))
    assert inc["rows_labelled"] == int((pairs[C.PRODUCT_ID] == pid).sum()) > 0
    assert inc["rows_reused"] == len(pairs) - inc["rows_labelled"]


def test_label_pairs_rejects_empty_and_repeated_pairs(spark, stage2_run, tmp_path):
    from spark_jobs.lib import labels

    pairs = pd.read_parquet(stage2_run["out"] / "pairs.parquet").head(4).copy()
    bad = pd.DataFrame([{**pairs.iloc[0].to_dict()},  # the same pair again
                        {**pairs.iloc[1].to_dict(), C.QUERY: " "},
                        {**pairs.iloc[2].to_dict(), C.TITLE: "", C.DESCRIPTION: "", C.CATEGORY: "", C.COLOR: "",
                         C.GENDER: "", C.USAGE: "", C.PRODUCT_ID: "other"}])
    path = tmp_path / "pairs.csv"
    pd.concat([pairs, bad], ignore_index=True).to_csv(path, index=False)
    rep = labels.run(spark, label_job(stage2_run, tmp_path / "t").model_copy(update={"pairs": str(path)}))
    assert rep["rows_out"] == 4 and rep["rows_rejected"] == 3
    rej = pd.read_parquet(tmp_path / "t" / S.REJECTS_DIR).sort_values(C.SOURCE_ROW)
    assert rej[C.SOURCE_ROW].tolist() == [4, 5, 6]
    assert rej[C.REJECT_REASON].tolist()[:2] == ["duplicate (query_id, product_id) pair", "empty query"]
    assert rej[C.REJECT_FIELD].tolist()[2] == C.TITLE


def test_stage2_with_labels_from_the_label_table_equals_in_process_labelling(spark, stage2_run, tmp_path, capsys):
    from dashclip.checkpoint import CheckpointError
    from dashclip.stage2 import LabelTableError, train_stage2
    from spark_jobs.lib import labels

    run = stage2_run
    with pytest.raises(CheckpointError, match="meta.json: stage is 'stage2', not 'teacher'"):
        labels.teacher_version_of(str(run["out"]))  # the stage-2 checkpoint itself is no teacher
    table_dir = tmp_path / "labels"
    labels.run(spark, label_job(run, table_dir))
    cfg = run["cfg"].model_copy(update={"labels": str(table_dir)})
    summary = train_stage2(cfg, run["ck1"], tmp_path / "ck2", progress=False)
    assert summary["teacher_version"] == run["summary"]["teacher_version"]
    assert summary["labels_from"].endswith(f"model_version={summary['teacher_version']}")
    assert "teacher_agreement" not in summary and not (tmp_path / "ck2" / "teacher").exists()  # no teacher trained
    a = pd.read_parquet(run["out"] / "labels.parquet").sort_values([C.QUERY_ID, C.PRODUCT_ID]).reset_index(drop=True)
    b = pd.read_parquet(tmp_path / "ck2" / "labels.parquet").sort_values([C.QUERY_ID, C.PRODUCT_ID]).reset_index(drop=True)
    assert a[[C.QUERY_ID, C.PRODUCT_ID, "source"]].equals(b[[C.QUERY_ID, C.PRODUCT_ID, "source"]])
    np.testing.assert_allclose(b[C.LABEL].to_numpy(), a[C.LABEL].to_numpy(), rtol=0, atol=1e-5)
    # a table without some of the run's pairs is refused with the count
    partial_pairs = pd.read_parquet(run["out"] / "pairs.parquet").iloc[1:]
    partial_pairs.to_parquet(tmp_path / "partial.parquet", index=False)
    labels.run(spark, label_job(run, tmp_path / "partial").model_copy(update={"pairs": str(tmp_path / "partial.parquet")}))
    with pytest.raises(LabelTableError, match=r"no label for 1 of \d+ pairs"):
        train_stage2(cfg.model_copy(update={"labels": str(tmp_path / "partial")}), run["ck1"], tmp_path / "ck3",
                     progress=False)
    # the command line says so in one line
    from dashclip.train import main as train_main

    (tmp_path / "s2.json").write_text(run["cfg"].model_dump_json())
    rc = train_main(["stage2", "--stage1", str(run["ck1"]), "--out", str(tmp_path / "ck4"), "--config",
                     str(tmp_path / "s2.json"), "--labels", str(tmp_path / "partial")])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and err[-1].startswith(f"error: labels {tmp_path / 'partial'}/model_version=teacher-")
