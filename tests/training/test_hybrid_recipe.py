"""The hybrid recipe's parts: gated identity start, supervised term with unknown truth, crops,
learning on a cache with truth, and the wall-clock budget (stop, lr decay over it, resume)."""
from __future__ import annotations

import csv

import numpy as np
import pytest
import torch

from pseudohealthy.config import resolve_run_config
from pseudohealthy.errors import UserError
from pseudohealthy.losses.residual import supervised_l1
from pseudohealthy.models import build_generator

TINY_HYBRID = ["model.gen_channels=8", "model.gen_blocks=2", "model.seg_base=8", "model.seg_depth=3",
               "model.seg_max_channels=32", "train.crop_size=16", "train.batch_size=4", "train.device=cpu"]


def test_gated_generator_starts_with_zero_correction_and_a_gate_whose_body_learns_at_once():
    from pseudohealthy.losses.gate import gate_loss

    soft = build_generator(resolve_run_config(preset="hybrid", overrides=TINY_HYBRID + [
        "model.gen_gate_fill=false", "model.gen_gate_hard=false"]).model)
    x = torch.rand(2, 1, 32, 32) * 2 - 1
    out, gate = soft(x, return_gate=True)
    assert torch.equal(out, x)  # the correction starts at zero: x + m * 2 tanh(0)
    assert gate.shape == x.shape
    # The gate's logits start random, not zero: a zero gate head passes no gradient to the U-Net's
    # body, which then learned the segmentation at a crawl (tests fail on that init).
    generator = build_generator(resolve_run_config(preset="hybrid", overrides=TINY_HYBRID).model)
    _, gate = generator(x, return_gate=True)
    assert gate.std() > 0
    lesion = (torch.rand_like(x) > 0.8).float()
    gate_loss(gate, lesion, dice=True).backward()
    first_conv = next(p for p in generator.net.down.parameters() if p.dim() == 4)
    assert first_conv.grad is not None and first_conv.grad.abs().sum() > 0


def test_gate_at_a_coarser_scale_keeps_the_slice_size_and_the_kept_pixels():
    cfg = resolve_run_config(preset="hybrid", overrides=TINY_HYBRID + ["model.gen_gate_scale=2"])
    generator = build_generator(cfg.model).eval()
    x = torch.rand(1, 1, 30, 34) * 2 - 1  # odd multiples: the U-Net sees 15 x 17
    with torch.no_grad():
        out, gate = generator(x, return_gate=True)
    assert out.shape == x.shape and gate.shape == x.shape
    from pseudohealthy.models.generator import hard_gate

    kept = hard_gate(torch.sigmoid(gate)) == 0
    torch.testing.assert_close(out[kept], x[kept], rtol=0, atol=0)
    with pytest.raises(UserError, match="gen_gate_scale"):
        build_generator(resolve_run_config(preset="hybrid", overrides=TINY_HYBRID + ["model.gen_gate_scale=0"]).model)


class _CopyCells(torch.nn.Module):
    """A stand-in U-Net that writes each input channel (one pixel of a cell) to its gate channel."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([torch.zeros_like(x), x], dim=1)  # correction channels first, then the gate's


def test_space_to_depth_gate_keeps_every_pixel_in_and_draws_the_gate_at_full_resolution():
    cfg = resolve_run_config(preset="hybrid", overrides=TINY_HYBRID + ["model.gen_gate_scale=2",
                                                                        "model.gen_gate_shuffle=true",
                                                                        "model.gen_gate_second_look=0"])
    generator = build_generator(cfg.model).eval()
    assert generator.net.down[0].body[0].in_channels == 4 and generator.net.head.out_channels == 8
    x = torch.rand(1, 1, 30, 34) * 2 - 1
    with torch.no_grad():
        out, gate = generator(x, return_gate=True)
    assert out.shape == x.shape and gate.shape == x.shape
    # With a net that passes its cells through, the gate's logits are the slice itself, pixel for
    # pixel: nothing was averaged on the way in or interpolated on the way out (the area shrink of
    # gen_gate_scale alone cannot give back a checkerboard).
    generator.net = _CopyCells()
    x = torch.rand(1, 1, 31, 33) * 2 - 1  # not a multiple of the scale: padded and cut back
    with torch.no_grad():
        _, gate = generator(x, return_gate=True)
    torch.testing.assert_close(gate, x, rtol=0, atol=0)
    # the correction channels (the first scale**2 of the head) start at zero
    plain = build_generator(cfg.model)
    torch.testing.assert_close(plain.net.head.weight[:4], torch.zeros_like(plain.net.head.weight[:4]))
    assert plain.net.head.weight[4:].abs().sum() > 0


class _BrightIsLesion(torch.nn.Module):
    """A stand-in U-Net whose gate opens on bright pixels (logit 20 (x - 0.5)), correction zero."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([torch.zeros_like(x), 20.0 * (x - 0.5)], dim=1)


