"""A differentiable, batched lesion fill inside the generator: pull-push over an image pyramid.

The gated generator (``model.gen_gate_fill``) fills the pixels its gate opens from the pixels it
keeps (optionally plus a learned refinement, ``model.gen_gate_refine``); this module is that fill.
It is written by hand because the classical inpainting of scikit-image and OpenCV (``pseudohealthy
fill``) runs per slice on NumPy arrays, gives no gradient to the gate, and does not run on a GPU
inside a batch.

``pyramid_fill(x, known)``: ``known`` in [0, 1] is how far each pixel of ``x`` is to be trusted.
Pull: average ``known * x`` and ``known`` over 2x2 blocks down to one pixel, so that each coarse
pixel holds the known-weighted mean of its block. Push: from the coarsest level up, upsample the
filled coarser level (bilinear) and blend it in where the level is unknown; then ``SMOOTH_STEPS``
Jacobi steps of the Laplace equation (3x3 mean) with the known pixels held, which removes the
blockiness of the upsampling. The result approaches a harmonic (membrane) fill of the unknown
pixels from the known boundary; on the inserted-lesion benchmark with the true masks it removes
about the same share of the lesion error as scikit-image's biharmonic fill (docs/quality.md).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

SMOOTH_STEPS = 4  # Jacobi steps per pyramid level
_EPS = 1e-6


def _mean3x3(image: torch.Tensor) -> torch.Tensor:
    return F.avg_pool2d(F.pad(image, (1, 1, 1, 1), mode="replicate"), 3, stride=1)


def pyramid_fill(x: torch.Tensor, known: torch.Tensor, smooth_steps: int = SMOOTH_STEPS) -> torch.Tensor:
    """``x`` ``(B, C, H, W)`` with its unknown pixels (``known`` ~ 0) filled from the known ones.

    ``known`` ``(B, 1 or C, H, W)`` in [0, 1]; pixels with ``known`` = 1 come back unchanged. An image
    with no known pixel at all comes back as zeros.
    """
    known = known.expand_as(x).to(x.dtype)
    levels = [(x * known, known)]
    while min(levels[-1][0].shape[-2:]) > 1:
        weighted, weight = levels[-1]
        levels.append((F.avg_pool2d(weighted, 2, ceil_mode=True), F.avg_pool2d(weight, 2, ceil_mode=True)))
    weighted, weight = levels[-1]
    filled = weighted / weight.clamp_min(_EPS)
    for weighted, weight in reversed(levels[:-1]):
        coarse = F.interpolate(filled, size=weighted.shape[-2:], mode="bilinear", align_corners=False)
        trust = weight.clamp(0.0, 1.0)
        value = weighted / weight.clamp_min(_EPS)
        filled = trust * value + (1.0 - trust) * coarse
        for _ in range(smooth_steps):
            filled = trust * value + (1.0 - trust) * _mean3x3(filled)
    return filled
