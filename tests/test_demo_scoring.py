"""The demo's two figures (``score_test_cases``) honour NaN truth voxels (truth unknown there)."""
from __future__ import annotations

import shutil
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from pseudohealthy.demo import score_test_cases


def _root_conftest():
    """tests/conftest.py by path (``import conftest`` is ambiguous: tests/data has one too)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("_demo_scoring_conftest", Path(__file__).resolve().parent / "conftest.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    return module


write_tiny_brats_case = _root_conftest().write_tiny_brats_case


def _case_with_truth(root: Path, case_id: str, unknown_label: int | None) -> tuple[Path, np.ndarray]:
    scratch = root.parent / "scratch"
    write_tiny_brats_case(scratch, case_id, seed=4, lesion=False)
    folder = write_tiny_brats_case(root, case_id, seed=4, lesion=True)
    truth_img = nib.load(str(scratch / case_id / f"{case_id}_t2.nii.gz"))
    truth = np.asanyarray(truth_img.dataobj).astype(np.float32)
    seg = np.asanyarray(nib.load(str(folder / f"{case_id}_seg.nii.gz")).dataobj)
    if unknown_label is not None:
        truth[seg == unknown_label] = np.nan
    nib.save(nib.Nifti1Image(truth, truth_img.affine), str(folder / f"{case_id}_t2_healthy.nii.gz"))
    shutil.rmtree(scratch)
    return folder, seg


def test_score_test_cases_scores_only_voxels_with_a_known_truth(tmp_path: Path) -> None:
    synthesis = tmp_path / "synthesis"
    synthesis.mkdir()
    scores = {}
    for name, unknown in (("known", None), ("partly", 1)):
        folder, seg = _case_with_truth(tmp_path / name, "Case000", unknown)
        image = nib.load(str(folder / "Case000_t2.nii.gz"))
        x_p = np.asanyarray(image.dataobj).astype(np.float32)
        x_s = x_p.copy()
        x_s[seg == 2] -= 100.0  # the output moves the edema only; the core (label 1) stays as it was
        x_s[(x_p > 0) & (seg == 0)] += 3.0  # and changes normal tissue a little (a finite PSNR)
        nib.save(nib.Nifti1Image(x_s, image.affine), str(synthesis / "Case000.nii.gz"))
        scores[name] = score_test_cases(tmp_path / name, synthesis, ["Case000"])
    known, partly = scores["known"], scores["partly"]
    assert np.isfinite(partly["lesion_error_reduction"]) and np.isfinite(partly["normal_tissue_psnr_db"])
    # Without the untouched core (error reduction 0 there) the score is higher, and equals the edema's own.
    assert partly["lesion_error_reduction"] > known["lesion_error_reduction"] + 0.01
    assert partly["per_case"]["Case000"]["error_reduction"] == pytest.approx(partly["lesion_error_reduction"], rel=1e-9)
    assert partly["per_case"]["Case000"]["scored_voxels"] < known["per_case"]["Case000"]["scored_voxels"]
    assert partly["normal_tissue_psnr_db"] == pytest.approx(known["normal_tissue_psnr_db"], rel=1e-12)
