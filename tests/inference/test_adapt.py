"""Test-time adaptation of the gate to one volume (inference/adapt.py, model.gen_gate_adapt_steps)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from pseudohealthy.config import resolve_run_config
from pseudohealthy.errors import UserError
from pseudohealthy.inference.adapt import (AdaptSettings, _crop_batch, adapt_gate, grow_components, keep_survivors,
                                            masked_gate_loss, silent_region)
from pseudohealthy.models import build_generator

TINY_HYBRID = ["model.gen_channels=8", "model.gen_blocks=2", "model.seg_base=8", "model.seg_depth=3",
               "model.seg_max_channels=32", "train.crop_size=16", "train.batch_size=4", "train.device=cpu"]


def _volume(seed: int = 0, depth: int = 6, size: int = 48):
    """A disc of tissue with a brighter ring (a structure) on ``depth`` slices, normalised like a cache."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size]
    radius = np.hypot(yy - size / 2, xx - size / 2)
    region = np.repeat((radius < size * 0.42)[None], depth, axis=0)
    slices = np.where(region, -0.3 + 0.05 * rng.standard_normal(region.shape), -1.0).astype(np.float32)
    slices[:, (radius > size * 0.2) & (radius < size * 0.25)] = 0.4
    scale = np.full(depth, 2.0 / 1000.0)  # clipped units 0..1000 -> [-1, 1]
    offset = np.full(depth, -1.0)
    return slices, region, scale, offset


def _generator():
    return build_generator(resolve_run_config(preset="hybrid", overrides=TINY_HYBRID).model)


def test_silent_region_reaches_the_neighbouring_slices_then_grows_in_plane_only():
    opened = np.zeros((7, 9, 9), dtype=bool)
    opened[3, 4, 4] = True
    plus = np.zeros((9, 9), dtype=bool)
    plus[3:6, 4] = plus[4, 3:6] = True  # one 4-connected step
    silent = silent_region(opened, pixels=1, slices=2)
    assert [bool(s.any()) for s in silent] == [False, True, True, True, True, True, False]
    assert all((silent[z] == plus).all() for z in range(1, 6))
    assert (silent_region(opened, pixels=0, slices=0) == opened).all()
    assert silent_region(np.zeros_like(opened), pixels=3, slices=2).sum() == 0


def test_each_component_grows_by_its_share_of_its_own_radius_in_millimetres():
    opened = np.zeros((40, 60, 60), dtype=bool)
    zz, yy, xx = np.mgrid[:40, :60, :60]
    big = (zz - 20) ** 2 + (yy - 20) ** 2 + (xx - 20) ** 2 <= 10 ** 2  # radius 10: 4,169 voxels
    opened |= big
    opened[20, 50, 50] = True  # one voxel: its margin is under a voxel
    grown = grow_components(opened, 0.3, (1.0, 1.0, 1.0))
    radius = (3 * big.sum() / (4 * np.pi)) ** (1 / 3)
    distance = np.sqrt((zz - 20) ** 2 + (yy - 20) ** 2 + (xx - 20) ** 2)
    near_big = distance <= 10 + 0.3 * radius - 1.0  # inside the grown ball, clear of voxel rounding
    assert grown[near_big].all() and not grown[(distance > 10 + 0.3 * radius + 1.0) & (distance < 25)].any()
    assert grown[20, 50, 50] and grown[20, 45:56, 45:56].sum() == 1  # the single voxel stays alone
    assert (grown >= opened).all()
    assert (grow_components(opened, 0.0, (1.0, 1.0, 1.0)) == opened).all()
    # in millimetres: slices 3 mm apart get a third of the margin in slices, the full margin in-plane
    coarse = grow_components(big[::3], 0.3, (3.0, 1.0, 1.0))
    margin = 0.3 * (3 * big[::3].sum() * 3.0 / (4 * np.pi)) ** (1 / 3)
    in_plane = coarse[big[::3].any(axis=(1, 2))].any(axis=0).sum() - big[::3].any(axis=0).sum()
    assert in_plane > 0 and coarse.any(axis=(1, 2)).sum() - big[::3].any(axis=(1, 2)).sum() <= 2 * int(np.ceil(margin / 3.0))


def test_the_adaptation_is_silent_on_the_grown_components(monkeypatch):
    import pseudohealthy.inference.adapt as adapt

    slices, region, scale, offset = _volume(depth=8)
    first = np.full(slices.shape, -5.0, dtype=np.float32)
    first[2:7, 14:34, 14:34] = 5.0  # one large first component
    seen = []
    original = adapt._crop_batch

    def recording(rng, slices_, tissue, silent, *args):
        seen.append(silent.copy())
        return original(rng, slices_, tissue, silent, *args)

    monkeypatch.setattr(adapt, "_crop_batch", recording)
    settings = AdaptSettings(steps=1, batch_size=2, crop=32, seed=0, silent_pixels=0)
    adapt_gate(_generator(), slices, region, scale, offset, "brain", settings, torch.device("cpu"), first_logits=first)
    settings.silent_growth = 0.3
    adapt_gate(_generator(), slices, region, scale, offset, "brain", settings, torch.device("cpu"), first_logits=first)
    plain, grown = (s.astype(bool) for s in seen)
    assert (plain == ((first > 0) & region)).all()
    assert (grown >= plain).all() and grown.sum() > plain.sum() and grown[0].any() and not plain[0].any()


