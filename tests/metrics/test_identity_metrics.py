"""Identity metrics (SSIM/PSNR on normal tissue), cross-checked against scikit-image."""
from __future__ import annotations

import numpy as np
import pytest
from scipy.ndimage import gaussian_filter
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from pseudohealthy.metrics.identity import (
    IdentityMetric, identity_metrics, psnr_in_region, ssim_in_region, ssim_map, window_to_unit,
)


def _pair(shape, noise, seed):
    rng = np.random.default_rng(seed)
    a = gaussian_filter(rng.random(shape), (2, 2, 0))
    a = (a - a.min()) / (a.max() - a.min())
    b = np.clip(a + rng.normal(0, noise, shape), 0, 1)
    return a, b


@pytest.mark.parametrize("shape,noise,seed", [((40, 36, 3), 0.05, 0), ((32, 32, 2), 0.2, 1), ((48, 40, 1), 0.01, 2)])
def test_ssim_matches_scikit_image_on_the_library_region(shape, noise, seed):
    a, b = _pair(shape, noise, seed)
    # scikit-image averages its map over the slice minus a border of (11 - 1) / 2 = 5 pixels.
    region = np.zeros(shape, bool)
    region[5:-5, 5:-5, :] = True
    expected = np.mean([
        structural_similarity(a[:, :, z], b[:, :, z], data_range=1.0, gaussian_weights=True, sigma=1.5, use_sample_covariance=False)
        for z in range(shape[2])
    ])
    assert ssim_in_region(a, b, region) == pytest.approx(expected, abs=1e-10)
    assert 0.0 < expected < 1.0


@pytest.mark.parametrize("noise,seed", [(0.05, 0), (0.3, 3)])
def test_psnr_matches_scikit_image_on_region_voxels(noise, seed):
    a, b = _pair((30, 30, 4), noise, seed)
    region = np.random.default_rng(seed).random(a.shape) < 0.4
    expected = peak_signal_noise_ratio(a[region], b[region], data_range=1.0)
    assert psnr_in_region(a, b, region) == pytest.approx(expected, abs=1e-9)


def test_changes_inside_the_lesion_do_not_touch_identity_on_far_normal_tissue():
    a, _ = _pair((48, 48, 2), 0.0, 4)
    lesion = np.zeros(a.shape, bool)
    lesion[20:28, 20:28, :] = True
    b = a.copy()
    b[lesion] = 1.0 - b[lesion]
    far = np.ones(a.shape, bool)
    far[14:34, 14:34, :] = False  # more than the SSIM window radius (5) away from the lesion
    assert ssim_in_region(a, b, far) == pytest.approx(1.0, abs=1e-12)
    assert psnr_in_region(a, b, far) == float("inf")
    everywhere = np.ones(a.shape, bool)
    assert ssim_in_region(a, b, everywhere) < 0.99
    assert np.isfinite(psnr_in_region(a, b, everywhere))


@pytest.mark.parametrize("factor", [1.0, 7.5, 300.0])
def test_identity_is_invariant_to_the_unit_of_the_input(factor):
    a, b = _pair((32, 32, 3), 0.1, 5)
    normal = np.ones(a.shape, bool)
    base = identity_metrics(a, b, normal, (0.0, 1.0))
    scaled = identity_metrics(a * factor, b * factor, normal, (0.0, factor))
    assert scaled["ssim"] == pytest.approx(base["ssim"], abs=1e-9)
    assert scaled["psnr"] == pytest.approx(base["psnr"], abs=1e-6)


def test_window_to_unit_clips_and_scales():
    out = window_to_unit(np.array([-5.0, 0.0, 50.0, 100.0, 250.0]), (0.0, 100.0))
    np.testing.assert_allclose(out, [0.0, 0.0, 0.5, 1.0, 1.0])
    with pytest.raises(ValueError):
        window_to_unit(np.zeros(3), (1.0, 1.0))


def test_ssim_map_skips_unrequested_slices_and_empty_region_is_nan():
    a, b = _pair((24, 24, 3), 0.1, 6)
    full = ssim_map(a, b, slices=np.array([False, True, False]))
    assert np.isnan(full[:, :, 0]).all() and np.isfinite(full[:, :, 1]).all()
    assert np.isnan(ssim_in_region(a, b, np.zeros(a.shape, bool)))
    assert np.isnan(psnr_in_region(a, b, np.zeros(a.shape, bool)))


def test_cumulative_identity_metric_aggregates_over_cases():
    metric = IdentityMetric()
    values = []
    for seed, noise in enumerate([0.02, 0.1, 0.3]):
        a, b = _pair((24, 24, 2), noise, seed)
        values.append(metric.update(f"c{seed}", a, b, np.ones(a.shape, bool), (0.0, 1.0))["psnr"])
    summary = metric.aggregate()
    assert summary["psnr"]["mean"] == pytest.approx(np.mean(values), abs=1e-12)
    assert summary["psnr"]["std"] == pytest.approx(np.std(values), abs=1e-12)
    assert summary["psnr"]["n"] == 3
    metric.reset()
    assert metric.aggregate() == {}
