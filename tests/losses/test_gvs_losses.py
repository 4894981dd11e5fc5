"""GVS losses against hand-computed values."""
from __future__ import annotations

import math

import pytest
import torch

from pseudohealthy.losses import adversarial_ce, difference_aware_ce, difference_weights, residual_mse, segmentation_ce


def _logits(p_lesion: torch.Tensor) -> torch.Tensor:
    """Two-class logits `(B, 2, H, W)` whose softmax gives lesion probability ``p_lesion`` `(B, H, W)`."""
    return torch.stack([torch.zeros_like(p_lesion), torch.log(p_lesion / (1 - p_lesion))], dim=1)


@pytest.mark.parametrize("p", [0.1, 0.5, 0.8])
def test_adversarial_ce_is_minus_log_healthy_probability(p: float) -> None:
    logits = _logits(torch.full((2, 3, 3), p))
    assert adversarial_ce(logits).item() == pytest.approx(-math.log(1 - p), rel=1e-5)


def test_segmentation_ce_hand_values() -> None:
    probs = torch.tensor([[[0.9, 0.2]]])  # (1, 1, 2): lesion probability per pixel
    lesion = torch.tensor([[[[1.0, 0.0]]]])  # (1, 1, 1, 2)
    expected = (-math.log(0.9) - math.log(0.8)) / 2
    assert segmentation_ce(_logits(probs), lesion).item() == pytest.approx(expected, rel=1e-5)


def test_difference_weights_per_sample_max_and_floor() -> None:
    x_p = torch.zeros(2, 1, 1, 3)
    x_s = torch.tensor([[[[0.0, 0.5, 1.0]]], [[[0.0, 0.05, 0.1]]]])
    w = difference_weights(x_p, x_s, floor=0.1)
    # sample 0: m = [0, .5, 1]; sample 1 has its own max 0.1, so the same m despite 10x smaller changes
    expected = torch.tensor([[[1.0, 0.5, 0.1]], [[1.0, 0.5, 0.1]]])
    assert w.shape == (2, 1, 3)
    assert torch.allclose(w, expected, atol=1e-6)
    w3 = difference_weights(x_p, x_s, floor=0.3)
    assert torch.allclose(w3[0, 0], torch.tensor([1.0, 0.5, 0.3]), atol=1e-6)


def test_difference_aware_ce_weights_every_pixel() -> None:
    probs = torch.tensor([[[0.9, 0.2, 0.6]]])
    lesion = torch.tensor([[[[1.0, 0.0, 1.0]]]])
    x_p = torch.zeros(1, 1, 1, 3)
    x_s = torch.tensor([[[[0.0, 0.5, 1.0]]]])  # weights 1, 0.5, 0.1 (floor)
    ce = torch.tensor([-math.log(0.9), -math.log(0.8), -math.log(0.6)])
    expected = (ce * torch.tensor([1.0, 0.5, 0.1])).mean().item()
    assert difference_aware_ce(_logits(probs), lesion, x_p, x_s).item() == pytest.approx(expected, rel=1e-5)


def test_difference_aware_ce_equals_ce_when_nothing_changed() -> None:
    torch.manual_seed(0)
    logits = torch.randn(2, 2, 4, 4)
    lesion = (torch.rand(2, 1, 4, 4) > 0.5).float()
    x = torch.rand(2, 1, 4, 4)
    assert difference_aware_ce(logits, lesion, x, x.clone()).item() == pytest.approx(
        segmentation_ce(logits, lesion).item(), rel=1e-6)


def test_residual_mse_whole_image_and_normal_tissue() -> None:
    x_p = torch.zeros(2, 1, 2, 2)
    x_s = torch.tensor([[[[1.0, 2.0], [3.0, 4.0]]], [[[0.5, 0.5], [0.5, 10.0]]]])
    lesion = torch.tensor([[[[0.0, 0.0], [1.0, 1.0]]], [[[0.0, 0.0], [0.0, 1.0]]]])
    assert residual_mse(x_p, x_s).item() == pytest.approx((x_s**2).mean().item(), rel=1e-6)
    normal = [1.0, 4.0, 0.25, 0.25, 0.25]  # squared differences on the five non-lesion pixels
    assert residual_mse(x_p, x_s, lesion).item() == pytest.approx(sum(normal) / 5, rel=1e-6)


def test_residual_mse_is_not_the_reference_broadcasting_bug() -> None:
    """The reference multiplied `(B, 1, H, W)` by `(B, H, W)`, i.e. a `(B, B, H, W)` mix of samples."""
    torch.manual_seed(1)
    x_p = torch.rand(3, 1, 4, 4)
    x_s = torch.rand(3, 1, 4, 4)
    lesion = torch.zeros(3, 1, 4, 4)
    lesion[0, :, :2] = 1
    lesion[2, :, :, 1:] = 1
    normal = 1 - lesion[:, 0]  # (B, H, W), as the reference code held it
    buggy = (((x_s - x_p) ** 2) * normal).sum() / (normal.sum() * x_p.shape[0])
    correct = residual_mse(x_p, x_s, lesion)
    manual = torch.stack([((x_s[b] - x_p[b]) ** 2)[lesion[b] == 0].sum() for b in range(3)]).sum() / (lesion == 0).sum()
    assert correct.item() == pytest.approx(manual.item(), rel=1e-6)
    assert abs(correct.item() - buggy.item()) > 1e-3
    with pytest.raises(ValueError, match="shape"):
        residual_mse(x_p, x_s, lesion[:, 0])


def test_residual_mse_all_lesion_slice_is_zero_not_nan() -> None:
    x = torch.rand(1, 1, 2, 2)
    assert residual_mse(x, x + 1, torch.ones(1, 1, 2, 2)).item() == 0.0
