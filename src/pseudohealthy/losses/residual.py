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


def lesion_fill_mse(x_p: torch.Tensor, x_s: torch.Tensor, lesion: torch.Tensor, region: torch.Tensor) -> torch.Tensor:
    """The reference code's third generator term: pull lesion pixels of ``x_s`` towards the mean
    intensity of the sample's normal tissue (``region`` minus ``lesion``) in ``x_p``.

    All `(B, 1, H, W)`; masks in {0, 1}. Mean over all lesion pixels of the batch; zero without lesion.
    Off by default (``train.lesion_fill_weight = 0``): the paper does not have it.
    """
    if not (lesion.shape == region.shape == x_p.shape == x_s.shape):
        raise ValueError("x_p, x_s, lesion and region must share one (B, 1, H, W) shape")
    is_lesion = (lesion > 0.5).to(x_s.dtype)
    normal = ((region > 0.5) & (lesion < 0.5)).to(x_p.dtype)
    target = (x_p.float() * normal).sum(dim=(1, 2, 3), keepdim=True) / normal.sum(dim=(1, 2, 3), keepdim=True).clamp_min(1.0)
    sq = (x_s.float() - target.detach()) ** 2 * is_lesion
    return sq.sum() / is_lesion.sum().clamp_min(1.0)


def supervised_l1(x_s: torch.Tensor, x_h: torch.Tensor, lesion: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """L1 between ``x_s`` and the true healthy image ``x_h`` where the truth is known (finite).

    All `(B, 1, H, W)`; ``x_h`` holds NaN where no truth exists (a real lesion of the scan). Returns
    ``(normal, lesion)``: the mean over known non-lesion pixels and the mean over known lesion pixels
    (zero when there is none). Kept apart because lesion pixels are a few percent of a slice: a plain
    mean would let the identity on normal tissue drown the lesion's correction.
    """
    known = torch.isfinite(x_h)
    diff = (x_s.float() - torch.where(known, x_h, x_s.detach()).float()).abs()
    is_lesion = (lesion > 0.5) & known
    is_normal = (lesion < 0.5) & known
    normal = (diff * is_normal).sum() / is_normal.sum().clamp_min(1)
    inside = (diff * is_lesion).sum() / is_lesion.sum().clamp_min(1)
    return normal, inside
