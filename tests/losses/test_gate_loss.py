"""The gate's loss: BCE against the lesion mask, optionally plus soft Dice that rewards a confident gate."""
from __future__ import annotations

import pytest
import torch

from pseudohealthy.losses.gate import gate_loss


def _mask() -> torch.Tensor:
    lesion = torch.zeros(2, 1, 16, 16)
    lesion[0, :, 4:8, 4:8] = 1
    return lesion


def test_a_confident_correct_gate_costs_almost_nothing_with_or_without_dice():
    lesion = _mask()
    logits = (lesion * 2 - 1) * 20
    assert gate_loss(logits, lesion).item() < 1e-6
    assert gate_loss(logits, lesion, dice=True).item() < 1e-3


def test_dice_penalises_a_soft_gate_inside_the_lesion_much_more_than_bce_does():
    lesion = _mask()
    soft = torch.where(lesion > 0, torch.logit(torch.tensor(0.3)), torch.tensor(-20.0)).expand_as(lesion).clone()
    bce, both = gate_loss(soft, lesion).item(), gate_loss(soft, lesion, dice=True).item()
    # BCE is diluted by the 496 correct normal pixels; the Dice term (smoothed by 1) is ~0.51
    assert bce < 0.05
    assert both - bce == pytest.approx(1 - (2 * 0.3 * 16 + 1) / (0.3 * 16 + 16 + 1), abs=1e-4)


def test_a_closed_gate_on_a_batch_without_lesion_has_no_dice_cost():
    lesion = torch.zeros(1, 1, 8, 8)
    assert gate_loss(torch.full_like(lesion, -20.0), lesion, dice=True).item() < 1e-6


def test_small_lesion_sections_get_weight_area_over_size_capped_and_large_ones_weight_one():
    from pseudohealthy.losses.gate import SMALL_LESION_MAX_WEIGHT, lesion_section_weights

    lesion = torch.zeros(2, 1, 32, 32)
    lesion[0, :, 2:4, 2:4] = 1  # 4 pixels: capped at the maximum weight
    lesion[0, :, 10:20, 10:20] = 1  # 100 pixels: 200 / 100
    lesion[1, :, 0:20, 0:20] = 1  # 400 pixels: not small
    lesion[1, :, 30, 30] = 1  # 1 pixel, diagonal to nothing: its own section
    weights = lesion_section_weights(lesion, area=200.0)
    assert weights[0, 0, 2, 2].item() == SMALL_LESION_MAX_WEIGHT
    assert weights[0, 0, 15, 15].item() == pytest.approx(2.0)
    assert weights[1, 0, 5, 5].item() == 1.0 and weights[1, 0, 30, 30].item() == SMALL_LESION_MAX_WEIGHT
    assert (weights[lesion == 0] == 1).all()


def test_weighting_small_sections_raises_the_cost_of_missing_a_small_lesion_not_of_a_large_one():
    small = torch.zeros(1, 1, 32, 32)
    small[..., 5:8, 5:8] = 1
    large = torch.zeros(1, 1, 32, 32)
    large[..., 4:28, 4:28] = 1
    closed = torch.full_like(small, -5.0)
    assert gate_loss(closed, small, small_lesion_area=300).item() > 5 * gate_loss(closed, small).item()
    assert gate_loss(closed, large, small_lesion_area=300).item() == pytest.approx(gate_loss(closed, large).item())
