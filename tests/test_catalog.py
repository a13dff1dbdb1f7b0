"""Catalog ingestion: the shipped sample and a hostile catalog give exactly the right tables."""

from __future__ import annotations

import subprocess
import sys

import pandas as pd
import pytest

from dashclip import columns as C
from dashclip.catalog import CatalogSchemaError, IngestConfig, ingest, read_catalog
from tests.hostile import make_hostile_catalog


@pytest.fixture()
def hostile(tmp_path):
    return make_hostile_catalog(tmp_path / "cat")


def test_hostile_catalog_clean_and_rejects_exact(hostile, tmp_path):
    res = ingest(hostile, tmp_path / "out", progress=False)
    prods = pd.read_parquet(tmp_path / "out" / "products.parquet")
    rej = pd.read_parquet(tmp_path / "out" / "rejects.parquet")

    assert prods[C.PRODUCT_ID].tolist() == ["p0", "p3", "p4", "p7", "p8", "p10"]
    assert prods[C.SOURCE_ROW].tolist() == [0, 3, 4, 7, 8, 10]
    assert rej[C.SOURCE_ROW].tolist() == [1, 2, 5, 6, 9, 11]
    by_row = rej.set_index(C.SOURCE_ROW)
    assert by_row.loc[1, C.REJECT_FIELD] == "image" and "not a decodable image" in by_row.loc[1, C.REJECT_REASON]
    assert by_row.loc[2, C.REJECT_FIELD] == "image" and "truncated" in by_row.loc[2, C.REJECT_REASON]
    assert by_row.loc[5, C.REJECT_FIELD] == "title"
    assert by_row.loc[6, C.REJECT_FIELD] == "product_id" and "row 0" in by_row.loc[6, C.REJECT_REASON]
    assert by_row.loc[9, C.REJECT_FIELD] == "product_id"
    assert by_row.loc[11, C.REJECT_FIELD] == "image" and "too small" in by_row.loc[11, C.REJECT_REASON]
    assert len(prods) + len(rej) == res.rows_in == 12

    p = prods.set_index(C.PRODUCT_ID)
    # missing file: kept as text-only with a flag
    assert p.loc["p3", C.IMAGE_STATUS] == "missing" and not p.loc["p3", C.HAS_IMAGE]
    assert p.loc["p10", C.IMAGE_STATUS] == "none" and not p.loc["p10", C.HAS_IMAGE]
    # empty title but a good image: kept, image-grounded, flagged as having no text
    assert p.loc["p4", C.HAS_IMAGE] and not p.loc["p4", C.HAS_TEXT]
    # unicode kept (NFC), control chars and repeated spaces gone, category path normalised
    assert p.loc["p7", C.TITLE] == "Café crème sneakers 👟"
    assert p.loc["p7", C.DESCRIPTION] == "naïve description"
    assert p.loc["p7", C.CATEGORY] == "Footwear > Shoes > Casual"
    # 10 MB description: truncated to the configured limit and flagged
    assert len(p.loc["p8", C.DESCRIPTION]) == IngestConfig().max_description_chars
    assert p.loc["p8", "text_truncated"] and not p.loc["p0", "text_truncated"]
    assert p.loc["p0", C.IMAGE_WIDTH] == 64 and p.loc["p0", C.IMAGE_HEIGHT] == 48
    assert set(prods[C.SPLIT]) <= {"train", "val", "test"}
    assert prods[C.CONTENT_HASH].str.len().eq(64).all()


def test_header_names_are_matched_loosely_and_missing_required_is_a_clear_error(hostile, tmp_path):
    df = pd.read_csv(hostile, dtype=str, keep_default_na=False)
    df.columns = ["Product ID", " TITLE ", "Description", "category", "Image", "color", "gender", "usage", "source"]
    loose = tmp_path / "loose.csv"
    df.to_csv(loose, index=False)
    assert list(read_catalog(loose).columns[:2]) == ["product_id", "title"]

    bad = tmp_path / "bad.csv"
    df.rename(columns={" TITLE ": "name"}).to_csv(bad, index=False)
    with pytest.raises(CatalogSchemaError, match="title"):
        read_catalog(bad)


