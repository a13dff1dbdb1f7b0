"""The shared training loop (``dashclip.training.fit``) trains stage 1, stage 2 and the teacher exactly
as their own loops did: the loss sequences of small seeded runs, recorded from those loops before
they were replaced, come out again, on the CPU named (``device="cpu"``) or chosen (``"auto"`` where
torch sees no CUDA device), which trains in float32 without autocast.

Tolerance: relative 1e-5. The runs are single-threaded and seeded, so on one machine they repeat
bit for bit; the margin absorbs float rounding that another CPU's kernels may order differently."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from dashclip import columns as C
from dashclip.config import load_model_config
from dashclip.queries import Annotator, generate_queries
from dashclip.stage1 import Stage1Config, Stage1Weights, train_stage1
from dashclip.stage2 import Stage2Config, train_stage2
from dashclip.teacher import CrossEncoder, teacher_product_text, train_teacher
from dashclip.tiny import make_tiny_checkpoint
from dashclip.training import LoopConfig, length_grouped_batches
from tests.test_stage1 import small_catalog
from tests.test_stage2 import fashion_products

REL = 1e-5


def history(folder) -> list[dict]:
    return json.loads((folder / "history.json").read_text())


@pytest.mark.parametrize("device", ["cpu", "auto"])
def test_stage1_losses_are_those_of_the_former_loop(tmp_path, device, monkeypatch, capsys):
    torch.set_num_threads(1)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)  # "auto" picks the CPU, as on a CPU-only machine
    cat = small_catalog(tmp_path / "cat", n=40)
    cfg = Stage1Config(catalog=str(cat), model="tiny-random", epochs=2, batch_size=8, cache_dir=None, warmup_steps=2,
                       workers=0, weights=Stage1Weights(category_image=0.3), feature_flip=0.5, weight_average=0.8,
                       device=device)
    summary = train_stage1(cfg, tmp_path / "s1", progress=False)
    assert capsys.readouterr().out.splitlines()[0] == "stage 1: device=cpu, precision=fp32"
    assert summary["device"] == "cpu" and summary["precision"] == "fp32"
    h = history(tmp_path / "s1")
    assert [r["train_total"] for r in h] == pytest.approx([13.45112419128418, 12.130221843719482], rel=REL)
    assert [r["train_itm"] for r in h] == pytest.approx([0.7220151126384735, 0.7113324403762817], rel=REL)
    assert [r["val_total"] for r in h] == pytest.approx([9.978358268737793, 9.294905662536621], rel=REL)


def test_stage2_and_its_teacher_losses_are_those_of_the_former_loops(tmp_path, capsys):
    torch.set_num_threads(1)
    cat = small_catalog(tmp_path / "cat", n=60)
    ck1 = make_tiny_checkpoint(tmp_path / "ck1", with_query_tower=False)
    cfg = Stage2Config(catalog=str(cat), queries_per_category=4, queries_per_product=0.5, seed_budget=60, epochs=2,
                       batch_size=8, random_negatives=8, val_queries=10, cache_dir=None, teacher_epochs=2, cand_bm25=3,
                       cand_dense=3, cand_random=2, patience=5, device="cpu")
    summary = train_stage2(cfg, ck1, tmp_path / "s2", progress=False)
    lines = capsys.readouterr().out.splitlines()  # the teacher follows the stage's device (no teacher_device)
    assert lines[0] == "stage 2: device=cpu, precision=fp32" and "teacher training: device=cpu, precision=fp32" in lines
    assert summary["device"] == "cpu" and summary["teacher_labels_device"] == "cpu"
    # stage 2's figures also follow its labels: a change to the annotator's rules, the mining or
    # the seed's hold-out re-records them (the loop itself was checked against the former one)
    assert summary["teacher_train_loss"] == pytest.approx([1.9699240922927856, 1.8723633289337158], rel=REL)
    h = history(tmp_path / "s2")
    assert [r.get("train_qcc") for r in h[1:]] == pytest.approx([2.1971986293792725, 2.3629491329193115], rel=REL)
    assert h[0]["val_ndcg@10"] == pytest.approx(1.0, rel=REL)
    joint = cfg.model_copy(update={"product_tower": "projection", "reuse_labels_from": str(tmp_path / "s2")})
    train_stage2(joint, ck1, tmp_path / "s3", progress=False)
    h = history(tmp_path / "s3")
    assert [r.get("train_qcc") for r in h[1:]] == pytest.approx([2.197254180908203, 2.3500256538391113], rel=REL)


def annotated_pairs():
    """The fashion products, their annotator, generated queries, 4 random (query, product row) pairs
    per query with the annotator's grades, and the products' teacher texts (no torch randomness)."""
    p = fashion_products()
    ann = Annotator(p)
    queries = generate_queries(p, per_category=4, per_product=1.0, seed=0)[C.QUERY].tolist()
    rng = np.random.default_rng(0)
    pairs = [(q, int(r)) for q in queries for r in rng.choice(len(p), 4, replace=False)]
    labels = np.array(ann.grade_pairs([q for q, _ in pairs], [r for _, r in pairs]))
    texts = [teacher_product_text(r) for r in p.to_dict("records")]
    return p, ann, queries, pairs, labels, texts


def test_teacher_losses_are_those_of_the_former_loop():
    torch.set_num_threads(1)
    torch.manual_seed(0)
    _, _, _, pairs, labels, texts = annotated_pairs()
    teacher = CrossEncoder(load_model_config("tiny-random").text, max_length=32)
    losses = train_teacher(teacher, [q for q, _ in pairs], [texts[r] for _, r in pairs], labels, epochs=3,
                           batch_size=16, lr=2e-3, progress=False, length_group=2, device="cpu")
    # the labels come from the annotator: a change to its rules re-records these
    assert losses == pytest.approx([1.1805680888764403, 1.0651675855859797, 1.0697198142396642], rel=REL)


def test_loop_config_and_batches_refuse_what_they_do_not_know():
    with pytest.raises(ValueError, match="monitr"):
        LoopConfig(name="x", epochs=1, monitr="val_total")
    batches = length_grouped_batches(np.arange(10), 4, 1, np.random.default_rng(0).permutation, min_size=4)
    assert all(len(b) == 4 for b in batches) and len(batches) == 2  # the 2-row remainder is dropped


def test_device_names_are_checked_when_a_config_loads_and_cuda_when_a_run_starts(tmp_path, monkeypatch, capsys):
    from dashclip.cli import CliError, load_config
    from dashclip.train import main

    for cls, field in ((Stage1Config, "device"), (Stage2Config, "device"), (Stage2Config, "teacher_device")):
        with pytest.raises(ValueError, match=f"{field}(.|\n)*device 'gpu0': expected auto, cpu, cuda or cuda:N"):
            cls(catalog="unused", **{field: "gpu0"})
        assert getattr(cls(catalog="unused", **{field: "cuda:1"}), field) == "cuda:1"  # a name; present or not
    (tmp_path / "s1.json").write_text(json.dumps({"device": "tpu"}))
    with pytest.raises(CliError) as e:  # the CLI's form: one line naming the file, the field and the value
        load_config(Stage1Config, tmp_path / "s1.json")
    assert "\n" not in str(e.value) and "device" in str(e.value) and "tpu" in str(e.value)

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(ValueError, match="device 'cuda': no CUDA device is available here"):
        train_stage1(Stage1Config(catalog="unused", device="cuda"), tmp_path / "never", progress=False)
    assert not (tmp_path / "never").exists()  # refused before anything is read or written
    with pytest.raises(ValueError, match="device 'cuda:0': no CUDA device"):
        train_stage2(Stage2Config(catalog="unused", device="cpu", teacher_device="cuda:0"), tmp_path / "ck",
                     tmp_path / "never", progress=False)
    code = main(["stage1", "--out", str(tmp_path / "never"), "--catalog", "unused.csv", "--device", "cuda"])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and err.startswith("error: device 'cuda': no CUDA device")
