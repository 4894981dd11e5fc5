"""The gate's fill taken from the whole volume at synthesis (inference/volume_fill.py, model.gen_fill_volume)."""
from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch

from pseudohealthy.config import PreprocessConfig, resolve_run_config
from pseudohealthy.data.nifti_io import Volume
from pseudohealthy.errors import UserError
from pseudohealthy.inference.synthesize import synthesize_volume
from pseudohealthy.inference.volume_fill import _pool_factors, block_median, compose_volume, pull_push_volume, working_spacing
from pseudohealthy.models import build_generator
from pseudohealthy.models.pyramid_fill import pyramid_fill

TINY_HYBRID = ["model.gen_channels=8", "model.gen_blocks=2", "model.seg_base=8", "model.seg_depth=3",
               "model.seg_max_channels=32", "model.gen_gate_adapt_steps=0", "model.gen_gate_second_look=0"]


def test_on_a_single_slice_the_volume_fill_is_the_generators_own_2d_fill():
    generator = torch.Generator().manual_seed(0)
    values = torch.rand(1, 48, 48, dtype=torch.float64, generator=generator)
    known = (torch.rand(1, 48, 48, generator=generator) > 0.3).double()
    known[0, 10:30, 5:25] = 0.0
    expected = pyramid_fill(values[None], known[None])[0, 0]
    torch.testing.assert_close(pull_push_volume(values, known)[0], expected, rtol=0, atol=1e-12)


