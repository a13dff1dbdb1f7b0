"""Stage 1 on a tiny random config: training reduces the loss, checkpoints round-trip, the embed CLI copes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from dashclip import columns as C
from dashclip.catalog import ingest
from dashclip.config import load_model_config
from dashclip.inference import ProductEmbedder
from dashclip.model import DashCLIP
from dashclip.stage1 import (CategoryTexts, Stage1Config, Stage1Weights, category_loss, class_keys, eval_losses,
                             flip_feature_maps, train_losses, train_stage1)
from dashclip.tiny import make_tiny_checkpoint
from dashclip.trunk_cache import build_trunk_cache
from tests.hostile import jpeg_bytes, make_hostile_catalog


def small_catalog(root, n=24):
    """Four visually and textually distinct classes, n products in all."""
    (root / "img").mkdir(parents=True, exist_ok=True)
    names = ["red shirt", "blue jeans", "green apple", "black shoe"]
    rows = []
    for i in range(n):
        c = i % 4
        arr = np.zeros((40, 40, 3), dtype=np.uint8)
        arr[..., c % 3] = 200
        arr[c * 8:(c + 1) * 8] = 255 - 60 * c
        from PIL import Image

        Image.fromarray(arr).save(root / "img" / f"{i}.jpg")
        rows.append({"product_id": f"p{i}", "title": f"{names[c]} {i}", "description": names[c],
                     "category": f"Cat > {names[c].split()[1]}", "image": f"img/{i}.jpg"})
    path = root / "catalog.csv"
    pd.DataFrame(rows).to_csv(path, index=False)
    return path


def test_a_few_training_steps_reduce_the_loss(tmp_path):
    torch.manual_seed(0)
    prods = ingest(small_catalog(tmp_path), progress=False).products
    model = DashCLIP(load_model_config("tiny-random"))
    cache = build_trunk_cache(model, prods, progress=False)
    cfg = Stage1Config(catalog="unused", model="tiny-random", batch_size=24, text_dropout=0.0, image_dropout=0.0)
    keys = class_keys(prods)
    idx = torch.arange(len(prods))
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=3e-3)
    gen = torch.Generator().manual_seed(0)
    model.eval()
    first = eval_losses(model, cache, idx, keys, cfg)["total"].item()
    model.train()
    for _ in range(40):
        loss = train_losses(model, cache, idx, keys, cfg, gen)["total"]
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    last = eval_losses(model, cache, idx, keys, cfg)["total"].item()
    assert last < 0.7 * first, (first, last)


def test_train_stage1_writes_a_checkpoint_that_round_trips(tmp_path):
    cat = small_catalog(tmp_path / "cat", n=40)
    cfg = Stage1Config(catalog=str(cat), model="tiny-random", epochs=2, batch_size=8, cache_dir=None,
                       warmup_steps=2, workers=0)
    summary = train_stage1(cfg, tmp_path / "ck", progress=False)
    for f in ("config.json", "model.safetensors", "meta.json", "training_curve.png", "history.json", "tokenizer"):
        assert (tmp_path / "ck" / f).exists(), f
    assert summary["model_version"].startswith("dashclip-tiny-stage1-")
    prods = ingest(cat, progress=False).products
    a = ProductEmbedder(tmp_path / "ck").embed_products(prods)
    b = ProductEmbedder(tmp_path / "ck", batch_size=7).embed_products(prods)
    np.testing.assert_allclose(a, b, atol=1e-5)
    assert np.allclose(np.linalg.norm(a, axis=1), 1.0, atol=1e-5)
    # and the loaded weights are exactly the saved ones
    m = DashCLIP.from_pretrained(tmp_path / "ck")
    m.save_pretrained(tmp_path / "ck2", stage="stage1")
    assert (tmp_path / "ck" / "model.safetensors").read_bytes() == (tmp_path / "ck2" / "model.safetensors").read_bytes()


def test_image_only_and_text_only_products_get_embeddings(tmp_path):
    ck = make_tiny_checkpoint(tmp_path / "ck")
    prods = ingest(make_hostile_catalog(tmp_path / "cat"), progress=False).products
    emb = ProductEmbedder(ck).embed_products(prods)
    assert emb.shape == (len(prods), 16) and np.isfinite(emb).all()
    p = prods.reset_index(drop=True)
    img_only = p.index[(p[C.HAS_IMAGE]) & (~p[C.HAS_TEXT])][0]
    # the image-grounded embedding differs from a text-only product's
    assert not np.allclose(emb[img_only], emb[p.index[~p[C.HAS_IMAGE]][0]])


def test_embed_cli_with_a_corrupt_image_row(tmp_path):
    ck = make_tiny_checkpoint(tmp_path / "ck")
    cat = make_hostile_catalog(tmp_path / "cat")
    out = tmp_path / "emb.parquet"
    r = subprocess.run([sys.executable, "-m", "dashclip.embed", "products", "--checkpoint", str(ck),
                        "--catalog", str(cat), "--out", str(out), "--batch-size", "4"],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    table = pd.read_parquet(out)
    rejects = pd.read_parquet(tmp_path / "emb.rejects.parquet")
    assert list(table.columns) == ["product_id", "has_image", "model_version", "embedding", "content_hash"]
    assert table[C.PRODUCT_ID].tolist() == ["p0", "p3", "p4", "p7", "p8", "p10"]
    assert table[C.HAS_IMAGE].tolist() == [True, False, True, True, True, False]
    assert set(rejects[C.SOURCE_ROW]) == {1, 2, 5, 6, 9, 11}
    assert len(table[C.EMBEDDING].iloc[0]) == 16
    import pyarrow.parquet as pq

    assert str(pq.read_schema(out).field("embedding").type) == "list<element: float>"


def test_trunk_cache_serves_subsets_of_a_saved_catalog(tmp_path):
    prods = ingest(small_catalog(tmp_path / "cat", n=12), progress=False).products
    model = DashCLIP(load_model_config("tiny-random"))
    full = build_trunk_cache(model, prods, cache_dir=tmp_path / "cache", progress=False)
    files = sorted((tmp_path / "cache").glob("*.pt"))
    assert len(files) == 1
    sub = prods.iloc[[5, 2, 9]]
    part = build_trunk_cache(model, sub, cache_dir=tmp_path / "cache", progress=False)
    assert sorted((tmp_path / "cache").glob("*.pt")) == files  # served from the saved file
    assert torch.equal(part.image, full.image[[5, 2, 9]]) and torch.equal(part.text, full.text[[5, 2, 9]])


def test_train_cli_reuse_skips_an_up_to_date_checkpoint(tmp_path):
    cat = small_catalog(tmp_path / "cat", n=16)
    cfg = tmp_path / "s1.json"
    cfg.write_text('{"model": "tiny-random", "epochs": 1, "batch_size": 8, "cache_dir": null, "workers": 0, "warmup_steps": 1}')
    args = [sys.executable, "-m", "dashclip.train", "stage1", "--out", str(tmp_path / "ck"), "--catalog", str(cat),
            "--config", str(cfg), "--reuse"]
    first = subprocess.run(args, capture_output=True, text=True, timeout=300)
    assert first.returncode == 0, first.stderr
    second = subprocess.run(args, capture_output=True, text=True, timeout=300)
    assert second.returncode == 0 and "up to date" in second.stdout
    meta = json.loads((tmp_path / "ck" / "meta.json").read_text())  # as saved before the device field existed
    meta["train_config"].pop("device")
    (tmp_path / "ck" / "meta.json").write_text(json.dumps(meta))
    older = subprocess.run(args, capture_output=True, text=True, timeout=300)
    assert older.returncode == 0 and "up to date" in older.stdout, older.stdout + older.stderr
    # the same catalog named by a relative path from another directory is the same setting
    rel = [os.path.relpath(a, cat.parent) if a == str(cat) else a for a in args]
    elsewhere = {"cwd": cat.parent, "env": {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}}
    third = subprocess.run(rel, capture_output=True, text=True, timeout=300, **elsewhere)
    assert third.returncode == 0 and "up to date" in third.stdout, third.stdout + third.stderr

    # and the other way round: trained through a relative path, reused through the absolute one
    def to_ck2(argv: list[str]) -> list[str]:
        return [str(tmp_path / "ck2") if a == str(tmp_path / "ck") else a for a in argv]
    assert subprocess.run(to_ck2(rel), capture_output=True, text=True, timeout=300, **elsewhere).returncode == 0
    saved = json.loads((tmp_path / "ck2" / "meta.json").read_text())["train_config"]["catalog"]
    assert saved == str(cat.resolve())
    fourth = subprocess.run(to_ck2(args), capture_output=True, text=True, timeout=300)
    assert fourth.returncode == 0 and "up to date" in fourth.stdout, fourth.stdout + fourth.stderr


def test_train_cli_reuse_retrains_when_the_model_config_file_changed(tmp_path):
    from dashclip.config import CONFIG_DIR

    cat = small_catalog(tmp_path / "cat", n=16)
    arch = json.loads((CONFIG_DIR / "tiny-random.json").read_text())
    arch_path = tmp_path / "arch.json"
    arch_path.write_text(json.dumps(arch))
    cfg = tmp_path / "s1.json"
    cfg.write_text(json.dumps({"model": str(arch_path), "epochs": 1, "batch_size": 8, "cache_dir": None,
                               "workers": 0, "warmup_steps": 1}))
    args = [sys.executable, "-m", "dashclip.train", "stage1", "--out", str(tmp_path / "ck"), "--catalog", str(cat),
            "--config", str(cfg), "--reuse"]
    assert subprocess.run(args, capture_output=True, text=True, timeout=300).returncode == 0
    arch_path.write_text(json.dumps({**arch, "text_less": "image"}))  # same training settings, new architecture
    again = subprocess.run(args, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0 and "up to date" not in again.stdout, again.stdout
    saved = json.loads((tmp_path / "ck" / "config.json").read_text())
    assert saved["text_less"] == "image"


def test_category_loss_prefers_the_own_category_text(tmp_path):
    prods = ingest(small_catalog(tmp_path, n=8), progress=False).products
    model = DashCLIP(load_model_config("tiny-random")).eval()
    cats = CategoryTexts(model, prods, np.arange(len(prods)))
    assert cats.classes == sorted(set(prods[C.CATEGORY])) and (cats.index >= 0).all()
    with torch.no_grad():
        cat_emb = model.embed_text(cats.states, cats.mask)
        own = cat_emb[cats.index]  # each product exactly at its category text: the minimum
        wrong = cat_emb[(cats.index + 1) % len(cats.classes)]  # each at another category's text
        scale = torch.tensor(20.0)
        l_own = float(category_loss(model, own, cats.index, cats, scale))
        l_wrong = float(category_loss(model, wrong, cats.index, cats, scale))
        # rows with no (training) category are left out; none at all gives no loss
        none = torch.full_like(cats.index, -1)
        assert category_loss(model, own, none, cats, scale) is None
        half = torch.where(torch.arange(len(own)) % 2 == 0, cats.index, none)
        l_half = float(category_loss(model, own, half, cats, scale))
        keep = half >= 0
        expected = float(torch.nn.functional.cross_entropy(scale * own[keep] @ cat_emb.t(), half[keep]))
    assert l_own < l_wrong
    assert abs(l_half - expected) < 1e-5


def test_text_less_products_can_take_the_image_embedding(tmp_path):
    """text_less="image": a product with an image and no text gets exactly its image embedding
    (end to end from pixels and from the trunk cache); products with text keep the fused one."""
    prods = ingest(make_hostile_catalog(tmp_path / "cat"), progress=False).products.reset_index(drop=True)
    cfg = load_model_config("tiny-random")
    torch.manual_seed(0)
    fused_model = DashCLIP(cfg).eval()
    image_model = DashCLIP(cfg.model_copy(update={"text_less": "image"})).eval()
    image_model.load_state_dict(fused_model.state_dict())
    cache = build_trunk_cache(fused_model, prods, progress=False)
    text_less = (prods[C.HAS_IMAGE] & ~prods[C.HAS_TEXT]).to_numpy()
    assert text_less.any() and (~text_less).any()
    with torch.no_grad():
        img, has, txt, msk = cache.image.float(), cache.has_image, cache.text.float(), cache.mask
        a, b = fused_model(img, has, txt, msk), image_model(img, has, txt, msk)
    tl = torch.as_tensor(text_less)
    torch.testing.assert_close(b["product"][tl], b["image"][tl])
    torch.testing.assert_close(b["product"][~tl], a["product"][~tl])
    assert not torch.allclose(a["product"][tl], a["image"][tl])
    # the same from pixels, through the embedding path Spark and the CLI use
    ck = tmp_path / "ck"
    image_model.save_pretrained(ck, stage="stage1")
    emb = ProductEmbedder(ck).embed_products(prods)
    np.testing.assert_allclose(emb[text_less], b["image"][tl].numpy(), atol=2e-3)  # cache is float16
    np.testing.assert_allclose(emb[~text_less], b["product"][~tl].numpy(), atol=2e-3)


def test_image_category_loss_adds_its_weighted_term(tmp_path):
    prods = ingest(small_catalog(tmp_path, n=8), progress=False).products
    model = DashCLIP(load_model_config("tiny-random")).eval()
    cache = build_trunk_cache(model, prods, progress=False)
    cats = CategoryTexts(model, prods, np.arange(len(prods)))
    keys, idx = class_keys(prods), torch.arange(len(prods))
    common = dict(catalog="unused", model="tiny-random", text_dropout=0.0, image_dropout=0.0)
    with torch.no_grad():
        l_off = train_losses(model, cache, idx, keys, Stage1Config(**common, weights=Stage1Weights(itm=0.0)),
                             torch.Generator().manual_seed(0), cats=cats)
        on = Stage1Config(**common, weights=Stage1Weights(itm=0.0, category_image=0.7))
        l_on = train_losses(model, cache, idx, keys, on, torch.Generator().manual_seed(0), cats=cats)
        out = model(cache.image.float(), cache.has_image, cache.text.float(), cache.mask)
        expected = category_loss(model, out["image"], cats.index, cats, out["logit_scale"])
    assert "category_image" not in l_off and "category_image" in l_on
    assert abs(float(l_on["category_image"]) - float(expected)) < 1e-5
    assert abs(float(l_on["total"] - l_off["total"]) - 0.7 * float(expected)) < 1e-4


def test_feature_flip_mirrors_chosen_cnn_maps_only():
    maps = torch.arange(2 * 3 * 2 * 4, dtype=torch.float32).view(2, 3, 2, 4)
    torch.testing.assert_close(flip_feature_maps(maps, 1.0, torch.Generator()), maps.flip(-1))
    torch.testing.assert_close(flip_feature_maps(maps, 0.0, torch.Generator()), maps)
    tokens = torch.randn(2, 5, 8)  # ViT-style token sequences have no spatial map to mirror
    torch.testing.assert_close(flip_feature_maps(tokens, 1.0, torch.Generator()), tokens)
    x = torch.randn(400, 1, 1, 2)
    half = flip_feature_maps(x, 0.5, torch.Generator().manual_seed(0))
    flipped = (half == x.flip(-1)).all(-1).flatten()
    kept = (half == x).all(-1).flatten()
    assert bool((flipped | kept).all()) and 150 < int(flipped.sum()) < 250  # each row one or the other, ~half mirrored


def test_weight_average_is_a_bias_corrected_moving_average_and_restores():
    from dashclip.weight_average import WeightAverage

    m = torch.nn.BatchNorm1d(3)  # two parameters (one frozen here), float buffers and an integer buffer
    m.bias.requires_grad_(False)
    avg = WeightAverage(m, decay=0.5)
    assert set(avg.avg) == {"weight", "running_mean", "running_var"}  # no frozen parameter, no integer buffer
    for value in [1.0, 2.0, 4.0]:
        with torch.no_grad():
            m.weight.fill_(value)
        avg.update(m)
    # weights 0.25, 0.5, 1 (newest) over their sum 1.75: no share left to the initial weights (1.0 from BatchNorm)
    expected = (0.25 * 1 + 0.5 * 2 + 1.0 * 4) / 1.75
    live = avg.swap(m)
    torch.testing.assert_close(m.weight.detach(), torch.full((3,), expected))
    assert torch.equal(m.running_var, torch.ones(3))  # an unchanged buffer averages to itself, exactly
    WeightAverage.restore(m, live)
    torch.testing.assert_close(m.weight.detach(), torch.full((3,), 4.0))
    try:
        WeightAverage(m, decay=1.0)
    except ValueError as e:
        assert "decay" in str(e)
    else:
        raise AssertionError("decay 1.0 accepted")


def test_stage1_with_weight_average_saves_the_averaged_weights(tmp_path):
    """Same seed, same batches: both runs train along the same trajectory, but the averaged run
    validates and saves other weights than the plain run's."""
    cat = small_catalog(tmp_path / "cat", n=40)
    common = dict(catalog=str(cat), model="tiny-random", epochs=2, batch_size=8, cache_dir=None, warmup_steps=2,
                  workers=0, patience=5)
    train_stage1(Stage1Config(**common), tmp_path / "plain", progress=False)
    train_stage1(Stage1Config(**common, weight_average=0.8), tmp_path / "avg", progress=False)
    plain, avg = DashCLIP.from_pretrained(tmp_path / "plain"), DashCLIP.from_pretrained(tmp_path / "avg")
    sp, sa = plain.state_dict(), avg.state_dict()
    moved = [k for k in sp if sp[k].is_floating_point() and not torch.equal(sp[k], sa[k])]
    assert moved, "the averaged checkpoint equals the plain one"
    h_avg = json.loads((tmp_path / "avg" / "history.json").read_text())
    h_plain = json.loads((tmp_path / "plain" / "history.json").read_text())
    # identical training trajectories: the training losses agree, the validated weights do not
    assert [h["train_total"] for h in h_avg] == [h["train_total"] for h in h_plain]
    assert h_avg[-1]["val_total"] != h_plain[-1]["val_total"]
