"""Classical lesion fills (mean, median, biharmonic, three-plane biharmonic, Telea, Navier-Stokes): arrays, files and the CLI."""
from __future__ import annotations

import json

import nibabel as nib
import numpy as np
import pytest

from pseudohealthy.errors import UserError
from pseudohealthy.inference.fills import KINDS, fill_lesion, write_fill, write_fills
from pseudohealthy.metrics.counterfeits import fill_lesion_with_normal_mean

SLICE_KINDS = [k for k in KINDS if k != "mean"]


def _textured(shape=(40, 40, 5), seed=0):
    """A textured disc 'organ' on a zero background with a bright lesion inside it."""
    rng = np.random.default_rng(seed)
    x, y, _ = np.meshgrid(*[np.arange(s) for s in shape], indexing="ij")
    region = (x - 20) ** 2 + (y - 20) ** 2 < 17**2
    image = np.where(region, 300 + 40 * np.sin(x / 3.0) + rng.normal(0, 8, shape), 0).astype(np.float32)
    lesion = ((x - 18) ** 2 + (y - 22) ** 2 < 6**2) & (np.arange(shape[2]) > 0)[None, None, :]
    image[lesion] += 400
    return image, lesion, region


@pytest.mark.parametrize("kind", KINDS)
def test_only_lesion_voxels_change(kind):
    image, lesion, region = _textured()
    out = fill_lesion(image, lesion, region, kind)
    assert out.dtype == np.float32 and out.shape == image.shape
    np.testing.assert_array_equal(out[~lesion], image[~lesion])  # bit-identical
    # the bright lesion is gone: every fill lands within the normal tissue's range
    normal = image[region & ~lesion]
    assert normal.min() - 1 <= out[lesion].min() and out[lesion].max() <= normal.max() + 1


@pytest.mark.parametrize("kind", KINDS)
def test_volume_without_lesion_is_unchanged(kind):
    image, _, region = _textured()
    out = fill_lesion(image, np.zeros(image.shape, bool), region, kind)
    np.testing.assert_array_equal(out, image)


def test_biharmonic_reproduces_a_linear_ramp():
    x, y, z = np.meshgrid(np.arange(48), np.arange(48), np.arange(3), indexing="ij")
    ramp = (100 + 7.0 * x - 3.0 * y + 10.0 * z).astype(np.float32)
    lesion = np.zeros(ramp.shape, bool)
    lesion[15:30, 18:33, :] = True
    out = fill_lesion(ramp, lesion, np.ones(ramp.shape, bool), "biharmonic")
    np.testing.assert_allclose(out[lesion], ramp[lesion], atol=1e-2)
    # Telea is not exact for a ramp: the test can tell the two apart
    assert np.abs(fill_lesion(ramp, lesion, np.ones(ramp.shape, bool), "telea") - ramp)[lesion].max() > 1.0


def test_three_plane_biharmonic_reproduces_a_3d_ramp():
    x, y, z = np.meshgrid(np.arange(32), np.arange(32), np.arange(20), indexing="ij")
    ramp = (100 + 7.0 * x - 3.0 * y + 10.0 * z).astype(np.float32)
    lesion = np.zeros(ramp.shape, bool)
    lesion[10:20, 12:22, 6:13] = True
    out = fill_lesion(ramp, lesion, np.ones(ramp.shape, bool), "biharmonic3")
    np.testing.assert_allclose(out[lesion], ramp[lesion], atol=2e-2)


def test_three_plane_biharmonic_fills_a_slice_whose_tissue_is_all_lesion_from_the_slices_around():
    """The axial fill has no tissue beside slice 3's lesion and keeps the volume mean; the coronal and
    sagittal fills see slices 2 and 4."""
    z = np.arange(8)[None, None, :]
    image = np.broadcast_to(100.0 + 10.0 * z, (24, 24, 8)).astype(np.float32).copy()
    region = np.zeros(image.shape, bool)
    region[4:20, 4:20, :] = True
    lesion = np.zeros(image.shape, bool)
    lesion[4:20, 4:20, 3] = True
    truth = image.copy()
    image[lesion] = 900.0
    error = {kind: float(np.abs(fill_lesion(image, lesion, region, kind) - truth)[lesion].mean())
             for kind in ("biharmonic", "biharmonic3")}
    assert error["biharmonic3"] < 0.5 * error["biharmonic"], error


@pytest.mark.parametrize("kind", SLICE_KINDS)
@pytest.mark.parametrize("value", [0.75, 123.456, 2500.0])
def test_constant_image_gives_that_constant(kind, value):
    image = np.full((32, 32, 3), value, np.float32)
    lesion = np.zeros(image.shape, bool)
    lesion[8:20, 10:24, :] = True
    out = fill_lesion(image, lesion, np.ones(image.shape, bool), kind)
    np.testing.assert_allclose(out[lesion], value, rtol=1e-6, atol=1e-6)


def test_mean_equals_the_normal_tissue_mean():
    image, lesion, region = _textured(seed=1)
    out = fill_lesion(image, lesion, region, "mean")
    np.testing.assert_allclose(out[lesion], image[region & ~lesion].astype(np.float64).mean(), rtol=1e-6)
    np.testing.assert_array_equal(out, fill_lesion_with_normal_mean(image, lesion, region))


