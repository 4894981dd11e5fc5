"""Irregular 3D lesion shapes: smooth noise thresholded inside a random ellipsoid envelope.

One lesion is sampled once (:func:`sample_lesion_shape`, every number goes to the params JSON) and
rendered deterministically (:func:`render_lesion`) on any grid. In the lesion's own frame
``p = diag(1 / radii) R^T (x - centre)`` the envelope is the unit sphere; the whole lesion is
``|p| + roughness * f1(p) < 1`` and its core ``|p| + core_roughness * f2(p) < core_fraction``, with
``f1``, ``f2`` smooth random fields (see ``fields.py``), so outlines are lobulated, not spherical.
Only the connected piece containing the centre is kept, inside an allowed region (brain
parenchyma, liver), so a lesion never leaves its organ.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np
from scipy import ndimage

from pseudohealthy.data.phantom.fields import evaluate_modes_smooth, log_uniform, rotation_matrix, sample_modes, uniform
from pseudohealthy.data.phantom.grid import box_around, world_axes

# Fields are clipped to +-FIELD_CLIP so that the shape never reaches beyond the rendered box:
# |p| < 1 + roughness * FIELD_CLIP <= 1 + 0.35 * 2 = 1.7 radii, and the box holds BOX_RADII radii.
FIELD_CLIP = 2.0
BOX_RADII = 1.75


def sample_lesion_shape(
    rng: np.random.Generator,
    center_mm: Sequence[float],
    radius_mm: tuple[float, float],
    rim_probability: float = 0.5,
) -> dict[str, Any]:
    """Draw one lesion's geometry: ellipsoid envelope, outline noise, core, optional rim, texture."""
    radius = log_uniform(rng, *radius_mm)
    ratios = rng.uniform(0.7, 1.3, size=3)
    ratios /= np.prod(ratios) ** (1.0 / 3.0)  # keep the volume set by `radius`
    return {
        "center_mm": [float(c) for c in center_mm],
        "radius_mm": radius,
        "radii_mm": [float(radius * r) for r in ratios],
        "rotation_deg": [uniform(rng, -180.0, 180.0) for _ in range(3)],
        "roughness": uniform(rng, 0.12, 0.35),
        "outline_modes": sample_modes(rng, 10, (1.2, 3.0)),  # wavelengths in envelope radii
        "core_fraction": uniform(rng, 0.3, 0.65),
        "core_roughness": uniform(rng, 0.08, 0.2),
        "core_modes": sample_modes(rng, 10, (0.6, 1.5)),
        "rim_width": uniform(rng, 0.06, 0.14) if rng.uniform() < rim_probability else 0.0,
        "texture_modes": sample_modes(rng, 12, (0.4, 1.2)),
        "edge_blend": uniform(rng, 0.05, 0.15),  # outer fade width, in envelope radii
    }


@dataclass
class RenderedLesion:
    """One lesion on a box of the grid; every array has the box's shape."""

    box: tuple[slice, slice, slice]
    whole: np.ndarray  # bool, the lesion including edema / outer zone
    core: np.ndarray  # bool, inside `whole`
    rim: np.ndarray  # bool, outer shell of `core` (empty when the lesion has no rim)
    texture: np.ndarray  # float32, smooth field of about unit spread, for heterogeneous intensities
    weight: np.ndarray  # float32 in (0, 1]: 1 inside, fading towards the outer border (partial involvement)

    @property
    def voxels(self) -> int:
        return int(self.whole.sum())


def render_lesion(params: dict[str, Any], affine: np.ndarray, shape: Sequence[int], region: np.ndarray, min_weight: float = 0.6) -> RenderedLesion:
    """Rasterise a lesion on the grid (``affine``, ``shape``), restricted to the bool ``region`` (full grid)."""
    radii = np.asarray(params["radii_mm"], np.float64)
    center = params["center_mm"]
    box = box_around(affine, shape, center, BOX_RADII * float(radii.max()) + float(np.abs(np.diag(affine)[:3]).max()))
    axes = world_axes(affine, shape, box)
    to_frame = np.diag(1.0 / radii) @ rotation_matrix(params["rotation_deg"]).T
    frame = [
        (to_frame[a, 0] * (axes[0] - center[0]))[:, None, None]
        + (to_frame[a, 1] * (axes[1] - center[1]))[None, :, None]
        + (to_frame[a, 2] * (axes[2] - center[2]))[None, None, :]
        for a in range(3)
    ]
    rho = np.sqrt(frame[0] ** 2 + frame[1] ** 2 + frame[2] ** 2).astype(np.float32)
    step = 0.1 * float(radii.min())  # fields are evaluated on a lattice of a tenth of the smallest radius

    def field(name: str, clip: float) -> np.ndarray:
        return np.clip(evaluate_modes_smooth(params[name], axes, step, center, to_frame), -clip, clip)

    outline = rho + np.float32(params["roughness"]) * field("outline_modes", FIELD_CLIP)
    whole = (outline < 1.0) & region[box]
    whole = _piece_at_centre(whole, affine, box, center)
    inner = rho + np.float32(params["core_roughness"]) * field("core_modes", FIELD_CLIP)
    core = whole & (inner < params["core_fraction"])
    rim_width = float(params["rim_width"])
    rim = core & (inner >= params["core_fraction"] - rim_width) if rim_width > 0 else np.zeros_like(core)
    texture = field("texture_modes", 2.5)
    weight = np.clip((1.0 - outline) / np.float32(params["edge_blend"]), min_weight, 1.0).astype(np.float32)
    return RenderedLesion(box, whole, core, rim, texture, weight)


def _piece_at_centre(mask: np.ndarray, affine: np.ndarray, box: tuple[slice, ...], center_mm: Sequence[float]) -> np.ndarray:
    """Keep the connected piece (26-neighbourhood) holding the centre voxel, else the largest piece."""
    labels, count = ndimage.label(mask, structure=np.ones((3, 3, 3), bool))
    if count <= 1:
        return mask
    index = [int(round((center_mm[a] - affine[a, 3]) / affine[a, a])) - box[a].start for a in range(3)]
    inside = all(0 <= index[a] < mask.shape[a] for a in range(3))
    keep = labels[tuple(index)] if inside else 0
    if keep == 0:
        keep = int(np.argmax(np.bincount(labels.ravel())[1:])) + 1
    return labels == keep


def pick_centre(rng: np.random.Generator, candidates: np.ndarray, affine: np.ndarray, shape: Sequence[int]) -> list[float]:
    """A random point (mm) inside a random voxel among the flat indices ``candidates``."""
    flat = int(candidates[rng.integers(candidates.size)])
    index = np.array(np.unravel_index(flat, tuple(shape)), np.float64) + rng.uniform(-0.5, 0.5, size=3)
    return [float(v) for v in affine[:3, :3] @ index + affine[:3, 3]]
