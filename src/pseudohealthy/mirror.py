"""The mirror image of a brain slice about its own midline (``model.gen_gate_mirror``).

A brain is nearly symmetric left to right, and most lesions are on one side: the tissue at the
mirrored place is the subject's own, scanner's own picture of what healthy tissue looks like there.
A gate that sees both can look for *differences from the other hemisphere*, which carry over to an
unseen subject and scanner better than what lesions look like in absolute grey levels (symmetry
cues are a classic of brain lesion segmentation, e.g. the left-right difference maps of stroke and
tumour detectors).

Slices are canonical (RAS, rows along x), so left-right is the H axis (dim -2). The midline is
estimated per slice, not taken from the grid: the reflection ``i -> t - i`` whose mirror overlaps
the slice best (the largest sum of ``(x + 1) * (mirror + 1)``, background at -1 adds nothing),
searched over ``t`` within ``SEARCH`` pixels of twice the foreground's centroid along H. Rows that
fall outside the slice are background (-1). Written by hand: no library offers a midline estimate
for a single 2-D slice; the search is a few dozen gathers per slice.
"""
from __future__ import annotations

import numpy as np
import torch

SEARCH = 20  # pixels either side of the centroid's reflection that the midline search tries
BACKGROUND = -1.0  # the preprocessed slices' outside-the-organ value


def reflect(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """``x`` ``(B, C, H, W)`` reflected along H by ``i -> t[b] - i``; rows from outside the slice are background."""
    height = x.shape[-2]
    rows = torch.arange(height, device=x.device)
    source = t.view(-1, 1) - rows.view(1, -1)  # (B, H)
    valid = (source >= 0) & (source < height)
    index = source.clamp(0, height - 1).view(-1, 1, height, 1).expand(-1, x.shape[1], -1, x.shape[-1])
    reflected = torch.gather(x, 2, index)
    return torch.where(valid.view(-1, 1, height, 1), reflected, reflected.new_tensor(BACKGROUND))


@torch.no_grad()
def midline(x: torch.Tensor) -> torch.Tensor:
    """Twice the midline row of each slice of ``x`` ``(B, 1, H, W)``: the reflection ``t`` (int64, ``(B,)``).

    A blank slice gets the grid's centre, ``H - 1``.
    """
    height = x.shape[-2]
    weight = (x[:, 0].float() - BACKGROUND).clamp(min=0.0)  # (B, H, W), 0 on the background
    rows = torch.arange(height, device=x.device, dtype=torch.float32)
    profile = weight.sum(-1)  # (B, H)
    mass = profile.sum(-1)
    centre = torch.where(mass > 0, (profile * rows).sum(-1) / mass.clamp(min=1e-12), torch.full_like(mass, (height - 1) / 2))
    guess = torch.round(2 * centre).long()
    first = x[:, :1].float()
    best_score = torch.full_like(mass, -1.0)
    best = guess
    # nearest candidates first: a tie (a blank slice scores 0 everywhere) keeps the centroid's guess
    for offset in sorted(range(-SEARCH, SEARCH + 1), key=abs):
        t = guess + offset
        score = (weight * (reflect(first, t)[:, 0] - BACKGROUND)).sum((-2, -1))
        better = score > best_score
        best = torch.where(better, t, best)
        best_score = torch.where(better, score, best_score)
    return best


def mirror(x: torch.Tensor) -> torch.Tensor:
    """``x`` ``(B, 1, H, W)`` reflected about each slice's own midline (:func:`midline`)."""
    return reflect(x, midline(x))


def slice_midline(image: np.ndarray) -> int:
    """:func:`midline` of one ``(H, W)`` slice (numpy)."""
    return int(midline(torch.from_numpy(np.ascontiguousarray(image, dtype=np.float32))[None, None])[0])


def reflect_slice(image: np.ndarray, t: int) -> np.ndarray:
    """:func:`reflect` of one ``(H, W)`` slice by ``i -> t - i``, as float32 numpy (the training data's view)."""
    x = torch.from_numpy(np.ascontiguousarray(image, dtype=np.float32))[None, None]
    return reflect(x, torch.tensor([t])).numpy()[0, 0]
