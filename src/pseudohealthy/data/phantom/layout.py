"""How phantom cases are written: the BraTS layout (brain) and the LiTS layout (liver).

Brain: ``<out>/PhantomBrain_<NNN>/PhantomBrain_<NNN>_t2.nii.gz``, ``_seg.nii.gz``, ``_t2_healthy.nii.gz``,
``_params.json``. Liver: ``<out>/volume-<n>.nii.gz``, ``segmentation-<n>.nii.gz``,
``volume-<n>_healthy.nii.gz``, ``volume-<n>_params.json``. Both readable by
:func:`pseudohealthy.data.sources.find_cases`, which also picks up the healthy volume.
"""
from __future__ import annotations

import json
import re
import shutil
from pathlib import Path
from typing import Any

import numpy as np

from pseudohealthy.data.phantom.case import PhantomCase

# Entries a phantom writes, and the only ones `--overwrite` removes from an existing folder
# (inserted-lesion BraTS cases are folders named `<source case>-ins<NN>`).
_OWN_ENTRY = re.compile(
    r"(PhantomBrain_\d+|[^/]+-ins\d{2,}|phantom\.json|(volume|segmentation)-\d+(_healthy)?\.nii(\.gz)?|volume-\d+_params\.json)"
)


def case_id(kind: str, index: int) -> str:
    return f"PhantomBrain_{index:03d}" if kind == "brain" else f"volume-{index}"


def remove_previous(output: Path) -> None:
    """Delete what an earlier phantom run wrote in ``output`` (other files are left alone)."""
    if not output.is_dir():
        return
    for entry in output.iterdir():
        if _OWN_ENTRY.fullmatch(entry.name):
            shutil.rmtree(entry) if entry.is_dir() and not entry.is_symlink() else entry.unlink()


def _save(array: np.ndarray, affine: np.ndarray, path: Path) -> None:
    import nibabel as nib

    image = nib.Nifti1Image(array, affine)
    image.header.set_xyzt_units("mm")
    image.set_qform(affine, code=1)
    image.set_sform(affine, code=1)
    nib.save(image, str(path))


def case_paths(layout: str, output: Path, name: str) -> dict[str, Path]:
    """Where one case's files go: ``image``, ``seg``, ``healthy``, ``params`` and ``entry`` (the case
    folder for ``layout="brats"``, the image file for ``"lits"``, whose ``name`` is ``volume-<n>``)."""
    if layout == "brats":
        folder = output / name
        paths = {"image": folder / f"{name}_t2.nii.gz", "seg": folder / f"{name}_seg.nii.gz",
                 "healthy": folder / f"{name}_t2_healthy.nii.gz", "params": folder / f"{name}_params.json"}
        return {**paths, "entry": folder}
    number = name.split("-", 1)[1]
    paths = {"image": output / f"volume-{number}.nii.gz", "seg": output / f"segmentation-{number}.nii.gz",
             "healthy": output / f"volume-{number}_healthy.nii.gz", "params": output / f"volume-{number}_params.json"}
    return {**paths, "entry": paths["image"]}


def write_params(params: dict[str, Any], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(params, indent=1) + "\n")


def write_case(case: PhantomCase, output: Path, name: str) -> Path:
    """Write one case in its kind's layout; returns the case folder (brain) or image file (liver)."""
    paths = case_paths("brats" if case.params["kind"] == "brain" else "lits", output, name)
    write_params(case.params, paths["params"])
    for key, array in (("image", case.image), ("seg", case.labels), ("healthy", case.healthy)):
        _save(array, case.affine, paths[key])
    return paths["entry"]


def write_dataset_record(output: Path, record: dict[str, Any]) -> Path:
    path = output / "phantom.json"
    path.write_text(json.dumps(record, indent=2) + "\n")
    return path
