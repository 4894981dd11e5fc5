"""The generator's adversarial term (paper eq. 2): the segmentor should find no lesion in `G(x_p)`."""
from __future__ import annotations

import torch
import torch.nn.functional as F


def adversarial_ce(logits: torch.Tensor) -> torch.Tensor:
    """Mean two-class CE of segmentor logits `(B, 2, H, W)` against the all-healthy target `y_h = 0`.

    Computed in float32 whatever the autocast dtype of the logits.
    """
    target = torch.zeros(logits.shape[0], *logits.shape[2:], dtype=torch.long, device=logits.device)
    return F.cross_entropy(logits.float(), target)
