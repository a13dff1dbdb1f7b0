"""The pooling tool for the hand-judged set: union of every system's top k, top-up over existing judgments."""

from __future__ import annotations

import pandas as pd

from bench.pool_for_judging import SHEET_COLUMNS, main
from dashclip import columns as C


def _catalog(path) -> None:
    rows = [(f"p{i:02d}", f"Brand{i} Men Black Shoe {i}", "", "Footwear > Shoes > Casual Shoes", "", "Black", "Men", "Casual", "x")
            for i in range(30)]
    rows += [("milk", "Arla Standard Milk", "Fresh standard milk.", "Packages > Milk > Arla Standard Milk", "", "", "", "", "g")]
    pd.DataFrame(rows, columns=[C.PRODUCT_ID, C.TITLE, C.DESCRIPTION, C.CATEGORY, C.IMAGE, C.COLOR, C.GENDER, C.USAGE,
                                C.SOURCE]).to_csv(path, index=False)


def test_pool_is_the_union_of_top_k_and_tops_up(tmp_path):
    _catalog(tmp_path / "catalog.csv")
    pd.DataFrame({C.QUERY_ID: ["a", "b"], C.QUERY: ["black shoes", "milk"], "intent": ["general", "dairy_vs_plant"]}
                 ).to_csv(tmp_path / "queries.csv", index=False)
    # system one: 25 ranks for query a (only the top 3 pooled), one unknown product; system two overlaps it
    one = pd.DataFrame({C.QUERY_ID: ["a"] * 25 + ["b"], C.PRODUCT_ID: [f"p{i:02d}" for i in range(24)] + ["nope", "milk"],
                        "rank": list(range(1, 26)) + [1]})
    two = pd.DataFrame({C.QUERY_ID: ["a", "a", "zz"], C.PRODUCT_ID: ["p02", "p29", "p01"], "rank": [1, 2, 1]})
    one.to_parquet(tmp_path / "one.parquet", index=False)
    two.to_csv(tmp_path / "two.csv", index=False)
    base = ["--products", str(tmp_path / "catalog.csv"), "--split", "all", "--queries", str(tmp_path / "queries.csv"),
            "--rankings", f"sys1={tmp_path / 'one.parquet'}", str(tmp_path / "two.csv"), "--baselines", "", "--top", "3"]
    out = tmp_path / "pool.csv"
    assert main(base + ["--out", str(out)]) == 0
    sheet = pd.read_csv(out, dtype=str, keep_default_na=False)
    assert list(sheet.columns) == SHEET_COLUMNS
    pairs = set(zip(sheet[C.QUERY_ID], sheet[C.PRODUCT_ID]))
    assert pairs == {("a", "p00"), ("a", "p01"), ("a", "p02"), ("a", "p29"), ("b", "milk")}
    assert (sheet[C.LABEL] == "").all() and (sheet["reason"] == "").all()
    assert sheet.loc[sheet[C.PRODUCT_ID] == "milk", "intent"].item() == "dairy_vs_plant"
    sources = pd.read_csv(str(out) + ".sources.csv", dtype=str)
    assert set(sources["system"]) == {"sys1", "two"} and len(sources) == 6  # p02 from both systems

    # judged pairs are left out of a later run
    judged = sheet[sheet[C.PRODUCT_ID].isin(["p00", "milk"])].assign(**{C.LABEL: "3", "reason": "E:same_type"})
    judged.to_csv(tmp_path / "judgments.csv", index=False)
    assert main(base + ["--existing", str(tmp_path / "judgments.csv"), "--out", str(tmp_path / "more.csv")]) == 0
    more = pd.read_csv(tmp_path / "more.csv", dtype=str, keep_default_na=False)
    assert set(zip(more[C.QUERY_ID], more[C.PRODUCT_ID])) == pairs - {("a", "p00"), ("b", "milk")}


def test_bm25_baseline_is_pooled_and_written(tmp_path):
    _catalog(tmp_path / "catalog.csv")
    pd.DataFrame({C.QUERY_ID: ["m"], C.QUERY: ["arla milk"]}).to_csv(tmp_path / "queries.csv", index=False)
    out = tmp_path / "pool.csv"
    assert main(["--products", str(tmp_path / "catalog.csv"), "--split", "all", "--queries", str(tmp_path / "queries.csv"),
                 "--baselines", "bm25", "--baselines-out", str(tmp_path / "rk"), "--top", "2", "--out", str(out)]) == 0
    ranked = pd.read_parquet(tmp_path / "rk" / "bm25.parquet")
    assert ranked[ranked["rank"] == 1][C.PRODUCT_ID].item() == "milk"
    sheet = pd.read_csv(out, dtype=str, keep_default_na=False)
    assert len(sheet) == 2 and "milk" in set(sheet[C.PRODUCT_ID]) and set(sheet["intent"]) == {""}


def test_bad_rankings_file_is_rejected_with_its_name(tmp_path, capsys):
    _catalog(tmp_path / "catalog.csv")
    pd.DataFrame({C.QUERY_ID: ["a"], C.QUERY: ["shoes"]}).to_csv(tmp_path / "queries.csv", index=False)
    pd.DataFrame({C.QUERY_ID: ["a"], C.PRODUCT_ID: ["p00"]}).to_csv(tmp_path / "bad.csv", index=False)
    rc = main(["--products", str(tmp_path / "catalog.csv"), "--split", "all", "--queries", str(tmp_path / "queries.csv"),
               "--rankings", str(tmp_path / "bad.csv"), "--baselines", "", "--out", str(tmp_path / "pool.csv")])
    assert rc == 2 and "bad.csv" in capsys.readouterr().err and not (tmp_path / "pool.csv").exists()
