"""train.ema_decay: synthesis with a moving average of the generator's weights (torch's AveragedModel)."""
from __future__ import annotations

import copy

import pytest
import torch

from pseudohealthy.checkpoints import load_generator
from pseudohealthy.config import resolve_run_config
from pseudohealthy.errors import UserError
from pseudohealthy.training.gvs import GVSModel
from pseudohealthy.training.loop import train


def _model(*overrides: str) -> GVSModel:
    torch.manual_seed(0)
    return GVSModel(resolve_run_config(preset="tiny", overrides=list(overrides)), "cpu")


def _batch(seed: int, b: int = 4, size: int = 32):
    g = torch.Generator().manual_seed(seed)
    lesion = torch.zeros(b, 1, size, size)
    lesion[:, :, 10:18, 12:20] = 1
    x = (torch.rand(b, 1, size, size, generator=g) * 0.6 - 0.3 + lesion).clamp(-1, 1)
    return x, lesion, torch.ones_like(lesion), ["c"] * b, torch.arange(b)


def _floats(net: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in net.state_dict().items() if v.is_floating_point()}


def test_the_average_starts_at_the_first_step_weights_and_then_moves_by_the_decay():
    m = _model("train.ema_decay=0.75")
    after = []
    for step in range(3):
        m.set_input(_batch(step))
        m.optimize_parameters()
        after.append(_floats(m.generator))
    expected = after[0]
    for weights in after[1:]:
        expected = {k: 0.75 * expected[k] + 0.25 * weights[k] for k in expected}
    averaged = _floats(m.synthesis_generator())
    assert set(averaged) == set(expected)  # BatchNorm statistics are averaged too
    for k in expected:
        torch.testing.assert_close(averaged[k], expected[k], rtol=1e-5, atol=1e-6)
    assert any(not torch.equal(averaged[k], after[-1][k]) for k in averaged)
    x = _batch(9)[0]
    assert not torch.equal(m.synthesize(x), m.generator.eval()(x))


def test_resuming_restores_the_average_exactly():
    straight, resumed = _model("train.ema_decay=0.9"), _model("train.ema_decay=0.9")
    for step in range(2):
        straight.set_input(_batch(step))
        straight.optimize_parameters()
    resumed.load_state_dict(copy.deepcopy(straight.state_dict()))  # as read back from disk: no shared tensors
    for m in (straight, resumed):
        m.set_input(_batch(5))
        m.optimize_parameters()
    a, b = _floats(straight.synthesis_generator()), _floats(resumed.synthesis_generator())
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert int(resumed.generator_ema.n_averaged) == 3


def test_a_run_trained_with_an_average_synthesises_with_it(tiny_cache, tmp_path):
    config = resolve_run_config(preset="tiny", data=str(tiny_cache),
                                overrides=["train.epochs=1", "train.max_steps_per_epoch=3", "train.device=cpu",
                                           "train.ema_decay=0.5"])
    last = train(config, tmp_path / "run", progress=False)
    payload = torch.load(last, weights_only=True)
    averaged, _, _ = load_generator(last)
    latest, _, _ = load_generator(last, averaged=False)
    assert payload["ema_updates"] == 3
    for key, value in payload["generator_ema"].items():
        assert torch.equal(averaged.state_dict()[key], value)
        assert torch.equal(latest.state_dict()[key], payload["generator"][key])
    assert any(not torch.equal(payload["generator_ema"][k], payload["generator"][k])
               for k in payload["generator"] if payload["generator"][k].is_floating_point())


@pytest.mark.parametrize("decay", ["1.0", "-0.1"])
def test_a_decay_outside_zero_to_one_is_refused_with_one_sentence(decay):
    with pytest.raises(UserError, match="train.ema_decay"):
        _model(f"train.ema_decay={decay}")


def test_a_baseline_method_refuses_the_average_it_would_ignore():
    from pseudohealthy.methods import check_run_config

    config = resolve_run_config(preset="tiny", overrides=["method=vagan", "train.ema_decay=0.99"])
    with pytest.raises(UserError, match="train.ema_decay"):
        check_run_config(config)
