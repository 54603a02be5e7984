"""DistributedDataParallel set-up and the reductions the engine needs.

Under ``torchrun --nproc_per_node=N`` every rank runs the same :func:`fit`. The
helpers here are no-ops in a single process, so the engine calls them always.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
from torch import nn

__all__ = ["Dist", "init_distributed", "all_reduce_sum", "broadcast_buffers", "shard_bounds"]


@dataclass
class Dist:
    """This process's place among the training processes."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0
    owned: bool = False  # whether fit() initialised the process group

    @property
    def active(self) -> bool:
        return self.world > 1

    @property
    def main(self) -> bool:
        return self.rank == 0

    def close(self) -> None:
        """Destroy the process group if :func:`init_distributed` created it."""
        if self.owned:
            import torch.distributed as dist

            dist.destroy_process_group()
            self.owned = False


def init_distributed(device_param: str) -> Dist:
    """Join the process group ``torchrun`` describes (``WORLD_SIZE`` > 1), else one process."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return Dist(rank=dist.get_rank(), world=dist.get_world_size(),
                    local_rank=int(os.environ.get("LOCAL_RANK", "0")))
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return Dist()
    use_cuda = torch.cuda.is_available() and device_param in ("auto", "cuda")
    dist.init_process_group(backend="nccl" if use_cuda else "gloo")
    return Dist(
        rank=dist.get_rank(),
        world=dist.get_world_size(),
        local_rank=int(os.environ.get("LOCAL_RANK", "0")),
        owned=True,
    )


def all_reduce_sum(values: list[float], device: torch.device, ctx: Dist) -> list[float]:
    """Sum ``values`` over all ranks (float64); unchanged in a single process."""
    if not ctx.active:
        return values
    import torch.distributed as dist

    t = torch.tensor(values, dtype=torch.float64, device=device)
    dist.all_reduce(t)
    return t.tolist()


def broadcast_buffers(model: nn.Module, ctx: Dist) -> None:
    """Give every rank rank 0's buffers (BatchNorm running statistics)."""
    if not ctx.active:
        return
    import torch.distributed as dist

    for buffer in model.buffers():
        dist.broadcast(buffer.data, src=0)


def shard_bounds(n: int, ctx: Dist) -> tuple[int, int]:
    """This rank's slice ``[lo, hi)`` of ``n`` items; slices differ by at most one item."""
    return n * ctx.rank // ctx.world, n * (ctx.rank + 1) // ctx.world
