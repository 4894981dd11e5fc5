"""Counterfeit pseudo-healthy volumes (paper Fig. 6): arrays, files and the CLI."""
from __future__ import annotations

import json

import nibabel as nib
import numpy as np
import pytest

from pseudohealthy.metrics.counterfeits import add_lesion_noise, fill_lesion_with_normal_mean, make_counterfeit, write_counterfeits


def _volume(seed=0, shape=(40, 40, 6)):
    rng = np.random.default_rng(seed)
    image = 200 + 30 * rng.standard_normal(shape)
    region = np.zeros(shape, bool)
    region[4:-4, 4:-4] = True
    image[~region] = 0
    lesion = np.zeros(shape, bool)
    lesion[10:30, 12:28, 1:5] = True
    image[lesion] += 500
    return image, lesion, region


def test_mean_fill_uses_the_normal_tissue_mean_and_keeps_the_rest():
    image, lesion, region = _volume()
    out = fill_lesion_with_normal_mean(image, lesion, region)
    expected = image[region & ~lesion].mean()
    np.testing.assert_allclose(out[lesion], expected, rtol=1e-6)
    np.testing.assert_array_equal(out[~lesion], image[~lesion].astype(np.float32))
    assert out.dtype == np.float32


@pytest.mark.parametrize("scale", [2.0 / 700.0, 0.01])
def test_noise_has_variance_02_on_the_normalised_scale(scale):
    image, lesion, _ = _volume(1)
    out = add_lesion_noise(image, lesion, np.full(image.shape[2], scale), np.random.default_rng(0))
    noise_normalised = (out[lesion] - image[lesion].astype(np.float32)) * scale
    assert noise_normalised.var() == pytest.approx(0.2, rel=0.05)
    assert abs(noise_normalised.mean()) < 0.03
    np.testing.assert_array_equal(out[~lesion], image[~lesion].astype(np.float32))


def test_noise_is_seeded_and_kind_is_checked():
    image, lesion, region = _volume(2)
    a = make_counterfeit(image, lesion, region, "noise", 0.01, seed=3)
    b = make_counterfeit(image, lesion, region, "noise", 0.01, seed=3)
    c = make_counterfeit(image, lesion, region, "noise", 0.01, seed=4)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    from pseudohealthy.errors import UserError

    with pytest.raises(UserError, match="unknown"):
        make_counterfeit(image, lesion, region, "blur")


def test_write_counterfeits_keeps_geometry_and_layout(tiny_brats, tmp_path):
    out = tmp_path / "mean"
    written = write_counterfeits(tiny_brats, "mean", out, cases=["Case000", "Case001"], progress=False)
    assert sorted(p.name for p in written) == ["Case000.nii.gz", "Case001.nii.gz"]
    src = nib.load(str(tiny_brats / "Case000" / "Case000_t2.nii.gz"))
    fake = nib.load(str(out / "Case000.nii.gz"))
    np.testing.assert_allclose(fake.affine, src.affine)
    assert fake.shape == src.shape
    seg = np.asarray(nib.load(str(tiny_brats / "Case000" / "Case000_seg.nii.gz")).dataobj) > 0
    data, orig = np.asarray(fake.dataobj), np.asarray(src.dataobj).astype(np.float32)
    np.testing.assert_array_equal(data[~seg], orig[~seg])
    assert np.unique(data[seg]).size == 1  # one fill value
    settings = json.loads((out / "counterfeit.json").read_text())
    assert settings["kind"] == "mean" and settings["cases"] == ["Case000", "Case001"]


def test_counterfeit_cli_writes_and_refuses(cli, tiny_brats, tmp_path):
    out = tmp_path / "noise"
    result = cli(["counterfeit", "--data", tiny_brats, "--kind", "noise", "--output", out, "--seed", "1"])
    assert result.exit_code == 0, result.output
    assert len(list(out.glob("*.nii.gz"))) == 6
    again = cli(["counterfeit", "--data", tiny_brats, "--kind", "noise", "--output", out])
    assert again.exit_code == 2 and "--overwrite" in again.output
    bad = cli(["counterfeit", "--data", tiny_brats, "--kind", "blur", "--output", tmp_path / "x"])
    assert bad.exit_code == 2 and "blur" in bad.output and "Traceback" not in bad.output
    unknown = cli(["counterfeit", "--data", tiny_brats, "--kind", "mean", "--output", tmp_path / "y", "--cases", "Nope"])
    assert unknown.exit_code == 2 and "Nope" in unknown.output
