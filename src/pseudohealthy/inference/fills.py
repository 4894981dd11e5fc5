"""Classical lesion fills: the simple yardsticks a learned pseudo-healthy method must beat.

Each fill replaces the voxels of the (known) lesion mask, and only those, by values taken from the
surrounding normal tissue; every voxel outside the mask is bit-identical to the input as read (float32,
input units). The mask is filled as given, not dilated, so every method is compared on the same voxels.

- ``mean``: the mean of the volume's normal tissue (region minus lesion), as the ``mean`` counterfeit.
- ``median``: per axial slice, the median of normal tissue in a ring of ``RING_WIDTH`` pixels around
  the slice's lesion (the slice's whole normal tissue when the ring holds none).
- ``biharmonic``: per axial slice, the solution of the biharmonic equation inside the lesion with the
  surrounding pixels as boundary values (scikit-image ``inpaint_biharmonic``); smooth, exact for ramps.
- ``biharmonic3``: the biharmonic fill in each of the three orthogonal planes (axial, coronal,
  sagittal slices of the voxel grid), averaged: each voxel also gets the tissue above and below the
  lesion as context, and the three fills' errors partly cancel. In voxel units, so on thick-slice
  volumes the two through-plane fills stretch the lesion; there the axial ``biharmonic`` is the fairer
  yardstick. A scikit-image biharmonic of the whole 3-D hole would be the direct form; on a BraTS
  lesion of ~40,000 voxels it ran over 10 minutes and ~6 GB, so it is not offered.
- ``telea`` / ``ns``: per axial slice, OpenCV's ``cv2.inpaint`` (fast marching of Telea 2004, or the
  Navier-Stokes method of Bertalmio et al. 2001) with a neighbourhood of ``INPAINT_RADIUS`` pixels.

Axial slices are ``array[:, :, z]`` of the canonical (RAS+) volume, as the package's readers give.
Context comes from normal tissue only: before a slice is inpainted, every pixel outside normal tissue
(background and lesion) takes the value of its nearest normal-tissue pixel, so a lesion that touches
the organ border is not darkened by the background. A slice whose lesion has no normal tissue beside it
in the slice keeps the volume mean. A volume without lesion comes back unchanged.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from pseudohealthy.errors import UserError
from pseudohealthy.metrics.counterfeits import fill_lesion_with_normal_mean

KINDS = ("mean", "median", "biharmonic", "biharmonic3", "telea", "ns")
PLANES = ((0, 1, 2), (0, 2, 1), (2, 1, 0))  # axes moved last (the slice axis): axial, coronal, sagittal
INPAINT_RADIUS = 3  # pixels: the neighbourhood cv2.inpaint averages over
RING_WIDTH = 5  # pixels: the ring of normal tissue whose median the median fill takes
# cv2.inpaint's Telea path adds a unit-normalised gradient term whose rounding can move a pixel by up to
# ~1.4 in the image's own units (a constant 100 came back between 98.6 and 101.4); each slice is therefore
# inpainted in float32 after mapping its context range to [0, CV2_WORKING_RANGE], then mapped back.
CV2_WORKING_RANGE = 65535.0
SETTINGS_FILE = "fill.json"


def check_kind(kind: str) -> None:
    if kind not in KINDS:
        raise UserError(f"fill kind {kind!r} is unknown; choose one of {', '.join(KINDS)}.")


def extend_from_tissue(image: np.ndarray, normal: np.ndarray) -> np.ndarray:
    """2D ``image`` (float64) with every pixel outside ``normal`` set to its nearest normal pixel's value."""
    from scipy.ndimage import distance_transform_edt

    _, (rows, cols) = distance_transform_edt(~normal, return_indices=True)
    return np.asarray(image, np.float64)[rows, cols]


def _ring_median(image: np.ndarray, lesion: np.ndarray, normal: np.ndarray) -> np.ndarray:
    from scipy.ndimage import binary_dilation

    ring = binary_dilation(lesion, iterations=RING_WIDTH) & normal
    values = image[ring] if ring.any() else image[normal]
    return np.full(image.shape, np.median(values))


def _cv2_inpaint(context: np.ndarray, lesion: np.ndarray, kind: str) -> np.ndarray:
    """``cv2.inpaint`` of a float64 slice, done in float32 on a [0, CV2_WORKING_RANGE] scale (see above)."""
    import cv2

    known = context[~lesion]
    low, high = float(known.min()), float(known.max())
    gain = CV2_WORKING_RANGE / (high - low) if high > low else 1.0
    working = ((context - low) * gain).astype(np.float32)
    flag = cv2.INPAINT_TELEA if kind == "telea" else cv2.INPAINT_NS
    filled = cv2.inpaint(working, lesion.astype(np.uint8), INPAINT_RADIUS, flag)
    return filled.astype(np.float64) / gain + low


