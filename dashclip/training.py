"""The training loop shared by stage 1, stage 2 and the teacher, and its small pure helpers: the
learning-rate schedule, length-grouped batching and the device a run trains on."""

from __future__ import annotations

import contextlib
import logging
import math
import time
from dataclasses import dataclass, field
from typing import Annotated, Callable, Iterable, Literal

import numpy as np
import torch
from pydantic import AfterValidator, BaseModel, ConfigDict, Field
from torch import nn
from tqdm import tqdm

from dashclip import distributed
from dashclip.inference import check_device_name, pick_device
from dashclip.weight_average import WeightAverage

log = logging.getLogger(__name__)

# a config's device field: auto (CUDA when present) | cpu | cuda | cuda:N, checked when the config
# loads; whether CUDA is present is checked when training starts (``training_device``)
DeviceName = Annotated[str, AfterValidator(check_device_name)]


def precision(device: torch.device) -> str:
    """What training computes in on ``device``: bf16 autocast on a CUDA device with bfloat16, else
    float32 (on the CPU the results stay those of a run without autocast, bit for bit)."""
    return "bf16" if device.type == "cuda" and torch.cuda.is_bf16_supported() else "fp32"


def autocast(device: torch.device):
    """The forward-and-loss context of a training step on ``device`` (see ``precision``)."""
    if precision(device) == "bf16":
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def training_device(name: str | torch.device | None, what: str) -> torch.device:
    """``pick_device(name)``, announced in one line at the start of a run:
    ``stage 1: device=cuda, precision=bf16``. Under torchrun (``WORLD_SIZE`` > 1) this also starts
    the process group and gives each process its own GPU (``distributed.setup``); rank 0 announces
    the run with the number of processes and the backend."""
    device = distributed.setup(name, pick_device)
    if distributed.active():
        if distributed.is_main():
            print(f"{what}: device={device}, precision={precision(device)}, processes={distributed.world_size()} "
                  f"({torch.distributed.get_backend()})", flush=True)
    else:
        print(f"{what}: device={device}, precision={precision(device)}", flush=True)
    return device


def lr_lambda(step: int, warmup: int, total: int) -> float:
    """Linear warm-up then cosine decay to 10%."""
    if step < warmup:
        return (step + 1) / warmup
    p = min(1.0, (step - warmup) / max(1, total - warmup))
    return 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * p))


def length_grouped_batches(lengths: np.ndarray, batch_size: int, group: int, permutation: Callable[[int], np.ndarray],
                           min_size: int = 1) -> list[np.ndarray]:
    """One epoch's batches of positions into ``lengths``: a random permutation cut into windows of
    ``group`` batches, each window sorted by length (stable) and cut into batches, the batches then
    shuffled; batches smaller than ``min_size`` are dropped. A batch pads to its longest row, so
    similar lengths together cost less padding, while every row is seen once per epoch and the batch
    order stays random. ``permutation(n)`` draws the random orders (a numpy or torch generator, so a
    caller keeps its own random stream)."""
    perm = np.asarray(permutation(len(lengths)))
    batches = []
    for s in range(0, len(perm), batch_size * group):
        window = perm[s:s + batch_size * group]
        window = window[np.argsort(lengths[window], kind="stable")]
        batches += [window[i:i + batch_size] for i in range(0, len(window), batch_size)]
    return [batches[i] for i in np.asarray(permutation(len(batches))).tolist() if len(batches[i]) >= min_size]


def _same(x):
    return x


class BatchLoader:
    """One epoch's batches, each passed through ``prepare`` (a function of the batch alone, with no
    random draws: cache rows, tokenisation) before its step. On the CPU, or with ``workers`` 0,
    ``prepare`` runs in the training process as the step asks for the batch; on CUDA a DataLoader
    runs it in ``workers`` forked processes, ahead of the steps, into pinned memory (so the copy to
    the GPU can overlap). Batches with fewer rows than training processes are left out (a row for
    every process; ``distributed.world_size``)."""

    def __init__(self, batches: list, prepare: Callable, device: torch.device, workers: int = 0):
        n = distributed.world_size()
        self.batches = [b for b in batches if len(b) >= n] if n > 1 else batches
        self.prepare, self.device, self.workers = prepare, device, workers

    def __len__(self) -> int:
        return len(self.batches)

    def __getitem__(self, i: int):
        return self.prepare(self.batches[i])

    def __iter__(self):
        if self.device.type != "cuda" or self.workers <= 0:
            return map(self.prepare, self.batches)
        from torch.utils.data import DataLoader

        return iter(DataLoader(self, batch_size=None, shuffle=False, num_workers=self.workers, pin_memory=True,
                               collate_fn=_same, multiprocessing_context="fork"))


def to_device(x, device: torch.device):
    """A tensor, or the tensors of a tuple, list or dict, on ``device`` (without waiting for the
    copy when it comes from pinned memory)."""
    if isinstance(x, torch.Tensor):
        return x.to(device, non_blocking=x.is_pinned())
    if isinstance(x, dict):
        return {k: to_device(v, device) for k, v in x.items()}
    if isinstance(x, (tuple, list)):
        return type(x)(to_device(v, device) for v in x)
    return x


