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


def test_preflight_refuses_without_a_gpu_and_while_training_cannot_use_one(monkeypatch, capsys):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert gpu.preflight(smoke=False) == gpu.EXIT_NO_GPU
    err = capsys.readouterr().err
    assert err.startswith("error: bench/gpu.sh needs a CUDA GPU") and "CPU_SMOKE=1" in err and err.count("\n") == 1
    assert gpu.preflight(smoke=True) == 0  # the smoke run needs none
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda i=0: "Some GPU")
    missing = gpu.training_devices()
    assert gpu.preflight(smoke=False) == (gpu.EXIT_NO_TRAINING_DEVICE if missing else 0)
    if missing:  # says so rather than training on the CPU
        err = capsys.readouterr().err
        assert "Stage1Config" in err and "cannot put their models on Some GPU" in err and err.count("\n") == 1


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
        known = {k: v for k, v in cfg.items() if k in cls.model_fields or k != "device"}
        cls.model_validate({"catalog": "unused", **known})  # every field but the device is the training code's own
        default = cls(catalog="unused")
        assert cfg["epochs"] >= default.epochs and cfg["batch_size"] > default.batch_size
    gpu.write_configs(tmp_path, smoke=True)
    s1, s2 = (json.loads((tmp_path / f"{s}.json").read_text()) for s in ("stage1", "stage2"))
    assert s1["model"] == "tiny-random" and s1["epochs"] == 1 and s2["teacher_device"] == "cpu"
    assert s1.get("device", "cpu") == "cpu" and s2.get("device", "cpu") == "cpu"


def test_report_rates_come_from_the_steps_and_reports(tmp_path):
    (tmp_path / "steps.tsv").write_text("stage1\t20\nstage2\t30\nlabel_pairs\t50\nembed_catalog\t10\ntotal\t120\n")
    (tmp_path / "stage1").mkdir()
    (tmp_path / "stage1" / "meta.json").write_text(json.dumps(
        {"summary": {"train_rows": 80, "val_rows": 20, "epochs_run": 2, "cache_s": 4.0, "train_s": 12.0}}))
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
