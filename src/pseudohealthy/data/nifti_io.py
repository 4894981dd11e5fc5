"""NIfTI input and output that keep the affine and header (nibabel).

All processing happens on arrays in the closest canonical (RAS+) orientation, so that axial slices
are always ``array[:, :, z]`` whatever the file's voxel order; results are turned back into the
file's own orientation and written with its affine and header, so a viewer overlays input and output.
"""
from __future__ import annotations

import gzip
import zlib
from dataclasses import dataclass
from pathlib import Path

import nibabel as nib
import numpy as np
from nibabel.orientations import apply_orientation, axcodes2ornt, io_orientation, ornt_transform

from pseudohealthy.errors import UserError

NIFTI_SUFFIXES = (".nii.gz", ".nii")


@dataclass
class Volume:
    """A 3D volume: ``data`` in canonical (RAS+) voxel order, plus what is needed to write it back."""

    data: np.ndarray  # (X, Y, Z), canonical orientation
    affine: np.ndarray  # the file's own affine (4, 4)
    header: nib.Nifti1Header
    path: Path

    @property
    def shape(self) -> tuple[int, int, int]:
        return tuple(self.data.shape)  # type: ignore[return-value]


def is_nifti(path: str | Path) -> bool:
    return str(path).endswith(NIFTI_SUFFIXES)


def strip_nifti_suffix(name: str) -> str:
    for suffix in NIFTI_SUFFIXES:
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return name


def _to_canonical_ornt(affine: np.ndarray) -> np.ndarray:
    return ornt_transform(io_orientation(affine), axcodes2ornt(("R", "A", "S")))


def load_nifti(path: str | Path, what: str = "image", dtype: type = np.float32, allow_nan: bool = False) -> Volume:
    """Read a 3D NIfTI file into canonical orientation, refusing corrupt, non-3D or non-finite data.

    A trailing singleton 4th dimension is squeezed. ``what`` names the file's role in messages.
    ``allow_nan`` lets NaN through (a true healthy volume marks "truth unknown there" with NaN);
    infinite values are refused either way.
    """
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: {what} file not found.")
    try:
        img = nib.load(str(path))
        raw = np.asanyarray(img.dataobj)
    except (EOFError, zlib.error, gzip.BadGzipFile, nib.filebasedimages.ImageFileError, OSError, ValueError) as exc:
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise UserError(f"{path}: cannot read this {what} as NIfTI; the file is corrupt or truncated ({reason}).") from None
    if raw.ndim == 4 and raw.shape[3] == 1:
        raw = raw[..., 0]
    if raw.ndim != 3:
        raise UserError(f"{path}: expected a 3D {what} volume, got {raw.ndim}D data of shape {tuple(raw.shape)}.")
    data = np.asarray(raw, dtype=dtype)
    if np.issubdtype(data.dtype, np.floating) and not np.isfinite(data).all():
        bad = int(np.isinf(data).sum()) if allow_nan else int((~np.isfinite(data)).sum())
    else:
        bad = 0
    if bad:
        kind = "infinite" if allow_nan else "NaN or infinite"
        raise UserError(f"{path}: the {what} holds {bad} {kind} voxel(s).")
    data = apply_orientation(data, _to_canonical_ornt(img.affine))
    return Volume(data=np.ascontiguousarray(data), affine=np.asarray(img.affine, dtype=np.float64), header=img.header.copy(), path=path)


def canonical_voxel_size(affine: np.ndarray) -> np.ndarray:
    """Voxel size (mm) along the canonical axes ``(X, Y, Z)`` of a volume read with :func:`load_nifti` from a
    file with ``affine`` (the file's sizes, reordered as the reorientation reorders its axes)."""
    sizes = np.sqrt((np.asarray(affine, np.float64)[:3, :3] ** 2).sum(axis=0))
    canonical = np.ones(3)
    for axis, (target, _flip) in enumerate(io_orientation(affine)):
        if not np.isnan(target):
            canonical[int(target)] = sizes[axis]
    return canonical


def canonical_shape(path: str | Path, what: str = "image") -> tuple[int, int, int]:
    """The canonical (RAS+) shape of a 3D NIfTI file from its header alone (no voxel is read)."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: {what} file not found.")
    try:
        img = nib.load(str(path))
    except (EOFError, zlib.error, gzip.BadGzipFile, nib.filebasedimages.ImageFileError, OSError, ValueError) as exc:
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise UserError(f"{path}: cannot read this {what} as NIfTI; the file is corrupt or truncated ({reason}).") from None
    shape = tuple(int(n) for n in img.shape)
    if len(shape) == 4 and shape[3] == 1:
        shape = shape[:3]
    if len(shape) != 3:
        raise UserError(f"{path}: expected a 3D {what} volume, got {len(shape)}D data of shape {shape}.")
    ornt = io_orientation(img.affine)
    out = [0, 0, 0]
    for axis, n in enumerate(shape):
        out[int(ornt[axis, 0])] = n
    return tuple(out)  # type: ignore[return-value]


def from_canonical(data: np.ndarray, reference: Volume) -> np.ndarray:
    """Turn a canonical-orientation array back into ``reference``'s on-disk voxel order."""
    back = ornt_transform(axcodes2ornt(("R", "A", "S")), io_orientation(reference.affine))
    return np.ascontiguousarray(apply_orientation(data, back))


def save_like(data: np.ndarray, reference: Volume, path: str | Path, dtype: type | None = np.float32) -> Path:
    """Write a canonical-orientation array with ``reference``'s affine and header.

    ``dtype`` sets the on-disk type (float32 by default, so synthesised intensities are not rounded to
    the input's integer type); the header's scaling is reset so values are stored as given.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    array = from_canonical(np.asarray(data), reference)
    header = reference.header.copy()
    if dtype is not None:
        array = array.astype(dtype)
        header.set_data_dtype(dtype)
    img = nib.Nifti1Image(array, reference.affine, header=header)
    img.header.set_slope_inter(1.0, 0.0) if dtype is not None and np.issubdtype(np.dtype(dtype), np.floating) else None
    tmp = path.with_name(path.name + ".part" + (".nii.gz" if str(path).endswith(".gz") else ".nii"))
    nib.save(img, str(tmp))
    tmp.replace(path)
    return path


def same_geometry(a: Volume, b: Volume, atol: float = 1e-3) -> bool:
    """True when two volumes share the canonical shape and the on-disk affine (within ``atol`` mm)."""
    return a.data.shape == b.data.shape and np.allclose(a.affine, b.affine, atol=atol)