class LossWeights(BaseModel):
    """Weights of named loss terms (a subclass declares one float field per term); the total is
    the weighted sum of the terms a step computed, in the order it computed them."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    def total(self, terms: dict[str, torch.Tensor]) -> torch.Tensor:
        return sum(getattr(self, name) * value for name, value in terms.items())


class LoopConfig(BaseModel):
    """How ``fit`` runs: epochs, gradient clipping, and (with a validation) early stopping on one
    validation metric, keeping the best weights."""

    model_config = ConfigDict(extra="forbid")

    name: str  # progress bars and log lines
    epochs: int = Field(ge=1)
    objective: str = "total"  # the step's loss term that is minimised
    monitor: str | None = None  # validation metric deciding the best epoch (None: no validation)
    mode: Literal["min", "max"] = "min"
    min_delta: float = 1e-4  # an improvement smaller than this does not count
    patience: int | None = None  # epochs without improvement before stopping (None: never stop early)
    clip_norm: float = 1.0


@dataclass
class FitResult:
    history: list[dict]
    best: float | None  # the monitored metric's best value (None without validation)
    epoch_losses: list[float] = field(default_factory=list)  # the objective's mean per epoch


def _improves(value: float, best: float, cfg: LoopConfig) -> bool:
    return value < best - cfg.min_delta if cfg.mode == "min" else value > best + cfg.min_delta


def _train_epoch(model: nn.Module, opt, sched, batches: Iterable, step: Callable, params: list, cfg: LoopConfig,
                 desc: str, progress: bool, average: WeightAverage | None, device: torch.device) -> dict[str, float]:
    """One pass over ``batches``; the size-weighted mean of every loss term the steps returned."""
    model.train()
    sums: dict[str, float] = {}
    n = 0
    bar = tqdm(batches, desc=desc, disable=not progress)
    for batch in bar:
        with autocast(device):  # forward and losses; backward runs outside, as autocast asks
            losses, size = step(batch)
        opt.zero_grad(set_to_none=True)
        losses[cfg.objective].backward()
        torch.nn.utils.clip_grad_norm_(params, cfg.clip_norm)
        opt.step()
        sched.step()
        if average is not None:
            average.update(model)
        for name, v in losses.items():
            sums[name] = sums.get(name, 0.0) + v.item() * size
        n += size
        bar.set_postfix(loss=f"{losses[cfg.objective].item():.3f}")
    return {name: v / n for name, v in sums.items()}


def fit(model: nn.Module, opt: torch.optim.Optimizer, sched, epoch_batches: Callable[[int], Iterable],
        step: Callable[[object], tuple[dict[str, torch.Tensor], int]], cfg: LoopConfig,
        validate: Callable[[], dict] | None = None, params: list | None = None, history: list[dict] | None = None,
        best: float | None = None, average: WeightAverage | None = None, t_start: float | None = None,
        progress: bool = True, device: torch.device | None = None) -> FitResult:
    """Train ``model``: per epoch, ``step(batch) -> (named losses, batch size)`` over
    ``epoch_batches(epoch)`` (zero grad, backward of ``cfg.objective``, clip ``params``, optimiser and
    schedule steps), then ``validate()``. With a validation the weights of the best epoch (by
    ``cfg.monitor``) are loaded at the end and ``cfg.patience`` epochs without improvement stop
    early; ``history``/``best`` carry a baseline measured before training. ``average`` (a
    ``WeightAverage``) is updated every step and validated (and kept, when best) in place of the
    last weights, which training then goes on from. ``step`` puts its batch on ``device`` (default:
    the model's), where it runs under ``autocast(device)``; ``validate`` runs outside it.

    Under torchrun (``distributed.active()``) every process runs ``fit`` on the same global batches
    and ``step`` computes its share of each (``distributed.shard``; ``BatchLoader`` leaves out a
    batch with fewer rows than processes); the step runs inside DistributedDataParallel, ``validate`` runs
    on rank 0 and its record (hence the best epoch and early stopping) is sent to every process,
    and only rank 0 shows progress."""
    t_start = time.perf_counter() if t_start is None else t_start
    device = next(model.parameters()).device if device is None else device
    params = list(model.parameters()) if params is None else params
    history = [] if history is None else history
    step = distributed.wrap_step(model, step, params)
    progress = progress and distributed.is_main()
    if best is None and validate is not None:
        best = float("inf") if cfg.mode == "min" else float("-inf")
    best_state, bad, epoch_losses = None, 0, []
    for epoch in range(1, cfg.epochs + 1):
        train = _train_epoch(model, opt, sched, epoch_batches(epoch), step, params, cfg, f"{cfg.name} epoch {epoch}",
                             progress, average, device)
        epoch_losses.append(train[cfg.objective])
        if validate is None:
            continue
        live = average.swap(model) if average is not None else None
        rec = distributed.main_only(lambda: {"epoch": epoch, **{f"train_{k}": v for k, v in train.items()},
                                             **validate(), "elapsed_s": round(time.perf_counter() - t_start, 1)})
        history.append(rec)
        log.info("%s epoch %d: %s", cfg.name, epoch, {k: round(v, 4) for k, v in rec.items() if isinstance(v, float)})
        if _improves(rec[cfg.monitor], best, cfg):
            best, bad = rec[cfg.monitor], 0
            best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
        else:
            bad += 1
        if live is not None:
            WeightAverage.restore(model, live)
        if cfg.patience is not None and bad >= cfg.patience:
            log.info("%s: early stopping after epoch %d", cfg.name, epoch)
            break
    if best_state is not None:
        model.load_state_dict(best_state)
    return FitResult(history, best, epoch_losses)
