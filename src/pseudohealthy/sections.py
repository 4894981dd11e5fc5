"""Connected sections of 2-D masks, slice by slice: the size of the section each pixel belongs to.

Shared by the gate's small-lesion weighting (losses/gate.py) and its second look at inference
(models/generator.py). Connected components have no torch operator; scipy labels a whole batch in
one call, with a structure that never connects pixels across the leading (batch, channel) axes.
"""
from __future__ import annotations

import numpy as np
from scipy import ndimage


def section_sizes(masks: np.ndarray, diagonal: bool) -> np.ndarray:
    """For boolean ``masks`` ``(..., H, W)``, an int array of the same shape: the number of pixels of
    the connected section (8-connected with ``diagonal``, else 4-connected) each mask pixel belongs
    to, within its own slice; 0 outside the masks."""
    structure = np.zeros((3,) * masks.ndim, bool)
    centre = (1,) * (masks.ndim - 2)
    structure[centre] = True if diagonal else ndimage.generate_binary_structure(2, 1)
    labels, _ = ndimage.label(masks, structure=structure)
    sizes = np.bincount(labels.ravel())
    sizes[0] = 0
    return sizes[labels]
