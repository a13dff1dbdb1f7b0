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
    full = json.loads(out.read_text())
    r = full["annotator"]
    assert full["queries"] == 1 and full["judged_pairs"] == len(jeans)  # the unknown product id is left out
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


def test_queries_with_no_judged_pair_in_the_catalog_are_skipped_not_a_crash(tmp_path, two_source_catalog, capsys):
    """Queries written for another catalog (0 judged pairs here): a report saying so, exit 0."""
    ck = make_tiny_checkpoint(tmp_path / "ck")
    for name, judg in (("other.csv", pd.DataFrame({C.QUERY_ID: ["h1"], C.QUERY: ["4k television"],
                                                   C.PRODUCT_ID: ["tv-1"], C.LABEL: [3]})),
                       ("empty.csv", pd.DataFrame(columns=[C.QUERY_ID, C.QUERY, C.PRODUCT_ID, C.LABEL]))):
        jpath, out = tmp_path / name, tmp_path / f"{name}.json"
        judg.to_csv(jpath, index=False)
        rc = evaluate_main(["queries", "--checkpoint", str(ck), "--catalog", str(two_source_catalog),
                            "--judgments", str(jpath), "--out", str(out)])
        assert rc == 0
        r = json.loads(out.read_text())
        assert r["judged_pairs"] == 0 and "names a product of this catalog" in r["skipped"]
        assert "skipped" in capsys.readouterr().out


def test_evaluate_says_its_device_and_refuses_a_missing_gpu(tmp_path, two_source_catalog, capsys, monkeypatch):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)  # a machine without CUDA, on any machine
    ck = make_tiny_checkpoint(tmp_path / "ck")
    args = ["products", "--checkpoint", str(ck), "--catalog", str(two_source_catalog), "--max-rows", "16"]
    assert evaluate_main([*args, "--device", "cpu", "--out", str(tmp_path / "cpu.json")]) == 0
    assert "evaluate products: device=cpu, precision=fp32" in capsys.readouterr().out
    assert evaluate_main([*args, "--out", str(tmp_path / "auto.json")]) == 0  # auto: the CPU when no CUDA
    assert "evaluate products: device=cpu, precision=fp32" in capsys.readouterr().out
    cpu, auto = (json.loads((tmp_path / f"{n}.json").read_text()) for n in ("cpu", "auto"))
    assert cpu["dashclip"] == auto["dashclip"]
    for device, why in (("cuda", "no CUDA device is available"), ("cuda:1", "no CUDA device is available"),
                        ("gpu0", "expected auto, cpu, cuda or cuda:N")):
        assert evaluate_main([*args, "--device", device]) == 2
        err = capsys.readouterr().err
        assert err.startswith(f"error: device {device!r}: ") and why in err and err.count("\n") == 1


def _grocery_products() -> pd.DataFrame:
    rows = [("g1", "Granny Smith Apple", "Fruit > Apple > Granny Smith"), ("g2", "Royal Gala Apple", "Fruit > Apple > Royal Gala"),
            ("g3", "Bravo Apple Juice", "Packages > Juice > Bravo Apple Juice"),
            ("g4", "Arla Natural Yoghurt", "Packages > Yoghurt > Arla Natural Yoghurt"),
            ("g5", "Valio Vanilla Yoghurt", "Packages > Yoghurt > Valio Vanilla Yoghurt")]
    return pd.DataFrame([{C.PRODUCT_ID: p, C.TITLE: t, C.CATEGORY: c, C.DESCRIPTION: "", C.COLOR: "", C.GENDER: "",
                          C.USAGE: ""} for p, t, c in rows])


def test_two_judges_grade_the_same_rankings_and_report_per_intent_class():
    from dashclip.eval_queries import two_judge_reports

    prods = _grocery_products()
    qs = pd.DataFrame({C.QUERY_ID: ["q1", "q2"], C.QUERY: ["apples", "natural yoghurt"]})
    # the annotator's labels (as a judgments file would give them): the juice counted as an apple,
    # the vanilla yoghurt as a natural one
    ann = np.array([[3, 3, 3, 0, 0], [0, 0, 0, 3, 3]])
    # a system that ranks the made-from / flavoured product first, another the fresh / plain one
    wrong = np.array([[0.5, 0.4, 0.9, 0, 0], [0, 0, 0, 0.5, 0.9]])
    right = np.array([[0.9, 0.8, 0.1, 0, 0], [0, 0, 0, 0.9, 0.1]])
    systems = {"dashclip": wrong, "bm25": right, "minilm_zero_shot": right}
    r = two_judge_reports(prods, qs, ["fresh_vs_made_from", "plain_vs_flavoured"], ann, systems)
    a, j = r["annotator"], r["independent_judge"]
    # the annotator sees no difference; the independent judge grades the juice and the vanilla I
    assert a["dashclip"]["ndcg@10"] == pytest.approx(1.0) and a["bm25"]["ndcg@10"] == pytest.approx(1.0)
    assert j["dashclip"]["ndcg@10"] < j["bm25"]["ndcg@10"] == pytest.approx(1.0)
    assert j["ndcg@10_gain_over_minilm_zero_shot"] < 0 and not j["auc_above_both_baselines"]
    assert r["intents"] == {"fresh_vs_made_from": 1, "plain_vs_flavoured": 1}
    for judge in (a, j):
        assert judge["by_intent"]["fresh_vs_made_from"]["queries"] == 1
    # the one relevant product (natural) is ranked below the vanilla one and above the other three
    assert j["by_intent"]["plain_vs_flavoured"]["dashclip"]["auc_relevant"] == pytest.approx(0.75)
    # without intents given, the independent judge names them
    r2 = two_judge_reports(prods, qs, None, ann, systems)
    assert set(r2["intents"]) == {"fresh_vs_made_from", "plain_vs_flavoured"}


