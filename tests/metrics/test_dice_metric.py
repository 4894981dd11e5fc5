"""Dice per sample and pooled."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from pseudohealthy.metrics.dice import DiceMetric, dice_per_sample, dice_score


@pytest.mark.parametrize("pred,target,expected", [
    ([1, 1, 0, 0], [1, 0, 0, 0], 2 / 3),
    ([1, 1, 1, 1], [1, 1, 1, 1], 1.0),
    ([0, 0, 1, 0], [1, 0, 0, 0], 0.0),
    ([0, 0, 0, 0], [0, 0, 0, 0], 1.0),
])
def test_dice_score_known_values(pred, target, expected):
    assert dice_score(np.array(pred), np.array(target)) == pytest.approx(expected, abs=1e-12)


def test_dice_per_sample_and_pooled_differ_as_they_should():
    pred = np.zeros((2, 4, 4), bool)
    target = np.zeros((2, 4, 4), bool)
    pred[0, :2] = target[0, :2] = True  # 8 px, perfect
    target[1, 0, 0] = True  # 1 px, missed
    np.testing.assert_allclose(dice_per_sample(pred, target), [1.0, 0.0])
    metric = DiceMetric()
    metric.update(torch.from_numpy(pred[:1]), torch.from_numpy(target[:1]))
    metric.update(pred[1:], target[1:])
    out = metric.aggregate()
    assert out["pooled"] == pytest.approx(16 / 17, abs=1e-12)
    assert out["mean"] == pytest.approx(0.5) and out["std"] == pytest.approx(0.5) and out["n"] == 2
    metric.reset()
    assert metric.aggregate()["n"] == 0


def test_dice_refuses_shape_mismatch():
    with pytest.raises(ValueError):
        dice_score(np.zeros(3), np.zeros(4))
