"""SliceDataset over the cache: items, splits, lesion-only, nested fractions, seeded augmentation."""
from __future__ import annotations

import pickle

import numpy as np
import pytest
import torch

from pseudohealthy.data.augment import AugmentParams, apply_augmentation, augmentation_rng, sample_augmentation
from pseudohealthy.data.cache import read_fingerprint
from pseudohealthy.data.dataset import SliceDataset
from pseudohealthy.data.splits import read_splits
from pseudohealthy.errors import UserError


@pytest.fixture
def cache(tmp_path, brats_writer, build_cache):
    root = tmp_path / "b"
    for i in range(10):
        brats_writer(root, f"C{i:02d}", shape=(32, 32, 8), seed=i, lesion=i != 9)
    out, _ = build_cache(root, working_size=16, test_fraction=0.2)
    return out


def test_item_types_shapes_and_ranges(cache):
    ds = SliceDataset(cache, "train")
    image, lesion, region, case_id, z = ds[0]
    assert image.dtype == lesion.dtype == region.dtype == torch.float32
    assert image.shape == lesion.shape == region.shape == (1, 16, 16)
    assert -1.0 <= image.min() and image.max() <= 1.0 and image.min() == -1.0
    assert set(torch.unique(lesion).tolist()) <= {0.0, 1.0} and set(torch.unique(region).tolist()) <= {0.0, 1.0}
    assert isinstance(case_id, str) and isinstance(z, int) and z == 0
    assert ds[-1][3] == ds.case_ids[-1]


@pytest.mark.parametrize("split", ["train", "test", "all"])
def test_splits_hold_their_cases_only(cache, split):
    ds = SliceDataset(cache, split)
    splits = read_splits(cache / "splits.json")
    expected = splits["train"] + splits["test"] if split == "all" else splits[split]
    assert ds.case_ids == sorted(expected)
    assert {ds.rows[i].case_id for i in range(len(ds))} == set(expected)
    assert len(ds) == 8 * len(expected)


def test_lesion_only_keeps_lesion_slices(cache):
    ds = SliceDataset(cache, "all", lesion_only=True)
    fp = read_fingerprint(cache)
    assert len(ds) == fp["n_lesion_slices"] > 0
    assert all(ds[i][1].sum() > 0 for i in range(len(ds)))
    assert "C09" not in {r.case_id for r in ds.rows}


def test_fraction_is_a_nested_seeded_subset(cache):
    full = SliceDataset(cache, "train")
    half = SliceDataset(cache, "train", fraction=0.5, seed=1)
    quarter = SliceDataset(cache, "train", fraction=0.25, seed=1)
    assert len(full.case_ids) == 8 and len(half.case_ids) == 4 and len(quarter.case_ids) == 2
    assert set(quarter.case_ids) < set(half.case_ids) < set(full.case_ids)
    assert SliceDataset(cache, "train", fraction=0.5, seed=1).case_ids == half.case_ids


def test_augmentation_replays_per_epoch_and_changes_between_epochs(cache):
    ds = SliceDataset(cache, "all", lesion_only=True, augment=True, seed=5)
    plain = SliceDataset(cache, "all", lesion_only=True)
    ds.set_epoch(0)
    first = [ds[i][0] for i in range(len(ds))]
    again = [ds[i][0] for i in range(len(ds))]
    ds.set_epoch(1)
    other = [ds[i][0] for i in range(len(ds))]
    assert all(torch.equal(a, b) for a, b in zip(first, again))
    assert sum(not torch.equal(a, b) for a, b in zip(first, other)) > len(ds) // 2
    assert sum(not torch.equal(a, plain[i][0]) for i, a in enumerate(first)) > len(ds) // 2
    for i in range(len(ds)):
        image, lesion, region, _, _ = ds[i]
        assert image.min() >= -1 and image.max() <= 1
        assert set(torch.unique(lesion).tolist()) <= {0.0, 1.0}


def test_flip_and_rotation_move_image_and_masks_together():
    image = np.full((16, 16), -1.0, np.float32)
    image[2:6, 9:13] = 0.8
    mask = (image > 0).astype(np.uint8)
    out, out_mask = apply_augmentation(AugmentParams(flip_h=True), image, mask)
    np.testing.assert_array_equal(out, image[::-1])
    np.testing.assert_array_equal(out_mask, mask[::-1])
    out, out_mask = apply_augmentation(AugmentParams(angle=90.0), image, mask)
    np.testing.assert_allclose(out, np.rot90(image), atol=1e-5)
    np.testing.assert_array_equal(out_mask, np.rot90(mask))


