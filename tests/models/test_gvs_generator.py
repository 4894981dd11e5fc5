"""The ResNet generator of SPEC section 2: shapes, global residual, init, norm layers."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from pseudohealthy.config import ModelConfig
from pseudohealthy.models import build_generator, count_parameters, size_multiple


@pytest.mark.parametrize("channels,blocks,downs,size", [(8, 2, 2, 32), (4, 1, 1, 20), (8, 3, 3, 48)])
def test_generator_keeps_shape(channels: int, blocks: int, downs: int, size: int) -> None:
    g = build_generator(ModelConfig(gen_channels=channels, gen_blocks=blocks, gen_downsamplings=downs))
    x = torch.rand(2, 1, size, size) * 2 - 1
    assert g(x).shape == (2, 1, size, size)


def test_zeroed_last_conv_returns_exactly_the_input() -> None:
    g = build_generator(ModelConfig(gen_channels=8, gen_blocks=2))
    nn.init.zeros_(g.last_conv.weight)
    nn.init.zeros_(g.last_conv.bias)
    x = torch.rand(3, 1, 32, 32) * 2 - 1
    assert torch.equal(g(x), x)


def test_output_is_input_plus_bounded_correction() -> None:
    torch.manual_seed(0)
    g = build_generator(ModelConfig(gen_channels=8, gen_blocks=2))
    with torch.no_grad():
        g.last_conv.weight.mul_(500)  # saturate tanh
    x = torch.rand(2, 1, 32, 32) * 2 - 1
    delta = g(x) - x
    assert delta.abs().max() <= 1.0 + 1e-6
    assert delta.abs().max() > 0.9


def test_init_is_normal_002_and_norms_have_no_affine() -> None:
    torch.manual_seed(0)
    g = build_generator(ModelConfig())  # paper widths: enough weights for a tight std estimate
    convs = [m for m in g.modules() if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d))]
    weights = torch.cat([m.weight.detach().flatten() for m in convs])
    assert 0.0195 < weights.std().item() < 0.0205
    assert abs(weights.mean().item()) < 1e-3
    norms = [m for m in g.modules() if isinstance(m, nn.InstanceNorm2d)]
    assert norms and all(not n.affine and not n.track_running_stats for n in norms)
    assert not any(isinstance(m, nn.BatchNorm2d) for m in g.modules())
    assert any(isinstance(m, nn.ReflectionPad2d) for m in g.modules())
    assert isinstance(list(g.net)[-1], nn.Tanh)


def test_paper_generator_matches_spec_layout() -> None:
    g = build_generator(ModelConfig())
    convs = [m for m in g.modules() if isinstance(m, nn.Conv2d)]
    assert (convs[0].in_channels, convs[0].out_channels, convs[0].kernel_size) == (1, 64, (7, 7))
    assert [c.out_channels for c in convs[1:3]] == [128, 256] and all(c.stride == (2, 2) for c in convs[1:3])
    ups = [m for m in g.modules() if isinstance(m, nn.ConvTranspose2d)]
    assert [u.out_channels for u in ups] == [128, 64] and all(u.output_padding == (1, 1) for u in ups)
    assert sum(1 for c in convs if c.in_channels == c.out_channels == 256) == 18  # 9 blocks x 2 convs
    assert count_parameters(g) == sum(p.numel() for p in g.parameters())


@pytest.mark.parametrize("downs,depth,expected", [(2, 4, 16), (2, 3, 8), (3, 2, 8)])
def test_size_multiple(downs: int, depth: int, expected: int) -> None:
    assert size_multiple(ModelConfig(gen_downsamplings=downs, seg_depth=depth)) == expected