def test_handwritten_judgments_carry_the_intent_column_into_the_report(tmp_path, two_source_catalog):
    qpath = tmp_path / "queries.csv"
    pd.DataFrame({C.QUERY_ID: ["h1", "h2"], C.QUERY: ["blue jeans", "zzz"],
                  "intent": ["footwear_apparel_type", "general"]}).to_csv(qpath, index=False)
    jdir = tmp_path / "judg"
    assert evaluate_main(["judgments", "--catalog", str(two_source_catalog), "--split", "all", "--queries", str(qpath),
                          "--out-dir", str(jdir)]) == 0
    judg = pd.read_csv(jdir / "judgments.csv")
    assert set(judg["intent"]) == {"footwear_apparel_type"}  # "zzz" has nothing relevant: no judged pairs
    assert pd.read_csv(jdir / "queries.csv")[C.QUERY_ID].tolist() == ["h1", "h2"]  # but it is still evaluated
    ck = make_tiny_checkpoint(tmp_path / "ck")
    out = tmp_path / "q.json"
    assert evaluate_main(["queries", "--checkpoint", str(ck), "--catalog", str(jdir / "products.parquet"),
                          "--judgments", str(jdir / "judgments.csv"), "--out", str(out)]) == 0
    r = json.loads(out.read_text())
    assert r["queries"] == 2 and r["intents"] == {"footwear_apparel_type": 1, "general": 1}
    assert r["queries_file"] == str(jdir / "queries.csv")
    for judge in ("annotator", "independent_judge"):  # each judge's means: queries it finds a relevant product for
        assert r[judge]["queries"] == 1 and r[judge]["by_intent"]["general"] == {"queries": 0}
        assert 0.0 <= r[judge]["dashclip"]["ndcg@10"] <= 1.0
    md = out.with_suffix(".md").read_text()
    assert "Judge: independent_judge" in md and "| footwear_apparel_type | 1 |" in md


def test_judgment_matrix_keeps_queries_with_nothing_judged():
    from dashclip.eval_queries import judgment_matrix

    prods = _grocery_products()
    judg = pd.DataFrame({C.QUERY_ID: ["q1"], C.QUERY: ["apples"], C.PRODUCT_ID: ["g1"], C.LABEL: [3]})
    queries = pd.DataFrame({C.QUERY_ID: ["q0", "q1"], C.QUERY: ["kiwi", "apples"]})
    qs, labels, n = judgment_matrix(prods, judg, queries)
    assert qs[C.QUERY_ID].tolist() == ["q0", "q1"] and n == 1
    assert labels.tolist() == [[0, 0, 0, 0, 0], [3, 0, 0, 0, 0]]


def test_read_judge_pools_unjudged_as_zero_and_reports_each_systems_judged_share(tmp_path):
    from dashclip.eval_queries import read_judge_report

    prods = _grocery_products()
    qs = pd.DataFrame({C.QUERY_ID: ["q1", "q2"], C.QUERY: ["apples", "natural yoghurt"]})
    # read judgments for q1 only: the two apples exact, the juice irrelevant; g4/g5 never judged
    path = tmp_path / "read.csv"
    pd.DataFrame({C.QUERY_ID: ["q1", "q1", "q1"], C.PRODUCT_ID: ["g1", "g2", "g3"], C.LABEL: [3, 3, 0],
                  "reason": ["E: apple", "E: apple", "I: juice, not fresh"]}).to_csv(path, index=False)
    right = np.array([[0.9, 0.8, 0.1, 0, 0], [0, 0, 0, 0.9, 0.1]])
    wrong = np.array([[0.5, 0.4, 0.9, 0, 0], [0, 0, 0, 0.5, 0.9]])
    r = read_judge_report(prods, qs, path, ["fresh_vs_made_from", "plain_vs_flavoured"],
                          {"dashclip": wrong, "bm25": right, "minilm_zero_shot": right})
    j = r["read_judge"]
    assert j["queries"] == 1 and r["read_judged_pairs"] == 3  # q2 has no read judgment: left out
    assert j["bm25"]["ndcg@10"] == pytest.approx(1.0) and j["dashclip"]["ndcg@10"] < 1.0
    assert r["read_judge_coverage"]["bm25"] == pytest.approx(0.6)  # top 10 of 5 products: 3 of the 5 judged
    bad = tmp_path / "bad.csv"
    pd.DataFrame({C.QUERY_ID: ["q1"], C.PRODUCT_ID: ["g1"], C.LABEL: [7]}).to_csv(bad, index=False)
    with pytest.raises(ValueError, match="row 0 has label 7"):
        read_judge_report(prods, qs, bad, ["", ""], {"dashclip": right})
