"""Device choice and mixed precision: bf16 autocast on CUDA only, a no-op on the CPU."""
from __future__ import annotations

import contextlib
from typing import ContextManager

import torch

from pseudohealthy.errors import UserError

DEVICES = ("auto", "cpu", "cuda")


def resolve_device(name: str = "auto", local_rank: int | None = None) -> torch.device:
    """`auto` picks CUDA when available, else the CPU; under DDP on CUDA, the process's own GPU."""
    if name not in DEVICES:
        raise UserError(f"device {name!r} is unknown; choose one of {', '.join(DEVICES)}.")
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda":
        if not torch.cuda.is_available():
            raise UserError("device cuda was asked for, but this torch build sees no CUDA GPU; use --device cpu.")
        return torch.device("cuda", local_rank or 0)
    return torch.device("cpu")


def autocast(device: torch.device, enabled: bool = True) -> ContextManager:
    """bf16 autocast for forward passes on CUDA; on the CPU a no-op (bf16 is slower there)."""
    if enabled and device.type == "cuda":
        return torch.autocast(device_type="cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


@torch.no_grad()
def eval_forward(net: torch.nn.Module, x: torch.Tensor, device: torch.device, amp: bool = True) -> torch.Tensor:
    """``net(x)`` in eval mode without gradient on ``device`` (training mode restored afterwards), as
    float32 on x's device: how every method's ``synthesize`` runs its generator."""
    was_training = net.training
    net.eval()
    try:
        with autocast(device, amp):
            out = net(x.to(device)).float()
    finally:
        net.train(was_training)
    return out.to(x.device)
