"""One volume to working-size slices and back: clipping, normalisation, geometry, residual inversion."""
from __future__ import annotations

import numpy as np
import pytest

from pseudohealthy.config import PreprocessConfig
from pseudohealthy.data.preprocessing import (
    make_geometry,
    normalise_like,
    prepare_mask,
    prepare_volume,
    residual_to_input_units,
    to_input_units,
)
from pseudohealthy.errors import UserError


def brain_volume(shape=(40, 40, 6), seed: int = 0) -> np.ndarray:
    """An MR-like volume: background 0 (and a few negatives), a brain of positive values with outliers."""
    rng = np.random.default_rng(seed)
    x, y = np.meshgrid(np.linspace(-1, 1, shape[0]), np.linspace(-1, 1, shape[1]), indexing="ij")
    brain = (x**2 + y**2 < 0.7)[:, :, None] & np.ones(shape, bool)
    img = np.where(brain, rng.uniform(100, 1000, shape), 0.0)
    img[~brain] -= rng.uniform(0, 3, shape)[~brain] * (rng.random(shape)[~brain] < 0.1)
    img[shape[0] // 2, shape[1] // 2, :] = 5000  # hot outliers the percentile clip must cut
    return img.astype(np.float32)


def test_percentile_clip_is_the_995th_percentile_of_brain_voxels():
    img = brain_volume()
    prepared = prepare_volume(img, PreprocessConfig())
    expected = np.percentile(img[img > 0], 99.5)
    assert prepared.clip[0] == 0.0
    assert prepared.clip[1] == pytest.approx(expected, rel=1e-6)
    assert prepared.clip[1] < 5000  # the outliers are clipped


def test_median_clip_puts_the_bulk_of_tissue_at_one_place_whatever_the_bright_tail():
    """Two scans of the same tissue whose bright tail (CSF, lesions) differs: the median scaling puts
    their normal tissue at the same normalised value (-0.5), the percentile scaling does not."""
    rng = np.random.default_rng(0)
    tissue = rng.normal(300, 30, (30, 30, 4)).clip(1)
    dim, bright = tissue.copy(), tissue.copy()
    dim[:2] = 700  # CSF at 2.3x tissue in one scan...
    bright[:2] = 1300  # ...at 4.3x in the other
    levels = {}
    for mode in ("median", "percentile"):
        for name, img in (("dim", dim), ("bright", bright)):
            prepared = prepare_volume(img.astype(np.float32), PreprocessConfig(intensity=mode))
            levels[mode, name] = float(np.median(prepared.slices[:, 5:, :]))
    assert levels["median", "dim"] == pytest.approx(-0.5, abs=0.02)
    assert levels["median", "bright"] == pytest.approx(-0.5, abs=0.02)
    assert abs(levels["percentile", "dim"] - levels["percentile", "bright"]) > 0.2
    prepared = prepare_volume(dim.astype(np.float32), PreprocessConfig(intensity="median"))
    assert prepared.clip == (0.0, pytest.approx(4 * np.median(dim)))


@pytest.mark.parametrize("normalization", ["volume", "zscore-slice"])
def test_range_background_and_affine_map_per_slice(normalization):
    img = brain_volume()
    prepared = prepare_volume(img, PreprocessConfig(normalization=normalization))
    s = prepared.slices
    assert s.dtype == np.float32 and s.shape == (6, 40, 40)
    assert s.min() == -1.0 and s.max() == pytest.approx(1.0, abs=1e-6)
    brain = np.moveaxis(img > 0, 2, 0)
    assert np.all(s[~brain] == -1.0)  # background is exactly -1
    clipped = np.moveaxis(np.clip(img, *prepared.clip), 2, 0)
    predicted = prepared.scale[:, None, None] * clipped + prepared.offset[:, None, None]
    np.testing.assert_allclose(s[brain], predicted[brain], atol=1e-5)
    np.testing.assert_array_equal(prepared.region, brain)


def test_volume_mode_shares_one_scale_and_zscore_mode_fills_each_slice():
    img = brain_volume()
    img[:, :, 0] *= 0.5  # a darker slice...
    img[20, 20, 0] = 300  # ...without its outlier
    vol = prepare_volume(img, PreprocessConfig(normalization="volume"))
    zsl = prepare_volume(img, PreprocessConfig(normalization="zscore-slice"))
    assert np.ptp(vol.scale) == 0
    brain = vol.region
    # the darker slice stays darker on the shared scale, about half-way down from slice 1
    assert np.median(vol.slices[0][brain[0]]) == pytest.approx((np.median(vol.slices[1][brain[1]]) - 1) / 2, abs=0.05)
    assert np.all(zsl.slices.reshape(6, -1).max(axis=1) == pytest.approx(1.0, abs=1e-6))
    assert np.all(zsl.slices.reshape(6, -1).min(axis=1) == -1.0)
    # each slice spans [brain minimum of the volume (the background fill), its own clipped maximum]
    clipped = np.clip(img, *zsl.clip)
    fill = clipped[img > 0].min()
    expected = 2 / (clipped.max(axis=(0, 1)) - fill)
    np.testing.assert_allclose(zsl.scale, expected, rtol=1e-6)
    assert zsl.scale[0] > 1.5 * zsl.scale[1]


@pytest.mark.parametrize("clip_range, low, high", [(None, -200.0, 250.0), ((-100.0, 100.0), -100.0, 100.0)])
def test_ct_range_clip(clip_range, low, high):
    rng = np.random.default_rng(1)
    img = rng.uniform(-1000, 1000, (32, 32, 4)).astype(np.float32)
    prepared = prepare_volume(img, PreprocessConfig(source="lits", clip_range=clip_range))
    assert prepared.clip == (low, high)
    expected = 2 * (np.clip(img, low, high) - low) / (high - low) - 1
    np.testing.assert_allclose(prepared.slices, np.moveaxis(expected, 2, 0), atol=1e-5)
    assert np.all(prepared.slices[np.moveaxis(img <= low, 2, 0)] == -1.0)
    assert np.all(prepared.slices[np.moveaxis(img >= high, 2, 0)] == pytest.approx(1.0, abs=1e-6))


@pytest.mark.parametrize(
    "shape, size, mode",
    [((40, 40, 3), 16, "resize"), ((48, 32, 3), 32, "resize"), ((30, 44, 3), 64, "resize"), ((40, 24, 3), 32, "crop"), ((48, 48, 3), None, "resize")],
)
def test_residual_inverts_working_size(shape, size, mode):
    img = brain_volume(shape)
    cfg = PreprocessConfig(working_size=size, resize_mode=mode)
    prepared = prepare_volume(img, cfg)
    working = size or shape[0]
    assert prepared.slices.shape == (shape[2], working, working if size else shape[1])
    zero = residual_to_input_units(np.zeros_like(prepared.slices), prepared)
    assert zero.shape == shape and np.all(zero == 0)
    const = residual_to_input_units(np.full_like(prepared.slices, 0.5), prepared)
    expected = np.broadcast_to(0.5 / prepared.scale[None, None, :], shape)
    if mode == "crop" and size is not None and size < max(shape[:2]):
        inside = const != 0  # cropped-away borders have no residual
        assert inside.mean() == pytest.approx(min(size, shape[0]) * min(size, shape[1]) / (shape[0] * shape[1]))
        np.testing.assert_allclose(const[inside], expected[inside], rtol=1e-5)
    else:
        np.testing.assert_allclose(const, expected, rtol=1e-5)


def test_resize_pads_non_square_to_keep_aspect():
    geometry = make_geometry((48, 32), PreprocessConfig(working_size=16))
    assert geometry.square == (48, 48) and geometry.pad == ((0, 0), (8, 8))
    img = brain_volume((48, 32, 2))
    prepared = prepare_volume(img, PreprocessConfig(working_size=16))
    assert np.all(prepared.slices[:, :, :2] == -1.0)  # the padded band is background


@pytest.mark.parametrize("normalization", ["volume", "zscore-slice"])
def test_to_input_units_inverts_the_map(normalization):
    img = brain_volume()
    prepared = prepare_volume(img, PreprocessConfig(normalization=normalization))
    back = to_input_units(prepared.slices, prepared)
    brain = img > 0
    np.testing.assert_allclose(back[brain], np.clip(img, *prepared.clip)[brain], rtol=1e-4, atol=0.05)


def test_lesion_mask_never_vanishes_when_downsized():
    img = brain_volume((64, 64, 3))
    prepared = prepare_volume(img, PreprocessConfig(working_size=16))
    lesion = np.zeros(img.shape, bool)
    lesion[30, 30, 1] = True  # one voxel, 1/16 of a working pixel
    lesion[10:30, 10:30, 2] = True
    small = prepare_mask(lesion, prepared)
    assert small.shape == (3, 16, 16)
    assert not small[0].any() and small[1].sum() >= 1
    assert small[2].sum() == pytest.approx(25, abs=6)  # 20x20 voxels -> 5x5 working pixels


def test_healthy_partner_uses_the_pathological_parameters():
    img = brain_volume()
    healthy = img.copy()
    healthy[15:20, 15:20, :] = 300  # the 'lesion' differs
    prepared = prepare_volume(img, PreprocessConfig())
    h = normalise_like(healthy, prepared, PreprocessConfig())
    same = np.moveaxis(healthy == img, 2, 0)
    np.testing.assert_array_equal(h[same], prepared.slices[same])
    expected = prepared.scale[0] * 300 + prepared.offset[0]
    assert h[0, 16, 16] == pytest.approx(expected, abs=1e-5)


@pytest.mark.parametrize(
    "fields, message",
    [
        ({"working_size": 40}, "multiple of 16"),
        ({"working_size": 8}, "multiple of 16"),
        ({"normalization": "minmax"}, "normalization"),
        ({"resize_mode": "stretch"}, "resize_mode"),
        ({"clip_range": (5.0, 1.0)}, "low < high"),
        ({"test_fraction": 1.0}, "test_fraction"),
    ],
)
def test_bad_parameters_refused(fields, message):
    with pytest.raises(UserError, match=message):
        prepare_volume(brain_volume(), PreprocessConfig(**fields))


def test_residual_of_wrong_shape_refused():
    prepared = prepare_volume(brain_volume(), PreprocessConfig(working_size=16))
    with pytest.raises(UserError, match="residual shape"):
        residual_to_input_units(np.zeros((6, 32, 32), np.float32), prepared)


def _reference_code_slices(img: np.ndarray) -> np.ndarray:
    """The reference code's steps, written out with numpy: integer-histogram 99.5% clip over every voxel,
    z-score over voxels > 0 (0 elsewhere), then min-max of each slice to [-1, 1]; ``(Z, X, Y)``."""
    values, counts = np.unique(np.trunc(img), return_counts=True)
    cumulative = np.cumsum(counts) / img.size
    clip = values[np.argmax(cumulative > 0.995)]
    clipped = np.where(img > clip, clip, img)
    mask = clipped > 0
    z = (clipped - clipped[mask].mean()) / clipped[mask].std(ddof=1) * mask
    z = np.moveaxis(z, 2, 0)
    low, high = z.min(axis=(1, 2), keepdims=True), z.max(axis=(1, 2), keepdims=True)
    return ((z - low) / (high - low) - 0.5) * 2


def test_reference_normalization_reproduces_the_reference_code():
    img = brain_volume()
    img[:, :, 0] *= 0.5  # a darker slice
    prepared = prepare_volume(img, PreprocessConfig(normalization="reference"))
    expected = _reference_code_slices(img)
    np.testing.assert_allclose(prepared.slices, expected, atol=1e-5)
    brain = np.moveaxis(img > 0, 2, 0)
    assert np.all(prepared.slices[~brain] > -0.9)  # background is the mean's grey, not -1
    assert prepared.clip[1] < 1000  # 0.5% of all voxels lie above it: the outliers and the brightest brain
    back = to_input_units(prepared.slices, prepared)
    np.testing.assert_allclose(back[img > 0], np.clip(img, *prepared.clip)[img > 0], rtol=1e-4, atol=0.05)