def test_second_look_adds_the_small_parts_found_at_full_resolution_at_inference_only():
    cfg = resolve_run_config(preset="hybrid", overrides=TINY_HYBRID + ["model.gen_gate_scale=2",
                                                                        "model.gen_gate_second_look=0.9",
                                                                        "model.gen_gate_second_look_area=100"])
    generator = build_generator(cfg.model)
    generator.net = _BrightIsLesion()
    x = torch.zeros(1, 1, 64, 64)
    x[0, 0, 9, 9] = 1.0  # one bright pixel: averaged to 0.25 at half resolution, missed there
    x[0, 0, 40, 2:62] = 1.0  # a 60-pixel line: half of each 2x2 cell, also missed at half resolution
    x[0, 0, 20:32, 20:32] = 1.0  # a 144-pixel square: found at half resolution
    generator.eval()
    with torch.no_grad():
        out, logit = generator(x, return_gate=True)
    gate = torch.sigmoid(logit)[0, 0] > 0.5
    assert gate[9, 9] and out[0, 0, 9, 9] < 0.5  # the dot is found and filled from its dark surroundings
    assert gate[40, 2:62].all()  # the line is under 100 pixels at full resolution: added
    assert gate[22:30, 22:30].all()
    generator.second_look_area = 50  # now the line is too large for the second look, the dot is not
    with torch.no_grad():
        _, logit = generator(x, return_gate=True)
    gate = torch.sigmoid(logit)[0, 0] > 0.5
    assert gate[9, 9] and not gate[40, 2:62].any()
    generator.train()  # training never takes the second look: the gate's loss sees the coarse gate only
    _, logit = generator(x, return_gate=True)
    assert not (torch.sigmoid(logit)[0, 0, 9, 9] > 0.5)
    for bad in (["model.gen_gate_second_look=1.5"], ["model.gen_gate_second_look_area=0"],
                ["model.gen_gate_shuffle=true"]):
        with pytest.raises(UserError, match="second_look"):
            build_generator(resolve_run_config(preset="hybrid", overrides=TINY_HYBRID + [
                "model.gen_gate_scale=2", "model.gen_gate_second_look=0.9"] + bad).model)


def test_supervised_l1_scores_known_truth_only_and_keeps_gradients_finite():
    x_s = torch.zeros(1, 1, 2, 2, requires_grad=True)
    truth = torch.tensor([[[[1.0, float("nan")], [0.5, 0.0]]]])
    lesion = torch.tensor([[[[1.0, 1.0], [0.0, 0.0]]]])
    normal, inside = supervised_l1(x_s, truth, lesion)
    assert normal.item() == pytest.approx(0.25)  # (|0 - 0.5| + |0 - 0|) / 2
    assert inside.item() == pytest.approx(1.0)  # the NaN lesion pixel is not scored
    (normal + inside).backward()
    assert torch.isfinite(x_s.grad).all() and x_s.grad[0, 0, 0, 1] == 0


