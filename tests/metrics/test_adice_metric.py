"""A-Dice (eq. 8) with tiny U-Nets: separation, determinism, bookkeeping and refusals."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from pseudohealthy.errors import UserError
from pseudohealthy.metrics.adice import ADiceConfig, ADiceMetric, adice

TINY = dict(seg_base=4, seg_depth=2, seg_max_channels=8, batch_size=4, momentum=0.0, lr=0.3, prior_bias=True, precise_bn=True)


@pytest.fixture(scope="module")
def squares():
    """Square 'lesions' at random places; ``bright`` shows them, ``plain`` has the same labels but no signal."""
    torch.set_num_threads(1)
    rng = np.random.default_rng(0)
    lesions = np.zeros((16, 32, 32), bool)
    for i in range(16):
        r, c = rng.integers(4, 20, 2)
        lesions[i, r : r + 8, c : c + 8] = True
    plain = (rng.normal(0, 0.3, lesions.shape) - 0.3).astype(np.float32)
    return plain + 1.2 * lesions, plain, lesions


def test_visible_lesions_are_learnt_faster_than_invisible_ones(squares):
    bright, plain, lesions = squares
    cfg = ADiceConfig(epochs=3, trials=2, **TINY)
    visible, hidden = adice(bright, lesions, cfg), adice(plain, lesions, cfg)
    assert visible.mean > hidden.mean + 0.4
    assert 0.0 <= hidden.mean < 0.3 and 0.5 < visible.mean <= 1.0


def test_result_bookkeeping_and_determinism(squares):
    bright, _, lesions = squares
    cfg = ADiceConfig(epochs=2, trials=2, seed=5, **TINY)
    a, b = adice(bright, lesions, cfg), adice(bright, lesions, cfg)
    assert np.asarray(a.curves).shape == (2, 2)
    assert a.trials == pytest.approx([np.mean(c) for c in a.curves])
    assert a.mean == pytest.approx(np.mean(a.trials)) and a.std == pytest.approx(np.std(a.trials))
    assert a.curves == b.curves  # same seed, same numbers
    assert a.n_slices == 16 and a.config["seed"] == 5
    other = adice(bright, lesions, ADiceConfig(epochs=2, trials=1, seed=6, **TINY))
    assert other.curves[0] != a.curves[0]


def test_cumulative_metric_keeps_only_lesion_slices(squares):
    bright, _, lesions = squares
    metric = ADiceMetric(ADiceConfig(epochs=1, trials=1, **TINY))
    empty = np.zeros_like(lesions[:5])
    metric.update(bright[:5], empty)
    metric.update(bright, lesions)
    assert metric.n_slices == 16
    assert metric.aggregate().n_slices == 16
    metric.reset()
    with pytest.raises(UserError, match="no lesion slices"):
        metric.aggregate()


@pytest.mark.parametrize("change,message", [
    (dict(optimizer="lbfgs"), "unknown"),
    (dict(epochs=0), "at least one epoch"),
    (dict(seg_depth=3), "multiples of 8"),
])
def test_refusals(squares, change, message):
    bright, _, lesions = squares
    settings = {**TINY, "epochs": 1, "trials": 1, **change}
    with pytest.raises(UserError, match=message):
        adice(bright[:, :28, :28] if "seg_depth" in change else bright, lesions[:, :28, :28] if "seg_depth" in change else lesions, ADiceConfig(**settings))
