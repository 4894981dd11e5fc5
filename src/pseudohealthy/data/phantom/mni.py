"""The MNI152 2009 tissue maps that ship inside the nilearn wheel (no download), cached in-process.

Channels: grey-matter probability, white-matter probability, brain mask (the skull-stripped T1
template is non-zero exactly on the brain). CSF is taken later as ``mask - gm - wm``. For coarse
phantom grids the maps are block-averaged first (partial volume), so sampling them at a few-mm
grid does not alias the cortex.
"""
from __future__ import annotations

from functools import lru_cache

import numpy as np

GM, WM, MASK = 0, 1, 2


@lru_cache(maxsize=1)
def _full_resolution() -> tuple[np.ndarray, np.ndarray]:
    """Tissue maps float32 ``(3, 197, 233, 189)`` at 1 mm and their affine (RAS, mm). About 3 s the first time."""
    from nilearn import datasets

    t1 = datasets.load_mni152_template(resolution=1)
    gm = datasets.load_mni152_gm_template(resolution=1).get_fdata(dtype=np.float32)
    wm = datasets.load_mni152_wm_template(resolution=1).get_fdata(dtype=np.float32)
    brain = (t1.get_fdata(dtype=np.float32) > 0) | (gm + wm > 0.5)
    maps = np.stack([gm, wm, brain.astype(np.float32)])
    return maps, np.asarray(t1.affine, dtype=np.float64)


@lru_cache(maxsize=4)
def tissue_maps(factor: int = 1):
    """Tissue maps as a torch tensor ``(1, 3, X, Y, Z)`` averaged over ``factor``^3 blocks, and the index mapping.

    Returns ``(maps, affine)``, where ``affine`` maps the pooled voxel index to MNI mm: pooled voxel
    ``q`` covers full-resolution voxels ``q f .. q f + f - 1``, so its centre is ``q f + (f - 1) / 2``.
    """
    import torch
    import torch.nn.functional as F

    maps, affine = _full_resolution()
    tensor = torch.from_numpy(maps)[None]
    if factor > 1:
        tensor = F.avg_pool3d(tensor, kernel_size=factor, stride=factor)
    pooled = affine.copy()
    pooled[:3, :3] = affine[:3, :3] * factor
    pooled[:3, 3] = affine[:3, :3] @ np.full(3, (factor - 1) / 2.0) + affine[:3, 3]
    return tensor.contiguous(), pooled


def brain_box_mm() -> tuple[np.ndarray, np.ndarray]:
    """Centre and extent (mm, MNI) of the template brain's bounding box."""
    maps, affine = _full_resolution()
    index = np.nonzero(maps[MASK] > 0)
    lo = np.array([i.min() for i in index], np.float64)
    hi = np.array([i.max() for i in index], np.float64)
    corners = affine[:3, :3] @ np.stack([lo, hi], 1) + affine[:3, 3:4]
    return corners.mean(axis=1), np.abs(corners[:, 1] - corners[:, 0]) + 1.0
