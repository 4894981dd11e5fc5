"""The learned fill (model.gen_fill_net): an inpainting network under the gate, taught by the truth."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from pseudohealthy.config import resolve_run_config
from pseudohealthy.errors import UserError
from pseudohealthy.models import build_generator
from pseudohealthy.models.generator import fill_true_hole, gated_output
from pseudohealthy.models.learned_fill import LearnedFill
from pseudohealthy.models.segmentor import UNet

TINY_HYBRID = ["model.seg_base=8", "model.seg_depth=3", "model.seg_max_channels=32", "train.batch_size=4", "train.device=cpu"]
FILL = ["model.gen_fill_net=true", "model.fill_net_base=4", "train.fill_weight=1"]


def _fill_net(scale: int = 1) -> LearnedFill:
    return LearnedFill(UNet(base=4, depth=2, max_channels=16, in_channels=2, classes=1, decoder="halving"), scale=scale)


def test_an_untrained_learned_fill_is_the_classical_fill_and_never_touches_pixels_outside_its_hole():
    torch.manual_seed(0)
    net = _fill_net(scale=2)
    filled = torch.rand(2, 1, 16, 16)
    mask = torch.zeros(2, 1, 16, 16)
    mask[:, :, 4:9, 5:11] = 1.0
    assert torch.equal(net(filled, mask), filled)  # zero output layer: the fill itself
    with torch.no_grad():
        for p in net.parameters():
            p.add_(torch.randn_like(p) * 0.3)
    out = net(filled, mask)
    assert not torch.allclose(out[mask > 0], filled[mask > 0])
    assert torch.equal(out[mask == 0], filled[mask == 0])


def test_the_learned_fill_never_sees_the_lesions_values():
    """Whatever the lesion's intensities, the learned fill of its hole is the same: only the pixels
    around the hole reach it."""
    torch.manual_seed(1)
    net = _fill_net()
    with torch.no_grad():
        net.net.head.weight.normal_(0, 0.5)
    x = torch.rand(1, 1, 16, 16) * 0.5 - 0.5
    lesion = torch.zeros_like(x)
    lesion[..., 6:10, 6:10] = 1.0
    bright = torch.where(lesion > 0, torch.ones_like(x), x)
    dark = torch.where(lesion > 0, -0.9 * torch.ones_like(x), x)
    a, b = fill_true_hole(bright, lesion, net), fill_true_hole(dark, lesion, net)
    np.testing.assert_allclose(a.detach().numpy(), b.detach().numpy(), atol=1e-6)
    # and the gate's output uses it: with the learned fill, the gated output changes under the gate only
    logit = torch.where(lesion > 0, torch.tensor(8.0), torch.tensor(-8.0))
    plain = gated_output(x, torch.zeros_like(x), logit, fill=True, hard=True, refine=False)
    learned = gated_output(x, torch.zeros_like(x), logit, fill=True, hard=True, refine=False, learned_fill=net)
    hole = torch.nn.functional.max_pool2d(lesion, 3, stride=1, padding=1)
    assert torch.equal(learned[hole == 0], x[hole == 0]) and torch.equal(plain[hole == 0], x[hole == 0])
    assert not torch.allclose(learned[hole > 0], plain[hole > 0])


def test_a_learned_fill_learns_structure_a_smooth_fill_cannot_give():
    """Stripes cut by a hole: the pull-push fill smears them, the learned fill, taught by the truth,
    continues them (the lever of model.gen_fill_net: structure through the lesion)."""
    torch.manual_seed(2)
    rng = np.random.default_rng(2)

    def batch(n: int) -> tuple[torch.Tensor, torch.Tensor]:
        cols = np.arange(24)
        phase = rng.uniform(0, 2 * np.pi, (n, 1, 1, 1))
        truth = 0.4 * np.sin(cols[None, None, None, :] * 2 * np.pi / 6 + phase) * np.ones((n, 1, 24, 24))
        lesion = np.zeros((n, 1, 24, 24), np.float32)
        for k in range(n):
            top, left = rng.integers(4, 14, 2)
            lesion[k, 0, top:top + 6, left:left + 6] = 1
        return torch.tensor(truth, dtype=torch.float32), torch.tensor(lesion)

    net = _fill_net()
    optimiser = torch.optim.Adam(net.parameters(), lr=3e-3)
    for _ in range(150):
        truth, lesion = batch(8)
        hole = torch.nn.functional.max_pool2d(lesion, 3, stride=1, padding=1)
        loss = ((fill_true_hole(truth + lesion, lesion, net) - truth).abs() * hole).sum() / hole.sum()
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    net.eval()
    truth, lesion = batch(16)
    hole = torch.nn.functional.max_pool2d(lesion, 3, stride=1, padding=1) > 0
    x = truth + lesion
    with torch.no_grad():
        learned = fill_true_hole(x, lesion, net)
        classical = fill_true_hole(x, lesion, _fill_net())
    error = lambda out: (out - truth).abs()[hole].mean().item()  # noqa: E731
    assert error(learned) < 0.6 * error(classical)


def test_training_teaches_the_learned_fill_from_the_truth_and_synthesis_uses_it(truth_cache, tmp_path):
    from pseudohealthy.checkpoints import load_generator
    from pseudohealthy.training.gvs import GVSModel
    from pseudohealthy.training.loop import train

    overrides = TINY_HYBRID + FILL + ["train.crop_size=32", "train.epochs=1", "train.max_steps_per_epoch=3"]
    cfg = resolve_run_config(preset="hybrid", data=str(truth_cache), overrides=overrides)
    last = train(cfg, tmp_path / "run", progress=False)
    generator, run_cfg, _ = load_generator(last, "cpu")
    assert run_cfg.model.gen_fill_net and generator.learned_fill is not None
    assert generator.learned_fill.net.head.weight.abs().sum() > 0  # it left its zero start: it was taught
    # one step: the fill's loss reaches the learned fill and not the gate (taught by the masks only)
    model = GVSModel(cfg)
    x = torch.rand(2, 1, 32, 32) - 0.5
    lesion = torch.zeros_like(x)
    lesion[:, :, 10:16, 10:16] = 1.0
    healthy = torch.where(lesion > 0, torch.full_like(x, 0.3), x)
    model.set_input((x + lesion * 0.5, lesion, torch.ones_like(x), ["c", "c"], torch.zeros(2), healthy))
    model.train_cfg.gate_weight = 1e-12  # (the gate's own loss, made negligible)
    before = {k: v.clone() for k, v in model.generator.state_dict().items()}
    losses = model.optimize_parameters()
    assert losses["loss_sup"] > 0
    after = model.generator.state_dict()
    assert not torch.equal(before["learned_fill.net.head.weight"], after["learned_fill.net.head.weight"])


def test_bad_learned_fill_settings_are_refused_with_one_sentence(truth_cache):
    from pseudohealthy.training.gvs import GVSModel

    with pytest.raises(UserError, match="gen_fill_net"):
        GVSModel(resolve_run_config(preset="hybrid", data=str(truth_cache), overrides=TINY_HYBRID + ["train.fill_weight=1"]))
    with pytest.raises(UserError, match="gen_gate_fill"):
        build_generator(resolve_run_config(preset="hybrid", overrides=FILL + ["model.gen_gate_fill=false"]).model)
    with pytest.raises(UserError, match="fill_net_depth"):
        build_generator(resolve_run_config(preset="hybrid", overrides=FILL + ["model.fill_net_depth=0"]).model)
    shallow = build_generator(resolve_run_config(preset="hybrid", overrides=FILL + ["model.fill_net_depth=2"]).model)
    assert shallow.learned_fill.net.depth == 2
    with pytest.raises(UserError, match="gen_arch=unet"):
        build_generator(resolve_run_config(preset="small", overrides=["model.gen_fill_net=true"]).model)


SEES = FILL + ["model.fill_net_sees_input=true"]


def test_a_learned_fill_that_sees_the_input_reads_the_lesion_and_still_keeps_pixels_outside_its_hole():
    """model.fill_net_sees_input: a third channel carries the slice as it came in, so what shows
    through a lesion can reach the fill (the opposite of the plain learned fill above)."""
    torch.manual_seed(3)
    generator = build_generator(resolve_run_config(preset="hybrid", overrides=TINY_HYBRID + SEES).model)
    net = generator.learned_fill.eval()
    assert net.sees_input and next(m for m in net.net.modules() if isinstance(m, torch.nn.Conv2d)).in_channels == 3
    x = torch.rand(1, 1, 64, 64) * 0.5 - 0.5
    lesion = torch.zeros_like(x)
    lesion[..., 26:36, 28:38] = 1.0
    assert torch.equal(fill_true_hole(x, lesion, net), fill_true_hole(x, lesion, _fill_net()))  # zero start
    with pytest.raises(ValueError, match="original"):
        net(x, lesion)
    with torch.no_grad():
        net.net.head.weight.normal_(0, 0.5)
    bright = torch.where(lesion > 0, torch.ones_like(x), x)
    dark = torch.where(lesion > 0, -0.9 * torch.ones_like(x), x)
    a, b = fill_true_hole(bright, lesion, net), fill_true_hole(dark, lesion, net)
    hole = torch.nn.functional.max_pool2d(lesion, 3, stride=1, padding=1)
    assert not torch.allclose(a[hole > 0], b[hole > 0])
    assert torch.equal(a[hole == 0], bright[hole == 0]) and torch.equal(b[hole == 0], dark[hole == 0])


def test_the_teaching_hole_adds_where_the_gate_opens_only_when_asked():
    from pseudohealthy.models.generator import teaching_hole

    lesion = torch.zeros(1, 1, 8, 8)
    lesion[..., 1:3, 1:3] = 1.0
    logit = torch.full_like(lesion, -4.0)
    logit[..., 5:7, 4:8] = 2.0
    assert torch.equal(teaching_hole(lesion, logit, False), lesion)
    both = teaching_hole(lesion, logit, True)
    assert both.sum() == 4 + 8 and both[..., 5:7, 4:8].eq(1).all() and both[..., 1:3, 1:3].eq(1).all()


@pytest.mark.parametrize("on_gate", [False, True])
def test_fill_on_gate_teaches_the_learned_fill_where_the_gate_opens_on_normal_tissue(truth_cache, on_gate):
    """train.fill_on_gate: a batch without any lesion still teaches the learned fill where the gate
    opens (the truth there is the slice itself); without it, such a batch teaches it nothing."""
    from pseudohealthy.training.gvs import GVSModel

    torch.manual_seed(4)
    overrides = TINY_HYBRID + SEES + [f"train.fill_on_gate={str(on_gate).lower()}"]
    model = GVSModel(resolve_run_config(preset="hybrid", data=str(truth_cache), overrides=overrides))
    x = torch.rand(2, 1, 32, 32) - 0.5
    x[..., 12:20, 12:20] = 0.9
    model.set_input((x, torch.zeros_like(x), torch.ones_like(x), ["c", "c"], torch.zeros(2), x.clone()))
    model.train_cfg.gate_weight = 1e-12  # (the gate's own loss, made negligible)
    # the gate opens (by mistake: there is no lesion) where the slice is bright
    opened = torch.where(x > 0.8, torch.tensor(6.0), torch.tensor(-6.0))
    model.generator.maps = lambda seen: (torch.zeros_like(opened), opened)
    before = model.generator.learned_fill.net.head.weight.clone()
    losses = model.optimize_parameters()
    taught = not torch.equal(before, model.generator.learned_fill.net.head.weight)
    assert (losses["loss_sup"] > 0) == on_gate and taught == on_gate


def test_bad_fill_input_settings_are_refused_with_one_sentence(truth_cache):
    from pseudohealthy.training.gvs import GVSModel

    with pytest.raises(UserError, match="gen_fill_net=true"):
        build_generator(resolve_run_config(preset="hybrid", overrides=["model.fill_net_sees_input=true"]).model)
    with pytest.raises(UserError, match="fill_weight > 0"):
        GVSModel(resolve_run_config(preset="hybrid", data=str(truth_cache), overrides=TINY_HYBRID + ["train.fill_on_gate=true"]))
