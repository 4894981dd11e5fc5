"""The generator's pull-push fill: known pixels kept, holes filled from their surroundings, differentiable."""
from __future__ import annotations

import torch

from pseudohealthy.models.pyramid_fill import pyramid_fill


def _hole(size: int = 64, lo: int = 24, hi: int = 40) -> torch.Tensor:
    known = torch.ones(1, 1, size, size)
    known[..., lo:hi, lo:hi] = 0
    return known


def test_known_pixels_come_back_unchanged_and_a_constant_stays_constant():
    x = torch.rand(2, 1, 64, 64)
    known = _hole()
    filled = pyramid_fill(x, known)
    assert torch.equal(filled[known.expand_as(x) == 1], x[known.expand_as(x) == 1])
    constant = torch.full((1, 1, 64, 48), 0.3)
    constant[..., 10:30, 5:20] = 5.0  # a "lesion" the fill must not see
    known = torch.ones_like(constant)
    known[..., 10:30, 5:20] = 0
    torch.testing.assert_close(pyramid_fill(constant, known), torch.full_like(constant, 0.3))


def test_a_hole_in_a_ramp_is_filled_close_to_the_ramp_on_odd_sizes():
    rows = torch.linspace(-1, 1, 61).view(1, 1, 61, 1).expand(1, 1, 61, 53).contiguous()
    known = torch.ones_like(rows)
    known[..., 20:36, 20:36] = 0
    rows_with_lesion = rows.clone()
    rows_with_lesion[..., 20:36, 20:36] = 1.0
    filled = pyramid_fill(rows_with_lesion, known)
    hole = known == 0
    error = (filled - rows)[hole].abs()
    lesion_error = (rows_with_lesion - rows)[hole].abs()
    assert error.mean() < 0.1 * lesion_error.mean()
    assert error.max() < 0.05  # the ramp rises by 0.53 across the hole


def test_soft_trust_gives_gradients_to_image_and_trust():
    x = torch.rand(1, 1, 32, 32, requires_grad=True)
    trust = torch.full((1, 1, 32, 32), 0.9, requires_grad=True)
    pyramid_fill(x, trust).sum().backward()
    assert torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0
    assert torch.isfinite(trust.grad).all() and trust.grad.abs().sum() > 0
