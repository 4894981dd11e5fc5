"""The real BraTS case (TCGA-DU-7294, TCIA TCGA-LGG, CC BY 3.0): 240x240x155 T2, tumour on z 93..132."""
from __future__ import annotations

import numpy as np
import pytest

from pseudohealthy.config import PreprocessConfig
from pseudohealthy.data.cache import open_array, preprocess_dataset, read_fingerprint, read_slice_table
from pseudohealthy.data.dataset import SliceDataset
from pseudohealthy.data.nifti_io import load_nifti
from pseudohealthy.data.preprocessing import prepare_volume, residual_to_input_units

CASE = "TCGA-DU-7294"
SIZES = [None, 64]


@pytest.fixture(scope="module")
def real_caches(real_brats, tmp_path_factory):
    out = {}
    for size in SIZES:
        folder = tmp_path_factory.mktemp(f"real{size}")
        summary = preprocess_dataset(real_brats, folder / "cache", PreprocessConfig(working_size=size), progress=False)
        out[size] = (folder / "cache", summary)
    return out


@pytest.mark.realdata
@pytest.mark.parametrize("size", SIZES)
def test_real_case_slices_lesions_and_range(real_caches, size):
    cache, summary = real_caches[size]
    side = size or 240
    assert summary["cases"] == 1 and summary["slices"] == 155 and summary["lesion_slices"] == 40
    fp = read_fingerprint(cache)
    case = fp["cases"][CASE]
    assert case["shape"] == [240, 240, 155] and case["slices"] == [0, 154]
    assert case["lesion_slices"] == [93, 132]
    assert fp["working_size"] == [side, side]
    rows = read_slice_table(cache)
    assert [r.z for r in rows if r.has_lesion] == list(range(93, 133))
    images = open_array(cache, "images")
    assert images.shape == (155, side, side)
    assert images.min() == -1.0 and 0.99 < images.max() <= 1.0
    assert np.all(images[:, 0, :] == -1.0) and np.all(images[:, :, -1] == -1.0)  # background corners
    regions = open_array(cache, "regions").astype(bool)
    if size is None:
        assert np.all(images[~regions] == -1.0)  # outside the brain: exactly background
    else:
        assert np.mean(images[~regions] == -1.0) > 0.95  # only the brain's edge is blurred by resizing
    assert len(SliceDataset(cache, "all", lesion_only=True)) == 40


@pytest.mark.realdata
@pytest.mark.parametrize("size", SIZES)
def test_real_case_residual_back_to_input_units(real_brats, real_caches, size):
    cache, _ = real_caches[size]
    volume = load_nifti(real_brats / CASE / f"{CASE}_t2.nii.gz")
    prepared = prepare_volume(volume.data, PreprocessConfig(working_size=size))
    stored = np.array([r.scale for r in read_slice_table(cache)])
    np.testing.assert_allclose(prepared.scale, stored, rtol=1e-12)
    assert prepared.clip[1] == pytest.approx(np.percentile(volume.data[volume.data > 0], 99.5))
    zero = residual_to_input_units(np.zeros_like(prepared.slices), prepared)
    assert zero.shape == (240, 240, 155) and not zero.any()
    const = residual_to_input_units(np.full_like(prepared.slices, 0.2), prepared)
    np.testing.assert_allclose(const, 0.2 / stored[0], rtol=1e-5)
    assert 0.2 / stored[0] == pytest.approx(0.1 * prepared.clip[1], rel=1e-9)  # 0.2 of [-1, 1] is 10% of [0, V99.5]