def fill_slice(image: np.ndarray, lesion: np.ndarray, normal: np.ndarray, kind: str) -> np.ndarray:
    """One axial slice ``(X, Y)`` filled inside ``lesion`` with context from ``normal`` (float64; only
    the lesion pixels of the result are meant to be used). ``kind``: median | biharmonic | telea | ns."""
    context = extend_from_tissue(image, normal)
    if kind == "median":
        return _ring_median(context, lesion, normal)
    if kind == "biharmonic":
        from skimage.restoration import inpaint_biharmonic

        return inpaint_biharmonic(context, lesion, split_into_regions=True)
    return _cv2_inpaint(context, lesion, kind)


def fill_lesion(image: np.ndarray, lesion: np.ndarray, region: np.ndarray, kind: str) -> np.ndarray:
    """``image`` ``(X, Y, Z)`` with the ``lesion`` voxels filled by ``kind`` (see the module doc).

    ``region`` (bool ``(X, Y, Z)``): the organ (brain, liver); normal tissue is region minus lesion.
    Returns float32 in input units; voxels outside the lesion equal ``image`` cast to float32.
    """
    check_kind(kind)
    if kind == "biharmonic3":
        fills = [np.transpose(fill_lesion(np.transpose(image, axes), np.transpose(lesion, axes), np.transpose(region, axes),
                                          "biharmonic"), axes) for axes in PLANES]  # each of these axis orders is its own inverse
        return np.mean(fills, axis=0, dtype=np.float64).astype(np.float32)
    lesion = np.asarray(lesion, bool)
    # the mean fill, also what slices without normal tissue beside their lesion keep
    out = fill_lesion_with_normal_mean(image, lesion, region)
    if kind == "mean" or not lesion.any():
        return out
    normal = np.asarray(region, bool) & ~lesion
    for z in np.flatnonzero(lesion.any(axis=(0, 1))):
        mask, tissue = lesion[:, :, z], normal[:, :, z]
        if not tissue.any():
            continue
        filled = fill_slice(np.asarray(image[:, :, z], np.float64), mask, tissue, kind)
        out[:, :, z][mask] = filled[mask].astype(np.float32)
    return out


def write_fill(data: str | Path, kind: str, output: str | Path, cases: list[str] | None = None, source: str = "auto",
               modality: str = "t2", seed: int = 0, overwrite: bool = False, progress: bool = True) -> list[Path]:
    """Write the ``kind`` fill of every case of ``data`` (or of ``cases``) to ``<output>/<case_id>.nii.gz``
    in the input's geometry and units, plus ``fill.json`` (settings, seconds per case).

    The fills are deterministic; ``seed`` is only recorded, as every run records one.
    """
    from pseudohealthy.data.case_writer import case_region, write_case_volumes

    check_kind(kind)

    def make(case, index: int, resolved_source: str) -> np.ndarray:
        return fill_lesion(case.image.data, case.lesion, case_region(case), kind)

    settings = {"kind": kind, "seed": seed, "inpaint_radius": INPAINT_RADIUS if kind in ("telea", "ns") else None,
                "ring_width": RING_WIDTH if kind == "median" else None, "definition": __doc__.strip()}
    return write_case_volumes(data, output, make, settings, SETTINGS_FILE, f"fill ({kind})", cases=cases,
                              source=source, modality=modality, overwrite=overwrite, progress=progress)


def reusable_fill(folder: Path, kind: str, data: str | Path, case_ids: list[str]) -> bool:
    """Whether ``folder`` already holds the ``kind`` fill of ``data`` for every case in ``case_ids``."""
    import json

    try:
        record = json.loads((folder / SETTINGS_FILE).read_text())
    except (OSError, ValueError):
        return False
    same = record.get("kind") == kind and record.get("data") == str(data) and record.get("definition") == __doc__.strip()
    return same and all((folder / f"{c}.nii.gz").is_file() for c in case_ids) and set(case_ids) <= set(record.get("cases", []))


def write_fills(data: str | Path, kinds: list[str], output_root: str | Path, cases: list[str] | None = None,
                source: str = "auto", modality: str = "t2", seed: int = 0, overwrite: bool = False, reuse: bool = True,
                progress: bool = True) -> dict[str, Path]:
    """Write each fill of ``kinds`` to ``<output_root>/<kind>/`` and return ``{kind: folder}``.

    With ``reuse``, a folder that already holds that fill of ``data`` for every requested case (same
    definition) is kept as it is; otherwise an existing non-empty folder needs ``overwrite``.
    """
    from pseudohealthy.data.case_writer import select_cases

    for kind in kinds:
        check_kind(kind)
    case_ids = [files.case_id for _, files in select_cases(data, cases, source, modality)[1]]
    folders = {}
    for kind in kinds:
        folder = Path(output_root) / kind
        if not (reuse and reusable_fill(folder, kind, data, case_ids)):
            write_fill(data, kind, folder, cases=cases, source=source, modality=modality, seed=seed,
                       overwrite=overwrite, progress=progress)
        folders[kind] = folder
    return folders
