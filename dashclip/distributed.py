"""Training on more than one process (``torchrun``): the process group, each process's share of a
batch, embeddings gathered across processes, and work done by rank 0 only.

One process (no ``WORLD_SIZE`` above 1 in the environment) is the default and nothing here
changes it: no process group, no DistributedDataParallel wrapper, no gather, the same numbers.

Under ``torchrun --nproc_per_node N`` every process draws the same global batches from the same
seeded generators (the equivalent of a ``DistributedSampler`` whose ``set_epoch`` is the epoch's
draw) and computes the encoder forward on its own contiguous share of each batch (``Shard``).
The per-row outputs are all-gathered with gradients (``gather``, as open_clip's
``gather_features`` with ``gather_with_grad``), so the contrastive losses see every process's rows
as negatives and every process computes the loss of the whole batch. Backward then sums each
share's gradient over the processes and DistributedDataParallel averages the parameter
gradients: the update is that of one process on the global batch, up to float rounding.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Callable, TypeVar

import torch
import torch.distributed as dist
from torch import nn

T = TypeVar("T")

WAIT = timedelta(hours=2)  # the longest a process waits for the others at a collective


def world_size() -> int:
    """The number of training processes: torchrun's ``WORLD_SIZE`` (1 without it)."""
    return dist.get_world_size() if dist.is_initialized() else int(os.environ.get("WORLD_SIZE", "1"))


def rank() -> int:
    return dist.get_rank() if dist.is_initialized() else int(os.environ.get("RANK", "0"))


def is_main() -> bool:
    """Whether this process writes checkpoints, logs and progress bars (rank 0)."""
    return rank() == 0


def active() -> bool:
    """Whether a process group of more than one process is running."""
    return dist.is_initialized() and dist.get_world_size() > 1


def setup(device: torch.device | str | None, pick: Callable[[Any], torch.device]) -> torch.device:
    """The device this process trains on, and the process group when ``WORLD_SIZE`` > 1 (once;
    NCCL on CUDA, gloo on the CPU). ``pick`` resolves a device name for one process; under
    torchrun ``auto`` and ``cuda`` become ``cuda:LOCAL_RANK`` (one GPU per process) and
    ``cuda:N`` is refused in one line."""
    n = int(os.environ.get("WORLD_SIZE", "1"))
    if n <= 1:
        return pick(device)
    local = int(os.environ.get("LOCAL_RANK", "0"))
    name = "auto" if device is None else str(device)
    if name.startswith("cuda:") and name != f"cuda:{local}":
        raise ValueError(f"device {name!r}: under torchrun each process takes cuda:LOCAL_RANK; use auto or cuda "
                         f"(and CUDA_VISIBLE_DEVICES to choose the GPUs)")
    dev = pick(name)
    if dev.type == "cuda":
        dev = torch.device("cuda", local)
        torch.cuda.set_device(dev)
    if not dist.is_initialized():  # rank 0 alone builds the trunk cache and validates: the others may wait long
        dist.init_process_group("nccl" if dev.type == "cuda" else "gloo", timeout=WAIT)
    return dev


def cleanup() -> None:
    """End the process group, when this process started one."""
    if dist.is_initialized():
        dist.destroy_process_group()


@dataclass(frozen=True)
class Shard:
    """This process's contiguous share of a batch of ``sum(sizes)`` rows: ``sizes[r]`` rows for rank r."""

    rank: int
    sizes: tuple[int, ...]

    @property
    def rows(self) -> slice:
        start = sum(self.sizes[:self.rank])
        return slice(start, start + self.sizes[self.rank])


def shard(n: int) -> Shard | None:
    """This process's share of a batch of ``n`` rows (sizes differ by at most one, earlier ranks
    take the extra rows); None with one process."""
    w = world_size()
    if w <= 1:
        return None
    return Shard(rank(), tuple(n // w + (r < n % w) for r in range(w)))


def local(rows: T, s: Shard | None) -> T:
    """The rows of ``rows`` (a tensor, array or list) this process computes."""
    return rows if s is None else rows[s.rows]


def gather(x: torch.Tensor, s: Shard | None) -> torch.Tensor:
    """Every process's rows of ``x`` (this process's share, first dimension) in rank order, with
    gradients: backward sums the gradient of each share over the processes, so a loss that every
    process computes on the whole batch trains each share as one process would (DDP then
    averages). Shares of unequal size are padded for the collective and trimmed after."""
    if s is None:
        return x
    most = max(s.sizes)
    pad = most - len(x)
    padded = torch.cat([x, x.new_zeros((pad, *x.shape[1:]))]) if pad else x
    parts = _GatherWithGrad.apply(padded)  # (processes, most, ...)
    return torch.cat([parts[r, :n] for r, n in enumerate(s.sizes)])


class _GatherWithGrad(torch.autograd.Function):
    """All-gather whose backward hands each process the sum over processes of the gradient of its
    own share (what ``torch.distributed.nn.functional.all_gather`` does, with public collectives
    only: an all-reduce of the gathered gradient, which gloo and NCCL both have)."""

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:
        ctx.rank = dist.get_rank()
        parts = [torch.empty_like(x) for _ in range(dist.get_world_size())]
        dist.all_gather(parts, x.contiguous())
        return torch.stack(parts)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        grad = grad.clone(memory_format=torch.contiguous_format)
        dist.all_reduce(grad)
        return grad[ctx.rank]


def main_only(fn: Callable[[], T]) -> T:
    """``fn()`` on rank 0, its result sent to every process (a decision all of them follow: the
    validation record, a checkpoint version); ``fn()`` itself with one process."""
    if not active():
        return fn()
    box = [fn() if is_main() else None]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def barrier() -> None:
    """Wait for every process (no-op with one process)."""
    if active():
        dist.barrier()


def all_parts(part: Any) -> list:
    """Every process's ``part`` (any picklable object), in rank order; ``[part]`` with one process."""
    if not active():
        return [part]
    out: list = [None] * dist.get_world_size()
    dist.all_gather_object(out, part)
    return out


class _Step(nn.Module):
    """A training step as a module, so that DistributedDataParallel sees the whole step (forward,
    gathers and losses) as its forward pass and syncs the gradients of every parameter it used."""

    def __init__(self, model: nn.Module, step: Callable):
        super().__init__()
        self.model = model
        self.step = step

    def forward(self, batch):
        return self.step(batch)


def wrap_step(model: nn.Module, step: Callable, params: list[torch.Tensor]) -> Callable:
    """``step`` itself with one process; else the step inside DistributedDataParallel (built once
    per fit: it broadcasts rank 0's weights), which averages the gradients of ``params`` (the
    trained parameters; the model's others are left out of the sync) over the processes during
    backward. Parameters a step leaves unused (a skipped loss term) are found per step. Each rank
    after the first reseeds torch's global generator with seed + rank, so dropout masks differ
    between the shares while the host generators that draw batches stay the same everywhere."""
    if not active():
        return step
    from torch.nn.parallel import DistributedDataParallel

    module = _Step(model, step)
    trained = {id(p) for p in params}
    DistributedDataParallel._set_params_and_buffers_to_ignore_for_model(
        module, [n for n, p in module.named_parameters() if id(p) not in trained])
    ddp = DistributedDataParallel(module, find_unused_parameters=True)
    if rank():
        torch.manual_seed(torch.initial_seed() + rank())
    return ddp