def test_sampled_parameters_are_seeded_and_bounded():
    params = [sample_augmentation(augmentation_rng(0, e, i)) for e in range(5) for i in range(20)]
    assert all(-10 <= p.angle <= 10 for p in params)
    assert 20 < sum(p.flip_h for p in params) < 80 and not any(p.flip_w for p in params)
    assert sample_augmentation(augmentation_rng(0, 3, 7)) == sample_augmentation(augmentation_rng(0, 3, 7))


def test_zoom_is_drawn_last_bounded_and_moves_image_and_mask_alike():
    """augment_scale draws a zoom after the old draws (runs without it replay as before), within
    [1 / (1 + s), 1 + s] per axis; the zoom enlarges along its axis and keeps the mask on the image."""
    for e, i in [(0, 1), (2, 5), (4, 9)]:
        old = sample_augmentation(augmentation_rng(0, e, i))
        zoomed = sample_augmentation(augmentation_rng(0, e, i), max_scale=0.2)
        assert (zoomed.flip_h, zoomed.flip_w, zoomed.angle) == (old.flip_h, old.flip_w, old.angle)
        assert old.scale == (1.0, 1.0)
    zooms = np.array([sample_augmentation(augmentation_rng(0, 0, i), max_scale=0.2).scale for i in range(200)])
    assert zooms.min() >= 1 / 1.2 - 1e-9 and zooms.max() <= 1.2 + 1e-9 and zooms.std() > 0.05
    image = np.full((40, 40), -1.0, np.float32)
    image[15:25, 18:22] = 1.0
    mask = (image > 0).astype(np.uint8)
    out, out_mask = apply_augmentation(AugmentParams(scale=(1.5, 1.0)), image, mask)
    rows, cols = np.nonzero(out_mask)
    assert rows.max() - rows.min() + 1 == 15 and cols.max() - cols.min() + 1 == 4  # 10 rows x 1.5, columns kept
    bright_rows = np.nonzero((out > 0).any(1))[0]  # the image (linear) spans the mask's rows (nearest), +-1
    assert abs(bright_rows.min() - rows.min()) <= 1 and abs(bright_rows.max() - rows.max()) <= 1
    assert ((out > 0) == (out_mask > 0)).mean() > 0.97
    rotated_zoomed, rz_mask = apply_augmentation(AugmentParams(angle=90.0, scale=(1.0, 2.0)), image, mask)
    rows, cols = np.nonzero(rz_mask)
    assert rows.max() - rows.min() + 1 == 4 and cols.max() - cols.min() + 1 == 20  # rotated (4 x 10), then zoomed


def test_elastic_warp_is_drawn_last_smooth_bounded_and_moves_image_and_mask_alike():
    """augment_elastic draws its control grid after every other draw (runs without it replay as
    before); its control points move within the bound, the warp is smooth (neighbours move alike), is
    the affine transform when the grid is zero, and keeps the mask on the image."""
    from dataclasses import replace

    for e, i in [(0, 1), (2, 5)]:
        old = sample_augmentation(augmentation_rng(0, e, i), max_scale=0.2)
        warped = sample_augmentation(augmentation_rng(0, e, i), max_scale=0.2, elastic=6.0, size=48)
        assert replace(warped, elastic=()) == old and old.elastic == ()
        assert len(warped.elastic) == 2 and max(abs(v) for axis in warped.elastic for v in axis) <= 6.0
    from pseudohealthy.data.augment import _sampling_coordinates

    params = sample_augmentation(augmentation_rng(0, 0, 3), max_angle=0.0, p_flip_h=0.0, elastic=6.0, size=48)
    shift = _sampling_coordinates(params, (48, 48)) - np.indices((48, 48))
    # an interpolating cubic spline overshoots its control values between them (<= 1.6x over 600 draws)
    assert 0.5 < np.abs(shift).max() <= 6.0 * 1.7
    assert np.abs(np.diff(shift, axis=1)).max() < 1.0 and np.abs(np.diff(shift, axis=2)).max() < 1.0
    image = np.full((48, 48), -1.0, np.float32)
    image[14:34, 18:30] = 1.0
    mask = (image > 0).astype(np.uint8)
    out, out_mask = apply_augmentation(params, image, mask)
    assert ((out > 0) == (out_mask > 0)).mean() > 0.97 and (out_mask != mask).any()
    zero = replace(params, angle=30.0, scale=(1.2, 0.9), elastic=tuple((0.0,) * len(params.elastic[0]) for _ in range(2)))
    for a, b in zip(apply_augmentation(zero, image, mask), apply_augmentation(replace(zero, elastic=()), image, mask)):
        np.testing.assert_allclose(a, b, atol=1e-5)


