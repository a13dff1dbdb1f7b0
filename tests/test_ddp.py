"""Training under torchrun (DistributedDataParallel, 2 gloo processes on the CPU) gives the losses of
one process on the same global batches: stage 1 through ``torchrun -m dashclip.train``, the teacher
and stage 2's QCC loop through ``torch.multiprocessing.spawn``. And the batch loader's worker
processes (the CUDA path) hand over what the training process would read itself, in order.

Tolerance: relative 1e-6. Each process encodes its share of every batch and the embeddings are
gathered, so the matrix products run in other shapes than one process's and round differently:
the losses here move by about 1e-8. AdamW all but cancels the scale of the gradients, so a
gradient average that is off by the number of processes (gathering without summing each share's
gradient over the processes, as open_clip's gather_with_grad=False does) moves them by only
2e-5 to 7e-5 over these steps: a looser tolerance would let that pass. Dropout is switched off
where a test compares: each process draws its own masks, which one process cannot reproduce."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import torch
import torch.multiprocessing as mp

from dashclip import columns as C
from dashclip import distributed
from dashclip.config import load_model_config
from dashclip.model import DashCLIP
from dashclip.stage1 import Stage1Config, train_stage1
from dashclip.stage2 import ProductSide, Stage2Config, fit_query_tower
from dashclip.teacher import CrossEncoder, train_teacher
from dashclip.training import BatchLoader
from tests.test_stage1 import small_catalog
from tests.test_training import annotated_pairs

REL = 1e-6
REPO = Path(__file__).resolve().parents[1]


def _env() -> dict:
    return {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO), "TOKENIZERS_PARALLELISM": "false"}


def test_stage1_under_torchrun_has_the_losses_of_one_process(tmp_path):
    torch.set_num_threads(1)
    cat = small_catalog(tmp_path / "cat", n=40)
    fields = {"model": "tiny-random", "epochs": 2, "batch_size": 8, "cache_dir": None, "warmup_steps": 2, "workers": 0,
              "feature_flip": 0.5, "weights": {"category_image": 0.3}, "device": "cpu"}
    (tmp_path / "s1.json").write_text(json.dumps(fields))
    one = train_stage1(Stage1Config(catalog=str(cat), **fields), tmp_path / "one", progress=False)
    run = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                          "-m", "dashclip.train", "stage1", "--config", str(tmp_path / "s1.json"), "--catalog", str(cat),
                          "--out", str(tmp_path / "two")], cwd=REPO, env=_env(), capture_output=True, text=True,
                         timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    assert "stage 1: device=cpu, precision=fp32, processes=2 (gloo)" in run.stdout
    assert run.stdout.count('"model_version"') == 1  # rank 0 alone prints the summary
    two = json.loads((tmp_path / "two" / "meta.json").read_text())["summary"]
    assert two["processes"] == 2 and one["processes"] == 1
    h1 = json.loads((tmp_path / "one" / "history.json").read_text())
    h2 = json.loads((tmp_path / "two" / "history.json").read_text())
    for key in ("train_total", "train_itc", "train_itm", "train_category", "val_total"):
        assert [r[key] for r in h2] == pytest.approx([r[key] for r in h1], rel=REL), key
    assert not list((tmp_path / "two").glob("*.tmp"))


def _no_dropout_text():
    """The tiny text tower without dropout (compared runs must not draw dropout masks)."""
    cfg = load_model_config("tiny-random")
    text = cfg.text.model_copy(update={"random_init": {**cfg.text.random_init, "hidden_dropout_prob": 0.0,
                                                       "attention_probs_dropout_prob": 0.0}})
    return cfg.model_copy(update={"text": text})


def teacher_and_qcc() -> dict:
    """A short teacher fit and a short QCC fit of the query tower, seeded, without dropout."""
    torch.set_num_threads(1)
    p, ann, queries, pairs, labels, texts = annotated_pairs()
    torch.manual_seed(0)
    cfg = _no_dropout_text()
    teacher = CrossEncoder(cfg.text, max_length=32)
    teacher.head[0].p = 0.0
    # 13 pairs a batch: shares of 7 and 6 rows, and a last batch smaller than the others
    t_loss = train_teacher(teacher, [q for q, _ in pairs], [texts[r] for _, r in pairs], labels, epochs=2,
                           batch_size=13, lr=2e-3, progress=False, length_group=2, device="cpu")
    model = DashCLIP(cfg, with_query_tower=True)
    emb = torch.nn.functional.normalize(torch.randn(len(p), cfg.embed_dim, generator=torch.Generator().manual_seed(1)),
                                        dim=1).numpy()
    labelled = pd.DataFrame([(q, r, float(g)) for (q, r), g in zip(pairs, labels)], columns=[C.QUERY, "row", C.LABEL])
    labelled[C.QUERY_ID] = "q" + pd.Series(labelled[C.QUERY].factorize()[0]).astype(str)
    side = ProductSide(model, emb, emb, torch.zeros(len(p), 1), torch.zeros(len(p), 1), joint=False)
    s2 = Stage2Config(catalog="unused", epochs=2, batch_size=7, random_negatives=8, device="cpu", patience=5,
                      loader_workers=0, warmup_steps=2)
    val = (queries[:6], [ann.grade_all(q) for q in queries[:6]])
    result = fit_query_tower(s2, model, labelled, side, pd.factorize(p[C.CATEGORY])[0], val, 0.0, progress=False)
    return {"teacher": t_loss, "qcc": [h["train_qcc"] for h in result.history[1:]],
            "ndcg": [h["val_ndcg@10"] for h in result.history]}


def _worker(rank: int, port: int, out: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), LOCAL_RANK=str(rank),
                      WORLD_SIZE="2")
    try:
        res = teacher_and_qcc()
    finally:
        distributed.cleanup()
    Path(out, f"rank{rank}.json").write_text(json.dumps(res))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_teacher_and_stage2_qcc_with_two_processes_have_the_losses_of_one(tmp_path):
    one = teacher_and_qcc()
    mp.spawn(_worker, args=(_free_port(), str(tmp_path)), nprocs=2, join=True)
    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert ranks[0] == ranks[1]  # every process follows rank 0's validation and ends with the same weights
    for key in ("teacher", "qcc", "ndcg"):
        assert ranks[0][key] == pytest.approx(one[key], rel=REL), key


def _tokens(b: list[int]) -> dict:
    return {"ids": torch.tensor(b) * 2, "n": len(b)}


@pytest.mark.filterwarnings("ignore:'pin_memory' argument is set as true but no accelerator")
def test_batch_loader_workers_give_what_the_training_process_would_in_order(monkeypatch):
    batches = [list(range(i, i + 1 + i % 3)) for i in range(9)]
    inline = list(BatchLoader(batches, _tokens, torch.device("cpu"), workers=2))  # the CPU: no worker processes
    # the CUDA path (2 forked workers, pinned memory where torch has an accelerator), taken on this machine
    ahead = list(BatchLoader(batches, _tokens, torch.device("cuda"), workers=2))
    assert [x["n"] for x in ahead] == [len(b) for b in batches] and len(ahead) == 9
    assert all(torch.equal(a["ids"], b["ids"]) for a, b in zip(ahead, inline))
    monkeypatch.setenv("WORLD_SIZE", "2")  # two processes: a one-row batch cannot be shared, it is left out
    assert len(BatchLoader(batches, _tokens, torch.device("cpu"))) == 6
