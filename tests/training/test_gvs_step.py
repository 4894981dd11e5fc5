"""The GVS method object: which net each step updates, the shared generator forward, options."""
from __future__ import annotations

import pytest
import torch

from pseudohealthy.config import resolve_run_config
from pseudohealthy.errors import UserError
from pseudohealthy.training.gvs import GVSModel


def _model(*overrides: str, share: bool = True) -> GVSModel:
    torch.manual_seed(0)
    return GVSModel(resolve_run_config(preset="tiny", overrides=list(overrides)), "cpu", share_generator_forward=share)


def _batch(seed: int = 0, b: int = 4, size: int = 32):
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(b, 1, size, size, generator=g) * 2 - 1
    lesion = torch.zeros(b, 1, size, size)
    lesion[:, :, 10:18, 12:20] = 1
    x = x * 0.3 + lesion  # a bright lesion on a dim texture
    return x.clamp(-1, 1), lesion, torch.ones_like(lesion), ["c"] * b, torch.arange(b)


def _params(net: torch.nn.Module) -> list[torch.Tensor]:
    return [p.detach().clone() for p in net.parameters()]


def _changed(before: list[torch.Tensor], net: torch.nn.Module) -> bool:
    return any(not torch.equal(a, p.detach()) for a, p in zip(before, net.parameters()))


@pytest.mark.parametrize("order", ["seg-first", "gen-first"])
@pytest.mark.parametrize("share", [True, False])
def test_each_step_updates_only_its_own_network(order: str, share: bool) -> None:
    """Spy on both optimiser steps: S's step changes S alone, G's step changes G alone, and the
    frozen network receives no gradient from the other's loss."""
    m = _model(f"train.step_order={order}", share=share)
    events = []

    def spy(name: str, opt: torch.optim.Optimizer) -> None:
        original = opt.step

        def step(*args, **kwargs):
            g, s = _params(m.generator), _params(m.segmentor)
            g_grads = [p.grad for p in m.generator.parameters()]
            s_trainable = all(p.requires_grad for p in m.segmentor.parameters())
            s_grads = [None if p.grad is None else p.grad.clone() for p in m.segmentor.parameters()]
            out = original(*args, **kwargs)
            events.append((name, _changed(g, m.generator), _changed(s, m.segmentor), g_grads, s_trainable, s_grads))
            return out

        opt.step = step

    spy("S", m.opt_s)
    spy("G", m.opt_g)
    m.set_input(_batch())
    losses = m.optimize_parameters()
    assert [e[0] for e in events] == (["S", "G"] if order == "seg-first" else ["G", "S"])
    by_name = {e[0]: e for e in events}
    _, g_moved, s_moved, g_grads, s_trainable, _ = by_name["S"]
    assert s_moved and not g_moved and s_trainable
    assert order == "gen-first" or all(gr is None for gr in g_grads)  # Step A gives G no gradient
    _, g_moved, s_moved, _, s_trainable, s_grads = by_name["G"]
    assert g_moved and not s_moved and not s_trainable
    if order == "seg-first":  # S's gradients are still Step A's: Step B computed none for S
        assert all(torch.equal(a, p.grad) for a, p in zip(by_name["S"][5], m.segmentor.parameters()))
    else:
        assert all(gr is None for gr in s_grads)
    assert all(p.requires_grad for p in m.segmentor.parameters())  # unfrozen again afterwards
    assert set(losses) == {"loss_s", "loss_g", "loss_adv", "loss_res", "loss_sup"}
    assert losses["loss_g"] == pytest.approx(losses["loss_adv"] + 10.0 * losses["loss_res"], rel=1e-5)


def test_shared_generator_forward_equals_two_forwards() -> None:
    """Under seg-first one G forward feeds both steps; the parameters must equal the naive version's."""
    shared, naive = _model(share=True), _model(share=False)
    for step in range(3):
        for m in (shared, naive):
            m.set_input(_batch(step))
            m.optimize_parameters()
    for a, b in zip(list(shared.generator.parameters()) + list(shared.segmentor.parameters()),
                    list(naive.generator.parameters()) + list(naive.segmentor.parameters())):
        assert (a - b).abs().max().item() <= 1e-7
    for a, b in zip(shared.segmentor.buffers(), naive.segmentor.buffers()):
        assert torch.allclose(a.float(), b.float(), rtol=0, atol=1e-7)


@pytest.mark.parametrize("override,key", [("train.seg_loss=ce", "loss_s"), ("train.residual_region=normal", "loss_res")])
def test_options_change_their_loss(override: str, key: str) -> None:
    default, variant = _model(), _model(override)
    for m in (default, variant):
        m.set_input(_batch())
    a, b = default.optimize_parameters(), variant.optimize_parameters()
    assert abs(a[key] - b[key]) > 1e-5
    assert all(torch.isfinite(torch.tensor(v)) for v in b.values())


def test_lambda_weights_the_residual_term() -> None:
    m = _model("train.lambda_residual=3.5")
    m.set_input(_batch())
    losses = m.optimize_parameters()
    assert losses["loss_g"] == pytest.approx(losses["loss_adv"] + 3.5 * losses["loss_res"], rel=1e-5)


@pytest.mark.parametrize("override", ["train.seg_loss=dice", "train.step_order=random", "train.residual_region=brain"])
def test_unknown_options_are_refused(override: str) -> None:
    with pytest.raises(UserError, match=override.split("=")[0]):
        _model(override)


def test_synthesize_is_the_generator_in_eval_without_grad() -> None:
    m = _model()
    x = _batch()[0]
    out = m.synthesize(x)
    assert out.shape == x.shape and not out.requires_grad and out.dtype == torch.float32
    with torch.no_grad():
        assert torch.equal(out, m.generator(x))
    assert m.generator.training  # mode restored


def test_optimize_without_input_is_an_error() -> None:
    with pytest.raises(RuntimeError, match="set_input"):
        _model().optimize_parameters()
