"""Lesion-region metrics against a true healthy volume (BraTS 2023-24 inpainting normalisation)."""
from __future__ import annotations

import numpy as np
import pytest
from skimage.metrics import peak_signal_noise_ratio

from pseudohealthy.metrics.ground_truth import GroundTruthMetric, error_reduction, lesion_metrics, percentile_window


def _case(seed=0, shape=(32, 32, 4)):
    rng = np.random.default_rng(seed)
    healthy = 300 + 40 * rng.standard_normal(shape)
    lesion = np.zeros(shape, bool)
    lesion[10:20, 12:22, 1:3] = True
    pathological = healthy.copy()
    pathological[lesion] += 400 + 30 * rng.standard_normal(lesion.sum())
    return pathological, healthy, lesion


@pytest.mark.parametrize("alpha", [0.0, 0.25, 0.5, 1.0])
def test_error_reduction_is_the_fraction_of_the_way_to_the_truth(alpha):
    x_p, x_h, lesion = _case()
    x_s = x_p + alpha * (x_h - x_p)
    assert error_reduction(x_p, x_s, x_h, lesion) == pytest.approx(alpha, abs=1e-9)


def test_error_reduction_is_negative_when_the_output_moves_away():
    x_p, x_h, lesion = _case()
    x_s = x_p + 0.5 * (x_p - x_h)
    assert error_reduction(x_p, x_s, x_h, lesion) == pytest.approx(-0.5, abs=1e-9)
    assert np.isnan(error_reduction(x_h, x_h, x_h, lesion))  # nothing to reduce


def test_percentile_window_uses_the_region_voxels():
    x_p, _, _ = _case(1)
    region = np.zeros(x_p.shape, bool)
    region[:16] = True
    low, high = percentile_window(x_p, region)
    assert (low, high) == pytest.approx(tuple(np.percentile(x_p[region], [0.5, 99.5])), abs=1e-9)


def test_lesion_metrics_follow_the_challenge_normalisation():
    x_p, x_h, lesion = _case(2)
    x_s = x_h + 25.0 * np.random.default_rng(9).standard_normal(x_h.shape)
    low, high = np.percentile(x_p, [0.5, 99.5])
    s = (np.clip(x_s, low, high) - low) / (high - low)
    h = (np.clip(x_h, low, high) - low) / (high - low)
    got = lesion_metrics(x_p, x_s, x_h, lesion)
    assert got["gt_mse"] == pytest.approx(np.mean((s[lesion] - h[lesion]) ** 2), rel=1e-9)
    assert got["gt_mae"] == pytest.approx(np.mean(np.abs(s[lesion] - h[lesion])), rel=1e-9)
    assert got["gt_psnr"] == pytest.approx(peak_signal_noise_ratio(h[lesion], s[lesion], data_range=1.0), abs=1e-9)
    assert 0.0 < got["gt_ssim"] < 1.0


def test_perfect_and_untouched_outputs_and_no_lesion():
    x_p, x_h, lesion = _case(3)
    perfect = lesion_metrics(x_p, x_h, x_h, lesion)
    assert perfect["gt_ssim"] == pytest.approx(1.0, abs=1e-12)
    assert perfect["gt_psnr"] == float("inf") and perfect["gt_mse"] == 0.0 and perfect["error_reduction"] == 1.0
    untouched = lesion_metrics(x_p, x_p, x_h, lesion)
    assert untouched["error_reduction"] == 0.0 and untouched["gt_mse"] > 0.01
    empty = lesion_metrics(x_p, x_p, x_h, np.zeros(x_p.shape, bool))
    assert all(np.isnan(v) for v in empty.values())


def test_cumulative_ground_truth_metric():
    metric = GroundTruthMetric()
    for seed, alpha in enumerate([0.2, 0.6]):
        x_p, x_h, lesion = _case(seed)
        metric.update(f"c{seed}", x_p, x_p + alpha * (x_h - x_p), x_h, lesion)
    summary = metric.aggregate()
    assert summary["error_reduction"]["mean"] == pytest.approx(0.4, abs=1e-9)
    assert summary["error_reduction"]["std"] == pytest.approx(0.2, abs=1e-9)


def test_nan_truth_voxels_are_left_out_of_every_lesion_metric():
    """NaN in the truth = unknown there: those lesion voxels are not scored, whatever the output holds."""
    x_p, x_h, lesion = _case(2)
    unknown = np.zeros_like(lesion)
    unknown[10:14, 12:22, 1:3] = True  # a part of the lesion with unknown truth
    truth = np.where(unknown, np.nan, x_h)
    x_s = x_p + 0.5 * (x_h - x_p)
    got = lesion_metrics(x_p, x_s, truth, lesion)
    assert all(np.isfinite(v) for v in got.values())
    assert got["error_reduction"] == pytest.approx(error_reduction(x_p, x_s, x_h, lesion & ~unknown), abs=1e-12)
    wild = np.where(unknown, 1e6, x_s)  # anything at the unknown voxels changes no error-based metric
    other = lesion_metrics(x_p, wild, truth, lesion)
    for name in ("gt_mse", "gt_mae", "gt_psnr", "error_reduction"):
        assert other[name] == pytest.approx(got[name], rel=1e-12)
    assert lesion_metrics(x_p, x_s, x_h, lesion)["gt_mae"] != pytest.approx(got["gt_mae"], rel=1e-6)  # the known part alone differs
    all_unknown = lesion_metrics(x_p, x_s, np.where(lesion, np.nan, x_h), lesion)
    assert all(np.isnan(v) for v in all_unknown.values())
