"""Data set layouts on disk: BraTS, LiTS and an nnU-Net-style own folder.

Each layout is found by :func:`find_cases`, which lists :class:`CaseFiles` (paths only, nothing read),
and read by :func:`load_case`, which checks the files against each other and gives a :class:`Case`:
image, lesion mask and (where the layout defines one) region mask, all in canonical orientation.

Layouts
- BraTS: ``<root>/[HGG|LGG/]<case>/<case>_<modality>.nii[.gz]`` and ``<case>_seg.nii[.gz]``; the
  BraTS 2023+ naming ``<case>-t2w.nii.gz`` / ``<case>-seg.nii.gz`` too. Whole tumour = ``seg > 0``.
- LiTS: ``volume-<n>.nii[.gz]`` and ``segmentation-<n>.nii[.gz]`` anywhere under ``<root>``;
  1 = liver, 2 = tumour.
- folder (nnU-Net raw): ``imagesTr/<case>_0000.nii[.gz]`` and ``labelsTr/<case>.nii[.gz]``.
The built-in phantom adds the true healthy volume: ``<case>_<modality>_healthy.nii.gz`` (BraTS),
``volume-<n>_healthy.nii.gz`` (LiTS), ``healthyTr/<case>.nii.gz`` (folder).
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pseudohealthy.data.nifti_io import NIFTI_SUFFIXES, Volume, load_nifti, same_geometry, strip_nifti_suffix
from pseudohealthy.errors import UserError

SOURCES = ("brats", "lits", "folder")

# BraTS 2019-2021 modality suffix -> BraTS 2023+ suffix.
BRATS_NEW_NAMES = {"t2": "t2w", "flair": "t2f", "t1": "t1n", "t1ce": "t1c"}
BRATS_LABELS = {0, 1, 2, 3, 4}
LITS_LABELS = {0, 1, 2}


@dataclass
class CaseFiles:
    """Where one case's files are; nothing is read yet."""

    case_id: str
    image: Path
    mask: Path | None = None
    healthy: Path | None = None  # the true healthy volume, where the data set has one (phantom)
    grade: str | None = None  # BraTS HGG/LGG, where the layout says


@dataclass
class Case:
    """One case read and checked: arrays in canonical orientation, ``(X, Y, Z)``; axial = last axis."""

    case_id: str
    image: Volume
    lesion: np.ndarray | None  # bool, None where the case has no mask (synthesis input)
    region: np.ndarray | None  # bool organ/brain mask from labels (LiTS, folder), else None
    healthy: Volume | None = None  # NaN where the truth is unknown (inside an inserted data set's own lesions)


def _first_existing(folder: Path, stems: list[str]) -> Path | None:
    for stem in stems:
        for suffix in NIFTI_SUFFIXES:
            candidate = folder / f"{stem}{suffix}"
            if candidate.is_file():
                return candidate
    return None


def check_input_folder(root: str | Path) -> Path:
    """Refuse a missing or empty input folder (before guessing its layout)."""
    root = Path(root)
    if not root.is_dir():
        raise UserError(f"{root}: input folder not found.")
    if not any(root.iterdir()):
        raise UserError(f"{root}: input folder is empty.")
    return root


def detect_source(root: str | Path) -> str:
    """Guess the layout of a data set folder (or a single case folder)."""
    root = check_input_folder(root)
    if (root / "imagesTr").is_dir() or (root / "imagesTs").is_dir():
        return "folder"
    names = [p.name for p in root.rglob("*.nii*")][:2000]
    if any(n.startswith("volume-") for n in names):
        return "lits"
    if any(re.search(r"[_-]seg\.nii", n) for n in names) or any(re.search(r"[_-](t2|t2w|flair|t1|t1ce)\.nii", n) for n in names):
        return "brats"
    if not names and next(iter(root.rglob("*.npy")), None) is not None:
        return "reference-npy"  # the reference code's per-slice dicts (pseudohealthy.data.reference_npy)
    raise UserError(f"{root}: no BraTS, LiTS or nnU-Net-style NIfTI files (nor reference .npy slices) found in this folder.")


def _brats_case(folder: Path, modality: str, grade: str | None) -> CaseFiles | None:
    case = folder.name
    new = BRATS_NEW_NAMES.get(modality, modality)
    image = _first_existing(folder, [f"{case}_{modality}", f"{case}-{new}", f"{case}-{modality}"])
    mask = _first_existing(folder, [f"{case}_seg", f"{case}-seg"])
    healthy = _first_existing(folder, [f"{case}_{modality}_healthy", f"{case}-{new}_healthy"])
    if image is None and mask is None:
        return None
    if image is None:
        raise UserError(f"{folder}: case {case} has no {modality} image (looked for {case}_{modality}.nii.gz and {case}-{new}.nii.gz).")
    return CaseFiles(case, image, mask, healthy, grade)


def _find_brats(root: Path, modality: str, grade: str | None) -> list[CaseFiles]:
    cases: list[CaseFiles] = []
    folders: list[tuple[Path, str | None]] = []
    if _brats_case(root, modality, None) is not None:  # a single case folder
        folders.append((root, None))
    for sub in sorted(p for p in root.iterdir() if p.is_dir()):
        if sub.name.upper() in ("HGG", "LGG"):
            folders += [(p, sub.name.upper()) for p in sorted(sub.iterdir()) if p.is_dir()]
        else:
            folders.append((sub, None))
    for folder, g in folders:
        if grade is not None and g != grade.upper():
            continue
        found = _brats_case(folder, modality, g)
        if found is not None:
            cases.append(found)
    return cases


