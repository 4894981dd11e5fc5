"""NIfTI I/O: canonical orientation in, the file's own orientation and affine out, clear errors."""
from __future__ import annotations

import gzip

import nibabel as nib
import numpy as np
import pytest
from nibabel.orientations import axcodes2ornt, io_orientation, ornt_transform

from pseudohealthy.data.nifti_io import canonical_shape, canonical_voxel_size, load_nifti, same_geometry, save_like, strip_nifti_suffix
from pseudohealthy.errors import UserError


def reoriented(img: nib.Nifti1Image, codes: tuple[str, str, str]) -> nib.Nifti1Image:
    return img.as_reoriented(ornt_transform(io_orientation(img.affine), axcodes2ornt(codes)))


@pytest.mark.parametrize("codes", [("L", "P", "S"), ("S", "R", "A"), ("P", "I", "L")])
def test_same_world_data_gives_same_canonical_array(tmp_path, codes):
    rng = np.random.default_rng(0)
    data = rng.normal(size=(6, 7, 5)).astype(np.float32)
    base = nib.Nifti1Image(data, np.diag([2.0, 1.0, 3.0, 1.0]))
    nib.save(base, tmp_path / "a.nii.gz")
    nib.save(reoriented(base, codes), tmp_path / "b.nii.gz")
    a, b = load_nifti(tmp_path / "a.nii.gz"), load_nifti(tmp_path / "b.nii.gz")
    assert nib.aff2axcodes(nib.load(tmp_path / "b.nii.gz").affine) == codes
    np.testing.assert_array_equal(a.data, b.data)
    assert canonical_shape(tmp_path / "b.nii.gz") == (6, 7, 5)


def test_save_like_restores_file_order_and_affine(tmp_path):
    data = np.arange(6 * 7 * 5, dtype=np.int16).reshape(6, 7, 5)
    affine = np.array([[0, 0, -2.0, 10], [1.0, 0, 0, -5], [0, -1.5, 0, 3], [0, 0, 0, 1]])
    nib.save(nib.Nifti1Image(data, affine), tmp_path / "in.nii.gz")
    vol = load_nifti(tmp_path / "in.nii.gz")
    out = save_like(vol.data * 0.5, vol, tmp_path / "out.nii.gz")
    written = nib.load(out)
    np.testing.assert_allclose(written.affine, affine)
    np.testing.assert_allclose(np.asanyarray(written.dataobj), data * 0.5)
    assert written.get_data_dtype() == np.float32
    assert same_geometry(vol, load_nifti(out))


def test_trailing_singleton_dimension_is_squeezed(tmp_path):
    nib.save(nib.Nifti1Image(np.ones((4, 5, 3, 1), np.float32), np.eye(4)), tmp_path / "x.nii")
    assert load_nifti(tmp_path / "x.nii").shape == (4, 5, 3)


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda p: nib.save(nib.Nifti1Image(np.ones((4, 5), np.float32), np.eye(4)), p), "expected a 3D image"),
        (lambda p: nib.save(nib.Nifti1Image(np.full((4, 5, 3), np.nan, np.float32), np.eye(4)), p), "NaN or infinite"),
        (lambda p: p.write_bytes(gzip.compress(b"not a nifti at all" * 50)), "corrupt or truncated"),
        (lambda p: p.write_bytes(b"\x00\x01garbage"), "corrupt or truncated"),
    ],
)
def test_bad_files_give_one_clear_sentence(tmp_path, make, message):
    path = tmp_path / "bad.nii.gz"
    make(path)
    with pytest.raises(UserError, match=message) as info:
        load_nifti(path)
    assert str(path) in str(info.value)


def test_truncated_gzip_is_reported(tmp_path):
    path = tmp_path / "t.nii.gz"
    nib.save(nib.Nifti1Image(np.random.default_rng(0).normal(size=(20, 20, 20)).astype(np.float32), np.eye(4)), path)
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(UserError, match="corrupt or truncated"):
        load_nifti(path)


def test_missing_file_and_suffixes(tmp_path):
    with pytest.raises(UserError, match="mask file not found"):
        load_nifti(tmp_path / "nope.nii.gz", "mask")
    assert strip_nifti_suffix("a_t2.nii.gz") == "a_t2" and strip_nifti_suffix("b.nii") == "b"


def test_canonical_voxel_size_follows_the_reoriented_axes(tmp_path):
    # file axes (i, j, k) of sizes (2, 4, 3) point along (-y, z, x): canonical (X, Y, Z) sizes are (3, 2, 4)
    affine = np.array([[0.0, 0.0, 3.0, 0.0], [-2.0, 0.0, 0.0, 0.0], [0.0, 4.0, 0.0, 0.0], [0, 0, 0, 1]])
    data = np.arange(5 * 6 * 7, dtype=np.float32).reshape(5, 6, 7)
    path = tmp_path / "oblique.nii.gz"
    nib.save(nib.Nifti1Image(data, affine), str(path))
    volume = load_nifti(path)
    np.testing.assert_allclose(canonical_voxel_size(volume.affine), [3.0, 2.0, 4.0])
    assert volume.data.shape == (7, 5, 6)  # the same reordering as the sizes: x <- k, y <- i, z <- j
