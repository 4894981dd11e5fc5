"""The reference code's optional third generator term: lesion pixels pulled to mean normal tissue."""
from __future__ import annotations

import pytest
import torch

from pseudohealthy.losses.residual import lesion_fill_mse


def test_lesion_fill_against_hand_computed_value():
    x_p = torch.tensor([[[[0.0, 0.2], [0.4, 1.0]]]])  # (1, 1, 2, 2); lesion at the bright corner
    lesion = torch.tensor([[[[0.0, 0.0], [0.0, 1.0]]]])
    region = torch.tensor([[[[0.0, 1.0], [1.0, 1.0]]]])  # pixel (0, 0) is background
    x_s = torch.tensor([[[[0.0, 0.2], [0.4, 0.5]]]])
    # mean normal tissue = (0.2 + 0.4) / 2 = 0.3; lesion pixel 0.5 -> (0.5 - 0.3)^2
    assert lesion_fill_mse(x_p, x_s, lesion, region).item() == pytest.approx(0.04, abs=1e-6)


def test_lesion_fill_uses_each_samples_own_normal_mean():
    x_p = torch.stack([torch.full((1, 2, 2), 0.1), torch.full((1, 2, 2), -0.5)])
    lesion = torch.zeros(2, 1, 2, 2)
    lesion[:, 0, 0, 0] = 1
    region = torch.ones(2, 1, 2, 2)
    x_s = x_p.clone()
    x_s[0, 0, 0, 0] = 0.1  # equals sample 0's normal mean: no loss from sample 0
    x_s[1, 0, 0, 0] = 0.5  # sample 1's normal mean is -0.5: (1.0)^2, averaged over 2 lesion pixels
    assert lesion_fill_mse(x_p, x_s, lesion, region).item() == pytest.approx(0.5, abs=1e-6)


def test_lesion_fill_is_zero_without_lesion_and_refuses_shape_mismatch():
    x = torch.rand(2, 1, 4, 4)
    assert lesion_fill_mse(x, x + 1, torch.zeros_like(x), torch.ones_like(x)).item() == 0.0
    with pytest.raises(ValueError):
        lesion_fill_mse(x, x, torch.zeros(2, 4, 4), torch.ones_like(x))
