"""Smooth random fields that are described by a handful of explicit numbers.

A field is a sum of K random plane waves (random Fourier features):
``f(x) = sqrt(2 / K) * sum_k cos(w_k . x + phi_k)``, roughly standard normal at every point. Unlike
smoothed white noise it needs no grid, so the same field renders at any resolution, and its
parameters (``freq`` (K, 3) in rad/unit, ``phase`` (K,) in rad) fit in the case's params JSON, which
is what makes a phantom case replayable from its JSON alone.
"""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np

Axes = tuple[np.ndarray, np.ndarray, np.ndarray]


def sample_modes(rng: np.random.Generator, count: int, wavelength: tuple[float, float]) -> dict[str, Any]:
    """Draw ``count`` plane waves with random directions and wavelengths in ``wavelength`` (units of x)."""
    directions = rng.normal(size=(count, 3))
    directions /= np.linalg.norm(directions, axis=1, keepdims=True)
    lengths = rng.uniform(wavelength[0], wavelength[1], size=count)
    freq = directions * (2.0 * np.pi / lengths)[:, None]
    phase = rng.uniform(0.0, 2.0 * np.pi, size=count)
    return {"freq": freq.tolist(), "phase": phase.tolist()}


def evaluate_modes(
    modes: dict[str, Any],
    axes: Axes,
    center: Sequence[float] = (0.0, 0.0, 0.0),
    transform: np.ndarray | None = None,
) -> np.ndarray:
    """The field at every point of the grid spanned by three 1D coordinate arrays; float32 ``(len(a0), len(a1), len(a2))``.

    The field is evaluated at ``transform @ (x - center)``; a plane wave stays a plane wave under an
    affine map, so each wave is a separable sum of three 1D phases (no (N, 3) point array is built).
    """
    freq = np.asarray(modes["freq"], dtype=np.float64)
    phase = np.asarray(modes["phase"], dtype=np.float64)
    if transform is not None:
        freq = freq @ np.asarray(transform, dtype=np.float64)  # w . (T d) = (T^T w) . d
    d0 = np.asarray(axes[0], np.float64) - center[0]
    d1 = np.asarray(axes[1], np.float64) - center[1]
    d2 = np.asarray(axes[2], np.float64) - center[2]
    out = np.zeros((d0.size, d1.size, d2.size), dtype=np.float32)
    for (f0, f1, f2), ph in zip(freq, phase):
        arg = (f0 * d0 + ph)[:, None, None] + (f1 * d1)[None, :, None] + (f2 * d2)[None, None, :]
        out += np.cos(arg, dtype=np.float64).astype(np.float32)
    out *= np.float32(np.sqrt(2.0 / max(len(phase), 1)))
    return out


def rotation_matrix(degrees: Sequence[float]) -> np.ndarray:
    """Rotation (3, 3) from extrinsic x-y-z Euler angles in degrees (scipy's convention)."""
    from scipy.spatial.transform import Rotation

    return Rotation.from_euler("xyz", list(degrees), degrees=True).as_matrix()


def uniform(rng: np.random.Generator, low: float, high: float) -> float:
    """One plain-float draw (params must be JSON-exact, so no numpy scalars leak into them)."""
    return float(rng.uniform(low, high))


def log_uniform(rng: np.random.Generator, low: float, high: float) -> float:
    """One draw spread evenly over orders of magnitude (lesion sizes: small ones as often as large)."""
    return float(np.exp(rng.uniform(np.log(low), np.log(high))))


def evaluate_modes_smooth(
    modes: dict[str, Any],
    axes: Axes,
    step_mm: float,
    center: Sequence[float] = (0.0, 0.0, 0.0),
    transform: np.ndarray | None = None,
) -> np.ndarray:
    """Like :func:`evaluate_modes`, but evaluated every ``step_mm`` and trilinearly upsampled.

    For fields whose wavelengths are several times ``step_mm`` the difference is small, and it
    saves most per-voxel cosines (a 512x512x64 CT volume has 17 million voxels). ``axes`` must be
    evenly spaced (phantom grids are). Falls back to the exact evaluation when the lattice would not
    be much coarser than the grid.
    """
    import torch
    import torch.nn.functional as F

    sizes = [len(a) for a in axes]
    coarse_axes = []
    for a in axes:
        a = np.asarray(a, np.float64)
        n = max(2, int(np.ceil(abs(a[-1] - a[0]) / step_mm)) + 1) if a.size > 1 else 1
        coarse_axes.append(np.linspace(a[0], a[-1], min(n, a.size)))
    if np.prod([c.size for c in coarse_axes]) * 4 > np.prod(sizes):
        return evaluate_modes(modes, axes, center, transform)
    coarse = evaluate_modes(modes, tuple(coarse_axes), center, transform)  # type: ignore[arg-type]
    dense = F.interpolate(torch.from_numpy(coarse)[None, None], size=tuple(sizes), mode="trilinear", align_corners=True)
    return dense[0, 0].numpy()
