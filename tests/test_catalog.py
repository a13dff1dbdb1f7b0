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
    # the sample lives outside the shipped data folder: absolute image paths, and that folder as
    # the image root (the data folder is read-only)
    sample = sample.assign(image=[str(data_dir / p) for p in sample.image])
    path = tmp_path / "sample.csv"
    sample.to_csv(path, index=False)
    cfg = IngestConfig(image_root=str(data_dir))
    a = ingest(path, cfg=cfg, progress=False).products
    b = ingest(path, cfg=cfg, progress=False).products
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


# --- hostile image files ------------------------------------------------------------------------
def _run_ingest_cli(catalog, out, *extra, timeout=180):
    """The ingest CLI in a child process capped at 3 GB of address space (a reader without a byte
    cap dies on /dev/zero instead of exhausting the machine) and a time limit (a FIFO opened
    plainly blocks forever)."""
    import resource

    def cap():
        resource.setrlimit(resource.RLIMIT_AS, (3 << 30, 3 << 30))

    return subprocess.run([sys.executable, "-m", "dashclip.catalog", "ingest", "--catalog", str(catalog),
                           "--out", str(out), *extra], capture_output=True, text=True, timeout=timeout, preexec_fn=cap)


def test_hostile_image_files_are_rejected_with_reasons_and_the_run_goes_on(tmp_path):
    from tests.hostile import fifo_watchdog, make_hostile_files

    catalog, outside = make_hostile_files(tmp_path / "cat")
    with fifo_watchdog(catalog.parent / "img" / "pipe.jpg"):
        r = _run_ingest_cli(catalog, tmp_path / "out")
    assert r.returncode == 0, r.stderr[-2000:]
    prods = pd.read_parquet(tmp_path / "out" / "products.parquet")
    rej = pd.read_parquet(tmp_path / "out" / "rejects.parquet").set_index(C.SOURCE_ROW)
    assert prods[C.PRODUCT_ID].tolist() == ["h0", "h9", "h10"] and prods[C.HAS_IMAGE].all()
    assert rej.index.tolist() == [1, 2, 3, 4, 5, 6, 7, 8] and (rej[C.REJECT_FIELD] == C.IMAGE).all()
    assert rej.loc[1, C.REJECT_REASON] == "symbolic link loop"
    assert rej.loc[2, C.REJECT_REASON] == "not a regular file (fifo)"
    assert rej.loc[3, C.REJECT_REASON] == "60000000 bytes, over the 50000000-byte limit (max_image_bytes)"
    # ../, absolute paths and symlinks that lead out: one reason, whether or not the target exists
    outside_reason = {rej.loc[i, C.REJECT_REASON] for i in (4, 5, 6, 7, 8)}
    assert outside_reason == {f"outside the image root {catalog.parent}"}
    assert str(outside) not in " ".join(rej[C.REJECT_REASON])


def test_images_outside_the_root_are_read_only_when_the_user_allows_it(tmp_path):
    from tests.hostile import fifo_watchdog, make_hostile_files

    catalog, _ = make_hostile_files(tmp_path / "cat")
    cfg = tmp_path / "ingest.json"
    cfg.write_text('{"allow_images_outside_root": true}')
    with fifo_watchdog(catalog.parent / "img" / "pipe.jpg"):
        r = _run_ingest_cli(catalog, tmp_path / "out", "--config", str(cfg))
    assert r.returncode == 0, r.stderr[-2000:]
    p = pd.read_parquet(tmp_path / "out" / "products.parquet").set_index(C.PRODUCT_ID)
    rej = pd.read_parquet(tmp_path / "out" / "rejects.parquet").set_index(C.SOURCE_ROW)
    assert p.index.tolist() == ["h0", "h4", "h5", "h6", "h7", "h9", "h10"]
    assert p.loc[["h4", "h6", "h7"], C.IMAGE_STATUS].eq("ok").all()
    assert p.loc["h5", C.IMAGE_STATUS] == "missing"
    assert rej.index.tolist() == [1, 2, 3, 8]
    assert rej.loc[8, C.REJECT_REASON] == "not a regular file (character device)"


def test_image_root_confines_images_to_another_folder(tmp_path):
    from tests.hostile import make_hostile_files

    catalog, outside = make_hostile_files(tmp_path / "cat")
    res = ingest(catalog, cfg=IngestConfig(image_root=str(outside)), progress=False)
    ok = res.products.set_index(C.PRODUCT_ID)
    assert set(ok.index[ok[C.HAS_IMAGE]]) == {"h4", "h6", "h7"}  # only what lies under the root is read
    assert "h5" in ok.index and ok.loc["h5", C.IMAGE_STATUS] == "missing"
    rej = res.rejects.set_index(C.SOURCE_ROW)[C.REJECT_REASON]
    assert set(rej.index) == {0, 1, 2, 3, 8, 9, 10}  # the catalog's own folder is now outside
    assert set(rej) == {f"outside the image root {outside}"}


