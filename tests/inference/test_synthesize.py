"""Synthesis: NIfTI in, NIfTI out with the input's geometry and units; bad inputs refused clearly."""
from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest

from pseudohealthy.data.nifti_io import load_nifti


def _synth(cli, checkpoint, input_path, out, *extra):
    return cli(["synthesize", "--checkpoint", checkpoint, "--input", input_path, "--output", out, *extra])


def test_synthesize_keeps_geometry_header_units_and_background(cli, tiny_trained, tmp_path):
    out = tmp_path / "out"
    result = _synth(cli, tiny_trained["checkpoint"], tiny_trained["raw"], out)
    assert result.exit_code == 0, result.output
    src_path = tiny_trained["raw"] / "Case001" / "Case001_t2.nii.gz"
    src_img, out_img = nib.load(src_path), nib.load(out / "Case001.nii.gz")
    assert out_img.shape == src_img.shape
    np.testing.assert_allclose(out_img.affine, src_img.affine)
    assert out_img.header.get_zooms() == src_img.header.get_zooms()
    x_p = np.asarray(src_img.dataobj, np.float32)
    x_s = np.asarray(out_img.dataobj, np.float32)
    residual = np.asarray(nib.load(out / "Case001_residual.nii.gz").dataobj, np.float32)
    np.testing.assert_allclose(x_p - x_s, residual, atol=1e-3)
    background = x_p <= 0
    assert np.array_equal(x_s[background], x_p[background])  # background stays background
    # Input units: the output's brain intensities live on the input's scale (hundreds), not [-1, 1].
    assert abs(np.median(x_s[~background]) - np.median(x_p[~background])) < 0.2 * np.median(x_p[~background])
    assert (out / "Case001.png").is_file()
    assert sorted(p.name for p in out.glob("*.nii.gz") if "residual" not in p.name) == [f"Case{i:03d}.nii.gz" for i in range(6)]


def test_synthesize_is_orientation_invariant(cli, tiny_trained, tmp_path):
    """A flipped and permuted copy of the same volume gives the same result in world space."""
    src_path = tiny_trained["raw"] / "Case002" / "Case002_t2.nii.gz"
    img = nib.load(src_path)
    data = np.asarray(img.dataobj)
    # Swap the first two voxel axes and flip the new first one; adjust the affine to keep world positions.
    new = np.flip(np.transpose(data, (1, 0, 2)), axis=0)
    swap = np.array([[0, 1, 0, 0], [1, 0, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1]], float)
    flip = np.diag([-1.0, 1, 1, 1])
    flip[0, 3] = new.shape[0] - 1
    affine = img.affine @ swap @ flip
    other = tmp_path / "moved.nii.gz"
    nib.save(nib.Nifti1Image(new, affine), str(other))
    a = _synth(cli, tiny_trained["checkpoint"], src_path, tmp_path / "a")
    b = _synth(cli, tiny_trained["checkpoint"], other, tmp_path / "b")
    assert a.exit_code == 0 and b.exit_code == 0, a.output + b.output
    va = load_nifti(tmp_path / "a" / "Case002_t2.nii.gz")
    vb = load_nifti(tmp_path / "b" / "moved.nii.gz")
    np.testing.assert_allclose(va.data, vb.data, atol=1e-3)
    np.testing.assert_allclose(nib.load(tmp_path / "b" / "moved.nii.gz").affine, affine)


def test_synthesize_refuses_existing_output(cli, tiny_trained, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("x")
    result = _synth(cli, tiny_trained["checkpoint"], tiny_trained["raw"], out)
    assert result.exit_code == 2
    assert "already exists" in result.output and "--overwrite" in result.output
    assert _synth(cli, tiny_trained["checkpoint"], tiny_trained["raw"], out, "--overwrite").exit_code == 0


@pytest.mark.parametrize("shape,words", [((8, 8), "expected a 3D"), ((8, 8, 4, 3), "expected a 3D")])
def test_synthesize_refuses_non_3d_input(cli, tiny_trained, tmp_path, shape, words):
    path = tmp_path / "bad.nii.gz"
    nib.save(nib.Nifti1Image(np.ones(shape, np.float32), np.eye(4)), str(path))
    result = _synth(cli, tiny_trained["checkpoint"], path, tmp_path / "out")
    assert result.exit_code == 2
    assert words in result.output and "bad.nii.gz" in result.output


def test_synthesize_refuses_missing_and_corrupt_checkpoints(cli, tiny_trained, tmp_path):
    missing = _synth(cli, tmp_path / "nope.pt", tiny_trained["raw"], tmp_path / "o1")
    assert missing.exit_code == 2 and "nope.pt" in missing.output and "not found" in missing.output
    corrupt = tmp_path / "corrupt.pt"
    corrupt.write_bytes(tiny_trained["checkpoint"].read_bytes()[:2000])
    result = _synth(cli, corrupt, tiny_trained["raw"], tmp_path / "o2")
    assert result.exit_code == 2 and "corrupt" in result.output


def test_synthesize_refuses_checkpoint_of_another_version(cli, tiny_trained, tmp_path):
    import torch

    payload = torch.load(tiny_trained["checkpoint"], weights_only=True)
    payload["version"] = "99.0.0"
    old = tmp_path / "future.pt"
    torch.save(payload, old)
    result = _synth(cli, old, tiny_trained["raw"], tmp_path / "o")
    assert result.exit_code == 2 and "99.0.0" in result.output


def test_synthesize_warns_on_unfamiliar_intensities(cli, tiny_trained, tmp_path):
    """A volume whose normalised intensities are far from the training data: warned, still written."""
    src = nib.load(tiny_trained["raw"] / "Case003" / "Case003_t2.nii.gz")
    data = np.asarray(src.dataobj).astype(np.float32)
    brain = data > 0
    data[brain] = 1000.0  # a flat volume: after the percentile clip every brain voxel is at the top
    data[brain & (np.indices(data.shape)[0] == data.shape[0] // 2)] = 50.0
    path = tmp_path / "flat.nii.gz"
    nib.save(nib.Nifti1Image(data, src.affine), str(path))
    result = _synth(cli, tiny_trained["checkpoint"], path, tmp_path / "out")
    assert result.exit_code == 0, result.output
    assert "unlike the training data" in result.output
    assert (tmp_path / "out" / "flat.nii.gz").is_file()


@pytest.mark.realdata
def test_synthesize_real_case_keeps_geometry(cli, tiny_trained, real_brats, tmp_path):
    case = real_brats / "TCGA-DU-7294"
    result = _synth(cli, tiny_trained["checkpoint"], case / "TCGA-DU-7294_t2.nii.gz", tmp_path / "out")
    assert result.exit_code == 0, result.output
    src, out = nib.load(case / "TCGA-DU-7294_t2.nii.gz"), nib.load(tmp_path / "out" / "TCGA-DU-7294_t2.nii.gz")
    assert out.shape == (240, 240, 155) == src.shape
    np.testing.assert_allclose(out.affine, src.affine)
    x_p, x_s = np.asarray(src.dataobj, np.float32), np.asarray(out.dataobj, np.float32)
    assert np.array_equal(x_s[x_p <= 0], x_p[x_p <= 0])