def test_masked_gate_loss_does_not_see_the_silent_pixels():
    torch.manual_seed(0)
    logit = torch.randn(2, 1, 8, 8)
    target = (torch.rand_like(logit) > 0.7).float()
    weight = (torch.rand_like(logit) > 0.3).float()
    base = masked_gate_loss(logit, target, weight)
    changed_silent = torch.where(weight == 0, logit + 5.0, logit)
    torch.testing.assert_close(masked_gate_loss(changed_silent, target, weight), base)
    changed_heard = torch.where(weight == 1, logit + 5.0, logit)
    assert not torch.isclose(masked_gate_loss(changed_heard, target, weight), base)


def test_crops_get_lesions_only_outside_the_silent_region_and_the_silent_pixels_weigh_nothing():
    slices, region, scale, offset = _volume()
    silent = np.zeros_like(region)
    silent[:, 10:30, 10:30] = True  # where the gate opened at first
    rng = np.random.default_rng(0)
    settings = AdaptSettings(steps=1, batch_size=16, crop=32)
    candidates = np.arange(len(slices))
    images, targets, weights = _crop_batch(rng, slices, region, silent, scale, offset, "brain", settings, 0, candidates)
    assert images.shape == targets.shape == weights.shape == (16, 1, 32, 32)
    assert targets.sum() > 0  # lesions were pasted
    # the same crops of the silent mask: weights are 0 exactly on silent pixels (no target lies there)
    silent_share = 1.0 - weights
    assert (targets * silent_share).sum() == 0
    assert 0 < silent_share.sum() < silent_share.size
    # pixels off the pasted lesions are the volume's own values
    assert set(np.unique(images[targets == 0].round(4))) <= set(np.unique(slices.round(4)))


def test_adaptation_trains_a_copy_replayably_and_leaves_the_generator_alone():
    slices, region, scale, offset = _volume()
    generator = _generator().eval()
    before = {k: v.clone() for k, v in generator.state_dict().items()}
    settings = AdaptSettings(steps=3, batch_size=4, crop=32, seed=1)
    first = adapt_gate(generator, slices, region, scale, offset, "brain", settings, torch.device("cpu"))
    second = adapt_gate(generator, slices, region, scale, offset, "brain", settings, torch.device("cpu"))
    for key, value in generator.state_dict().items():
        assert torch.equal(value, before[key]), key
    assert not first.training
    changed = [k for k, v in first.state_dict().items() if not torch.equal(v, before[k])]
    assert any(k.startswith("net.") for k in changed)
    for key, value in first.state_dict().items():
        assert torch.equal(value, second.state_dict()[key]), key
    off = adapt_gate(generator, slices, region, scale, offset, "brain", AdaptSettings(steps=0), torch.device("cpu"))
    for key, value in off.state_dict().items():
        assert torch.equal(value, before[key]), key


def test_adaptation_lowers_the_gate_loss_on_fresh_crops_of_the_volume():
    torch.manual_seed(0)
    slices, region, scale, offset = _volume(seed=3)
    generator = _generator().eval()
    silent = np.zeros_like(region)
    held_out = _crop_batch(np.random.default_rng(99), slices, region, silent, scale, offset, "brain",
                           AdaptSettings(batch_size=16, crop=32), 0, np.arange(len(slices)))
    images, targets, weights = (torch.from_numpy(a) for a in held_out)

    def loss_of(g):
        g.eval()
        with torch.no_grad():
            _, logit = g(images, return_gate=True)
        return float(masked_gate_loss(logit, targets, weights))

    adapted = adapt_gate(generator, slices, region, scale, offset, "brain",
                         AdaptSettings(steps=40, lr=3e-3, batch_size=8, crop=32), torch.device("cpu"))
    assert loss_of(adapted) < 0.8 * loss_of(generator)


