"""Intensity augmentation: monotone, background kept, replayable, and the random curve varies tissue contrast."""
from __future__ import annotations

import numpy as np

from pseudohealthy.data.augment import apply_intensity, sample_intensity


def test_without_a_curve_the_draw_is_the_old_gamma_and_contrast():
    plain = sample_intensity(np.random.default_rng(5))
    with_curve = sample_intensity(np.random.default_rng(5), curve_strength=0.8)
    assert plain.curve == () and len(with_curve.curve) > 2
    assert (plain.gamma, plain.contrast) == (with_curve.gamma, with_curve.contrast)


def test_curves_are_monotone_keep_background_and_nan_and_vary_the_contrast_between_tissues():
    grey = np.linspace(-1, 1, 201, dtype=np.float32)
    grey_with_nan = np.concatenate([grey, [np.nan]]).astype(np.float32)
    ratios = []
    for seed in range(40):
        params = sample_intensity(np.random.default_rng(seed), gamma=(1.0, 1.0), contrast=(1.0, 1.0), curve_strength=0.8)
        out = apply_intensity(params, grey_with_nan)
        assert np.isnan(out[-1]) and out[0] == -1.0 and out[-2] == 1.0
        assert np.all(np.diff(out[:-1]) >= 0)
        unit = (out[:-1] + 1) / 2
        ratios.append(unit[175] / unit[130])  # "CSF" at 0.75 over "white matter" at 0.3 on the unit scale
    assert np.ptp(ratios) > 0.3  # the identity gives 2.5 every time
