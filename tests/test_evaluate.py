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
    out = tmp_path / "products.json"
    # probe fitted on the catalog's training split, scored on every product of the same catalog
    rc = evaluate_main(["products", "--checkpoint", str(ck), "--catalog", str(two_source_catalog),
                        "--train-catalog", str(two_source_catalog), "--out", str(out)])
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
    out, rankings = tmp_path / "q.json", tmp_path / "rankings.csv"
    rc = evaluate_main(["queries", "--checkpoint", str(ck), "--catalog", str(two_source_catalog),
                        "--judgments", str(jpath), "--rankings", str(rankings), "--out", str(out)])
    assert rc == 0
    r = json.loads(out.read_text())
    assert r["queries"] == 1 and r["judged_pairs"] == len(jeans)  # the unknown product id is left out
    # every jeans title holds both query words: BM25 ranks all of them first
    assert r["bm25"]["ndcg@10"] == pytest.approx(1.0) and r["bm25"]["mrr_exact"] == 1.0
    for system in ("dashclip", "bm25", "minilm_zero_shot"):
        assert all(0.0 <= r[system][m] <= 1.0 for m in ("ndcg@10", "recall@100_exact", "mrr_exact", "auc_relevant"))
    rk = pd.read_csv(rankings)
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