def test_a_first_component_the_adapted_gate_still_mostly_opens_is_kept_whole_and_the_others_as_adapted():
    first = np.full((4, 12, 12), -5.0, np.float32)
    first[0, -1, -1] = -np.inf  # a slice part the gate never ran on
    first[1:3, 1:5, 1:5] = 3.0  # a lesion found before adapting (32 voxels, one 3-D component)
    first[1, 8:11, 8:11] = 2.0  # a false opening (9 voxels)
    adapted = np.full_like(first, -4.0)
    adapted[1:3, 1:5, 1:3] = 1.0  # adapting shrank the lesion to half of it...
    adapted[1, 8, 8] = 0.5  # ...and closed the false opening but for one voxel (1/9)
    adapted[3, 6, 6] = 4.0  # and opened somewhere new
    kept = keep_survivors(first, adapted, share=0.5)
    assert (kept[1:3, 1:5, 1:5] == np.maximum(first, adapted)[1:3, 1:5, 1:5]).all()  # whole again
    outside = np.ones(first.shape, bool)
    outside[1:3, 1:5, 1:5] = False
    assert (kept[outside] == adapted[outside]).all()  # the false opening and the new one as adapted
    assert (keep_survivors(first, adapted, share=0.6)[1:3, 1:5, 1:5] == adapted[1:3, 1:5, 1:5]).all()  # half < 0.6
    assert (keep_survivors(np.full_like(first, -1.0), adapted, 0.5) == adapted).all()  # nothing opened first


def test_adapt_steps_are_checked_when_the_model_is_built():
    with pytest.raises(UserError, match="gen_gate_adapt_steps"):
        build_generator(resolve_run_config(preset="hybrid", overrides=TINY_HYBRID + ["model.gen_gate_adapt_steps=-1"]).model)
    # the hybrid preset's setting, like its second look, does not stop a variant without the U-Net gate
    resnet = build_generator(resolve_run_config(preset="hybrid", overrides=TINY_HYBRID + ["model.gen_arch=resnet"]).model)
    assert not hasattr(resnet, "adapt_steps")
    with pytest.raises(UserError, match="gen_gate_adapt_keep"):
        build_generator(resolve_run_config(preset="hybrid", overrides=TINY_HYBRID + ["model.gen_gate_adapt_keep=1.5"]).model)
    with pytest.raises(UserError, match="gen_gate_adapt_growth"):
        build_generator(resolve_run_config(preset="hybrid", overrides=TINY_HYBRID + ["model.gen_gate_adapt_growth=-0.1"]).model)


@pytest.fixture(scope="module")
def hybrid_checkpoint(tiny_trained, tmp_path_factory) -> Path:
    """Two steps of the tiny hybrid recipe on the tiny cache, adapting 2 steps to each volume."""
    from pseudohealthy.training.loop import train

    torch.set_num_threads(1)
    cfg = resolve_run_config(preset="hybrid", data=str(tiny_trained["cache"]), overrides=TINY_HYBRID + [
        "train.epochs=1", "train.max_steps_per_epoch=2", "train.max_minutes=null", "model.gen_gate_adapt_steps=2"])
    return Path(train(cfg, tmp_path_factory.mktemp("hybrid") / "run", progress=False))


def test_synthesis_adapts_each_volume_with_the_checkpoints_steps_or_the_command_lines(cli, tiny_trained, hybrid_checkpoint,
                                                                                       tmp_path, monkeypatch):
    import pseudohealthy.inference.adapt as adapt

    calls = []
    original = adapt.adapt_gate

    def counting(*args, **kwargs):
        calls.append(args[6].steps)
        return original(*args, **kwargs)

    monkeypatch.setattr(adapt, "adapt_gate", counting)
    case = tiny_trained["raw"] / "Case001" / "Case001_t2.nii.gz"
    result = cli(["synthesize", "-c", hybrid_checkpoint, "-i", case, "-o", tmp_path / "a"])
    assert result.exit_code == 0, result.output
    assert calls == [2] and list((tmp_path / "a").glob("Case001*.nii.gz"))
    result = cli(["synthesize", "-c", hybrid_checkpoint, "-i", case, "-o", tmp_path / "b", "--adapt-steps", "0"])
    assert result.exit_code == 0, result.output
    assert calls == [2]  # switched off: no adaptation
    result = cli(["synthesize", "-c", hybrid_checkpoint, "-i", case, "-o", tmp_path / "c", "--adapt-steps", "-3"])
    assert result.exit_code != 0 and "--adapt-steps -3" in result.output


def test_adapt_steps_on_a_generator_without_a_gate_is_refused_in_one_sentence(cli, tiny_trained, tmp_path):
    case = tiny_trained["raw"] / "Case001" / "Case001_t2.nii.gz"
    result = cli(["synthesize", "-c", tiny_trained["checkpoint"], "-i", case, "-o", tmp_path / "o", "--adapt-steps", "5"])
    assert result.exit_code != 0
    assert "no gate to adapt" in result.output and "Traceback" not in result.output


