"""Neighbouring slices for a 2.5-D gate (model.gen_gate_context): data set items, 3-D online lesions,
the generator's input and the volume synthesis that feeds it."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from pseudohealthy.data.dataset import SliceDataset
from pseudohealthy.data.online_lesions import paste_lesions
from pseudohealthy.inference.synthesize import generate_slices, with_neighbours

SCALE, OFFSET = 2.0 / 600.0, -1.0


@pytest.fixture
def cache(tmp_path, brats_writer, build_cache):
    root = tmp_path / "b"
    for i in range(3):
        brats_writer(root, f"C{i:02d}", shape=(32, 32, 6), seed=i, lesion=True)
    out, _ = build_cache(root, working_size=32, test_fraction=0.34)
    return out


def test_items_carry_the_same_cases_neighbouring_slices_after_the_slice(cache):
    plain = SliceDataset(cache, "train")
    ds = SliceDataset(cache, "train", context=1)
    at = {(r.case_id, r.z): i for i, r in enumerate(plain.rows)}
    depth = max(r.z for r in plain.rows) + 1
    for i, row in enumerate(ds.rows):
        image, lesion = ds[i][0], ds[i][1]
        assert image.shape == (3, 32, 32)
        torch.testing.assert_close(image[:1], plain[i][0])  # the slice first, unchanged
        torch.testing.assert_close(lesion, plain[i][1])  # the target is the slice's lesion only
        for channel, dz in ((1, -1), (2, 1)):
            z = row.z + dz
            if 0 <= z < depth:
                torch.testing.assert_close(image[channel], plain[at[(row.case_id, z)]][0][0])
            else:  # beyond the volume: background
                assert torch.all(image[channel] == -1.0)


def test_augmented_neighbours_are_warped_cut_and_intensity_mapped_like_the_slice(cache):
    from pseudohealthy.data.augment import (apply_augmentation, apply_intensity, augmentation_rng, flip_slice,
                                             sample_augmentation, sample_intensity)

    kwargs = dict(augment=True, augment_scale=0.2, augment_elastic=3.0, crop_size=16, intensity_augment=True,
                  intensity_curve=0.5, seed=4)
    plain = SliceDataset(cache, "train", **kwargs)
    whole = SliceDataset(cache, "train", context=1)  # unaugmented neighbours, whole slices
    ds = SliceDataset(cache, "train", context=1, **kwargs)
    orders = set()
    for i in range(len(ds)):
        image = ds[i][0]
        torch.testing.assert_close(image[:1], plain[i][0])  # the slice as without neighbours
        row = int(ds._indices[i])
        cached = whole[i]
        params = sample_augmentation(augmentation_rng(4, 0, row), max_scale=0.2, elastic=3.0, size=32)
        lesion, region = (cached[k][0].numpy().astype(np.uint8) for k in (1, 2))
        top, left = ds._crop_corner(row, flip_slice(params, lesion), flip_slice(params, region), params)
        curve = sample_intensity(np.random.default_rng([4, 0, row, 11]), curve_strength=0.5)
        want = [apply_intensity(curve, apply_augmentation(params, cached[0][c].numpy(), window=(top, left, 16, 16))[0])
                for c in (1, 2)]
        flipped = np.random.default_rng([4, 0, row, 17]).random() < 0.5
        want = want[::-1] if flipped else want
        orders.add(flipped)
        np.testing.assert_allclose(image[1].numpy(), want[0], atol=1e-5)
        np.testing.assert_allclose(image[2].numpy(), want[1], atol=1e-5)
        torch.testing.assert_close(image, ds[i][0])  # replayable
    assert orders == {True, False}  # both z orders are drawn


def test_online_lesions_through_a_stack_are_one_3d_lesion_centred_near_the_middle_slice():
    size = 64
    y, x = np.mgrid[:size, :size]
    region = ((y - 32) ** 2 + (x - 32) ** 2 < 28 ** 2).astype(np.uint8)
    units = np.where(region > 0, 250 + np.random.default_rng(0).normal(0, 5, (size, size)), 0)
    image = (SCALE * units + OFFSET).astype(np.float32)
    stack = np.stack([image, image, image])
    regions = np.stack([region] * 3)
    lesions = np.zeros_like(regions)
    met = 0
    for seed in range(12):
        out, grown, count = paste_lesions(np.random.default_rng(seed), stack, lesions, regions, SCALE, OFFSET, "brain", 1)
        assert out.shape == stack.shape and grown.shape == lesions.shape
        if not count:
            continue
        assert not np.any((out != stack) & (grown == 0))  # only lesion pixels change, in every slice
        assert grown[1].any()  # the middle slice always cuts the lesion
        # one lesion: where a neighbour holds it, it overlaps the middle slice's section
        for k in (0, 2):
            if grown[k].any():
                met += 1
                assert (grown[k] & grown[1]).any()
    assert met > 0  # lesions reach the neighbours too (they are 3-D)
    # a one-slice crop is unchanged by the stack support: the same draw as before
    one, grown_one, _ = paste_lesions(np.random.default_rng(5), image, lesions[0], region, SCALE, OFFSET, "brain", 1)
    assert one.shape == image.shape and grown_one.shape == region.shape


def test_with_neighbours_puts_the_slice_first_and_background_beyond_the_volume():
    volume = np.arange(4, dtype=np.float32)[:, None, None] * np.ones((4, 3, 3), np.float32)
    out = with_neighbours(volume, np.array([0, 2, 3]), 1)
    assert out.shape == (3, 3, 3, 3)
    np.testing.assert_array_equal(out[:, :, 0, 0], [[0, -1, 1], [2, 1, 3], [3, 2, -1]])
    np.testing.assert_array_equal(with_neighbours(volume, np.array([1]), 0)[:, :, 0, 0], [[1]])


def test_volume_synthesis_feeds_a_context_generator_each_slices_neighbours():
    from pseudohealthy.config import ModelConfig
    from pseudohealthy.models import build_generator

    cfg = ModelConfig(seg_base=4, seg_depth=2, seg_max_channels=8, gen_gate=True, gen_arch="unet", gen_gate_fill=True,
                      gen_gate_hard=True, gen_gate_refine=False, gen_gate_context=1)
    gen = build_generator(cfg).eval()
    seen = []
    gen.net.register_forward_pre_hook(lambda _m, args: seen.append(args[0].clone()))
    volume = np.random.default_rng(0).uniform(-1, 1, (5, 16, 16)).astype(np.float32)
    out = generate_slices(gen, volume, torch.device("cpu"), batch_size=2)
    assert out.shape == volume.shape
    inputs = torch.cat(seen)
    assert inputs.shape == (5, 3, 16, 16)
    np.testing.assert_allclose(inputs[3, 1].numpy(), volume[2])
    np.testing.assert_allclose(inputs[3, 2].numpy(), volume[4])
    with pytest.raises(ValueError, match="3 channels"):
        gen(torch.zeros(1, 1, 16, 16))
