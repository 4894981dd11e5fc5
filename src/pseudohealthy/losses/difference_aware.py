"""The segmentor's losses: plain CE (basic GVS, eq. 1) and the difference-aware CE (full GVS, eq. 5-6).

The difference-aware loss mutes pixels the generator has already changed a lot: they are likely
well transformed, so calling them "lesion" would teach the segmentor a noisy label.
As in the reference code, the weight multiplies the two-class CE on every pixel (eq. 5 as printed
shows the lesion term only), the difference map is normalised by each sample's own maximum, and the
weight has a floor of 0.1 (a small penalty is kept everywhere).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F


def _target(lesion: torch.Tensor) -> torch.Tensor:
    """`(B, 1, H, W)` or `(B, H, W)` mask in {0, 1} -> class indices `(B, H, W)` long."""
    if lesion.dim() == 4:
        if lesion.shape[1] != 1:
            raise ValueError(f"lesion mask must have one channel, got shape {tuple(lesion.shape)}")
        lesion = lesion[:, 0]
    return (lesion > 0.5).long()


def segmentation_ce(logits: torch.Tensor, lesion: torch.Tensor) -> torch.Tensor:
    """Basic GVS `L_s1`: mean two-class CE of logits `(B, 2, H, W)` against the lesion mask `(B, 1, H, W)`."""
    return F.cross_entropy(logits.float(), _target(lesion))


def difference_weights(x_p: torch.Tensor, x_s: torch.Tensor, floor: float = 0.1, eps: float = 1e-8) -> torch.Tensor:
    """Per-pixel weights `w = max(1 - m, floor)` with `m = |x_p - x_s| / (per-sample max + eps)`.

    `x_p`, `x_s`: `(B, 1, H, W)`; returns `(B, H, W)` float32 in [floor, 1], without gradient.
    """
    diff = (x_p.float() - x_s.float()).abs().detach()
    peak = diff.flatten(1).amax(dim=1).view(-1, *([1] * (diff.dim() - 1)))
    m = diff / (peak + eps)
    return (1.0 - m).clamp_min(floor)[:, 0]


def difference_aware_ce(logits: torch.Tensor, lesion: torch.Tensor, x_p: torch.Tensor, x_s: torch.Tensor,
                        floor: float = 0.1) -> torch.Tensor:
    """Full GVS `L_wce`: two-class CE `(B, 2, H, W)` vs lesion, weighted per pixel, mean over all pixels."""
    ce = F.cross_entropy(logits.float(), _target(lesion), reduction="none")
    return (difference_weights(x_p, x_s, floor) * ce).mean()
