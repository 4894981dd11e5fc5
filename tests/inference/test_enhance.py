"""Enhancement formula, its sign, the alpha range, and the CLI writing NIfTI in the input's geometry."""
from __future__ import annotations

import numpy as np
import pytest

from pseudohealthy.data.nifti_io import load_nifti
from pseudohealthy.errors import UserError
from pseudohealthy.inference.enhance import enhance


@pytest.mark.parametrize("alpha", [0.0, 0.3, 0.7, 1.0, 2.0])
def test_enhance_adds_the_pathological_residual(alpha):
    x_p = np.array([10.0, 50.0, 100.0], np.float32)
    x_s = np.array([10.0, 40.0, 60.0], np.float32)  # the generator darkened the two lesion voxels
    out = enhance(x_p, x_s, alpha)
    np.testing.assert_allclose(out, x_p + alpha * (x_p - x_s), rtol=0, atol=1e-5)


def test_enhance_sign_raises_lesion_contrast():
    """The text's sign: a bright lesion gets brighter; eq. 7 as printed would make it darker."""
    x_p = np.array([100.0, 300.0], np.float32)  # normal, lesion
    x_s = np.array([100.0, 120.0], np.float32)
    out = enhance(x_p, x_s, 0.7)
    assert out[0] == pytest.approx(100.0)
    assert out[1] > x_p[1]
    assert out[1] - out[0] > x_p[1] - x_p[0]


@pytest.mark.parametrize("alpha", [-0.1, 2.5])
def test_alpha_outside_range_is_refused(alpha):
    with pytest.raises(UserError, match=r"outside \[0, 2\]"):
        enhance(np.zeros(2), np.zeros(2), alpha)


def test_enhance_cli_writes_each_alpha(cli, tiny_trained, tmp_path):
    out = tmp_path / "enhanced"
    case = tiny_trained["raw"] / "Case000"
    result = cli(["enhance", "--checkpoint", tiny_trained["checkpoint"], "--input", case, "--output", out,
                  "--alpha", "0.5", "--alpha", "1.0"])
    assert result.exit_code == 0, result.output
    src = load_nifti(case / "Case000_t2.nii.gz")
    half = load_nifti(out / "alpha-0.50" / "Case000.nii.gz")
    full = load_nifti(out / "alpha-1.00" / "Case000.nii.gz")
    assert half.shape == src.shape and np.allclose(half.affine, src.affine)
    # Linear in alpha: the alpha-1 change is twice the alpha-0.5 change.
    np.testing.assert_allclose(full.data - src.data, 2 * (half.data - src.data), atol=1e-2)


def test_enhance_cli_refuses_bad_alpha(cli, tiny_trained, tmp_path):
    result = cli(["enhance", "--checkpoint", tiny_trained["checkpoint"], "--input", tiny_trained["raw"],
                  "--output", tmp_path / "o", "--alpha", "3"])
    assert result.exit_code == 2
    assert "alpha 3.0 is outside [0, 2]" in result.output
