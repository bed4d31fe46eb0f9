"""Data-parallel runs: ``bionn run`` under ``torchrun`` trains with DistributedDataParallel.

    torchrun --nproc_per_node 2 -m bionn run CONFIG.yaml --out runs/ddp

``torchrun`` sets ``RANK``, ``WORLD_SIZE`` and ``LOCAL_RANK``; :func:`init_from_env`
joins the process group (``nccl`` when CUDA is present, else ``gloo``) and each rank
uses ``cuda:LOCAL_RANK`` or the CPU. Without those variables (or with one process) it
returns a single-process context and nothing changes.

Example:
    >>> ctx = init_from_env({})
    >>> ctx.rank, ctx.world_size, ctx.enabled
    (0, 1, False)
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist

__all__ = ["DistContext", "init_from_env", "mean_across_ranks"]


@dataclass(frozen=True)
class DistContext:
    """Where this process sits in a data-parallel run."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    backend: str | None = None

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    def broadcast(self, obj: Any) -> Any:
        """``obj`` as rank 0 has it (e.g. an output folder named from the clock)."""
        if not self.enabled:
            return obj
        box = [obj]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    def close(self) -> None:
        if self.enabled and dist.is_initialized():
            dist.barrier()
            dist.destroy_process_group()


def init_from_env(env: Mapping[str, str] | None = None) -> DistContext:
    """Join the process group that ``torchrun`` describes in ``env`` (default ``os.environ``)."""
    env = os.environ if env is None else env
    world = int(env.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistContext()
    rank, local = int(env["RANK"]), int(env.get("LOCAL_RANK", env["RANK"]))
    backend = "nccl" if torch.cuda.is_available() else "gloo"
    if backend == "nccl":
        torch.cuda.set_device(local)
    if not dist.is_initialized():
        dist.init_process_group(backend=backend)
    return DistContext(rank, world, local, backend)


def mean_across_ranks(values: Mapping[str, float], device: torch.device | str = "cpu",
                      ) -> dict[str, float]:
    """The mean of each value over all ranks (identity outside a process group).

    Every rank must pass the same keys.
    """
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return dict(values)
    keys = sorted(values)
    t = torch.tensor([float(values[k]) for k in keys], dtype=torch.float64, device=device)
    dist.all_reduce(t)
    t /= dist.get_world_size()
    return dict(zip(keys, t.tolist(), strict=True))
