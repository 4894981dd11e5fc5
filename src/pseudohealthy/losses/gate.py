"""The loss of a gated generator's gate (model.gen_gate): a segmentation of what G should change."""
from __future__ import annotations

import torch
from torch import nn


def gate_loss(gate_logit: torch.Tensor, lesion: torch.Tensor, dice: bool = False) -> torch.Tensor:
    """BCE of the gate's logits ``(B, 1, H, W)`` against the lesion mask (every lesion pixel, real or
    inserted); with ``dice``, plus the soft Dice loss ``1 - 2|m y| / (|m| + |y|)`` pooled over the
    batch. BCE alone leaves the gate soft inside large lesions (it is outweighed by the many normal
    pixels); the Dice term rewards covering the whole lesion, so the gate becomes confident there.
    A batch without lesion pixels gets Dice 0 when the gate stays closed (the +1 smoothing)."""
    loss = nn.functional.binary_cross_entropy_with_logits(gate_logit, lesion)
    if dice:
        gate = torch.sigmoid(gate_logit)
        loss = loss + 1.0 - (2.0 * (gate * lesion).sum() + 1.0) / (gate.sum() + lesion.sum() + 1.0)
    return loss
