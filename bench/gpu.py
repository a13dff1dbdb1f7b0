"""The steps of ``bench/gpu.sh`` that are Python: refusing without a GPU, the effective
stage configs, the CPU smoke subset and the ``gpu.json`` report.

    python bench/gpu.py preflight [--smoke]
    python bench/gpu.py configs --run-dir DIR [--smoke]
    python bench/gpu.py subset --catalog CSV --out CSV --rows N
    python bench/gpu.py report --run-dir DIR --out FILE [--smoke]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # `python bench/gpu.py` from the root finds the project
from bench.machine import cpu_model  # noqa: E402

GPU_CONFIGS = {"stage1": ROOT / "configs" / "gpu_stage1.json", "stage2": ROOT / "configs" / "gpu_stage2.json"}
EXIT_NO_GPU = 3
# the smoke run: every step, on a tiny random model and a small slice of the catalog, on the CPU
SMOKE = {"stage1": {"model": "tiny-random", "epochs": 1, "batch_size": 32, "workers": 0, "cache_dir": None,
                    "feature_flip": 0.0},
         "stage2": {"queries_per_category": 2, "queries_per_product": 0.2, "seed_budget": 60, "teacher_epochs": 1,
                    "epochs": 1, "batch_size": 16, "random_negatives": 16, "val_queries": 10, "cand_bm25": 3,
                    "cand_dense": 3, "cand_random": 1, "cache_dir": None}}
TARGETS = {"stage1_plus_stage2_s": 300, "embed_catalog_products_per_s": 2000, "wall_s": 480}
# the CPU run the GPU figures stand beside (docs/results.md: shipped catalog, default settings)
CPU_REFERENCE = {"source": "docs/results.md", "probe_acc": 0.988, "probe_acc_image_only": 0.875,
                 "baseline_image_probe_acc": 0.816, "stage2_best_val_ndcg@10": 0.913,
                 "generated_queries_ndcg@10": 0.902, "teacher_label_pairs_per_s": 104}


def preflight(smoke: bool) -> int:
    import torch

    if smoke:
        print(f"gpu.sh: CPU smoke run (every step on a tiny model and subset; no GPU figures): {cpu_model()}")
        return 0
    if not torch.cuda.is_available():
        print(f"error: bench/gpu.sh needs a CUDA GPU and torch {torch.__version__} sees none; "
              f"CPU_SMOKE=1 bash bench/gpu.sh runs every step on a tiny subset on the CPU", file=sys.stderr)
        return EXIT_NO_GPU
    print(f"gpu.sh: {torch.cuda.get_device_name(0)}")
    return 0


def write_configs(run_dir: Path, smoke: bool) -> None:
    """``RUN/stage1.json`` and ``RUN/stage2.json``: the GPU profile, or in a smoke run the GPU profile
    with the smoke settings over it and every device set to the CPU."""
    from dashclip.stage1 import Stage1Config
    from dashclip.stage2 import Stage2Config

    for stage, cls in (("stage1", Stage1Config), ("stage2", Stage2Config)):
        cfg = json.loads(GPU_CONFIGS[stage].read_text())
        if smoke:
            cfg.update(SMOKE[stage])
            cfg = {k: ("cpu" if k.endswith("device") else v) for k, v in cfg.items()}
        cls.model_validate({"catalog": "unused", **cfg})  # fails here, naming the field, not mid-run
        (run_dir / f"{stage}.json").write_text(json.dumps(cfg, indent=1))


def write_subset(catalog: Path, out: Path, rows: int) -> None:
    """Every k-th row of the catalog (``rows`` in all), its image paths made absolute."""
    import pandas as pd

    df = pd.read_csv(catalog, dtype=str, keep_default_na=False)
    df = df.iloc[:: max(1, len(df) // rows)].head(rows).copy()
    df["image"] = [str((catalog.parent / p).resolve()) if p else "" for p in df["image"]]
    out.parent.mkdir(parents=True, exist_ok=True)
    df.to_csv(out, index=False)



def _json(path: Path) -> dict:
    return json.loads(path.read_text()) if path.exists() else {}


def _rate(n: float | None, s: float | None) -> float | None:
    return round(n / s, 1) if n and s else None


def gpu_memory_peak_mib(samples: Path) -> int | None:
    """The highest memory.used (MiB) nvidia-smi sampled during the run."""
    if not samples.exists():
        return None
    vals = [int(x) for x in samples.read_text().split() if x.strip().isdigit()]
    return max(vals) if vals else None


def report(run_dir: Path, smoke: bool) -> dict:
    """Items/s per step, the GPU memory peak, the device and the quality figures of the run."""
    import torch

    steps = {}
    for line in (run_dir / "steps.tsv").read_text().splitlines():
        name, seconds = line.split("\t")
        steps[name] = float(seconds)
    s1 = _json(run_dir / "stage1" / "meta.json").get("summary", {})
    s2 = _json(run_dir / "stage2" / "stage2_summary.json")
    lab, emb = _json(run_dir / "label_pairs.json"), _json(run_dir / "embed_catalog.json")
    prod, gen = _json(run_dir / "eval" / "products.json"), _json(run_dir / "eval" / "generated" / "queries.json")
    gpu = torch.cuda.is_available() and not smoke
    rates = {
        "stage1_trunk_cache_products_per_s": _rate(s1.get("train_rows", 0) + s1.get("val_rows", 0), s1.get("cache_s")),
        "stage1_train_rows_per_s": _rate(s1.get("train_rows", 0) * s1.get("epochs_run", 0),
                                         (s1.get("train_s") or 0) - (s1.get("cache_s") or 0)),
        "stage2_teacher_label_pairs_per_s": s2.get("teacher_label_pairs_per_s"),
        "label_pairs_pairs_per_s": _rate(lab.get("rows_labelled"), lab.get("seconds", {}).get("total")),
        "label_pairs_pairs_per_s_with_startup": _rate(lab.get("rows_labelled"), steps.get("label_pairs")),
        "embed_catalog_products_per_s": _rate(emb.get("rows_embedded"), emb.get("seconds", {}).get("total")),
        "embed_catalog_products_per_s_with_startup": _rate(emb.get("rows_embedded"), steps.get("embed_catalog")),
    }
    train_s = steps.get("stage1", 0) + steps.get("stage2", 0)
    out = {
        "mode": "cpu_smoke" if smoke else "gpu",
        "device": torch.cuda.get_device_name(0) if gpu else f"cpu: {cpu_model()}",
        "gpu_memory_peak_mib": gpu_memory_peak_mib(run_dir / "gpu_memory.txt") if gpu else None,
        "torch": torch.__version__,
        "training": {f"{stage}_{k}": summary.get(k) for stage, summary in (("stage1", s1), ("stage2", s2))
                     for k in ("device", "precision")},
        "seconds": {**{k: round(v, 1) for k, v in steps.items()}, "stage1_plus_stage2": round(train_s, 1)},
        "items_per_s": rates,
        "rows": {"stage1_train": s1.get("train_rows"), "stage2_teacher_labelled": s2.get("teacher_labelled_pairs"),
                 "label_pairs": lab.get("rows_labelled"), "embed_catalog": emb.get("rows_embedded")},
        "quality": {
            "probe_acc": prod.get("dashclip", {}).get("probe_acc"),
            "probe_acc_image_only": prod.get("dashclip", {}).get("probe_acc_image_only"),
            "baseline_image_probe_acc": prod.get("baseline_image", {}).get("probe_acc"),
            "stage2_best_val_ndcg@10": s2.get("best_val_ndcg@10"),
            "teacher_agreement": s2.get("teacher_agreement"),
            "generated_queries_ndcg@10": gen.get("dashclip", {}).get("ndcg@10"),
        },
        "cpu_reference": CPU_REFERENCE,
        "targets": {**TARGETS, "met": None if smoke else {  # a smoke run measures nothing against them
            "stage1_plus_stage2_s": train_s < TARGETS["stage1_plus_stage2_s"],
            "embed_catalog_products_per_s": (rates["embed_catalog_products_per_s_with_startup"] or 0)
            >= TARGETS["embed_catalog_products_per_s"],
            "wall_s": steps.get("total", 1e9) < TARGETS["wall_s"]}},
        "configs": {"stage1": _json(run_dir / "stage1.json"), "stage2": _json(run_dir / "stage2.json")},
    }
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python bench/gpu.py")
    sub = ap.add_subparsers(dest="cmd", required=True)
    sub.add_parser("preflight").add_argument("--smoke", action="store_true")
    c = sub.add_parser("configs")
    c.add_argument("--run-dir", required=True)
    c.add_argument("--smoke", action="store_true")
    s = sub.add_parser("subset")
    s.add_argument("--catalog", required=True)
    s.add_argument("--out", required=True)
    s.add_argument("--rows", type=int, required=True)
    r = sub.add_parser("report")
    r.add_argument("--run-dir", required=True)
    r.add_argument("--out", required=True)
    r.add_argument("--smoke", action="store_true")
    a = ap.parse_args(argv)
    if a.cmd == "preflight":
        return preflight(a.smoke)
    if a.cmd == "configs":
        write_configs(Path(a.run_dir), a.smoke)
    elif a.cmd == "subset":
        write_subset(Path(a.catalog), Path(a.out), a.rows)
    else:
        rep = report(Path(a.run_dir), a.smoke)
        Path(a.out).parent.mkdir(parents=True, exist_ok=True)
        Path(a.out).write_text(json.dumps(rep, indent=2, default=str) + "\n")
        print(json.dumps({k: rep[k] for k in ("mode", "device", "seconds", "items_per_s")}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
