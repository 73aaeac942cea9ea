"""Data parallelism under `torchrun`: one process per device, gloo on CPU, NCCL on GPU.

Training does not wrap the model in DistributedDataParallel: a TRADES step runs many forwards (the attack) per
backward, which DDP's reducer is not built for. Instead each rank computes the loss on its slice of the global
batch and gradients are averaged with one all-reduce after `backward()`; batch-norm statistics are those of the
rank's slice (as DM-AT's DataParallel computes them) and the running statistics of rank 0 are broadcast after each
step, so every rank holds the same model. A 1-process run of the same global batch therefore takes the same
steps up to float summation order, for models without batch norm exactly so (tests/test_ddp.py).
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass

import torch
import torch.distributed as dist

from dra_pipeline.devices import resolve_device


@dataclass(frozen=True)
class Dist:
    rank: int = 0
    world: int = 1
    device: torch.device = torch.device("cpu")

    @property
    def active(self) -> bool:
        return self.world > 1


SINGLE = Dist()  # a plain 1-process run on the CPU


def setup(device: str = "auto") -> Dist:
    """Read torchrun's RANK / WORLD_SIZE / LOCAL_RANK, pick this rank's device and join the process group.

    device: auto (cuda:LOCAL_RANK when CUDA is available, else cpu) | cpu | cuda | cuda:N (see devices.py).
    """
    rank, world = int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))
    dev = resolve_device(device, local_rank=int(os.environ.get("LOCAL_RANK", rank)))
    if world > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if dev.type == "cuda" else "gloo")
    return Dist(rank, world, dev)


def teardown(d: Dist) -> None:
    """Leave the process group (no barrier: a rank that failed must not leave the others waiting)."""
    if d.active and dist.is_initialized():
        dist.destroy_process_group()


def barrier(d: Dist) -> None:
    if d.active:
        dist.barrier()


def all_reduce_sum(d: Dist, values: torch.Tensor) -> torch.Tensor:
    """Sum of `values` over ranks (a new tensor; unchanged in a 1-process run)."""
    if not d.active:
        return values
    out = values.clone()
    dist.all_reduce(out)
    return out


def average_gradients(d: Dist, params: Iterable[torch.nn.Parameter]) -> None:
    """Replace each parameter's gradient by its mean over ranks (one flattened all-reduce)."""
    if not d.active:
        return
    params = [p for p in params if p.requires_grad]
    grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in params]
    flat = torch.cat([g.reshape(-1) for g in grads])
    dist.all_reduce(flat)
    flat /= d.world
    offset = 0
    for p in params:
        n = p.numel()
        p.grad = flat[offset : offset + n].view_as(p).clone()
        offset += n


def broadcast(d: Dist, tensors: Iterable[torch.Tensor]) -> None:
    """Copy rank 0's values of `tensors` (e.g. a module's buffers or whole state) to every rank, in place."""
    if not d.active:
        return
    for t in tensors:
        dist.broadcast(t, src=0)