def _find_lits(root: Path) -> list[CaseFiles]:
    cases = []
    for image in sorted(root.rglob("volume-*.nii*"), key=lambda p: (len(p.name), p.name)):
        m = re.fullmatch(r"volume-(\d+)\.nii(\.gz)?", image.name)
        if not m:
            continue
        n = m.group(1)
        mask = _first_existing(image.parent, [f"segmentation-{n}"])
        if mask is None:
            mask = next(iter(sorted(root.rglob(f"segmentation-{n}.nii*"))), None)
        healthy = _first_existing(image.parent, [f"volume-{n}_healthy"])
        cases.append(CaseFiles(f"volume-{n}", image, mask, healthy))
    found = {c.case_id for c in cases}
    for seg in sorted(root.rglob("segmentation-*.nii*")):
        m = re.fullmatch(r"segmentation-(\d+)\.nii(\.gz)?", seg.name)
        if m and f"volume-{m.group(1)}" not in found:
            raise UserError(f"{seg}: the image volume-{m.group(1)}.nii of this segmentation is missing.")
    return cases


def _find_folder(root: Path) -> list[CaseFiles]:
    cases = []
    for sub in ("imagesTr", "imagesTs"):
        labels = root / sub.replace("images", "labels")
        for image in sorted((root / sub).glob("*_0000.nii*")):
            case = re.sub(r"_0000\.nii(\.gz)?$", "", image.name)
            mask = _first_existing(labels, [case]) if labels.is_dir() else None
            healthy = _first_existing(root / sub.replace("images", "healthy"), [case])
            cases.append(CaseFiles(case, image, mask, healthy))
        found = {c.case_id for c in cases}
        for label in sorted(labels.glob("*.nii*")) if labels.is_dir() else []:
            if strip_nifti_suffix(label.name) not in found:
                raise UserError(f"{label}: the image {sub}/{strip_nifti_suffix(label.name)}_0000.nii.gz of this label file is missing.")
    return cases


def find_cases(root: str | Path, source: str = "auto", modality: str = "t2", grade: str | None = None, require_mask: bool = True) -> list[CaseFiles]:
    """List the cases of a data set folder in a stable (sorted) order.

    ``require_mask`` refuses a case without a lesion mask (training, evaluation); synthesis passes
    False since the generator needs no mask.
    """
    root = check_input_folder(root)
    if source == "auto":
        source = detect_source(root)
    if source not in SOURCES:
        raise UserError(f"source {source!r} is unknown; choose one of {', '.join(SOURCES)}.")
    cases = {"brats": lambda: _find_brats(root, modality, grade), "lits": lambda: _find_lits(root), "folder": lambda: _find_folder(root)}[source]()
    if not cases:
        raise UserError(f"{root}: no {source} cases found in this folder.")
    if require_mask:
        for case in cases:
            if case.mask is None:
                raise UserError(f"{case.image}: lesion mask file for case {case.case_id} is missing.")
    return cases


def default_lesion_labels(source: str) -> list[int] | None:
    """None means 'every label above 0' (BraTS whole tumour)."""
    return {"brats": None, "lits": [2], "folder": [1]}[source]


def default_region_labels(source: str) -> list[int] | None:
    """None means the region comes from the image (BraTS brain = image > 0 after clipping)."""
    return {"brats": None, "lits": [1, 2], "folder": None}[source]


def expected_labels(source: str, lesion_labels: list[int] | None, region_labels: list[int] | None) -> set[int]:
    if source == "brats":
        return set(BRATS_LABELS)
    if source == "lits":
        return set(LITS_LABELS)
    return {0, *(lesion_labels or [1]), *(region_labels or [])}


def load_case(
    files: CaseFiles,
    source: str,
    lesion_labels: list[int] | None = None,
    region_labels: list[int] | None = None,
) -> Case:
    """Read a case and check it: same geometry for image, mask and healthy volume; known labels only."""
    image = load_nifti(files.image, "image")
    healthy = load_nifti(files.healthy, "healthy image", allow_nan=True) if files.healthy is not None else None
    if healthy is not None and not same_geometry(image, healthy):
        raise UserError(f"{files.healthy}: healthy volume does not match the image {files.image.name} in shape or affine.")
    if files.mask is None:
        return Case(files.case_id, image, None, None, healthy)
    mask_vol = load_nifti(files.mask, "lesion mask")
    if mask_vol.data.shape != image.data.shape:
        raise UserError(f"{files.mask}: mask shape {mask_vol.data.shape} differs from image shape {image.data.shape} ({files.image.name}).")
    if not np.allclose(mask_vol.affine, image.affine, atol=1e-3):
        raise UserError(f"{files.mask}: mask affine differs from the affine of {files.image.name}.")
    labels = mask_vol.data
    if not np.array_equal(labels, np.round(labels)):
        raise UserError(f"{files.mask}: mask holds non-integer values; expected integer labels.")
    found = set(np.unique(labels).astype(int).tolist())
    allowed = expected_labels(source, lesion_labels, region_labels)
    if not found <= allowed:
        raise UserError(f"{files.mask}: unexpected label(s) {sorted(found - allowed)}; expected only {sorted(allowed)}.")
    labels = labels.astype(np.int16)
    lesion_set = lesion_labels if lesion_labels is not None else default_lesion_labels(source)
    lesion = labels > 0 if lesion_set is None else np.isin(labels, lesion_set)
    region_set = region_labels if region_labels is not None else default_region_labels(source)
    region = np.isin(labels, region_set) if region_set else None
    return Case(files.case_id, image, lesion, region, healthy)