def test_the_silent_margin_of_the_command_line_reaches_the_adaptation_and_is_checked(
        cli, synthesize_cli, tiny_trained, hybrid_checkpoint, tmp_path, monkeypatch):
    import pseudohealthy.inference.adapt as adapt

    margins, regions = [], []
    original_gate, original_silent = adapt.adapt_gate, adapt.silent_region

    def recording_gate(*args, **kwargs):
        margins.append((args[6].silent_pixels, args[6].silent_slices))
        return original_gate(*args, **kwargs)

    def recording_silent(opened, pixels, slices):
        regions.append((pixels, slices))
        return original_silent(opened, pixels, slices)

    monkeypatch.setattr(adapt, "adapt_gate", recording_gate)
    monkeypatch.setattr(adapt, "silent_region", recording_silent)
    case = tiny_trained["raw"] / "Case001" / "Case001_t2.nii.gz"
    synthesize_cli.ok(hybrid_checkpoint, case, tmp_path / "a")
    synthesize_cli.ok(hybrid_checkpoint, case, tmp_path / "b", "--adapt-silent-slices", "2")
    synthesize_cli.ok(hybrid_checkpoint, case, tmp_path / "c", "--adapt-silent-pixels", "5", "--adapt-silent-slices", "1")
    assert margins == regions == [(2, 0), (2, 2), (5, 1)]
    bad = cli(["synthesize", "-c", hybrid_checkpoint, "-i", case, "-o", tmp_path / "d", "--adapt-silent-pixels", "-1"])
    assert bad.exit_code != 0 and "--adapt-silent-pixels -1" in bad.output and "Traceback" not in bad.output
    off = cli(["synthesize", "-c", hybrid_checkpoint, "-i", case, "-o", tmp_path / "e", "--adapt-steps", "0",
               "--adapt-silent-slices", "2"])
    assert off.exit_code != 0 and "adaptation, which is off" in off.output and not (tmp_path / "e").exists()


def test_synthesis_keeps_the_first_components_the_adapted_gate_still_opens_and_the_command_line_sets_the_share(
        synthesize_cli, tiny_trained, hybrid_checkpoint, tmp_path, monkeypatch):
    import pseudohealthy.inference.adapt as adapt

    shares, firsts = [], []
    original_keep, original_gate = adapt.keep_survivors, adapt.adapt_gate

    def recording_keep(first, adapted, share):
        shares.append(share)
        return original_keep(first, adapted, share)

    def recording_gate(*args, **kwargs):
        firsts.append(kwargs.get("first_logits"))
        return original_gate(*args, **kwargs)

    monkeypatch.setattr(adapt, "keep_survivors", recording_keep)
    monkeypatch.setattr(adapt, "adapt_gate", recording_gate)
    case = tiny_trained["raw"] / "Case001" / "Case001_t2.nii.gz"
    synthesize_cli.ok(hybrid_checkpoint, case, tmp_path / "a")
    assert shares == [0.5]  # the hybrid preset's share
    assert firsts[0] is not None and firsts[0].ndim == 3  # the first logits are computed once and shared
    synthesize_cli.ok(hybrid_checkpoint, case, tmp_path / "b", "--adapt-keep", "0.8")
    synthesize_cli.ok(hybrid_checkpoint, case, tmp_path / "c", "--adapt-keep", "0")
    assert shares == [0.5, 0.8] and firsts[2] is None  # off: neither the first logits nor the keeping
    synthesize_cli.refused(hybrid_checkpoint, case, tmp_path / "d", (
        (["--adapt-keep", "1.5"], "--adapt-keep 1.5"),
        (["--adapt-keep", "0.5", "--slice-fill"], "the adaptation or the volume fill is off"),
        (["--adapt-keep", "0.5", "--adapt-steps", "0"], "the adaptation or the volume fill is off")))


def test_the_silent_growth_of_the_command_line_reaches_the_adaptation_with_the_volumes_spacing_and_is_checked(
        synthesize_cli, tiny_trained, hybrid_checkpoint, tmp_path, monkeypatch):
    import pseudohealthy.inference.adapt as adapt

    seen = []
    original = adapt.adapt_gate

    def recording(*args, **kwargs):
        seen.append((args[6].silent_growth, args[6].spacing))
        return original(*args, **kwargs)

    monkeypatch.setattr(adapt, "adapt_gate", recording)
    case = tiny_trained["raw"] / "Case001" / "Case001_t2.nii.gz"
    synthesize_cli.ok(hybrid_checkpoint, case, tmp_path / "a")
    synthesize_cli.ok(hybrid_checkpoint, case, tmp_path / "b", "--adapt-silent-growth", "0.2")
    assert [growth for growth, _ in seen] == [0.0, 0.2]
    assert len(seen[1][1]) == 3 and all(step > 0 for step in seen[1][1])
    synthesize_cli.refused(hybrid_checkpoint, case, tmp_path / "d", (
        (["--adapt-silent-growth", "-1"], "--adapt-silent-growth -1"),
        (["--adapt-silent-growth", "0.2", "--adapt-steps", "0"], "adaptation, which is off")))

