"""DistributedDataParallel plumbing: ranks from torchrun's environment, gathers, barriers.

`torchrun --nproc_per_node N -m s2vmodel.cli train ...` sets RANK, WORLD_SIZE, LOCAL_RANK,
MASTER_ADDR and MASTER_PORT; without them the run is a single process.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DistInfo:
    """Where this process stands in a distributed run."""

    rank: int = 0  # global rank
    world: int = 1  # number of processes
    local_rank: int = 0  # rank on this machine (picks the GPU)

    @property
    def enabled(self) -> bool:
        """Return whether more than one process trains."""
        return self.world > 1

    @property
    def is_main(self) -> bool:
        """Return whether this process writes the run folder."""
        return self.rank == 0


def init_distributed(*, cuda: bool) -> DistInfo:
    """Return this process's DistInfo, joining the process group when torchrun started several."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistInfo()
    info = DistInfo(rank=int(os.environ["RANK"]), world=world, local_rank=int(os.environ.get("LOCAL_RANK", "0")))
    if not dist.is_initialized():
        # gloo runs everywhere (the CPU tests use it); nccl is the fast path between GPUs
        dist.init_process_group(backend="nccl" if cuda else "gloo")
    log.info("rank %d of %d joined", info.rank, info.world)
    return info


def gather_rows(values: list[int], info: DistInfo, *, device: torch.device | str = "cpu") -> torch.Tensor:
    """Return an int64 (world, len(values)) CPU tensor of every rank's values (all ranks must call)."""
    row = torch.tensor(values, dtype=torch.long)
    if not info.enabled:
        return row[None]
    # nccl gathers only CUDA tensors; gloo takes CPU ones
    row = row.to(device)
    rows = [torch.zeros_like(row) for _ in range(info.world)]
    dist.all_gather(rows, row)
    return torch.stack(rows).cpu()


def barrier(info: DistInfo) -> None:
    """Wait until every rank gets here."""
    if info.enabled:
        dist.barrier()


def shutdown(info: DistInfo) -> None:
    """Leave the process group."""
    if info.enabled and dist.is_initialized():
        dist.destroy_process_group()


def all_gather_objects(value: object, info: DistInfo) -> list:
    """Return every rank's value (all ranks must call); [value] in a single process."""
    if not info.enabled:
        return [value]
    gathered: list = [None] * info.world
    dist.all_gather_object(gathered, value)
    return gathered
