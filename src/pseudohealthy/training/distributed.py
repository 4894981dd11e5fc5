"""Distributed data parallel through torchrun: detect the launch, start and stop the process group.

`torchrun --nproc_per_node=N -m pseudohealthy train ...` sets RANK, WORLD_SIZE and LOCAL_RANK; each
process then trains on its own shard (DistributedSampler) with `train.batch_size` slices per step
(the global batch is N times that), DDP averages the gradients, and rank 0 alone writes files.
Backend: NCCL on CUDA, gloo on the CPU.

BatchNorm in S stays per-process (no SyncBatchNorm): each rank normalises over its own batch of
`train.batch_size` slices, which is what the paper's single-GPU batch of 8 saw, and it costs no extra
communication per layer. DDP broadcasts rank 0's running statistics at every synchronised forward,
and :meth:`GVSModel.sync_buffers` does so once more at the end of every epoch, so every rank and
every checkpoint hold the same statistics.
"""
from __future__ import annotations

import gc
import hashlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch
import torch.distributed as dist
from torch import nn

TEST_HASH_ENV = "PSEUDOHEALTHY_TEST_STATE_HASH_DIR"  # tests only: each rank writes a hash of its weights there


@dataclass(frozen=True)
class DistInfo:
    """Where this process stands in a (possibly single-process) run."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def detect() -> DistInfo:
    """Read torchrun's environment; a plain `python -m pseudohealthy` run is rank 0 of 1."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistInfo()
    return DistInfo(int(os.environ["RANK"]), world, int(os.environ.get("LOCAL_RANK", "0")))


def start(info: DistInfo, device: torch.device) -> None:
    """Join the process group torchrun prepared (env:// rendezvous); no-op for a single process."""
    if not info.enabled or dist.is_initialized():
        return
    if device.type == "cuda":
        torch.cuda.set_device(device)
        dist.init_process_group("nccl", device_id=device)
    else:
        dist.init_process_group("gloo")


def stop(wait: bool, release: Callable[[], None] = lambda: None) -> None:
    """Leave the process group; with ``wait`` (a run that ended normally) once every rank has arrived.

    Without the barrier a rank that finishes first (rank 1 has no files to write) tears down its gloo
    pairs while rank 0 still uses them, and gloo may abort the process ("terminate called without an
    active exception"). After an error or an interrupt nobody waits: the other ranks may be gone.
    ``release`` drops the caller's last references to what holds the group (the DistributedDataParallel
    wrappers keep it alive past ``destroy_process_group``); it runs before the group is destroyed, so the
    group's gloo threads are joined now and not during interpreter shutdown, where they can abort.
    """
    if dist.is_available() and dist.is_initialized():
        try:
            if wait:
                dist.barrier()
            release()
            gc.collect()
        finally:
            dist.destroy_process_group()


def mean_across_ranks(values: list[float], info: DistInfo, device: torch.device) -> list[float]:
    """Average a few numbers over all ranks (per-epoch loss means); identity for a single process."""
    if not info.enabled:
        return values
    t = torch.tensor(values, dtype=torch.float64, device=device)
    dist.all_reduce(t)
    return (t / info.world_size).tolist()


def from_rank0(value: float, info: DistInfo, device: torch.device) -> float:
    """Rank 0's ``value`` on every rank (the time-budget clock, so that all ranks decay the learning
    rate alike and stop at the same step); identity for a single process."""
    if not info.enabled:
        return value
    t = torch.tensor([value], dtype=torch.float64, device=device)
    dist.broadcast(t, src=0)
    return float(t.item())


def state_hash(*modules: nn.Module) -> str:
    """SHA-256 over every parameter and buffer of ``modules`` (bitwise), in state-dict order."""
    digest = hashlib.sha256()
    for module in modules:
        for name, tensor in module.state_dict().items():
            digest.update(name.encode())
            digest.update(tensor.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def write_test_hash(info: DistInfo, *modules: nn.Module) -> None:
    """When the tests ask (environment variable), write this rank's weight hash to `<dir>/rank-<r>.txt`."""
    folder = os.environ.get(TEST_HASH_ENV)
    if folder:
        Path(folder).mkdir(parents=True, exist_ok=True)
        (Path(folder) / f"rank-{info.rank}.txt").write_text(state_hash(*modules) + "\n")
