"""The evaluation commands on a tiny random checkpoint: report structure and figures that must agree."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from dashclip import columns as C
from dashclip.evaluate import main as evaluate_main
from dashclip.tiny import make_tiny_checkpoint
from tests.test_stage1 import small_catalog


@pytest.fixture()
def two_source_catalog(tmp_path):
    path = small_catalog(tmp_path / "cat", n=32)
    df = pd.read_csv(path)
    df["source"] = np.where(df["category"].isin(["Cat > apple"]), "grocery", "fashion")
    df.to_csv(path, index=False)
    return path


def test_products_report_has_per_source_figures_that_add_up(tmp_path, two_source_catalog):
    ck = make_tiny_checkpoint(tmp_path / "ck")
    out = tmp_path / "eval" / "products.json"  # --out is the folder
    # probe fitted on the catalog's training split, scored on every product of the same catalog
    rc = evaluate_main(["products", "--checkpoint", str(ck), "--catalog", str(two_source_catalog),
                        "--train-catalog", str(two_source_catalog), "--out", str(out.parent)])
    assert rc == 0
    r = json.loads(out.read_text())
    by = r["probe_acc_by_source"]
    assert set(by) == {"grocery", "fashion"}
    assert by["grocery"]["products"] == 8 and by["fashion"]["products"] == 24
    assert sum(v["products"] for v in by.values()) == r["test_products"] == 32
    overall = {"dashclip": r["dashclip"]["probe_acc"], "dashclip_image_only": r["dashclip"]["probe_acc_image_only"],
               "baseline_image": r["baseline_image"]["probe_acc"], "baseline_text": r["baseline_text"]["probe_acc"]}
    for name, acc in overall.items():  # the same predictions, split by source
        weighted = sum(v[name] * v["products"] for v in by.values()) / r["test_products"]
        assert abs(weighted - acc) < 1e-9, name
    md = out.with_suffix(".md").read_text()
    assert "by catalog source" in md and "| grocery | 8 |" in md


def test_queries_report_scores_a_keyword_query_and_rejects_bad_labels(tmp_path, two_source_catalog, capsys):
    ck = make_tiny_checkpoint(tmp_path / "ck")
    from dashclip.catalog import ingest

    prods = ingest(two_source_catalog, progress=False).products
    jeans = prods[prods[C.CATEGORY] == "Cat > jeans"][C.PRODUCT_ID].tolist()
    judg = pd.DataFrame({C.QUERY_ID: "q1", C.QUERY: "blue jeans", C.PRODUCT_ID: jeans + ["not-in-catalog"],
                         C.LABEL: [3] * len(jeans) + [3]})
    jpath = tmp_path / "judgments.csv"
    judg.to_csv(jpath, index=False)
    out, rankings = tmp_path / "eval" / "queries.json", tmp_path / "eval" / "rankings.parquet"  # in the --out folder
    rc = evaluate_main(["queries", "--checkpoint", str(ck), "--catalog", str(two_source_catalog),
                        "--judgments", str(jpath), "--out", str(out.parent)])
    assert rc == 0
    r = json.loads(out.read_text())
    assert r["queries"] == 1 and r["judged_pairs"] == len(jeans)  # the unknown product id is left out
    # every jeans title holds both query words: BM25 ranks all of them first
    assert r["bm25"]["ndcg@10"] == pytest.approx(1.0) and r["bm25"]["mrr_exact"] == 1.0
    for system in ("dashclip", "bm25", "minilm_zero_shot"):
        assert all(0.0 <= r[system][m] <= 1.0 for m in ("ndcg@10", "recall@100_exact", "mrr_exact", "auc_relevant"))
    rk = pd.read_parquet(rankings)
    assert len(rk) == min(100, len(prods)) and rk["rank"].tolist() == list(range(1, len(rk) + 1))
    assert rk["score"].is_monotonic_decreasing
    # a label outside 0..3 is refused, naming the row and the value
    judg.loc[1, C.LABEL] = 5
    judg.to_csv(jpath, index=False)
    assert evaluate_main(["queries", "--checkpoint", str(ck), "--catalog", str(two_source_catalog),
                          "--judgments", str(jpath)]) == 2
    assert "row 1 has label 5" in capsys.readouterr().err
