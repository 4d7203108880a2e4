"""Data-parallel training under ``torchrun``: one process per device, the global batch split between them.

``torchrun --nproc_per_node K -m bench.cli run ...`` (or the ``bench`` script) starts K copies of the same
``bench run``. Each reads ``RANK`` / ``WORLD_SIZE`` / ``LOCAL_RANK`` from the environment; :func:`init` joins
them in one process group (NCCL on CUDA, gloo on the CPU). What changes for them, and only in
:func:`bench.train.fit`:

- every rank holds the same model (rank 0's weights are broadcast once, so an initialisation that drew random
  numbers differently cannot split them);
- each update, a rank draws ``batch_size / K`` queries from its shard of the epoch's permutation (the loader's
  ``rank`` / ``world_size``), so the global batch, the learning-rate schedule and the number of updates per
  epoch are those of one process;
- after ``backward`` the gradients are averaged over the ranks (:func:`average_gradients`: one all-reduce of
  the flattened gradients), so every rank takes the same optimizer step and the weights stay identical;
- validation and test run on every rank over the whole split (they are cheap next to training and give every
  rank the same selection without a broadcast); only rank 0 writes checkpoints, predictions and MLflow runs
  (:func:`bench.tracking.is_main`), and the others wait for its checkpoint at a barrier.

This is synchronous data parallelism written out rather than ``DistributedDataParallel``: the methods' losses
call several sub-modules of a model directly (``encode_video``, ``score``), which DDP's wrapper would not see,
and one all-reduce per update is what DDP's buckets amount to for models of this size.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as td
from torch import nn


@dataclass(frozen=True)
class Shard:
    """This process's place in the launch: rank ``rank`` of ``world`` (``Shard(0, 1)`` without torchrun)."""

    rank: int = 0
    world: int = 1

    @property
    def main(self) -> bool:
        return self.rank == 0

    def batch_size(self, global_batch: int) -> int:
        """The per-rank batch of a global batch; an uneven split is an error, not a silent change of batch size."""
        if global_batch % self.world:
            raise ValueError(
                f"batch size {global_batch} does not split over {self.world} processes; launch a number of "
                f"processes that divides it, or set train.batch_size with --set"
            )
        return global_batch // self.world


def launched() -> bool:
    """True when started by torchrun with more than one process."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def init(device: torch.device | None = None) -> Shard:
    """Join the launch's process group once (idempotent) and return this process's shard."""
    if not launched():
        return Shard()
    if not td.is_initialized():
        backend = "nccl" if device is not None and device.type == "cuda" else "gloo"
        td.init_process_group(backend=backend)
    return Shard(td.get_rank(), td.get_world_size())


def barrier() -> None:
    if td.is_available() and td.is_initialized():
        td.barrier()


def broadcast_model(model: nn.Module) -> None:
    """Copy rank 0's parameters and buffers to every rank."""
    if not (td.is_available() and td.is_initialized()):
        return
    with torch.no_grad():
        for t in list(model.parameters()) + list(model.buffers()):
            td.broadcast(t.data, src=0)


def average_gradients(params: list[nn.Parameter], world: int) -> None:
    """Replace each gradient by its mean over the ranks (one all-reduce of all gradients flattened)."""
    if world == 1:
        return
    grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in params]
    flat = torch.cat([g.reshape(-1) for g in grads])
    td.all_reduce(flat)
    flat /= world
    offset = 0
    for p, g in zip(params, grads, strict=True):
        n = g.numel()
        chunk = flat[offset : offset + n].view_as(p)
        if p.grad is None:
            p.grad = chunk.clone()
        else:
            p.grad.copy_(chunk)
        offset += n
