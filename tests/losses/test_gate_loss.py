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