def test_known_voxels_stay_and_a_constant_stays_constant_on_any_grid():
    constant = torch.full((7, 20, 24), 3.0, dtype=torch.float64)
    varied = torch.rand(7, 20, 24, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    known = torch.ones_like(constant)
    known[2:5, 5:15, 6:18] = 0.0
    for spacing in ((1.0, 1.0, 1.0), (5.0, 0.8, 0.8)):
        for pull in ("mean", "median"):
            filled = pull_push_volume(varied, known, spacing, pull=pull)
            assert torch.equal(filled[known == 1], varied[known == 1])
            torch.testing.assert_close(pull_push_volume(constant, known, spacing, pull=pull), constant, rtol=0, atol=1e-12)
    with pytest.raises(ValueError):
        pull_push_volume(varied, known, pull="mode")


def test_block_median_is_each_blocks_weighted_median_and_ignores_untrusted_voxels():
    generator = torch.Generator().manual_seed(2)
    values = torch.rand(5, 6, 7, dtype=torch.float64, generator=generator)
    weight = torch.rand(5, 6, 7, dtype=torch.float64, generator=generator) * (torch.rand(5, 6, 7, generator=generator) > 0.3)
    medians = block_median(values[None, None], weight[None, None], (2, 2, 2))[0, 0]
    assert medians.shape == (3, 3, 4)  # the far blocks cut short, as avg_pool3d(ceil_mode=True) cuts them
    for i, j, k in np.ndindex(*medians.shape):
        block = (slice(2 * i, 2 * i + 2), slice(2 * j, 2 * j + 2), slice(2 * k, 2 * k + 2))
        v, w = values[block].flatten().numpy(), weight[block].flatten().numpy()
        if w.sum() == 0:
            continue
        order = np.argsort(v)
        reference = v[order][np.searchsorted(np.cumsum(w[order]), 0.5 * w.sum())]  # smallest value reaching half
        assert float(medians[i, j, k]) == pytest.approx(reference), (i, j, k)


def test_the_median_pull_is_not_drawn_to_bright_specks_around_the_opening():
    """Tissue of 100 with a fifth of its voxels bright (1000: sulci, vessels) around a large opening whose
    truth is the tissue: the mean pull carries the specks into the opening, the median pull far less."""
    values = torch.full((16, 48, 48), 100.0, dtype=torch.float64)
    values[torch.rand(values.shape, generator=torch.Generator().manual_seed(0)) < 0.2] = 1000.0
    known = torch.ones_like(values)
    known[4:12, 12:36, 12:36] = 0.0
    error = {pull: float((pull_push_volume(values, known, pull=pull)[known == 0] - 100.0).abs().mean())
             for pull in ("mean", "median")}
    assert error["median"] < 0.5 * error["mean"], error


def test_a_slice_without_any_known_pixel_is_filled_from_its_neighbours():
    """What a slice-by-slice fill cannot do: every pixel of slice 3 unknown, its neighbours 10 and 20."""
    values = torch.zeros(7, 16, 16, dtype=torch.float64)
    values[:3], values[4:] = 10.0, 20.0
    known = torch.ones_like(values)
    known[3] = 0.0
    middle = pull_push_volume(values, known)[3]
    assert 12.0 < float(middle.min()) and float(middle.max()) < 18.0
    assert float(pyramid_fill(values[3:4, None], known[3:4, None]).abs().max()) == 0.0  # 2-D: nothing to fill from


def test_a_thick_slice_axis_is_not_halved_until_the_in_plane_voxels_reach_its_size():
    assert _pool_factors((40, 64, 64), (5.0, 1.0, 1.0)) == (1, 2, 2)
    assert _pool_factors((40, 16, 16), (5.0, 4.0, 4.0)) == (2, 2, 2)
    assert _pool_factors((1, 8, 1), (1.0, 1.0, 1.0)) == (1, 2, 1)
    assert _pool_factors((1, 1, 1), (1.0, 1.0, 1.0)) == (1, 1, 1)


def test_working_spacing_follows_the_canonical_axes_and_the_resize():
    affine = np.array([[0.0, 0.0, 3.0, 0.0], [2.0, 0.0, 0.0, 0.0], [0.0, 4.0, 0.0, 0.0], [0, 0, 0, 1]])
    # file axes (i, j, k) have sizes (2, 4, 3) and point along (y, z, x): canonical (X, Y, Z) sizes (3, 2, 4)
    assert working_spacing(affine, (30, 20), (30, 20), (30, 20)) == (4.0, 3.0, 2.0)
    assert working_spacing(affine, (30, 20), (15, 15), (30, 30)) == (4.0, 6.0, 4.0)  # padded to 30, halved


def test_compose_keeps_every_pixel_outside_the_dilated_gate_and_fills_in_input_units():
    depth, size = 5, 24
    units = np.full((depth, size, size), 400.0)
    scale = np.linspace(0.002, 0.004, depth)  # each slice normalised differently, as per-slice modes do
    offset = np.linspace(-1.0, -0.9, depth)
    slices = (units * scale[:, None, None] + offset[:, None, None]).astype(np.float32)
    slices[2, 8:14, 8:14] += 0.5  # a "lesion" in slice 2
    logits = np.full(slices.shape, -20.0, np.float32)
    logits[2, 8:14, 8:14] = 20.0
    out = compose_volume(slices, logits, None, True, scale, offset, (1.0, 1.0, 1.0))
    opened = np.zeros(slices.shape, bool)
    opened[2, 7:15, 7:15] = True  # the gate dilated one pixel in-plane
    assert np.array_equal(out[~opened], slices[~opened])
    np.testing.assert_allclose((out[2, 8:14, 8:14] - offset[2]) / scale[2], 400.0, rtol=1e-4)
    closed = compose_volume(slices, np.full(slices.shape, -20.0, np.float32), None, True, scale, offset, (1.0, 1.0, 1.0))
    assert np.array_equal(closed, slices)


def test_the_ring_a_hard_gate_adds_is_replaced_but_trusted_where_the_gate_is_sure_of_it():
    """Training's trust (1 - m)^4: a ring voxel the gate is sure is tissue keeps its own value; one the gate
    half suspects is pulled towards the fill from further out."""
    units = np.full((3, 20, 20), 400.0)
    units[1, 7, 10] = 460.0  # tissue on the ring, brighter than the rest
    units[1, 14, 10] = 460.0
    units[1, 8:14, 8:14] = 900.0  # the opening
    scale, offset = np.full(3, 0.002), np.full(3, -1.0)
    slices = (units * scale[:, None, None] + offset[:, None, None]).astype(np.float32)
    logits = np.full(slices.shape, -20.0, np.float32)
    logits[1, 8:14, 8:14] = 20.0
    logits[1, 14, 10] = -0.5  # the gate is unsure there (m = 0.38)
    out = (compose_volume(slices, logits, None, True, scale, offset, (1.0, 1.0, 1.0)) - offset[:, None, None]) / scale[:, None, None]
    assert abs(out[1, 7, 10] - 460.0) < 0.5
    assert 400.0 < out[1, 14, 10] < 450.0
    assert np.abs(out[1, 8:14, 8:14] - 400.0).max() < 60.0  # the opening filled from the tissue around


def _gated_generator(fill_volume: bool):
    return build_generator(resolve_run_config(preset="hybrid", overrides=TINY_HYBRID + [
        f"model.gen_fill_volume={str(fill_volume).lower()}"]).model).eval()


def test_gen_fill_volume_applies_only_where_there_is_a_pull_push_fill_to_replace():
    assert _gated_generator(True).fill_volume and not _gated_generator(False).fill_volume
    with pytest.raises(UserError, match="model.gen_fill_pull"):
        build_generator(resolve_run_config(preset="hybrid", overrides=TINY_HYBRID + ["model.gen_fill_pull=mode"]).model)
    for other in (["model.gen_fill_net=true"], ["model.gen_gate_fill=false", "model.gen_gate_hard=false"],
                  ["model.slice_layout=reference", "model.gen_gate_adapt_steps=0"]):
        generator = build_generator(resolve_run_config(preset="hybrid", overrides=TINY_HYBRID + other + [
            "model.gen_fill_volume=true"]).model)
        assert not generator.fill_volume, other


def test_synthesis_with_the_volume_fill_restores_a_structure_that_runs_through_the_slices(tmp_path, monkeypatch):
    """A tube brighter than its tissue runs along z; a "lesion" hides it on three slices and the gate opens
    exactly there. Slice by slice the fill only sees the tissue around the hole; from the volume it
    sees the tube above and below."""
    shape = (40, 40, 12)
    xx, yy = np.mgrid[:40, :40]
    brain = np.hypot(xx - 20, yy - 20) < 16
    tube = np.hypot(xx - 20, yy - 20) < 4
    truth = np.where(brain, 300.0, 0.0)[..., None].repeat(shape[2], axis=2)
    truth[tube] = 600.0
    image = truth.copy()
    hole = np.zeros(shape, bool)
    hole[..., 5:8] = (np.hypot(xx - 20, yy - 20) < 7)[..., None]
    image[hole] = 900.0
    volume = Volume(image.astype(np.float32), np.eye(4), nib.Nifti1Header(), tmp_path / "case.nii.gz")
    cfg = PreprocessConfig(source="brats", working_size=None)

    def open_on_the_hole(self, x):
        logit = torch.full_like(x[:, :1], -20.0)
        bright = x[:, :1] > 0.9  # the hole's 900 is the only value near the top of the window
        return x[:, :1], torch.zeros_like(logit), torch.where(bright, torch.full_like(logit, 20.0), logit)

    from pseudohealthy.models.generator import GatedUNetGenerator

    monkeypatch.setattr(GatedUNetGenerator, "gate_maps", open_on_the_hole)
    errors = {}
    for fill_volume in (False, True):
        result = synthesize_volume(_gated_generator(fill_volume), volume, cfg, torch.device("cpu"))
        changed = result.synthetic != volume.data
        assert not (changed & ~np.isin(np.arange(shape[2]), [5, 6, 7])[None, None, :]).any()
        errors[fill_volume] = float(np.abs(result.synthetic - truth)[hole & tube[..., None]].mean())
    assert errors[True] < 0.5 * errors[False], errors


def test_the_command_line_switches_the_volume_fill_and_refuses_it_where_there_is_no_gate(cli, synthesize_cli, tiny_trained,
                                                                                        tmp_path, monkeypatch):
    import pseudohealthy.inference.volume_fill as volume_fill
    from pseudohealthy.training.loop import train

    torch.set_num_threads(1)
    cfg = resolve_run_config(preset="hybrid", data=str(tiny_trained["cache"]), overrides=TINY_HYBRID + [
        "train.crop_size=16", "train.batch_size=4", "train.device=cpu", "train.epochs=1", "train.max_steps_per_epoch=1",
        "train.max_minutes=null", "model.gen_fill_volume=true"])
    checkpoint = train(cfg, tmp_path / "run", progress=False)
    calls = []
    original = volume_fill.compose_volume
    monkeypatch.setattr(volume_fill, "compose_volume", lambda *a, **k: calls.append(k["pull"]) or original(*a, **k))
    case = tiny_trained["raw"] / "Case001" / "Case001_t2.nii.gz"
    result = cli(["synthesize", "-c", checkpoint, "-i", case, "-o", tmp_path / "a"])
    assert result.exit_code == 0, result.output
    assert calls == [resolve_run_config(preset="hybrid").model.gen_fill_pull]  # the checkpoint's settings
    result = cli(["synthesize", "-c", checkpoint, "-i", case, "-o", tmp_path / "b", "--slice-fill"])
    assert result.exit_code == 0, result.output
    assert len(calls) == 1
    for pull in ("mean", "median"):
        synthesize_cli.ok(checkpoint, case, tmp_path / pull, "--fill-pull", pull)
        assert calls[-1] == pull
    synthesize_cli.refused(checkpoint, case, tmp_path / "d", (
        (["--fill-pull", "mode"], "--fill-pull mode: choose one of mean, median"),
        (["--fill-pull", "median", "--slice-fill"], "--fill-pull median is a setting of the fill from the whole volume")))
    refused = cli(["synthesize", "-c", tiny_trained["checkpoint"], "-i", case, "-o", tmp_path / "c", "--volume-fill"])
    assert refused.exit_code != 0 and "--volume-fill needs a gated U-Net generator" in refused.output
    assert "Traceback" not in refused.output and not (tmp_path / "c").exists()
