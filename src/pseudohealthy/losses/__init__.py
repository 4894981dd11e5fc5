"""Losses of the GVS method (paper eq. 1-6).

- :func:`adversarial_ce`: the generator's CE towards "no lesion anywhere" (eq. 2).
- :func:`segmentation_ce` / :func:`difference_aware_ce`: the segmentor's losses (eq. 1; eq. 5-6).
- :func:`residual_mse`: identity, on the whole image or on normal tissue only (eq. 3).
"""
from __future__ import annotations

from pseudohealthy.losses.adversarial import adversarial_ce
from pseudohealthy.losses.difference_aware import difference_aware_ce, difference_weights, segmentation_ce
from pseudohealthy.losses.residual import residual_mse

__all__ = ["adversarial_ce", "difference_aware_ce", "difference_weights", "residual_mse", "segmentation_ce"]
