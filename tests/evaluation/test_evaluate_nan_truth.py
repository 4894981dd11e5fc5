"""`evaluate` on a data set whose true healthy volumes hold NaN (truth unknown inside a source's own lesion)."""
from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np

SHAPE = (32, 32, 12)


def _write_case(root: Path, case_id: str, seed: int) -> None:
    """Two lesions: an 'own' one (truth NaN) and an 'inserted' one (truth known)."""
    rng = np.random.default_rng(seed)
    x, y, z = np.meshgrid(*[np.linspace(-1, 1, s) for s in SHAPE], indexing="ij")
    brain = (x / 0.85) ** 2 + (y / 0.9) ** 2 + (z / 0.95) ** 2 < 1
    healthy = np.where(brain, 400 + 90 * np.sin(7 * x + seed) * np.cos(5 * y) + rng.normal(0, 12, SHAPE), 0).astype(np.float32)
    own = ((x + 0.4) / 0.25) ** 2 + (y / 0.25) ** 2 + (z / 0.5) ** 2 < 1
    inserted = ((x - 0.4) / 0.25) ** 2 + (y / 0.25) ** 2 + (z / 0.5) ** 2 < 1
    image = healthy.copy()
    image[own | inserted] += 500
    truth = healthy.copy()
    truth[own] = np.nan
    folder = root / case_id
    folder.mkdir(parents=True, exist_ok=True)
    affine = np.diag([-1.0, -1.0, 1.0, 1.0])
    nib.save(nib.Nifti1Image(image.astype(np.int16), affine), str(folder / f"{case_id}_t2.nii.gz"))
    nib.save(nib.Nifti1Image(truth, affine), str(folder / f"{case_id}_t2_healthy.nii.gz"))
    nib.save(nib.Nifti1Image(((own | inserted) * 2).astype(np.uint8), affine), str(folder / f"{case_id}_seg.nii.gz"))


def test_ground_truth_metrics_score_only_known_truth(tmp_path: Path) -> None:
    from pseudohealthy.evaluation.runner import EvaluationSettings, evaluate

    for i in range(2):
        _write_case(tmp_path / "data", f"Case{i:03d}", seed=i)
    settings = EvaluationSettings(working_size=32, adice=None, healthiness=None, figure_slices=1)
    results = evaluate(tmp_path / "data", ["original=@original", "truth=@healthy"], tmp_path / "eval", settings=settings, progress=False)
    per_case = {name: results["methods"][name]["per_case"] for name in ("original", "truth")}
    for case in ("Case000", "Case001"):
        original, truth = per_case["original"][case], per_case["truth"][case]
        assert original["error_reduction"] == 0.0 and truth["error_reduction"] == 1.0  # finite: NaN voxels left out
        assert np.isfinite(original["gt_psnr"]) and truth["gt_mae"] == 0.0 and truth["gt_ssim"] > 0.99
        assert np.isfinite(truth["ssim"]) and np.isfinite(truth["psnr"])  # @healthy shows the input where truth is unknown
