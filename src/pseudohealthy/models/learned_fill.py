"""A learned correction of the gated generator's classical fill (``model.gen_fill_net``).

The gate says *where* to change a slice; the pull-push fill (models/pyramid_fill.py) says *what* to
put there, smoothly interpolated from the pixels around it. A smooth fill cannot bring back the
structure that ran through the lesion (a sulcus, the edge of a ventricle, the grey-white boundary).
``LearnedFill`` is an inpainting network: it sees the slice *with the hole already filled* and the
hole's mask, never the lesion's own intensities, and adds a correction under the mask. It learns
from the known truth of inserted and pasted lesions (the slice before the lesion went in), with the
true lesion mask as its hole (``train.fill_weight``): an inpainting task whose examples are unlimited
and whose answer is known, independent of how well the gate finds lesions.

With ``model.fill_net_sees_input`` it also sees the slice as it came in (lesion included): with one
training subject it learned that subject and filled an unseen one worse (docs/quality.md, session 17).

Why not the gate U-Net's second map (``model.gen_gate_refine``): that map sees the lesion, so what it
adds can carry the lesion's values into the output, and trained together with a soft gate it
compensated the gate instead of improving the fill (docs/decisions.md).

The network is a U-Net (the segmentor's, ``models/segmentor.py``) on two channels, run at
``scale`` times less resolution than the slice (its correction comes back bilinearly): the
correction is smooth where the fill is wrong (docs/quality.md, session 9: a perfect correction at
half resolution would take the fill from 0.83 to 0.92 of the lesion error removed). Its output
layer starts at zero, so an untrained ``LearnedFill`` is the classical fill.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class LearnedFill(nn.Module):
    """``(filled, mask[, original])`` all ``(B, 1, H, W)`` -> ``filled + mask * correction``.

    ``filled``: the slice with the hole filled classically (outside the hole, the slice itself);
    ``mask`` in [0, 1], 1 in the hole. Pixels where ``mask`` is 0 come back unchanged. ``sees_input``
    (``model.fill_net_sees_input``): a third channel, ``original``, is the slice as it came in, lesion
    included, so the net can carry over what shows through a lesion (the tissue under an edema) and
    keep what the gate opened on normal tissue (``train.fill_on_gate``).
    """

    def __init__(self, unet: nn.Module, scale: int = 2, sees_input: bool = False) -> None:
        super().__init__()
        if scale < 1:
            raise ValueError(f"the learned fill's scale must be a positive integer, not {scale}")
        self.net = unet
        self.scale = int(scale)
        self.sees_input = bool(sees_input)
        with torch.no_grad():
            unet.head.weight.zero_()
            unet.head.bias.zero_()

    def forward(self, filled: torch.Tensor, mask: torch.Tensor, original: torch.Tensor | None = None) -> torch.Tensor:
        if self.sees_input and original is None:
            raise ValueError("this learned fill sees the slice itself (model.fill_net_sees_input): pass `original`")
        seen = torch.cat([filled, mask, original] if self.sees_input else [filled, mask], dim=1)
        if self.scale > 1:
            seen = F.interpolate(seen, scale_factor=1.0 / self.scale, mode="area")
        correction = self.net(seen)
        if self.scale > 1:
            correction = F.interpolate(correction, size=filled.shape[-2:], mode="bilinear", align_corners=False)
        return filled + mask * correction
