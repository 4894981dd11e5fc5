"""Synthetic lesions pasted into training crops on the fly: where they go, what they look like, replay."""
from __future__ import annotations

import numpy as np
import pytest

from pseudohealthy.data.dataset import SliceDataset
from pseudohealthy.data.online_lesions import paste_lesions
from pseudohealthy.errors import UserError

SCALE, OFFSET = 2.0 / 600.0, -1.0  # normalised = SCALE * units + OFFSET: units 0..600 -> [-1, 1]


def brain_crop(size: int = 96, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A normalised 'brain' crop: textured tissue near 250 units in a disc, an own lesion at one side."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[:size, :size]
    region = ((y - size / 2) ** 2 + (x - size / 2) ** 2 < (0.45 * size) ** 2).astype(np.uint8)
    units = np.where(region > 0, 250 + 20 * np.sin(x / 5.0) + rng.normal(0, 5, (size, size)), 0)
    lesion = (((y - size / 2) ** 2 + (x - 0.25 * size) ** 2) < 36).astype(np.uint8) & region
    units[lesion > 0] = 500
    return (SCALE * units + OFFSET).astype(np.float32), lesion, region


def test_pasted_brain_lesions_are_bright_new_and_inside_the_tissue() -> None:
    image, lesion, region = brain_crop()
    out, grown, count = paste_lesions(np.random.default_rng(3), image, lesion, region, SCALE, OFFSET, "brain", 2)
    new = (grown > 0) & (lesion == 0)
    assert 1 <= count <= 2 and new.sum() >= 4
    assert np.all(grown[lesion > 0] == 1)  # the own lesion stays marked
    assert not np.any(new & (region == 0))  # only inside the organ
    changed = out != image
    assert not np.any(changed & ~new)  # only the new lesion's pixels change
    # T2 lesion model: edema multiplies the tissue by > 1 and the core is 1.7-2.9 x the tissue
    assert out[new].mean() > image[new].mean() + 0.1
    assert out.dtype == np.float32 and out.min() >= -1.0 and out.max() <= 1.0


def test_lesions_keep_their_margin_from_the_own_lesion() -> None:
    image, lesion, region = brain_crop()
    for seed in range(5):
        _, grown, _ = paste_lesions(np.random.default_rng(seed), image, lesion, region, SCALE, OFFSET, "brain", 2)
        new = np.argwhere((grown > 0) & (lesion == 0))
        own = np.argwhere(lesion > 0)
        distance = np.sqrt(((new[:, None, :] - own[None, :, :]) ** 2).sum(-1)).min()
        assert distance > 5.0  # the model's margin_mm, at 1 mm pixels


def test_same_generator_state_same_crop() -> None:
    image, lesion, region = brain_crop()
    first = paste_lesions(np.random.default_rng(7), image, lesion, region, SCALE, OFFSET, "brain", 3)
    second = paste_lesions(np.random.default_rng(7), image, lesion, region, SCALE, OFFSET, "brain", 3)
    other = paste_lesions(np.random.default_rng(8), image, lesion, region, SCALE, OFFSET, "brain", 3)
    assert first[0].tobytes() == second[0].tobytes() and first[1].tobytes() == second[1].tobytes()
    assert first[0].tobytes() != other[0].tobytes()


def test_a_crop_without_free_tissue_is_left_alone() -> None:
    image, lesion, region = brain_crop()
    everywhere = region.copy()
    out, grown, count = paste_lesions(np.random.default_rng(0), image, everywhere, region, SCALE, OFFSET, "brain", 2)
    assert count == 0 and out is image and grown is everywhere
    background = np.full_like(image, -1.0)
    empty = np.zeros_like(region)
    assert paste_lesions(np.random.default_rng(0), background, empty, empty, SCALE, OFFSET, "brain", 2)[2] == 0


def test_liver_lesions_are_darker_than_the_liver() -> None:
    low, high = -200.0, 250.0
    scale, offset = 2.0 / (high - low), -1.0 - low * 2.0 / (high - low)
    size = 96
    rng = np.random.default_rng(1)
    y, x = np.mgrid[:size, :size]
    region = ((y - 48) ** 2 + (x - 48) ** 2 < 40 ** 2).astype(np.uint8)
    hu = np.where(region > 0, 60 + rng.normal(0, 5, (size, size)), -150)
    image = (scale * hu + offset).astype(np.float32)
    out, grown, count = paste_lesions(np.random.default_rng(2), image, np.zeros_like(region), region, scale, offset, "liver", 1)
    new = grown > 0
    assert count == 1 and new.sum() > 0
    assert (out[new].mean() - image[new].mean()) / scale < -10  # at least 10 HU darker (model: 20-60)


@pytest.fixture
def cache(tmp_path, brats_writer, build_cache):
    root = tmp_path / "b"
    for i in range(3):
        brats_writer(root, f"C{i:02d}", shape=(64, 64, 6), seed=i)
    out, _ = build_cache(root, test_fraction=0.0)
    return out


def test_dataset_pastes_replayably_and_only_grows_the_masks(cache) -> None:
    plain = SliceDataset(cache, "train", seed=4, crop_size=48, intensity_augment=True)
    online = SliceDataset(cache, "train", seed=4, crop_size=48, intensity_augment=True, online_lesions=1.0)
    again = SliceDataset(cache, "train", seed=4, crop_size=48, intensity_augment=True, online_lesions=1.0)
    grew = 0
    for i in range(len(plain)):
        image, lesion, region = (t.numpy() for t in plain[i][:3])
        image_o, lesion_o, region_o = (t.numpy() for t in online[i][:3])
        assert np.array_equal(region, region_o)
        assert np.all(lesion_o >= lesion)  # pasting only adds lesion pixels
        assert np.array_equal(image[lesion_o == lesion], image_o[lesion_o == lesion])  # nothing else changes
        assert np.array_equal(image_o, again[i][0].numpy()) and np.array_equal(lesion_o, again[i][1].numpy())
        grew += int((lesion_o > lesion).any())
    assert grew >= len(plain) // 3  # most crops of these brains have room for a lesion


def test_dataset_refuses_a_bad_online_setting(cache) -> None:
    with pytest.raises(UserError, match="online lesions"):
        SliceDataset(cache, "train", online_lesions=1.5)
    with pytest.raises(UserError, match="at least 1"):
        SliceDataset(cache, "train", online_lesions=0.5, online_max_lesions=0)
