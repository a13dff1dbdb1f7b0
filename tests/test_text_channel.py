"""The served embeddings' text channel: exact score arithmetic, dimensions, text-less rows, versions."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import torch

from dashclip import columns as C
from dashclip.catalog import ingest
from dashclip.config import load_model_config
from dashclip.data import product_channel_texts
from dashclip.inference import ProductEmbedder, QueryEmbedder, text_channel_embeddings
from dashclip.evaluate import main as evaluate_main
from dashclip.model import DashCLIP
from tests.hostile import make_hostile_catalog
from tests.test_stage1 import small_catalog

B = 0.2


def tiny(text_channel: float, seed: int = 0) -> DashCLIP:
    torch.manual_seed(seed)
    return DashCLIP(load_model_config("tiny-random").model_copy(update={"text_channel": text_channel}),
                    with_query_tower=True)


def test_scores_are_the_weighted_cosines_and_text_less_rows_keep_their_direction():
    model = tiny(B)
    g = torch.Generator().manual_seed(0)
    unit = lambda n, d: torch.nn.functional.normalize(torch.randn(n, d, generator=g), dim=-1)  # noqa: E731
    qs, qc, ps, pc = unit(3, 16), unit(3, 32), unit(4, 16), unit(4, 32)
    pc[3] = 0  # a product without text
    q, p = model.with_text_channel(qs, qc), model.with_text_channel(ps, pc)
    assert q.shape == (3, 48) and model.out_dim == 48
    torch.testing.assert_close(q.norm(dim=1), torch.ones(3))
    torch.testing.assert_close(p.norm(dim=1), torch.ones(4))
    expected = (1 - B) * qs @ ps[:3].T + B * qc @ pc[:3].T
    torch.testing.assert_close(q @ p[:3].T, expected)
    torch.testing.assert_close(p[3, :16], ps[3])  # its shared-space direction, nothing from the channel
    assert float(p[3, 16:].abs().max()) == 0.0
    torch.testing.assert_close(q @ p[3], math.sqrt(1 - B) * qs @ ps[3])
    assert tiny(0.0).with_text_channel(qs, qc) is qs  # off: the shared space alone


def test_served_embeddings_add_the_channel_of_title_category_and_description(tmp_path):
    on, off = tmp_path / "on", tmp_path / "off"
    model = tiny(B)
    v_on = model.save_pretrained(on, stage="tiny")
    model.cfg = model.cfg.model_copy(update={"text_channel": 0.0})
    v_off = model.save_pretrained(off, stage="tiny")
    assert v_on != v_off  # same weights, other served embeddings: another model version
    assert json.loads((on / "meta.json").read_text())["embed_dim"] == 48
    assert json.loads((off / "meta.json").read_text())["embed_dim"] == 16

    prods = ingest(make_hostile_catalog(tmp_path / "cat"), progress=False).products.reset_index(drop=True)
    served = ProductEmbedder(on).embed_products(prods)
    shared = ProductEmbedder(off).embed_products(prods)
    assert served.shape == (len(prods), 48)
    np.testing.assert_allclose(np.linalg.norm(served, axis=1), 1.0, atol=1e-5)
    texts = product_channel_texts(prods)
    loaded = DashCLIP.from_pretrained(on)
    chan = text_channel_embeddings(loaded, texts)
    expected = loaded.with_text_channel(torch.from_numpy(shared), chan).numpy()
    np.testing.assert_allclose(served, expected, atol=1e-5)
    text_less = np.nonzero((~prods[C.HAS_TEXT]).to_numpy())[0]
    assert len(text_less) and np.abs(served[text_less, 16:]).max() == 0.0

    q_served = QueryEmbedder(on).embed(["red shirt", "green apple"])
    q_shared = QueryEmbedder(off).embed(["red shirt", "green apple"])
    q_chan = text_channel_embeddings(loaded, ["red shirt", "green apple"]).numpy()
    expected = (1 - B) * q_shared @ shared.T + B * q_chan @ chan.numpy().T
    expected[:, text_less] = math.sqrt(1 - B) * q_shared @ shared[text_less].T  # unit vectors without a channel
    np.testing.assert_allclose(q_served @ served.T, expected, atol=1e-4)


def test_query_evaluation_reports_the_served_and_the_shared_space_figures(tmp_path):
    ck = tmp_path / "ck"
    tiny(B).save_pretrained(ck, stage="tiny")
    cat = small_catalog(tmp_path / "cat", n=24)
    prods = ingest(cat, progress=False).products
    jeans = prods[prods[C.CATEGORY] == "Cat > jeans"][C.PRODUCT_ID].tolist()
    jpath = tmp_path / "judgments.csv"
    pd.DataFrame({C.QUERY_ID: "q1", C.QUERY: "blue jeans", C.PRODUCT_ID: jeans, C.LABEL: 3}).to_csv(jpath, index=False)
    out = tmp_path / "q.json"
    assert evaluate_main(["queries", "--checkpoint", str(ck), "--catalog", str(cat), "--judgments", str(jpath),
                          "--out", str(out)]) == 0
    full = json.loads(out.read_text())
    r = full["annotator"]
    assert full["text_channel"] == B and {"dashclip", "dashclip_shared"} <= set(r)
    assert "| dashclip_shared |" in out.with_suffix(".md").read_text()
    assert r["ndcg@10_gain_over_best_baseline_shared"] == r["dashclip_shared"]["ndcg@10"] - max(
        r["bm25"]["ndcg@10"], r["minilm_zero_shot"]["ndcg@10"])