def test_parquet_catalog_gives_same_result_as_csv(hostile, tmp_path):
    df = pd.read_csv(hostile, dtype=str, keep_default_na=False)
    pq = hostile.with_suffix(".parquet")
    df.to_parquet(pq, index=False)
    a = ingest(hostile, progress=False)
    b = ingest(pq, progress=False)
    pd.testing.assert_frame_equal(a.products, b.products)
    pd.testing.assert_frame_equal(a.rejects, b.rejects)


def test_splits_are_deterministic_and_respect_dataset_splits(data_dir, tmp_path):
    raw = pd.read_csv(data_dir / "catalog.csv", dtype=str, keep_default_na=False)
    sample = pd.concat([raw[raw.product_id.str.startswith("grocery-train")].head(60),
                        raw[raw.product_id.str.startswith("grocery-val")].head(30),
                        raw[raw.product_id.str.startswith("myntra")].head(150)])
    # keep image paths relative to the shipped data folder by writing the sample there's a copy
    # of the paths made absolute
    sample = sample.assign(image=[str(data_dir / p) for p in sample.image])
    path = tmp_path / "sample.csv"
    sample.to_csv(path, index=False)
    a = ingest(path, progress=False).products
    b = ingest(path, progress=False).products
    assert a[C.SPLIT].tolist() == b[C.SPLIT].tolist()
    val_rows = a[a.product_id.str.startswith("grocery-val")]
    train_rows = a[a.product_id.str.startswith("grocery-train")]
    assert (val_rows[C.SPLIT] == "test").all()  # dataset's held-out photos stay held out
    assert not (train_rows[C.SPLIT] == "test").any()
    myntra = a[a.product_id.str.startswith("myntra")][C.SPLIT].value_counts()
    assert myntra["train"] > myntra.get("val", 0) and myntra["train"] > myntra.get("test", 0)
    assert a[C.HAS_IMAGE].all() and len(a) == 240


def test_cli_on_shipped_catalog_reports_counts(data_dir, tmp_path):
    out = tmp_path / "ingest"
    r = subprocess.run([sys.executable, "-m", "dashclip.catalog", "ingest", "--catalog",
                        str(data_dir / "catalog.csv"), "--out", str(out)],
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    assert "rows in: 9999" in r.stdout
    prods = pd.read_parquet(out / "products.parquet")
    rej = pd.read_parquet(out / "rejects.parquet")
    assert len(prods) + len(rej) == 9999
    assert prods[C.PRODUCT_ID].is_unique
    assert prods[C.HAS_IMAGE].mean() > 0.99


def test_cli_missing_required_column_exits_with_message(tmp_path):
    bad = tmp_path / "bad.csv"
    pd.DataFrame({"id": ["a"], "name": ["x"]}).to_csv(bad, index=False)
    r = subprocess.run([sys.executable, "-m", "dashclip.catalog", "ingest", "--catalog", str(bad),
                        "--out", str(tmp_path / "o")], capture_output=True, text=True)
    assert r.returncode == 2 and "missing required column" in r.stderr
    assert not (tmp_path / "o" / "products.parquet").exists()


def test_load_products_takes_an_ingested_frame_under_any_name(hostile, tmp_path):
    from dashclip.catalog import load_products

    products = ingest(hostile, tmp_path / "out", progress=False).products
    # a filtered copy saved elsewhere under another name is still an ingested frame: loaded as is,
    # not ingested again (which would resolve its images against the wrong folder)
    subset = products[products[C.HAS_IMAGE]].head(3)
    other = tmp_path / "elsewhere" / "seen_products.parquet"
    other.parent.mkdir()
    subset.to_parquet(other, index=False)
    pd.testing.assert_frame_equal(load_products(other), subset.reset_index(drop=True))
    pd.testing.assert_frame_equal(load_products(tmp_path / "out"), products.reset_index(drop=True))
    # a raw catalog in parquet (beside its images) is ingested, as before
    raw = hostile.with_name("raw.parquet")
    pd.read_csv(hostile, dtype=str, keep_default_na=False).to_parquet(raw, index=False)
    pd.testing.assert_frame_equal(load_products(raw), products.reset_index(drop=True))
