"""The identity term (paper eq. 3): MSE between `x_p` and `G(x_p)`, on the whole slice or on normal tissue."""
from __future__ import annotations

import torch


def residual_mse(x_p: torch.Tensor, x_s: torch.Tensor, lesion: torch.Tensor | None = None) -> torch.Tensor:
    """Mean squared difference; with ``lesion`` given, the mean over non-lesion pixels only.

    `x_p`, `x_s`, `lesion`: `(B, 1, H, W)` (mask in {0, 1}). The shapes must match exactly: the reference
    code multiplied a `(B, 1, H, W)` map by a `(B, H, W)` mask, which broadcasts to `(B, B, H, W)` and
    mixes every sample's mask with every other sample's image; this function refuses that.
    """
    sq = (x_s.float() - x_p.float()) ** 2
    if lesion is None:
        return sq.mean()
    if lesion.shape != sq.shape:
        raise ValueError(f"lesion mask shape {tuple(lesion.shape)} must equal image shape {tuple(sq.shape)}")
    normal = (lesion < 0.5).to(sq.dtype)
    # A slice that is all lesion contributes nothing rather than dividing by zero.
    return (sq * normal).sum() / normal.sum().clamp_min(1.0)
