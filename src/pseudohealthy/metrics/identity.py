"""Subject identity: SSIM and PSNR between the input ``x_p`` and the output ``x_s`` on normal tissue.

Definition used throughout this project (the paper gives none; SPEC section 6):

- both volumes are put on one scale by the *input's* intensity window ``(low, high)`` (BraTS:
  ``[0, V99.5]``, the clip the networks were trained with; LiTS: ``[-200, 250]`` HU): clip to the
  window, then map linearly to ``[0, 1]``; the data range is therefore 1;
- SSIM: per axial slice, the 2D SSIM map of Wang et al. 2004 (Gaussian window sigma 1.5, truncated
  at 3.5 sigma, i.e. 11 x 11; K1 = 0.01, K2 = 0.03; population covariances), computed by
  scikit-image on the whole slice, then averaged over the region's pixels of all slices (pooled, so
  a slice weighs by its region size);
- PSNR: ``10 log10(1 / MSE)`` with the MSE pooled over the region's voxels; infinite for identical
  volumes;
- region: the normal tissue, i.e. the brain (or body/organ) mask minus the lesion mask.

The SSIM window near the lesion still sees lesion pixels; that is inherent to any windowed SSIM and
the same for every method.
"""
from __future__ import annotations

from typing import Any

import numpy as np
from skimage.metrics import structural_similarity

from pseudohealthy.metrics.summary import summarise

SSIM_SIGMA = 1.5


def window_to_unit(volume: np.ndarray, window: tuple[float, float]) -> np.ndarray:
    """Clip ``volume`` (input units) to ``window = (low, high)`` and map it to ``[0, 1]`` (float64)."""
    low, high = float(window[0]), float(window[1])
    if not high > low:
        raise ValueError(f"intensity window must have high > low, got {window}")
    return (np.clip(np.asarray(volume, dtype=np.float64), low, high) - low) / (high - low)


def ssim_map(a: np.ndarray, b: np.ndarray, data_range: float = 1.0, sigma: float = SSIM_SIGMA,
             slices: np.ndarray | None = None) -> np.ndarray:
    """Per-axial-slice 2D SSIM map of two ``(X, Y, Z)`` volumes, float64 ``(X, Y, Z)``.

    ``slices`` (bool ``(Z,)``) limits the work to some slices; the others are NaN.
    """
    if a.shape != b.shape:
        raise ValueError(f"volume shapes differ: {a.shape} vs {b.shape}")
    out = np.full(a.shape, np.nan)
    todo = range(a.shape[2]) if slices is None else np.flatnonzero(slices)
    for z in todo:
        _, full = structural_similarity(
            np.asarray(a[:, :, z], np.float64), np.asarray(b[:, :, z], np.float64),
            data_range=data_range, gaussian_weights=True, sigma=sigma, use_sample_covariance=False, full=True,
        )
        out[:, :, z] = full
    return out


def ssim_in_region(a: np.ndarray, b: np.ndarray, region: np.ndarray, data_range: float = 1.0,
                   sigma: float = SSIM_SIGMA) -> float:
    """Mean of the per-slice SSIM map over ``region`` (bool ``(X, Y, Z)``); NaN for an empty region."""
    region = np.asarray(region, dtype=bool)
    if not region.any():
        return float("nan")
    full = ssim_map(a, b, data_range, sigma, slices=region.any(axis=(0, 1)))
    return float(full[region].mean())


def mse_in_region(a: np.ndarray, b: np.ndarray, region: np.ndarray) -> float:
    """Mean squared difference over ``region`` voxels (units of ``a`` squared); NaN if empty."""
    region = np.asarray(region, dtype=bool)
    if not region.any():
        return float("nan")
    diff = np.asarray(a, np.float64)[region] - np.asarray(b, np.float64)[region]
    return float(np.mean(diff * diff))


def mae_in_region(a: np.ndarray, b: np.ndarray, region: np.ndarray) -> float:
    """Mean absolute difference over ``region`` voxels (units of ``a``); NaN if empty."""
    region = np.asarray(region, dtype=bool)
    if not region.any():
        return float("nan")
    return float(np.mean(np.abs(np.asarray(a, np.float64)[region] - np.asarray(b, np.float64)[region])))


def psnr_in_region(a: np.ndarray, b: np.ndarray, region: np.ndarray, data_range: float = 1.0) -> float:
    """PSNR in dB from the MSE over ``region``; ``inf`` when equal there, NaN for an empty region."""
    mse = mse_in_region(a, b, region)
    if np.isnan(mse):
        return mse
    if mse == 0:
        return float("inf")
    return float(10.0 * np.log10(data_range**2 / mse))


def identity_metrics(x_p: np.ndarray, x_s: np.ndarray, normal: np.ndarray, window: tuple[float, float]) -> dict[str, float]:
    """SSIM and PSNR (dB) between input and output on normal tissue, per the module's definition.

    ``x_p``, ``x_s``: ``(X, Y, Z)`` in input units; ``normal``: bool ``(X, Y, Z)`` (region minus
    lesion); ``window``: the input's intensity window in input units.
    """
    a, b = window_to_unit(x_p, window), window_to_unit(x_s, window)
    return {"ssim": ssim_in_region(a, b, normal), "psnr": psnr_in_region(a, b, normal)}


class IdentityMetric:
    """Cumulative identity metric: ``update`` per case, ``aggregate`` to mean and std over cases."""

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.per_case: dict[str, dict[str, float]] = {}

    def update(self, case_id: str, x_p: np.ndarray, x_s: np.ndarray, normal: np.ndarray,
               window: tuple[float, float]) -> dict[str, float]:
        values = identity_metrics(x_p, x_s, normal, window)
        self.per_case[case_id] = values
        return values

    def aggregate(self) -> dict[str, Any]:
        return summarise(self.per_case)

