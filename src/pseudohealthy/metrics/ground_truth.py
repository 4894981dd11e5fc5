"""Lesion-region metrics against a true healthy volume (phantom, or any data that comes with one).

Normalisation follows the BraTS 2023-24 healthy-tissue inpainting challenge (SPEC section 9): the
0.5 and 99.5 percentiles of the *pathological input* ``x_p`` (over its brain/body region when one is
given, else over the whole volume) define a window; the output ``x_s`` and the truth ``x_h`` are
clipped to it and rescaled to ``[0, 1]`` (data range 1). Inside the lesion mask we then report

- SSIM: the per-slice 2D SSIM map (as in :mod:`pseudohealthy.metrics.identity`: Gaussian sigma 1.5,
  computed on whole slices) averaged over lesion voxels;
- PSNR (dB, data range 1), MSE and MAE over lesion voxels;
- ``error_reduction = 1 - mean|x_s - x_h| / mean|x_p - x_h|`` over lesion voxels, in input units
  (no clipping): 0 for an untouched input, 1 for a perfect restoration, negative when the output is
  further from the truth than the input was.

A NaN in the true healthy volume means "truth unknown there" (an inserted-lesion data set keeps the
source scan's own lesions, whose healthy tissue nobody knows): only lesion voxels with a finite truth
are scored. For the SSIM map, whose window also sees neighbouring voxels, the unknown voxels take the
method's own output (they add no difference); they are never averaged.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from pseudohealthy.metrics.identity import mae_in_region, mse_in_region, psnr_in_region, ssim_in_region, window_to_unit
from pseudohealthy.metrics.summary import summarise

PERCENTILES = (0.5, 99.5)
GROUND_TRUTH_METRICS = ("gt_ssim", "gt_psnr", "gt_mse", "gt_mae", "error_reduction")


def percentile_window(image: np.ndarray, region: np.ndarray | None = None,
                      percentiles: tuple[float, float] = PERCENTILES) -> tuple[float, float]:
    """The ``(low, high)`` percentiles of ``image`` (over ``region`` voxels if given), input units."""
    values = np.asarray(image)[np.asarray(region, bool)] if region is not None else np.asarray(image).ravel()
    if values.size == 0:
        values = np.asarray(image).ravel()
    low, high = np.percentile(values, percentiles)
    if not high > low:  # a constant image: widen so the rescaling stays defined
        high = low + 1.0
    return float(low), float(high)


def scored_voxels(x_h: np.ndarray, lesion: np.ndarray) -> np.ndarray:
    """bool ``(X, Y, Z)``: the lesion voxels whose truth is known (finite ``x_h``)."""
    return np.asarray(lesion, dtype=bool) & np.isfinite(x_h)


def error_reduction(x_p: np.ndarray, x_s: np.ndarray, x_h: np.ndarray, lesion: np.ndarray) -> float:
    """``1 - mean|x_s - x_h| / mean|x_p - x_h|`` over ``lesion`` voxels with a finite truth (input units; unitless).

    NaN when no such voxel is left or the input already equals the truth there (nothing to reduce).
    """
    lesion = scored_voxels(x_h, lesion)
    before = mae_in_region(x_p, x_h, lesion)
    after = mae_in_region(x_s, x_h, lesion)
    if np.isnan(before) or before == 0:
        return float("nan")
    return float(1.0 - after / before)


def lesion_metrics(x_p: np.ndarray, x_s: np.ndarray, x_h: np.ndarray, lesion: np.ndarray,
                   region: np.ndarray | None = None) -> dict[str, float]:
    """Ground-truth metrics of one case inside ``lesion`` (bool ``(X, Y, Z)``); volumes in input units.

    Returns ``gt_ssim``, ``gt_psnr`` (dB), ``gt_mse``, ``gt_mae`` (on the [0, 1] scale) and
    ``error_reduction``; all NaN for a case without lesion voxel of known truth (NaN ``x_h``: unknown).
    """
    lesion = scored_voxels(x_h, lesion)
    if not lesion.any():
        return {name: float("nan") for name in GROUND_TRUTH_METRICS}
    window = percentile_window(x_p, region)
    s = window_to_unit(x_s, window)
    h = window_to_unit(np.where(np.isfinite(x_h), x_h, x_s), window)
    return {
        "gt_ssim": ssim_in_region(s, h, lesion),
        "gt_psnr": psnr_in_region(s, h, lesion),
        "gt_mse": mse_in_region(s, h, lesion),
        "gt_mae": mae_in_region(s, h, lesion),
        "error_reduction": error_reduction(x_p, x_s, x_h, lesion),
    }


class GroundTruthMetric:
    """Cumulative ground-truth metric: ``update`` per case, ``aggregate`` to mean and std over cases."""

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.per_case: dict[str, dict[str, float]] = {}

    def update(self, case_id: str, x_p: np.ndarray, x_s: np.ndarray, x_h: np.ndarray, lesion: np.ndarray,
               region: np.ndarray | None = None) -> dict[str, float]:
        values = lesion_metrics(x_p, x_s, x_h, lesion, region)
        self.per_case[case_id] = values
        return values

    def aggregate(self) -> dict[str, Any]:
        return summarise(self.per_case)
