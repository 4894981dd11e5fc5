"""The reference code's prepared data: one folder per case, one ``.npy`` dict per axial slice.

Layout: ``<root>/<case>/<z>.npy`` (BraTS, e.g. ``093.npy``) or ``<z>_<flags>.npy`` (LiTS,
``093_11.npy``); ``<root>`` may also be a single case folder. Each file is a pickled dict:
- BraTS: ``brain`` (H, W) float, the volume z-scored over brain voxels after the 99.5% clip, 0 outside
  the brain; ``seg_label`` (H, W) BraTS labels; ``mean`` and ``std`` (the z-score's, input units).
- LiTS: ``liver`` (H, W) clipped HU; ``seg_label`` (1 liver, 2 tumour); other keys are ignored.

Reading: a pickled dict is code, not data, so ``np.load(allow_pickle=True)`` is never called. The
header is read with numpy's own format reader and the pickle with an unpickler that only builds numpy
arrays, dtypes and scalars (plus the plain dict and list objects pickle makes itself); anything else
is refused. That is acceptable for a user's own files (the slices they prepared with the reference
code); files from elsewhere should still not be trusted further than that.

Case volumes are stacked in slice order as ``(X, Y, Z)`` with ``Z`` the number of slice files; ``zs``
keeps each file's own slice number for ``slices.csv``. The reference code kept SimpleITK's array order
(rows along y of the stored volume); each slice is turned into this package's canonical layout (rows
along x, RAS) with :func:`pseudohealthy.models.to_reference_layout` (its own inverse), which is exact
for BraTS (every release is stored LPS). LiTS volumes are stored in varying orientations, so LiTS
slices may come out mirrored relative to the NIfTI inputs of the same volume. Input units are restored (``brain * std + mean`` inside the
brain, 0 outside), so a cache stores the same per-slice affine map as one built from NIfTI volumes.
"""
from __future__ import annotations

import pickle
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pseudohealthy.config import PreprocessConfig
from pseudohealthy.data.preprocessing import DEFAULT_CT_RANGE, PreparedVolume, prepare_clipped_volume, prepare_mask
from pseudohealthy.errors import UserError

SOURCE = "reference-npy"
IMAGE_KEYS = ("brain", "liver")
REQUIRED = {"brain": ("brain", "seg_label", "mean", "std"), "liver": ("liver", "seg_label")}
SLICE_NAME = re.compile(r"(\d+)(_\d+)?\.npy")

# What numpy's own pickles of arrays, dtypes and scalars refer to (numpy 1.x and 2.x module names).
_NUMPY_GLOBALS = {
    ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"), ("numpy._core.multiarray", "scalar"),
    ("numpy", "ndarray"), ("numpy", "dtype"), ("_codecs", "encode"),
}


class _ArraysOnly(pickle.Unpickler):
    """Builds numpy arrays, dtypes and scalars only; any other global is refused."""

    def find_class(self, module: str, name: str):  # noqa: ANN201 - pickle's signature
        if (module, name) not in _NUMPY_GLOBALS:
            raise pickle.UnpicklingError(f"{module}.{name}")
        if module.startswith("numpy.core") and hasattr(np, "_core"):
            module = module.replace("numpy.core", "numpy._core", 1)  # numpy 2 keeps the old name as a shim
        return super().find_class(module, name)


def _unpickle_npy(path: Path) -> object:
    """The object inside an ``.npy`` file, unpickled with :class:`_ArraysOnly` when it is an object array."""
    with open(path, "rb") as handle:
        version = np.lib.format.read_magic(handle)
        reader = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
        shape, _fortran, dtype = reader(handle)
        if not dtype.hasobject:
            return None  # a plain array: not a reference slice dict
        array = _ArraysOnly(handle).load()
    if isinstance(array, np.ndarray) and array.shape == () and shape == ():
        return array.item()
    return array


def read_slice(path: str | Path) -> dict[str, np.ndarray | float]:
    """One reference slice dict, checked: the image under ``brain`` or ``liver``, ``seg_label`` of its shape."""
    path = Path(path)
    try:
        data = _unpickle_npy(path)
    except pickle.UnpicklingError as exc:
        raise UserError(f"{path}: holds Python objects other than numpy arrays ({exc}); not a reference slice file.") from None
    except Exception as exc:  # noqa: BLE001 - a damaged or foreign file fails in many ways
        raise UserError(f"{path}: not a readable .npy file ({type(exc).__name__}).") from None
    if not isinstance(data, dict):
        raise UserError(f"{path}: not a reference slice file (expected a pickled dict with keys brain or liver, seg_label, mean, std).")
    kinds = [k for k in IMAGE_KEYS if k in data]
    if len(kinds) != 1:
        raise UserError(f"{path}: reference slice dict needs exactly one of the keys brain or liver; it has {', '.join(map(str, data)) or 'none'}.")
    for key in REQUIRED[kinds[0]]:
        if key not in data:
            raise UserError(f"{path}: reference slice dict lacks the key {key!r}.")
    image, labels = np.asarray(data[kinds[0]]), np.asarray(data["seg_label"])
    if image.ndim != 2 or labels.shape != image.shape or not np.issubdtype(image.dtype, np.number):
        raise UserError(f"{path}: {kinds[0]} must be a 2D numeric array with seg_label of the same shape (got {image.shape} and {labels.shape}).")
    if not np.isfinite(image).all():
        raise UserError(f"{path}: {kinds[0]} holds NaN or infinite values.")
    out: dict[str, np.ndarray | float] = {"kind": kinds[0], "image": image.astype(np.float64), "seg_label": labels}  # type: ignore[dict-item]
    if kinds[0] == "brain":
        mean, std = np.asarray(data["mean"]), np.asarray(data["std"])
        if mean.size != 1 or std.size != 1 or not np.isfinite([mean.item(), std.item()]).all() or std.item() <= 0:
            raise UserError(f"{path}: mean and std must be two finite numbers with std > 0.")
        out["mean"], out["std"] = float(mean.item()), float(std.item())
    return out