def test_crops_are_seeded_by_epoch_and_find_the_lesion(truth_cache):
    from pseudohealthy.data.dataset import SliceDataset

    ds = SliceDataset(truth_cache, split="train", lesion_only=True, crop_size=16, lesion_crop_probability=1.0,
                      with_healthy=True)
    image, lesion, region, _, _, healthy = ds[0]
    assert image.shape == lesion.shape == healthy.shape == (1, 16, 16)
    assert all(ds[i][1].sum() > 0 for i in range(len(ds)))  # every crop holds lesion pixels
    again = ds[0][0]
    ds.set_epoch(1)
    moved = [not torch.equal(ds[i][0], SliceDataset(truth_cache, split="train", lesion_only=True, crop_size=16,
                                                  lesion_crop_probability=1.0)[i][0]) for i in range(len(ds))]
    assert torch.equal(again, image) and any(moved)


def test_a_cache_without_truth_is_refused_with_one_sentence_when_the_recipe_needs_it(tiny_cache):
    from pseudohealthy.training.loop import train

    cfg = resolve_run_config(preset="hybrid", overrides=TINY_HYBRID + ["train.supervised_weight=10"], data=str(tiny_cache))
    with pytest.raises(UserError, match="no true healthy images"):
        train(cfg, tiny_cache.parent / "refused-run", progress=False)
    # The default hybrid recipe learns from the masks alone: real data without truth trains.
    cfg = resolve_run_config(preset="hybrid", overrides=TINY_HYBRID + ["train.epochs=1", "train.max_steps_per_epoch=2"],
                             data=str(tiny_cache))
    assert train(cfg, tiny_cache.parent / "masks-only-run", progress=False).is_file()


def test_hybrid_training_heals_and_the_budget_stops_it_with_a_checkpoint(truth_cache, tmp_path):
    from pseudohealthy.training.checkpoint import read_checkpoint
    from pseudohealthy.training.loop import train

    cfg = resolve_run_config(preset="hybrid", data=str(truth_cache),
                             overrides=TINY_HYBRID + ["train.epochs=1000", "train.max_minutes=0.15", "train.lr=2e-3",
                                                      # learning is what is checked here: no augmentation noise
                                                      "train.augment=false", "train.intensity_augment=false",
                                                      "train.lesion_only=true"])
    last = train(cfg, tmp_path / "run", progress=False)
    rows = list(csv.DictReader(open(tmp_path / "run" / "losses.csv")))
    assert 5 <= len(rows) < 1000  # stopped by the budget, not by the epoch cap
    gate = [float(r["loss_g"]) for r in rows]  # the default recipe: the gate's BCE + Dice against the masks
    assert np.mean(gate[-3:]) < 0.8 * np.mean(gate[:2])  # the gate learned the lesions
    lrs = [float(r["lr_g"]) for r in rows]
    assert lrs[-1] < lrs[0] <= 2e-3  # the schedule decays over the budget
    payload = read_checkpoint(last)
    assert payload["elapsed_s"] >= 0.15 * 60 * 0.99
    # Resuming a run whose budget is spent adds nothing.
    again = train(cfg, tmp_path / "run", resume=True, progress=False)
    assert read_checkpoint(again)["epoch"] == payload["epoch"]


def test_training_pastes_online_lesions_when_asked_and_only_then(truth_cache, tmp_path, monkeypatch):
    import pseudohealthy.data.dataset as dataset_module
    from pseudohealthy.training.loop import train

    calls = []
    real_paste = dataset_module.paste_lesions

    def counting_paste(*args, **kwargs):
        calls.append(1)
        return real_paste(*args, **kwargs)

    monkeypatch.setattr(dataset_module, "paste_lesions", counting_paste)
    quick = TINY_HYBRID + ["train.crop_size=32", "train.epochs=1", "train.max_steps_per_epoch=2"]
    train(resolve_run_config(preset="hybrid", data=str(truth_cache), overrides=quick + ["train.online_lesions=0"]),
          tmp_path / "off", progress=False)
    assert calls == []
    train(resolve_run_config(preset="hybrid", data=str(truth_cache), overrides=quick), tmp_path / "on", progress=False)
    assert len(calls) >= 8  # the recipe's default: every crop of the 2 steps of batch 4
    assert resolve_run_config(preset="hybrid").train.online_lesions == 1.0


