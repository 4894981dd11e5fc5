"""Tiny LiTS and nnU-Net-folder cases, and helpers shared by the data tests.

The writers reach the tests as fixtures (``brats_writer``, ``lits_writer``, ...): two files named
``conftest.py`` without packages share one module name, so ``from conftest import ...`` is ambiguous.
"""
from __future__ import annotations

import importlib.util
import shutil
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest


def _root_conftest():
    spec = importlib.util.spec_from_file_location("_pseudohealthy_root_conftest", Path(__file__).resolve().parents[1] / "conftest.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    return module


write_tiny_brats_case = _root_conftest().write_tiny_brats_case

LITS_SHAPE = (32, 32, 24)
LIVER_Z = (8, 14)  # liver slices, inclusive
TUMOUR_Z = (10, 12)


def write_tiny_lits_case(root: Path, n: int, seed: int = 0, suffix: str = ".nii", healthy: bool = False) -> Path:
    """One LiTS-layout case in HU: air -1000, body ~40, liver ~60 on z 8..14, hypodense tumour (label 2)."""
    rng = np.random.default_rng(seed)
    x, y, z = np.meshgrid(*[np.linspace(-1, 1, s) for s in LITS_SHAPE], indexing="ij")
    zi = np.arange(LITS_SHAPE[2])[None, None, :]
    body = (x / 0.9) ** 2 + (y / 0.7) ** 2 < 1
    liver = body & (((x - 0.3) / 0.4) ** 2 + (y / 0.4) ** 2 < 1) & (zi >= LIVER_Z[0]) & (zi <= LIVER_Z[1])
    tumour = liver & (((x - 0.35) / 0.15) ** 2 + (y / 0.15) ** 2 < 1) & (zi >= TUMOUR_Z[0]) & (zi <= TUMOUR_Z[1])
    img = np.where(body, 40.0, -1000.0) + rng.normal(0, 5, LITS_SHAPE)
    img[liver] = 60 + rng.normal(0, 5, int(liver.sum()))
    healthy_img = img.copy()
    img[tumour] = 10 + rng.normal(0, 5, int(tumour.sum()))
    seg = np.zeros(LITS_SHAPE, np.uint8)
    seg[liver] = 1
    seg[tumour] = 2
    affine = np.diag([0.8, 0.8, 2.5, 1.0])
    root.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(img.astype(np.int16), affine), str(root / f"volume-{n}{suffix}"))
    nib.save(nib.Nifti1Image(seg, affine), str(root / f"segmentation-{n}{suffix}"))
    if healthy:
        nib.save(nib.Nifti1Image(healthy_img.astype(np.int16), affine), str(root / f"volume-{n}_healthy.nii.gz"))
    return root / f"volume-{n}{suffix}"


def write_tiny_folder_case(root: Path, case_id: str, seed: int = 0, shape=(32, 32, 12), label: int = 1) -> Path:
    """One nnU-Net raw-layout case: ``imagesTr/<case>_0000.nii.gz`` and ``labelsTr/<case>.nii.gz``."""
    rng = np.random.default_rng(seed)
    x, y, z = np.meshgrid(*[np.linspace(-1, 1, s) for s in shape], indexing="ij")
    organ = (x / 0.8) ** 2 + (y / 0.8) ** 2 + (z / 0.9) ** 2 < 1
    lesion = organ & ((x / 0.3) ** 2 + (y / 0.3) ** 2 + (z / 0.3) ** 2 < 1)
    img = np.where(organ, 100 + rng.normal(0, 5, shape), 0.0)
    img[lesion] += 80
    lab = np.where(lesion, label, 0).astype(np.uint8)
    (root / "imagesTr").mkdir(parents=True, exist_ok=True)
    (root / "labelsTr").mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(img.astype(np.float32), np.eye(4)), str(root / "imagesTr" / f"{case_id}_0000.nii.gz"))
    nib.save(nib.Nifti1Image(lab, np.eye(4)), str(root / "labelsTr" / f"{case_id}.nii.gz"))
    return root / "imagesTr" / f"{case_id}_0000.nii.gz"


def write_brats_with_healthy(root: Path, case_id: str, seed: int) -> Path:
    """A tiny BraTS case plus its true healthy volume (the same case drawn without lesion)."""
    scratch = root.parent / f"_healthy_{case_id}"
    write_tiny_brats_case(scratch, case_id, seed=seed, lesion=False)
    folder = write_tiny_brats_case(root, case_id, seed=seed, lesion=True)
    shutil.move(str(scratch / case_id / f"{case_id}_t2.nii.gz"), str(folder / f"{case_id}_t2_healthy.nii.gz"))
    shutil.rmtree(scratch)
    return folder


@pytest.fixture
def tiny_lits(tmp_path: Path) -> Path:
    root = tmp_path / "lits"
    for n in range(3):
        write_tiny_lits_case(root, n, seed=n)
    return root


@pytest.fixture
def tiny_folder(tmp_path: Path) -> Path:
    root = tmp_path / "own"
    for i in range(3):
        write_tiny_folder_case(root, f"case_{i:02d}", seed=i)
    return root


@pytest.fixture
def brats_writer():
    """``write_tiny_brats_case`` of tests/conftest.py."""
    return write_tiny_brats_case


@pytest.fixture
def lits_writer():
    return write_tiny_lits_case


@pytest.fixture
def folder_writer():
    return write_tiny_folder_case


@pytest.fixture
def healthy_brats_writer():
    return write_brats_with_healthy


@pytest.fixture
def build_cache(tmp_path: Path):
    """``build_cache(input_dir, name="cache", **cfg_fields) -> (cache_dir, summary)`` without a progress bar."""
    from pseudohealthy.config import PreprocessConfig
    from pseudohealthy.data.cache import preprocess_dataset

    def build(input_dir: Path, name: str = "cache", overwrite: bool = False, **fields):
        out = tmp_path / name
        summary = preprocess_dataset(input_dir, out, PreprocessConfig(**fields), overwrite=overwrite, progress=False, warn=lambda m: None)
        return out, summary

    return build
