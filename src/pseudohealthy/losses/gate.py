"""The loss of a gated generator's gate (model.gen_gate): a segmentation of what G should change."""
from __future__ import annotations

import numpy as np
import torch
from torch import nn

from pseudohealthy.sections import section_sizes

# small_lesion_area: 2-D lesion sections up to this many pixels count as small (a 20 mm disc at 1 mm
# pixels is 314); their BCE weight is area / size, at most SMALL_LESION_MAX_WEIGHT.
SMALL_LESION_MAX_WEIGHT = 10.0


def lesion_section_weights(lesion: torch.Tensor, area: float) -> torch.Tensor:
    """Per-pixel BCE weights ``(B, 1, H, W)``: 1, except in each connected lesion section (8-connected,
    per slice) of ``n < area`` pixels, where they are ``min(area / n, SMALL_LESION_MAX_WEIGHT)``.

    Pixel-wise BCE gives a lesion a say in proportion to its area: the few pixels of a small lesion
    (or of a lesion's tip) are outweighed by the large ones in every batch, and a gate trained so
    misses them. Connected components have no torch operator; scipy labels the batch on the CPU
    (8 x 128 x 128 pixels: about a millisecond)."""
    sizes = section_sizes((lesion.detach() > 0.5).cpu().numpy(), diagonal=True).astype(np.float32)
    weights = np.where(sizes > 0, np.minimum(area / np.maximum(sizes, 1.0), SMALL_LESION_MAX_WEIGHT).clip(min=1.0), 1.0)
    weights = weights.astype(np.float32)
    return torch.from_numpy(weights).to(lesion.device)


def gate_loss(gate_logit: torch.Tensor, lesion: torch.Tensor, dice: bool = False,
              small_lesion_area: float = 0.0, valid: torch.Tensor | None = None) -> torch.Tensor:
    """BCE of the gate's logits ``(B, 1, H, W)`` against the lesion mask (every lesion pixel, real or
    inserted); with ``dice``, plus the soft Dice loss ``1 - 2|m y| / (|m| + |y|)`` pooled over the
    batch. BCE alone leaves the gate soft inside large lesions (it is outweighed by the many normal
    pixels); the Dice term rewards covering the whole lesion, so the gate becomes confident there.
    A batch without lesion pixels gets Dice 0 when the gate stays closed (the +1 smoothing).
    ``small_lesion_area`` > 0 weights the BCE of small lesion sections up (:func:`lesion_section_weights`;
    the weighted mean keeps the loss's scale). ``valid`` (0/1, the logits' shape): only its pixels
    count, in both terms (the test-time adaptation's silent region, inference/adapt.py)."""
    weight = lesion_section_weights(lesion, small_lesion_area) if small_lesion_area > 0 else None
    if valid is not None:
        weight = valid if weight is None else weight * valid
    if weight is None:
        loss = nn.functional.binary_cross_entropy_with_logits(gate_logit, lesion)
    else:
        bce = nn.functional.binary_cross_entropy_with_logits(gate_logit, lesion, reduction="none")
        loss = (bce * weight).sum() / weight.sum().clamp(min=1.0)
    if dice:
        gate = torch.sigmoid(gate_logit)
        if valid is not None:
            gate, lesion = gate * valid, lesion * valid
        loss = loss + 1.0 - (2.0 * (gate * lesion).sum() + 1.0) / (gate.sum() + lesion.sum() + 1.0)
    return loss
