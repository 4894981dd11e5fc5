"""Voxel grids of the phantom: affine for a shape, world coordinates of a box of voxels.

Phantom grids are axis-aligned (diagonal affine, possibly with flips), so world coordinates are
separable: three 1D arrays describe a whole box, which keeps every field evaluation cheap.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np


def scaled_affine(base_affine: np.ndarray, base_shape: Sequence[int], shape: Sequence[int]) -> np.ndarray:
    """Affine of ``shape`` voxels covering the same field of view as ``base_shape`` voxels of ``base_affine``.

    The voxel size grows by ``base / shape`` per axis and the origin moves so that the outer voxel
    edges stay where they were; ``shape == base_shape`` gives ``base_affine`` back exactly.
    """
    base_affine = np.asarray(base_affine, dtype=np.float64)
    step = np.diag(base_affine)[:3]
    factor = np.asarray(base_shape, np.float64) / np.asarray(shape, np.float64)
    new_step = step * factor
    edge = base_affine[:3, 3] - step / 2.0
    affine = np.eye(4)
    affine[:3, :3] = np.diag(new_step)
    affine[:3, 3] = edge + new_step / 2.0
    return affine


def world_axes(affine: np.ndarray, shape: Sequence[int], box: tuple[slice, slice, slice] | None = None) -> tuple[np.ndarray, ...]:
    """World coordinates (mm) of voxel centres along each axis, float64, for the whole grid or a box."""
    box = box or tuple(slice(0, n) for n in shape)
    return tuple(affine[a, 3] + affine[a, a] * np.arange(box[a].start, box[a].stop, dtype=np.float64) for a in range(3))


def box_around(affine: np.ndarray, shape: Sequence[int], center_mm: Sequence[float], half_mm: float) -> tuple[slice, slice, slice]:
    """Voxel box (clipped to the grid) holding the cube of half side ``half_mm`` around ``center_mm``."""
    box = []
    for a in range(3):
        step = affine[a, a]
        index = (center_mm[a] - affine[a, 3]) / step
        half = half_mm / abs(step)
        lo = int(np.clip(np.floor(index - half), 0, shape[a]))
        hi = int(np.clip(np.ceil(index + half) + 1, 0, shape[a]))
        box.append(slice(lo, hi))
    return tuple(box)  # type: ignore[return-value]

