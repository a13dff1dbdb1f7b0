"""What runs inside Python workers: the per-process model cache, device and thread choice.

A Spark Python worker is reused across tasks (``spark.python.worker.reuse``), so a model kept in
a module-level dict is loaded once per worker, not once per task or batch.
"""

from __future__ import annotations

import logging
import os

from spark_jobs.lib.config import InferenceConfig

log = logging.getLogger(__name__)

_MODELS: dict[tuple[str, str, str], object] = {}  # (tower, checkpoint realpath, device) -> embedder


def task_device(pref: str = "auto") -> str:
    """``auto``: the GPU Spark assigned to this task, else cuda:0 if the worker sees one, else cpu."""
    if pref != "auto":
        return pref
    from pyspark import TaskContext

    ctx = TaskContext.get()
    gpus = ctx.resources().get("gpu") if ctx is not None else None
    if gpus is not None and gpus.addresses:
        return f"cuda:{gpus.addresses[0]}"
    import torch

    return "cuda:0" if torch.cuda.is_available() else "cpu"


def task_threads(cfg: InferenceConfig) -> int:
    if cfg.threads:
        return cfg.threads
    from pyspark import TaskContext

    ctx = TaskContext.get()
    return max(1, ctx.cpus()) if ctx is not None else 1


def embedder(tower: str, cfg: InferenceConfig):
    """The cached ``ProductEmbedder`` (tower='product') or ``QueryEmbedder`` (tower='query')."""
    device = task_device(cfg.device)
    key = (tower, os.path.realpath(cfg.checkpoint), device)
    if key not in _MODELS:
        from dashclip.inference import ProductEmbedder, QueryEmbedder

        cls = ProductEmbedder if tower == "product" else QueryEmbedder
        gpu = device.startswith("cuda")
        _MODELS[key] = cls(cfg.checkpoint, device=device, batch_size=cfg.gpu_batch_size if gpu else cfg.batch_size,
                           threads=None if gpu else task_threads(cfg), amp=cfg.amp)
        log.info("pid %d loaded %s tower %s on %s", os.getpid(), tower, cfg.checkpoint, device)
    return _MODELS[key]


def teacher(cfg: InferenceConfig):
    """The cached teacher ``CrossEncoder`` of ``cfg.checkpoint`` on this task's device."""
    device = task_device(cfg.device)
    key = ("teacher", os.path.realpath(cfg.checkpoint), device)
    if key not in _MODELS:
        import torch

        from dashclip.teacher import load_teacher

        if not device.startswith("cuda"):
            torch.set_num_threads(task_threads(cfg))
        _MODELS[key] = load_teacher(cfg.checkpoint, device)
        log.info("pid %d loaded teacher %s on %s", os.getpid(), cfg.checkpoint, device)
    return _MODELS[key]


def loaded_models() -> int:
    """How many models this process holds (tests check the cache)."""
    return len(_MODELS)
