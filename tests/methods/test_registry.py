"""The method registry: names to classes and synthesis networks; unknown names and values refused."""
from __future__ import annotations

import pytest
import torch

from pseudohealthy.config import resolve_run_config
from pseudohealthy.errors import UserError
from pseudohealthy.methods import METHODS, build_synthesis_generator, check_run_config, method_class


@pytest.mark.parametrize("name", sorted(METHODS))
def test_every_method_has_a_class_and_a_synthesis_network(name):
    cfg = resolve_run_config(preset="tiny", overrides=[f"method={name}"])
    cls = method_class(name)
    assert cls.loss_names and callable(cls.check_options)
    check_run_config(cfg)
    net = build_synthesis_generator(cfg)
    assert net.output == METHODS[name].generator_output
    x = torch.rand(2, 1, 32, 32) * 2 - 1
    assert net(x).shape == x.shape


@pytest.mark.parametrize("override,words", [
    ("method=pix2pix", "method 'pix2pix' is unknown; choose one of gvs, vagan, phsgan, antgan."),
    ("vagan.critic_steps=0", "vagan.critic_steps must be at least 1"),
    ("phsgan.weights=[1, 2]", "phsgan.weights must be six non-negative numbers"),
    ("antgan.lr=0", "antgan.lr must be positive"),
    ("train.budget_clock=sundial", "train.budget_clock='sundial' is unknown"),
    ("train.max_minutes=0", "train.max_minutes (0) must be a positive number"),
])
def test_unknown_methods_and_values_are_refused_in_one_sentence(override, words):
    method = override.split(".")[0] if override.split(".")[0] in METHODS else "gvs"
    cfg = resolve_run_config(preset="tiny", overrides=[f"method={method}", override] if "method=" not in override else [override])
    with pytest.raises(UserError) as info:
        check_run_config(cfg)
    assert words in str(info.value) and "\n" not in str(info.value)


def test_additive_generator_starts_as_a_map_added_to_the_input():
    """VA-GAN's output is x + M with an unbounded M; ANT-GAN's stays in [-1, 1] through its tanh."""
    x = torch.rand(2, 1, 32, 32) * 2 - 1
    vagan = build_synthesis_generator(resolve_run_config(preset="tiny", overrides=["method=vagan"]))
    antgan = build_synthesis_generator(resolve_run_config(preset="tiny", overrides=["method=antgan"]))
    torch.nn.init.zeros_(vagan.last_conv.weight)
    torch.nn.init.constant_(vagan.last_conv.bias, 3.0)  # a constant map beyond tanh's range
    assert torch.allclose(vagan(x), x + 3.0)
    torch.nn.init.zeros_(antgan.last_conv.weight)
    torch.nn.init.zeros_(antgan.last_conv.bias)
    assert torch.allclose(antgan(x), torch.tanh(x))