def test_training_weights_small_lesion_sections_when_asked_and_only_then(truth_cache, tmp_path, monkeypatch):
    import pseudohealthy.losses.gate as gate_module
    from pseudohealthy.training.loop import train

    areas = []
    real_weights = gate_module.lesion_section_weights

    def recording_weights(lesion, area):
        areas.append(area)
        return real_weights(lesion, area)

    monkeypatch.setattr(gate_module, "lesion_section_weights", recording_weights)
    quick = TINY_HYBRID + ["train.crop_size=32", "train.epochs=1", "train.max_steps_per_epoch=2"]
    train(resolve_run_config(preset="hybrid", data=str(truth_cache), overrides=quick), tmp_path / "off", progress=False)
    assert areas == []  # off in the default recipe
    train(resolve_run_config(preset="hybrid", data=str(truth_cache), overrides=quick + ["train.gate_small_lesion_area=50"]),
          tmp_path / "on", progress=False)
    assert areas == [50.0, 50.0]  # one call per step


class _FixedMaps(torch.nn.Module):
    """Stands in for the generator's network: returns chosen (refinement, gate logit) maps."""

    def __init__(self, refinement: torch.Tensor, gate_logit: torch.Tensor) -> None:
        super().__init__()
        self.maps = torch.cat([refinement, gate_logit], dim=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.maps.expand(x.shape[0], -1, -1, -1)


def test_gate_fill_puts_a_fill_of_the_kept_pixels_where_the_gate_opens_not_the_lesion():
    cfg = resolve_run_config(preset="hybrid", overrides=TINY_HYBRID + ["model.gen_arch=resnet"])
    generator = build_generator(cfg.model)
    opened = torch.zeros(1, 1, 32, 32)
    opened[..., 10:20, 12:22] = 1
    generator.net = _FixedMaps(torch.zeros_like(opened), (opened * 2 - 1) * 30)
    tissue = torch.linspace(-0.5, 0.5, 32).view(1, 1, 1, 32).expand(1, 1, 32, 32)
    bright, dark = tissue + opened * 1.0, tissue - opened * 0.4  # two different lesions on the same tissue
    out_bright, out_dark = generator(bright), generator(dark)
    torch.testing.assert_close(out_bright, out_dark)  # the lesion's values do not reach the output
    torch.testing.assert_close(out_bright[opened == 0], tissue[opened == 0])  # kept pixels unchanged
    assert (out_bright - tissue)[opened == 1].abs().max() < 0.05  # the fill follows the tissue's ramp
    # the refinement is added where the gate is open, and only there
    generator.net = _FixedMaps(torch.full_like(opened, 0.5), (opened * 2 - 1) * 30)
    shifted = generator(bright)
    torch.testing.assert_close((shifted - out_bright)[opened == 1], torch.full((100,), torch.tanh(torch.tensor(0.5)).item()))
    torch.testing.assert_close(shifted[opened == 0], tissue[opened == 0])


def test_unet_generator_is_gated_starts_with_zero_correction_and_refuses_bad_settings():
    cfg = resolve_run_config(preset="hybrid", overrides=TINY_HYBRID + ["model.gen_gate_fill=false", "model.gen_gate_hard=false"])
    generator = build_generator(cfg.model)
    x = torch.rand(2, 1, 32, 32) * 2 - 1
    out, gate = generator(x, return_gate=True)
    assert torch.equal(out, x)  # zero correction
    loss = (generator(x) - x.flip(-1)).abs().mean()
    loss.backward()
    assert generator.net.head.weight.grad.abs().sum() > 0
    with pytest.raises(UserError, match="gen_arch"):
        build_generator(resolve_run_config(preset="hybrid", overrides=TINY_HYBRID + ["model.gen_arch=vit"]).model)
    with pytest.raises(UserError, match="gen_gate=true"):
        build_generator(resolve_run_config(preset="hybrid", overrides=TINY_HYBRID + ["model.gen_arch=unet",
                                                                                      "model.gen_gate=false"]).model)


def test_hard_gate_keeps_every_pixel_outside_it_bit_for_bit_and_still_trains_the_gate():
    x = torch.rand(1, 1, 32, 32) * 2 - 1
    logits = torch.full((1, 1, 32, 32), -3.0)
    logits[..., 10:14, 10:14] = 3.0
    logits.requires_grad_(True)
    from pseudohealthy.models.generator import gated_output

    out = gated_output(x, torch.zeros_like(x), logits, fill=True, hard=True)
    opened = torch.zeros_like(x, dtype=torch.bool)
    opened[..., 9:15, 9:15] = True  # the gate dilated by one pixel
    assert torch.equal(out[~opened], x[~opened])
    assert not torch.equal(out[opened], x[opened])
    (out - x).abs().sum().backward()
    assert logits.grad.abs().sum() > 0  # straight-through: the output's loss reaches the gate's logits
    without_refinement = gated_output(x, torch.ones_like(x), logits.detach(), fill=True, hard=True, refine=False)
    torch.testing.assert_close(without_refinement, gated_output(x, torch.zeros_like(x), logits.detach(), fill=True, hard=True))


def test_a_gate_from_masks_gets_no_gradient_through_the_output_but_from_its_own_loss():
    from pseudohealthy.losses.gate import gate_loss
    from pseudohealthy.models.generator import gated_output

    x = torch.rand(1, 1, 32, 32) * 2 - 1
    logits = torch.full((1, 1, 32, 32), -3.0)
    logits[..., 10:14, 10:14] = 3.0
    logits.requires_grad_(True)
    out = gated_output(x, torch.zeros_like(x), logits, fill=True, hard=True, gate_from_masks=True)
    torch.testing.assert_close(out, gated_output(x, torch.zeros_like(x), logits.detach(), fill=True, hard=True))
    assert not out.requires_grad  # neither the straight-through path nor the fill's trust reaches the gate
    cfg = resolve_run_config(preset="hybrid", overrides=TINY_HYBRID + ["model.gen_gate_from_masks=true"])
    generator = build_generator(cfg.model)
    out, gate = generator(x, return_gate=True)
    assert not out.requires_grad  # (no refinement in the preset: the output is the fill's alone)
    gate_loss(gate, (torch.rand_like(x) > 0.8).float()).backward()
    assert generator.net.head.weight.grad.abs().sum() > 0


def test_a_mirror_gate_trains_on_crops_with_their_mirror_and_synthesises_whole_slices(truth_cache, tmp_path):
    from pseudohealthy.checkpoints import load_generator
    from pseudohealthy.data.dataset import SliceDataset
    from pseudohealthy.mirror import mirror
    from pseudohealthy.training.loop import train

    quick = TINY_HYBRID + ["train.crop_size=32", "train.epochs=1", "train.max_steps_per_epoch=2", "model.gen_gate_mirror=true"]
    last = train(resolve_run_config(preset="hybrid", data=str(truth_cache), overrides=quick), tmp_path / "run", progress=False)
    generator, run_cfg, _ = load_generator(last, "cpu")
    assert run_cfg.model.gen_gate_mirror and generator.mirror
    x = SliceDataset(truth_cache, "test", lesion_only=True)[0][0][None]  # a whole slice, one channel
    generator.eval()
    with torch.no_grad():
        out, logit = generator(x, return_gate=True)
        given = generator(torch.cat([x, mirror(x)], dim=1), return_gate=True)[1]
    assert out.shape == x.shape and torch.isfinite(out).all()
    torch.testing.assert_close(logit, given)  # made at inference as the data set makes it for training


def test_every_kth_step_trains_the_coarse_gate_at_full_resolution_on_the_crops_centre(truth_cache, tmp_path):
    from pseudohealthy.training.checkpoint import read_checkpoint
    from pseudohealthy.training.gvs import GVSModel
    from pseudohealthy.training.loop import train

    cfg = resolve_run_config(preset="hybrid", data=str(truth_cache), overrides=TINY_HYBRID + [
        "model.gen_gate_scale=2", "train.gate_fine_every=2", "train.crop_size=32"])
    model = GVSModel(cfg)
    seen = []
    model.generator.net.register_forward_pre_hook(lambda _m, args: seen.append(tuple(args[0].shape[-2:])))
    batch = (torch.rand(4, 1, 32, 32) * 2 - 1, (torch.rand(4, 1, 32, 32) > 0.9).float(), torch.ones(4, 1, 32, 32))
    for _ in range(4):
        model.set_input(batch)
        losses = model.optimize_parameters()
        assert np.isfinite(losses["loss_g"])
    # steps 1 and 3 at half resolution of the whole crop, steps 2 and 4 at full resolution of its centre half
    assert seen == [(16, 16), (16, 16), (16, 16), (16, 16)] and model.generator.scale == 2
    assert model.steps_done == 4
    seen.clear()
    model.set_input(batch)
    model.optimize_parameters()  # step 5: coarse again
    assert seen == [(16, 16)] and model.x_p.shape[-1] == 32
    model.set_input(batch)
    model.optimize_parameters()  # step 6: fine, on the centre half
    assert model.x_p.shape[-1] == 16
    torch.testing.assert_close(model.x_p, batch[0][..., 8:24, 8:24])
    last = train(resolve_run_config(preset="hybrid", data=str(truth_cache), overrides=TINY_HYBRID + [
        "train.gate_fine_every=2", "train.epochs=1", "train.max_steps_per_epoch=3"]), tmp_path / "run", progress=False)
    assert read_checkpoint(last)["steps_done"] == 3
    with pytest.raises(UserError, match="gate_fine_every"):
        GVSModel(resolve_run_config(preset="hybrid", overrides=TINY_HYBRID + ["model.gen_gate_scale=1",
                                                                            "train.gate_fine_every=2"]))


def test_the_default_gate_is_the_halving_unet_which_costs_a_fifth_less():
    """The hybrid gate's U-Net has the reference code's halving decoder (session 12): the same maps
    out, about a fifth fewer FLOPs than the full decoder (so more steps in a time budget)."""
    from dataclasses import replace

    from torch.utils.flop_counter import FlopCounterMode

    cfg = resolve_run_config(preset="hybrid").model
    assert cfg.seg_decoder == "halving"
    x = torch.rand(2, 1, 128, 128) * 2 - 1
    flops = {}
    for decoder in ("halving", "full"):
        generator = build_generator(replace(cfg, seg_decoder=decoder)).eval()
        with FlopCounterMode(display=False) as counter, torch.no_grad():
            out, logit = generator(x, return_gate=True)
        assert out.shape == logit.shape == x.shape
        flops[decoder] = counter.get_total_flops()
    assert 0.7 * flops["full"] < flops["halving"] < 0.85 * flops["full"]


def test_a_context_gate_trains_on_stacks_and_synthesises_volumes_with_their_neighbours(truth_cache, tmp_path):
    from pseudohealthy.checkpoints import load_generator
    from pseudohealthy.inference.synthesize import generate_slices, with_neighbours
    from pseudohealthy.training.loop import train

    quick = TINY_HYBRID + ["train.crop_size=32", "train.epochs=1", "train.max_steps_per_epoch=2", "model.gen_gate_context=1",
                           "train.online_lesions=1.0"]
    last = train(resolve_run_config(preset="hybrid", data=str(truth_cache), overrides=quick), tmp_path / "run", progress=False)
    generator, run_cfg, _ = load_generator(last, "cpu")
    assert run_cfg.model.gen_gate_context == 1 and generator.context == 1
    assert next(generator.net.down[0].parameters()).shape[1] == 3  # the U-Net's first conv takes the stack
    volume = np.random.default_rng(1).uniform(-1, 0, (4, 32, 32)).astype(np.float32)
    out = generate_slices(generator, volume, torch.device("cpu"))
    generator.eval()
    with torch.no_grad():
        want = generator(torch.from_numpy(with_neighbours(volume, np.arange(4), 1)))[:, 0].numpy()
    np.testing.assert_allclose(out, want, atol=1e-6)
    # the neighbours matter: the same slice with other neighbours gives another gate
    with torch.no_grad():
        stack = torch.from_numpy(with_neighbours(volume, np.array([1]), 1))
        other = stack.clone()
        other[:, 1:] = -1.0
        assert not torch.equal(generator.maps(stack)[1], generator.maps(other)[1])
