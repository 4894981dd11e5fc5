"""Shared fixtures of the evaluation tests: tiny BraTS-layout cases that carry their true healthy volumes."""
from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

SHAPE = (32, 32, 12)


def write_case_with_truth(root: Path, case_id: str, seed: int, affine=None) -> None:
    """A tiny BraTS-layout case plus its true healthy volume (equal outside the lesion)."""
    rng = np.random.default_rng(seed)
    x, y, z = np.meshgrid(*[np.linspace(-1, 1, s) for s in SHAPE], indexing="ij")
    brain = (x / 0.85) ** 2 + (y / 0.9) ** 2 + (z / 0.95) ** 2 < 1
    healthy = np.where(brain, 400 + 90 * np.sin(7 * x + seed) * np.cos(5 * y) + rng.normal(0, 12, SHAPE), 0)
    cx, cy = rng.uniform(-0.3, 0.3, 2)
    lesion = (((x - cx) / 0.3) ** 2 + ((y - cy) / 0.3) ** 2 + (z / 0.5) ** 2 < 1) & brain
    image = healthy.copy()
    image[lesion] += 500
    affine = np.diag([-1.0, -1.0, 1.0, 1.0]) if affine is None else affine
    folder = root / case_id
    folder.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(image.astype(np.int16), affine), str(folder / f"{case_id}_t2.nii.gz"))
    nib.save(nib.Nifti1Image(healthy.astype(np.int16), affine), str(folder / f"{case_id}_t2_healthy.nii.gz"))
    nib.save(nib.Nifti1Image(lesion.astype(np.int16) * 2, affine), str(folder / f"{case_id}_seg.nii.gz"))


@pytest.fixture(scope="module")
def phantom_like(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("truth") / "data"
    for i in range(4):
        write_case_with_truth(root, f"Case{i:03d}", seed=i)
    return root