# --- product ids ----------------------------------------------------------------------------------
def test_parquet_integer_ids_with_a_null_stay_integers_and_the_null_row_is_rejected(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as papq

    ints = tmp_path / "ints.parquet"
    papq.write_table(pa.table({"product_id": pa.array([1, None, 30], pa.int64()), "title": ["a", "b", "c"]}), ints)
    floats = tmp_path / "floats.parquet"  # what pandas writes for integers with a missing value
    pd.DataFrame({"product_id": [1.0, None, 30.0], "title": ["a", "b", "c"]}).to_parquet(floats)
    for path in (ints, floats):
        res = ingest(path, progress=False)
        assert res.products[C.PRODUCT_ID].tolist() == ["1", "30"], path.name
        assert res.rejects[[C.SOURCE_ROW, C.REJECT_FIELD, C.REJECT_REASON]].values.tolist() == [
            [1, "product_id", "empty product_id"]]


def test_product_ids_longer_than_the_cap_are_rejected(tmp_path):
    ids = ["a" * 128, "b" * 129, "c" * 10_000_000, "ok"]
    path = tmp_path / "ids.csv"
    pd.DataFrame({"product_id": ids, "title": ["t"] * 4}).to_csv(path, index=False)
    res = ingest(path, progress=False)
    assert res.products[C.PRODUCT_ID].tolist() == ["a" * 128, "ok"]
    rej = res.rejects.set_index(C.SOURCE_ROW)
    assert rej.loc[1, C.REJECT_REASON] == "product_id is 129 characters, over the 128-character limit (max_product_id_chars)"
    assert rej.loc[2, C.REJECT_REASON].startswith("product_id is 10000000 characters")
    assert len(rej.loc[2, C.PRODUCT_ID]) <= 200 and len(rej.loc[2, C.REJECT_VALUE]) <= 200
    small = ingest(path, cfg=IngestConfig(max_product_id_chars=2), progress=False)
    assert small.products[C.PRODUCT_ID].tolist() == ["ok"]


# --- malformed files ------------------------------------------------------------------------------
def _write(path, text: str | bytes):
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    return path


def test_a_row_with_too_many_fields_is_rejected_and_later_rows_keep_their_numbers(tmp_path):
    path = _write(tmp_path / "c.csv", "product_id,title,description\n"
                  "p0,First,one\n"
                  "p1,Too,many,fields here,and here\n"
                  'p2,"Multi\nline",two\n'
                  "\n"
                  "p3,Trailing comma,three,\n"
                  "p4,Short\n")
    res = ingest(path, progress=False)
    assert res.products[C.PRODUCT_ID].tolist() == ["p0", "p2", "p3", "p4"]
    assert res.products[C.SOURCE_ROW].tolist() == [0, 2, 3, 4]
    assert res.products.set_index(C.PRODUCT_ID).loc["p2", C.TITLE] == "Multi line"
    assert res.rejects[[C.SOURCE_ROW, C.PRODUCT_ID, C.REJECT_FIELD, C.REJECT_REASON]].values.tolist() == [
        [1, "p1", "row", "more fields than the header's 3 columns; first extra field: fields here"]]


@pytest.mark.parametrize("content,message", [
    (b"product_id,title\np0,ok\np1,\"Unterminated,x\np2,y\n",
     r"unterminated quote in data row 1 \(line 3\)"),
    ("product_id,title\np0,Café\n".encode("latin-1"), r"not UTF-8 text \(byte 0xe9 on line 2\)"),
    (b"", r"empty file \(no header row\)"),
    (b"\n\n", r"empty file \(no header row\)"),
])
def test_unreadable_csv_files_stop_with_one_line(tmp_path, content, message):
    path = _write(tmp_path / "c.csv", content)
    with pytest.raises(CatalogSchemaError, match=message) as e:
        read_catalog(path)
    assert "\n" not in str(e.value) and str(path) in str(e.value)
    r = subprocess.run([sys.executable, "-m", "dashclip.catalog", "ingest", "--catalog", str(path),
                        "--out", str(tmp_path / "o")], capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and r.stderr.strip().count("\n") == 0 and "Traceback" not in r.stderr
    assert not (tmp_path / "o" / "products.parquet").exists()