def test_dataloader_batches_pickling_and_healthy_missing(cache):
    ds = SliceDataset(cache, "train", lesion_only=True)
    ds[0]  # opens the memory maps
    clone = pickle.loads(pickle.dumps(ds))  # what a spawned worker receives: no array copies
    assert len(pickle.dumps(ds)) < 20_000 and torch.equal(clone[1][0], ds[1][0])
    loader = torch.utils.data.DataLoader(ds, batch_size=4, num_workers=0)
    images, lesions, regions, case_ids, zs = next(iter(loader))
    assert images.shape == (4, 1, 16, 16) and len(case_ids) == 4 and zs.dtype == torch.int64
    with pytest.raises(UserError, match="no true healthy"):
        ds.healthy(0)


def test_not_a_cache_and_bad_split_refused(tmp_path, cache):
    with pytest.raises(UserError, match="not found"):
        SliceDataset(tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError, match="not a complete slice cache"):
        SliceDataset(tmp_path / "empty")
    with pytest.raises(UserError, match="split 'val'"):
        SliceDataset(cache, "val")


def test_augmentation_warps_image_truth_and_masks_once_and_alike(tmp_path):
    """Flips and rotations move the image, its true healthy slice and both masks by the same warp,
    applied once. (It once warped the image twice when a truth was present: image and truth disagreed
    on half of the normal tissue, which taught the generator to change healthy tissue.)"""
    from pseudohealthy.config import PreprocessConfig
    from pseudohealthy.data.cache import preprocess_dataset
    from pseudohealthy.data.phantom import generate_phantom

    generate_phantom(tmp_path / "phantom", cases=2, seed=1, shape=(32, 32, 16), progress=False)
    preprocess_dataset(tmp_path / "phantom", tmp_path / "cache", PreprocessConfig(source="brats", test_fraction=0.5), progress=False)
    plain = SliceDataset(tmp_path / "cache", "train", lesion_only=True, with_healthy=True)
    warped = SliceDataset(tmp_path / "cache", "train", lesion_only=True, with_healthy=True, augment=True)
    rotated = 0
    for i in range(len(plain)):
        row = int(warped._indices[i])
        params = sample_augmentation(augmentation_rng(warped.seed, warped.epoch, row))
        rotated += params.angle != 0
        image, lesion, region, _, _, healthy = plain[i]
        want_image, want_lesion, want_region = apply_augmentation(params, image[0].numpy(), lesion[0].numpy(), region[0].numpy())
        want_healthy = apply_augmentation(params, healthy[0].numpy())[0]
        got_image, got_lesion, got_region, _, _, got_healthy = warped[i]
        np.testing.assert_array_equal(got_image[0].numpy(), want_image)
        np.testing.assert_array_equal(got_healthy[0].numpy(), want_healthy)
        np.testing.assert_array_equal(got_lesion[0].numpy(), want_lesion)
        np.testing.assert_array_equal(got_region[0].numpy(), want_region)
    assert rotated > 0
    # without with_healthy the truth is neither read nor warped (a fifth of an item's time), and the
    # items are the same: the augmentation never drew anything for it
    blind = SliceDataset(tmp_path / "cache", "train", lesion_only=True, augment=True)
    for i in range(len(blind)):
        np.testing.assert_array_equal(blind[i][0].numpy(), warped[i][0].numpy())
    assert "healthy" not in blind._arrays and "healthy" in warped._arrays
    np.testing.assert_array_equal(blind.healthy(0).numpy(), warped[0][5].numpy())


def test_a_crop_larger_than_the_slice_is_the_whole_slice(cache):
    ds = SliceDataset(cache, "train", crop_size=64)
    assert ds[0][0].shape == (1, 16, 16)
    with pytest.raises(UserError, match="crop size 0"):
        SliceDataset(cache, "train", crop_size=0)


