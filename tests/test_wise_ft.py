"""WiSE-FT of the query encoder: the interpolation's end points and midpoint on the tiny config,
and the sweep that picks alpha on validation queries under the independent judge."""

from __future__ import annotations

import json

import pandas as pd
import pytest
import torch

from dashclip import columns as C
from dashclip.config import load_model_config
from dashclip.model import DashCLIP
from dashclip.wise_ft import choose, interpolate, main as wise_ft_main, save_with_alpha


def _fine_tuned(seed: int = 0) -> DashCLIP:
    """A tiny model whose query encoder moved away from the text encoder, as stage 2 moves it."""
    torch.manual_seed(seed)
    m = DashCLIP(load_model_config("tiny-random"), with_query_tower=True).eval()
    with torch.no_grad():
        for p in list(m.query_tower.parameters()) + list(m.query_proj.parameters()):
            p.add_(0.1 * torch.randn_like(p))
    return m


def _query_encoder(m: DashCLIP) -> dict[str, torch.Tensor]:
    return {**{f"t.{k}": v.clone() for k, v in m.query_tower.state_dict().items()},
            **{f"p.{k}": v.clone() for k, v in m.query_proj.state_dict().items()}}


def test_alpha_zero_is_the_zero_shot_encoder_and_one_the_fine_tuned():
    m = _fine_tuned()
    fine = _query_encoder(m)
    zero = {**{f"t.{k}": v.clone() for k, v in m.text_tower.state_dict().items()},
            **{f"p.{k}": v.clone() for k, v in m.text_proj.state_dict().items()}}
    assert any(not torch.equal(fine[k], zero[k]) for k in fine)

    interpolate(m, 1.0)
    assert all(torch.equal(v, fine[k]) for k, v in _query_encoder(m).items())
    interpolate(m, 0.0)
    assert all(torch.equal(v, zero[k]) for k, v in _query_encoder(m).items())
    # alpha 0 encodes queries exactly as the zero-shot text encoder does
    tok = m.tokenize(["red shirt", "green apple juice"])
    assert torch.allclose(m.encode_queries(**tok), m.encode_texts(**tok), atol=1e-6)

    m2 = _fine_tuned()
    interpolate(m2, 0.5)
    mid = _query_encoder(m2)
    for k, v in mid.items():
        if v.is_floating_point():
            assert torch.allclose(v, (fine[k] + zero[k]) / 2, atol=1e-6), k
    with pytest.raises(ValueError, match="outside"):
        interpolate(m2, 1.5)


def test_sweep_picks_an_alpha_under_the_independent_judge_and_saves_it(tmp_path):
    from tests.test_stage1 import small_catalog

    cat = small_catalog(tmp_path / "cat", n=24)
    ck = tmp_path / "ck"
    _fine_tuned().save_pretrained(ck, stage="stage2")
    qpath = tmp_path / "val.csv"
    pd.DataFrame({C.QUERY_ID: ["v1", "v2", "v3"], C.QUERY: ["blue jeans", "green apple", "zzz"],
                  "intent": ["footwear_apparel_type", "fresh_vs_made_from", "general"]}).to_csv(qpath, index=False)
    out, saved = tmp_path / "sweep.json", tmp_path / "ck_wise"
    assert wise_ft_main(["--checkpoint", str(ck), "--catalog", str(cat), "--split", "all", "--queries", str(qpath),
                         "--alphas", "0,0.5,1", "--text-channels", "0.3", "--out", str(out), "--save", str(saved),
                         "--cache-dir", ""]) == 0
    r = json.loads(out.read_text())
    own = DashCLIP.from_pretrained(ck).cfg.text_channel
    assert [(x["alpha"], x["text_channel"]) for x in r["sweep"]] == [(a, b) for a in (0.0, 0.5, 1.0)
                                                                    for b in sorted({own, 0.3})]
    assert r["judge"] == "independent_judge"
    assert r["queries"] == 2 and r["queries_without_relevant"] == 1  # nothing in the catalog answers "zzz"
    assert r["criterion"] == "mean" and set(r["minilm_zero_shot"]["by_intent"]) == set(r["sweep"][0]["by_intent"])
    for x in r["sweep"]:  # each setting's worst intent class against MiniLM zero-shot on the same queries
        assert x["worst_class_margin"] == pytest.approx(min(x["by_intent"][i] - r["minilm_zero_shot"]["by_intent"][i]
                                                            for i in x["by_intent"]))
    best = choose([dict(x) for x in r["sweep"]], r["minilm_zero_shot"]["by_intent"], own)
    assert (r["best_alpha"], r["best_text_channel"]) == (best["alpha"], best["text_channel"])
    assert set(r["sweep"][0]["by_intent"]) == {"footwear_apparel_type", "fresh_vs_made_from"}
    # the saved copy carries the chosen alpha and encodes queries as the interpolated model does
    m = DashCLIP.from_pretrained(saved)
    assert m.meta["wise_ft_alpha"] == r["best_alpha"] and m.meta["wise_ft_sweep"]["best_alpha"] == r["best_alpha"]
    assert m.cfg.text_channel == pytest.approx(r["best_text_channel"])
    ref = interpolate(DashCLIP.from_pretrained(ck), r["best_alpha"])
    tok = m.tokenize(["blue jeans"])
    assert torch.allclose(m.encode_queries(**tok), ref.encode_queries(**tok), atol=1e-6)
    # a checkpoint already interpolated cannot be swept again (its fine-tuned weights are gone)
    save_with_alpha(ck, 0.5, tmp_path / "ck_half")
    assert DashCLIP.from_pretrained(tmp_path / "ck_half").meta["wise_ft_alpha"] == 0.5
    assert wise_ft_main(["--checkpoint", str(tmp_path / "ck_half"), "--catalog", str(cat), "--split", "all",
                         "--queries", str(qpath), "--cache-dir", ""]) == 2


def _row(alpha, ndcg, fresh, dairy, text_channel=0.2):
    return {"alpha": alpha, "text_channel": text_channel, "ndcg@10": ndcg, "by_intent": {"fresh": fresh, "dairy": dairy}}


def test_floor_picks_the_best_mean_among_settings_no_class_below_minilm():
    minilm = {"fresh": 0.80, "dairy": 0.60}
    rows = [_row(1.0, 0.90, 0.95, 0.55),  # best mean, but dairy below MiniLM
            _row(0.5, 0.85, 0.82, 0.61),  # every class at or above MiniLM
            _row(0.25, 0.84, 0.90, 0.70)]
    assert choose([dict(r) for r in rows], minilm, own=0.2)["alpha"] == 1.0
    assert choose([dict(r) for r in rows], minilm, own=0.2, criterion="floor")["alpha"] == 0.5
    # when every setting has a class below MiniLM: the one whose worst class is least below
    worse = [_row(1.0, 0.90, 0.70, 0.55), _row(0.5, 0.85, 0.78, 0.59), _row(0.0, 0.80, 0.79, 0.50)]
    picked = choose([dict(r) for r in worse], minilm, own=0.2, criterion="floor")
    assert picked["alpha"] == 0.5 and picked["worst_class_margin"] == pytest.approx(-0.02)
    with pytest.raises(ValueError, match="criterion"):
        choose(rows, minilm, own=0.2, criterion="best")