@pytest.mark.parametrize("kind", SLICE_KINDS)
def test_background_does_not_bleed_into_a_lesion_at_the_border(kind):
    """A lesion touching the organ's edge is filled from tissue only, not darkened by the zero background."""
    x, y, _ = np.meshgrid(np.arange(48), np.arange(48), np.arange(2), indexing="ij")
    region = (x - 24) ** 2 + (y - 24) ** 2 < 20**2
    image = np.where(region, 300.0, 0.0).astype(np.float32)
    lesion = region & ((x - 40) ** 2 + (y - 24) ** 2 < 6**2)
    image[lesion] = 900
    out = fill_lesion(image, lesion, region, kind)
    np.testing.assert_allclose(out[lesion], 300.0, rtol=1e-5)


def test_median_takes_the_ring_around_the_lesion():
    image = np.zeros((40, 40, 1), np.float32)
    image[:20] = 100  # near the lesion
    image[20:] = 500  # far side, larger area
    lesion = np.zeros(image.shape, bool)
    lesion[8:12, 8:12] = True
    out = fill_lesion(image, lesion, np.ones(image.shape, bool), "median")
    np.testing.assert_array_equal(out[lesion], 100)


def test_unknown_kind_is_refused():
    image, lesion, region = _textured()
    with pytest.raises(UserError, match="'blur' is unknown"):
        fill_lesion(image, lesion, region, "blur")


@pytest.mark.parametrize("kind", ["biharmonic", "telea"])
def test_write_fill_keeps_geometry_header_and_outside(tiny_brats, tmp_path, kind):
    out = tmp_path / kind
    written = write_fill(tiny_brats, kind, out, cases=["Case000", "Case005"], progress=False)
    assert sorted(p.name for p in written) == ["Case000.nii.gz", "Case005.nii.gz"]
    for case in ("Case000", "Case005"):  # Case005 has no lesion
        src = nib.load(str(tiny_brats / case / f"{case}_t2.nii.gz"))
        filled = nib.load(str(out / f"{case}.nii.gz"))
        np.testing.assert_array_equal(filled.affine, src.affine)
        assert filled.shape == src.shape and filled.header.get_zooms() == src.header.get_zooms()
        assert filled.header.get_xyzt_units() == src.header.get_xyzt_units()
        seg = np.asarray(nib.load(str(tiny_brats / case / f"{case}_seg.nii.gz")).dataobj) > 0
        data, orig = np.asarray(filled.dataobj), np.asarray(src.dataobj).astype(np.float32)
        np.testing.assert_array_equal(data[~seg], orig[~seg])
        if seg.any():
            assert data[seg].mean() < orig[seg].mean() - 100  # the bright lesion was filled
    settings = json.loads((out / "fill.json").read_text())
    assert settings["kind"] == kind and settings["cases"] == ["Case000", "Case005"]
    assert set(settings["seconds_per_case"]) == {"Case000", "Case005"}


def test_write_fills_reuses_a_matching_folder(tiny_brats, tmp_path):
    folders = write_fills(tiny_brats, ["mean", "ns"], tmp_path / "fills", cases=["Case001"], progress=False)
    assert folders == {"mean": tmp_path / "fills" / "mean", "ns": tmp_path / "fills" / "ns"}
    stamp = (folders["ns"] / "Case001.nii.gz").stat().st_mtime_ns
    write_fills(tiny_brats, ["ns"], tmp_path / "fills", cases=["Case001"], progress=False)
    assert (folders["ns"] / "Case001.nii.gz").stat().st_mtime_ns == stamp
    with pytest.raises(UserError, match="--overwrite"):  # a case it lacks: rewriting needs --overwrite
        write_fills(tiny_brats, ["ns"], tmp_path / "fills", cases=["Case001", "Case002"], progress=False)


def test_fill_cli_writes_and_refuses(cli, tiny_brats, tmp_path):
    out = tmp_path / "telea"
    result = cli(["fill", "--data", tiny_brats, "--kind", "telea", "--output", out, "--cases", "Case000,Case001"])
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in out.glob("*.nii.gz")) == ["Case000.nii.gz", "Case001.nii.gz"]
    again = cli(["fill", "--data", tiny_brats, "--kind", "telea", "--output", out])
    assert again.exit_code == 2 and "--overwrite" in again.output
    replaced = cli(["fill", "--data", tiny_brats, "--kind", "mean", "--output", out, "--overwrite", "--cases", "Case002"])
    assert replaced.exit_code == 0 and json.loads((out / "fill.json").read_text())["kind"] == "mean"
    bad = cli(["fill", "--data", tiny_brats, "--kind", "blur", "--output", tmp_path / "x"])
    assert bad.exit_code == 2 and "blur" in bad.output and "Traceback" not in bad.output
    assert bad.output.strip().count("\n") == 0  # one sentence
    assert not (tmp_path / "x").exists()


@pytest.mark.realdata
def test_fills_on_the_real_case(real_brats):
    """The real BraTS case (40 tumour slices): only the tumour changes, and it is brought to the brain's level."""
    from pseudohealthy.data.case_writer import case_region
    from pseudohealthy.data.sources import find_cases, load_case

    case = load_case(find_cases(real_brats, source="brats")[0], "brats")
    image, lesion, region = case.image.data, case.lesion, case_region(case)
    normal_mean = image[region & ~lesion].mean()
    for kind in ("biharmonic", "telea"):
        out = fill_lesion(image, lesion, region, kind)
        np.testing.assert_array_equal(out[~lesion], image[~lesion])
        assert abs(out[lesion].mean() - normal_mean) < abs(image[lesion].mean() - normal_mean)