def test_the_data_sets_mirror_channel_is_the_whole_slices_mirror_cut_like_the_image(tmp_path, brats_writer, build_cache):
    from pseudohealthy.mirror import mirror, reflect_slice, slice_midline

    root = tmp_path / "b"
    for i in range(3):
        brats_writer(root, f"C{i:02d}", shape=(32, 32, 6), seed=i, lesion=True)
    cache, _ = build_cache(root, working_size=32, test_fraction=0.34)
    plain = SliceDataset(cache, "train", crop_size=16, seed=3)
    mirrored = SliceDataset(cache, "train", crop_size=16, seed=3, mirror=True)
    whole = SliceDataset(cache, "train", mirror=True)
    for i in range(len(plain)):
        image, lesion = plain[i][0], plain[i][1]
        both = mirrored[i][0]
        assert both.shape == (2, 16, 16)
        torch.testing.assert_close(both[:1], image)  # the slice channel is the crop, unchanged
        torch.testing.assert_close(mirrored[i][1], lesion)
        full = whole[i][0]
        torch.testing.assert_close(full[1], mirror(full[None, :1])[0, 0])
        # the crop's mirror channel is a window of the whole slice's mirror, at the crop's place
        windows = full[1].unfold(0, 16, 1).unfold(1, 16, 1)
        assert any(torch.equal(windows[r, c], both[1]) for r in range(17) for c in range(17))
    # the mirror is taken of the cached slice, jittered by its own small warp (a real head's other side
    # never matches pixel for pixel), then warped with the image's transform
    from pseudohealthy.data.dataset import MIRROR_MAX_ANGLE, MIRROR_MAX_SCALE

    aug = SliceDataset(cache, "train", mirror=True, augment=True, augment_scale=0.2, augment_elastic=3.0, seed=1)
    i = next(k for k in range(len(aug)) if aug.rows[k].has_lesion)
    row = aug.rows[i].index
    cached = whole[i][0][0].numpy()
    params = sample_augmentation(augmentation_rng(1, 0, row), max_scale=0.2, elastic=3.0, size=32)
    own = sample_augmentation(np.random.default_rng([1, 0, row, 17]), max_angle=MIRROR_MAX_ANGLE, p_flip_h=0.0,
                              max_scale=MIRROR_MAX_SCALE, elastic=3.0, size=32)
    assert own != params
    jittered = apply_augmentation(own, reflect_slice(cached, slice_midline(cached)))[0]
    np.testing.assert_allclose(aug[i][0][1].numpy(), apply_augmentation(params, jittered)[0], atol=1e-6)
    np.testing.assert_allclose(aug[i][0][0].numpy(), apply_augmentation(params, cached)[0], atol=1e-6)


def test_a_window_of_the_warp_is_the_whole_slices_warp_cut_to_it():
    """apply_augmentation(window=...) resamples only the window's pixels: the same pixels as warping
    the whole slice and cutting, for flips, rotations, zooms and elastic warps alike."""
    rng = np.random.default_rng(0)
    image = rng.uniform(-1, 1, (60, 50)).astype(np.float32)
    mask = (rng.random((60, 50)) > 0.7).astype(np.uint8)
    window, cut = (7, 3, 32, 40), (slice(7, 39), slice(3, 43))
    for kwargs in (dict(max_scale=0.2, elastic=4.0, size=60), dict(max_scale=0.2), dict(), dict(max_angle=0.0)):
        for _ in range(8):
            params = sample_augmentation(rng, p_flip_w=0.5, **kwargs)
            whole, whole_mask = apply_augmentation(params, image, mask)
            part, part_mask = apply_augmentation(params, image, mask, window=window)
            assert part.shape == (32, 40) and part.dtype == np.float32 and part_mask.dtype == np.uint8
            np.testing.assert_allclose(part, whole[cut], atol=1e-5)
            np.testing.assert_array_equal(part_mask, whole_mask[cut])


def test_an_augmented_crop_is_placed_before_the_warp_and_keeps_the_lesion(tmp_path, brats_writer, build_cache):
    """With augmentation a crop is placed on the flipped, unwarped slice and only its window is warped:
    the item equals the whole slice warped and cut at that corner, and a crop centred on a lesion
    pixel (before the warp) still holds the lesion after it (the corner follows the rotation and zoom)."""
    from pseudohealthy.data.augment import flip_slice

    root = tmp_path / "b"
    for i in range(3):
        brats_writer(root, f"C{i:02d}", shape=(48, 48, 6), seed=i, lesion=True)
    cache, _ = build_cache(root, working_size=48, test_fraction=0.34)
    plain = SliceDataset(cache, "train", lesion_only=True)
    kwargs = dict(lesion_only=True, augment=True, augment_scale=0.3, augment_elastic=3.0, crop_size=16,
                  lesion_crop_probability=1.0)
    ds = SliceDataset(cache, "train", **kwargs)
    held = 0
    for i in range(len(ds)):
        row = int(ds._indices[i])
        params = sample_augmentation(augmentation_rng(ds.seed, ds.epoch, row), max_scale=0.3, elastic=3.0, size=48)
        image, lesion, region = (plain[i][k][0].numpy() for k in range(3))
        lesion, region = lesion.astype(np.uint8), region.astype(np.uint8)
        top, left = ds._crop_corner(row, flip_slice(params, lesion), flip_slice(params, region), params)
        want = apply_augmentation(params, image, lesion, region)
        cut = (slice(top, top + 16), slice(left, left + 16))
        item = ds[i]
        np.testing.assert_allclose(item[0][0].numpy(), want[0][cut], atol=1e-5)
        np.testing.assert_array_equal(item[1][0].numpy(), want[1][cut])
        held += bool(item[1].sum() > 0)
    assert held >= 0.8 * len(ds)
