"""Healthiness of Xia et al.: the formula, the cumulative metric and the cached reference segmentor."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from pseudohealthy.metrics.healthiness import HealthinessConfig, HealthinessMetric, healthiness, reference_segmentor


class Threshold(torch.nn.Module):
    """A stand-in segmentor: lesion wherever the intensity is above 0.5."""

    def forward(self, x):
        return torch.cat([torch.zeros_like(x), x - 0.5], dim=1)


def _slices(seed=0, n=4, size=16):
    rng = np.random.default_rng(seed)
    images = rng.uniform(-1, 0, (n, size, size)).astype(np.float32)
    lesions = np.zeros((n, size, size), bool)
    lesions[:, 4:10, 5:11] = True
    images[lesions] = 0.9
    return images, lesions


@pytest.mark.parametrize("synthetic,pathological,expected", [(0, 100, 1.0), (100, 100, 0.0), (25, 100, 0.75), (150, 100, -0.5)])
def test_formula(synthetic, pathological, expected):
    assert healthiness(synthetic, pathological) == pytest.approx(expected)


def test_nothing_predicted_on_inputs_is_undefined():
    assert np.isnan(healthiness(3, 0))


def test_cumulative_metric_pools_counts_over_batches():
    images, lesions = _slices()
    healed = images.copy()
    healed[:, 4:10, 5:8] = -0.5  # half of each lesion removed
    metric = HealthinessMetric(Threshold())
    metric.update(healed[:2], images[:2], lesions[:2])
    metric.update(healed[2:], images[2:], lesions[2:])
    out = metric.aggregate()
    assert out["reference_dice_on_inputs"] == pytest.approx(1.0)
    assert out["predicted_pathological"] == int(lesions.sum())
    assert out["predicted_synthetic"] == int(lesions.sum()) // 2
    assert out["healthiness"] == pytest.approx(0.5)


def test_reference_segmentor_is_trained_once_then_reused(tmp_path):
    torch.set_num_threads(1)
    images, lesions = _slices(1, n=6, size=16)
    cfg = HealthinessConfig(epochs=1, batch_size=3, seg_base=4, seg_depth=2, seg_max_channels=8)
    first, path, reused = reference_segmentor(images, lesions, cfg, tmp_path)
    assert not reused and path.is_file() and path.parent == tmp_path
    second, path2, reused2 = reference_segmentor(images, lesions, cfg, tmp_path)
    assert reused2 and path2 == path
    for a, b in zip(first.state_dict().values(), second.state_dict().values()):
        torch.testing.assert_close(a, b)
    _, path3, reused3 = reference_segmentor(images, lesions, HealthinessConfig(**{**cfg.__dict__, "seed": 1}), tmp_path)
    assert not reused3 and path3 != path  # another setting, another file
    _, path4, _ = reference_segmentor(images[:5], lesions[:5], cfg, tmp_path)
    assert path4 not in (path, path3)  # other data, another file
