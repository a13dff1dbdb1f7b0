"""bench/gpu.sh without a GPU: it refuses in one line, its configs validate, its report adds up."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "bench"))

import gpu  # noqa: E402


def test_preflight_refuses_without_a_gpu_and_goes_ahead_with_one(monkeypatch, capsys):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert gpu.preflight(smoke=False) == gpu.EXIT_NO_GPU
    err = capsys.readouterr().err
    assert err.startswith("error: bench/gpu.sh needs a CUDA GPU") and "CPU_SMOKE=1" in err and err.count("\n") == 1
    assert gpu.preflight(smoke=True) == 0  # the smoke run needs none
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda i=0: "Some GPU")
    assert gpu.preflight(smoke=False) == 0  # the training configs take the device: nothing else to refuse
    assert capsys.readouterr().out.splitlines()[-1] == "gpu.sh: Some GPU"


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the refusal on a machine without CUDA")
def test_the_script_exits_3_before_doing_anything_without_a_gpu(tmp_path):
    env = {"PATH": "/usr/bin:/bin", "RUN_DIR": str(tmp_path / "run"), "PYTHON": sys.executable,
           "DASHCLIP_DATA": str(tmp_path)}
    (tmp_path / "catalog.csv").write_text("product_id,title\n1,a\n")
    res = subprocess.run(["bash", str(REPO / "bench" / "gpu.sh")], env=env, capture_output=True, text=True, timeout=120)
    assert res.returncode == 3, res.stderr
    assert res.stderr.startswith("error: bench/gpu.sh needs a CUDA GPU") and not (tmp_path / "run").exists()


def test_gpu_and_smoke_configs_validate(tmp_path):
    from dashclip.config import load_model_config
    from dashclip.stage1 import Stage1Config
    from dashclip.stage2 import Stage2Config

    assert load_model_config("dashclip-base-gpu").image.trainable_blocks > load_model_config("dashclip-base").image.trainable_blocks
    for stage, cls in (("stage1", Stage1Config), ("stage2", Stage2Config)):
        cfg = json.loads(gpu.GPU_CONFIGS[stage].read_text())
        loaded = cls.model_validate({"catalog": "unused", **cfg})  # the file as it is, device included
        assert loaded.device == "cuda"  # a name; whether CUDA is present is checked when training starts
        default = cls(catalog="unused")
        assert cfg["epochs"] >= default.epochs and cfg["batch_size"] > default.batch_size
    gpu.write_configs(tmp_path, smoke=True)
    s1, s2 = (json.loads((tmp_path / f"{s}.json").read_text()) for s in ("stage1", "stage2"))
    assert s1["model"] == "tiny-random" and s1["epochs"] == 1 and s2["teacher_device"] == "cpu"
    assert s1["device"] == "cpu" and s2["device"] == "cpu"
    Stage1Config.model_validate({"catalog": "unused", **s1}), Stage2Config.model_validate({"catalog": "unused", **s2})


def test_report_rates_come_from_the_steps_and_reports(tmp_path):
    (tmp_path / "steps.tsv").write_text("stage1\t20\nstage2\t30\nlabel_pairs\t50\nembed_catalog\t10\ntotal\t120\n")
    (tmp_path / "stage1").mkdir()
    (tmp_path / "stage1" / "meta.json").write_text(json.dumps(
        {"summary": {"train_rows": 80, "val_rows": 20, "epochs_run": 2, "cache_s": 4.0, "train_s": 12.0,
                     "device": "cpu", "precision": "fp32"}}))
    (tmp_path / "label_pairs.json").write_text(json.dumps({"rows_labelled": 400, "seconds": {"total": 20.0}}))
    (tmp_path / "embed_catalog.json").write_text(json.dumps({"rows_embedded": 100, "seconds": {"total": 5.0}}))
    (tmp_path / "gpu_memory.txt").write_text("100\n2048\n512\n")
    rep = gpu.report(tmp_path, smoke=True)
    r = rep["items_per_s"]
    assert r["stage1_trunk_cache_products_per_s"] == 25.0 and r["stage1_train_rows_per_s"] == 20.0
    assert r["label_pairs_pairs_per_s"] == 20.0 and r["label_pairs_pairs_per_s_with_startup"] == 8.0
    assert r["embed_catalog_products_per_s"] == 20.0 and rep["seconds"]["stage1_plus_stage2"] == 50.0
    assert rep["mode"] == "cpu_smoke" and rep["targets"]["met"] is None and rep["gpu_memory_peak_mib"] is None
    assert gpu.gpu_memory_peak_mib(tmp_path / "gpu_memory.txt") == 2048
    assert rep["training"] == {"stage1_device": "cpu", "stage1_precision": "fp32", "stage2_device": None,
                               "stage2_precision": None}  # what each stage's summary says it trained on