def slice_files(folder: Path) -> list[tuple[int, Path]]:
    """``(slice number, path)`` of a case folder's slice files, in slice order."""
    found = []
    for path in sorted(folder.glob("*.npy")):
        match = SLICE_NAME.fullmatch(path.name)
        if match is None:
            raise UserError(f"{path}: not a reference slice file name (expected <slice number>.npy, e.g. 093.npy).")
        found.append((int(match.group(1)), path))
    found.sort()
    for (a, first), (b, second) in zip(found, found[1:]):
        if a == b:
            raise UserError(f"{second}: slice number {b} appears twice in {folder} (also {first.name}).")
    return found


def find_case_folders(root: str | Path) -> list[Path]:
    """Case folders (holding ``.npy`` slices) under ``root``, or ``root`` itself when it is one."""
    root = Path(root)
    if not root.is_dir():
        raise UserError(f"{root}: input folder not found.")
    if any(root.glob("*.npy")):
        return [root]
    folders = [p for p in sorted(root.iterdir()) if p.is_dir() and any(p.glob("*.npy"))]
    if not folders:
        raise UserError(f"{root}: no case folders with reference .npy slice files found.")
    return folders


def case_shape(folder: Path) -> tuple[int, int, int]:
    """``(H, W, Z)`` of a case from its first slice and the number of slice files."""
    files = slice_files(folder)
    if not files:
        raise UserError(f"{folder}: case folder holds no .npy slice files.")
    rows, cols = read_slice(files[0][1])["image"].shape  # type: ignore[union-attr]
    return int(cols), int(rows), len(files)  # canonical layout: the stored slice transposed


def image_kind(folder: Path) -> str:
    """``brain`` or ``liver``: which reference data set the case's first slice comes from."""
    return str(read_slice(slice_files(folder)[0][1])["kind"])


def _canonical(stored: np.ndarray) -> np.ndarray:
    """A stored slice (the reference's layout) in this package's canonical layout, ``(rows, cols)`` -> ``(cols, rows)``."""
    return np.ascontiguousarray(np.flip(stored, (0, 1)).T)


@dataclass
class NpyCase:
    """One reference case prepared like a NIfTI case: slices, lesion mask at full size, slice numbers."""

    prepared: PreparedVolume
    lesion: np.ndarray  # (H, W, Z) bool, input size
    zs: list[int]  # each stacked slice's own number


def load_npy_case(folder: Path, cfg: PreprocessConfig) -> NpyCase:
    """Read, check and prepare one case folder (see the module docstring for the units)."""
    files = slice_files(folder)
    slices = [read_slice(path) for _, path in files]
    kinds = {s["kind"] for s in slices}
    if len(kinds) > 1:
        raise UserError(f"{folder}: case mixes brain and liver slice files.")
    shapes = {s["image"].shape for s in slices}  # type: ignore[union-attr]
    if len(shapes) > 1:
        raise UserError(f"{folder}: slice files differ in size ({', '.join(f'{h}x{w}' for h, w in sorted(shapes))}).")
    labels = np.stack([_canonical(np.asarray(s["seg_label"])) for s in slices], axis=-1)
    if kinds == {"brain"}:
        values = np.stack([_canonical(s["image"]) for s in slices], axis=-1)  # z-scores, exactly 0 outside the brain
        region = values != 0
        means = np.array([s["mean"] for s in slices], dtype=np.float64)
        stds = np.array([s["std"] for s in slices], dtype=np.float64)
        image = np.where(region, values * stds + means, 0.0)
        lesion = labels > 0
        high = float(image[region].max()) if region.any() else 1.0
        clip, mode = (0.0, high if high > 0 else 1.0), "percentile"
        # the reference's background is the z-score's 0: the mean (only the `reference` normalisation uses it)
        fill = float(means.mean()) if cfg.normalization == "reference" else None
    else:
        image = np.stack([_canonical(s["image"]) for s in slices], axis=-1)
        region = np.isin(labels, [1, 2])
        lesion = labels == 2
        clip, mode = tuple(cfg.clip_range) if cfg.clip_range is not None else DEFAULT_CT_RANGE, "range"
        fill = None
    prepared = prepare_clipped_volume(image.astype(np.float32), cfg, region, clip, mode, fill)  # type: ignore[arg-type]
    return NpyCase(prepared, lesion, [z for z, _ in files])


def prepared_lesion(case: NpyCase) -> np.ndarray:
    """The case's lesion mask at working size ``(Z, H, W)``."""
    return prepare_mask(case.lesion, case.prepared)
