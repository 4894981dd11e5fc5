"""The slice cache: raw volumes read once, written as memory-mapped arrays that training reads fast.

Layout (docs/CONTRACTS.md): ``images.npy`` float32 ``(N, H, W)`` in [-1, 1], ``lesions.npy`` and
``regions.npy`` uint8 ``(N, H, W)``, ``healthy.npy`` float32 when every case has its true healthy
volume (phantom), ``slices.csv`` (one row per slice: ``index, case_id, z, has_lesion, scale, offset``),
``splits.json``, ``config.yaml`` and ``fingerprint.json`` (every parameter, per-case statistics, the
source files' sizes and sha256).

Decisions
- Every slice of a case is cached (healthy slices flagged ``has_lesion = 0``), except for CT with a
  labelled organ (LiTS): only slices from ``slice_margin`` below to above the organ are kept, as the
  reference code does. Training picks lesion slices with ``SliceDataset(lesion_only=True)``.
- Memory: a first pass reads only headers (and, for CT, the organ masks) to size the arrays
  (``np.lib.format.open_memmap``); the second pass maps them case by case, writes that case's rows and
  unmaps them, so no more than one volume sits in RAM.
- Re-running with the same parameters and files (sizes and sha256) is a no-op; a change rebuilds,
  which is the one overwrite of an existing folder allowed without ``--overwrite`` (the folder must
  carry this package's cache marker). A change of the split only rewrites ``splits.json``.
- Crash safety: arrays are written to ``*.part.npy`` and renamed at the end; ``fingerprint.json`` is
  removed before the renames and written last, so a folder whose fingerprint exists is complete.
"""
from __future__ import annotations

import csv
import dataclasses
import hashlib
import json
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np

from pseudohealthy.config import PreprocessConfig, to_dict, write_config
from pseudohealthy.data import reference_npy
from pseudohealthy.data.nifti_io import canonical_shape, load_nifti
from pseudohealthy.data.preprocessing import (
    SIZE_MULTIPLE,
    intensity_mode,
    normalise_like,
    prepare_mask,
    prepare_volume,
    validate_config,
)
from pseudohealthy.data.sources import CaseFiles, default_region_labels, detect_source, find_cases, load_case
from pseudohealthy.data.splits import split_cases, write_splits
from pseudohealthy.errors import UserError, refuse_existing_output

log = logging.getLogger(__name__)

CACHE_VERSION = 1
MARKER = ".pseudohealthy-cache"  # written first: this folder is (being) written by `preprocess`
FINGERPRINT = "fingerprint.json"
ARRAYS = ("images", "lesions", "regions", "healthy")
OWN_FILES = (MARKER, FINGERPRINT, "slices.csv", "splits.json", "config.yaml", *(f"{a}.npy" for a in ARRAYS))
SPLIT_KEYS = ("test_fraction", "split_seed")  # changing only these rewrites splits.json, not the arrays
HASH_CHUNK = 1 << 20


# ----------------------------------------------------------------------------- reading


@dataclass(frozen=True)
class SliceRow:
    """One row of ``slices.csv``: ``normalised = scale * clipped_input + offset`` on that slice."""

    index: int
    case_id: str
    z: int
    has_lesion: bool
    scale: float
    offset: float


def is_complete_cache(folder: str | Path) -> bool:
    return (Path(folder) / FINGERPRINT).is_file()


def read_fingerprint(cache_dir: str | Path) -> dict[str, Any]:
    """``fingerprint.json`` of a complete cache, with a clear error for anything else."""
    cache_dir = Path(cache_dir)
    path = cache_dir / FINGERPRINT
    if not path.is_file():
        if not cache_dir.is_dir():
            raise UserError(f"{cache_dir}: slice cache folder not found; run `pseudohealthy preprocess` first.")
        raise UserError(f"{cache_dir}: not a complete slice cache (no {FINGERPRINT}); run `pseudohealthy preprocess` on it.")
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise UserError(f"{path}: not valid JSON ({exc.msg} at line {exc.lineno}).") from None
    if not isinstance(data, dict) or data.get("version") != CACHE_VERSION:
        raise UserError(f"{path}: cache format version {data.get('version') if isinstance(data, dict) else None} is not {CACHE_VERSION}; re-run `pseudohealthy preprocess`.")
    return data


def read_slice_table(cache_dir: str | Path) -> list[SliceRow]:
    """Rows of ``slices.csv`` in cache order."""
    path = Path(cache_dir) / "slices.csv"
    if not path.is_file():
        raise UserError(f"{path}: slice table not found; re-run `pseudohealthy preprocess`.")
    with path.open(newline="") as handle:
        return [
            SliceRow(int(r["index"]), r["case_id"], int(r["z"]), r["has_lesion"] == "1", float(r["scale"]), float(r["offset"]))
            for r in csv.DictReader(handle)
        ]


def open_array(cache_dir: str | Path, name: str) -> np.ndarray:
    """One cache array, memory-mapped read-only (nothing is loaded until indexed)."""
    path = Path(cache_dir) / f"{name}.npy"
    if not path.is_file():
        raise UserError(f"{path}: cache array not found; re-run `pseudohealthy preprocess`.")
    try:
        return np.load(path, mmap_mode="r")
    except (ValueError, OSError) as exc:
        raise UserError(f"{path}: cannot read this cache array ({exc}); re-run `pseudohealthy preprocess` with --overwrite.") from None


# ----------------------------------------------------------------------------- fingerprint


def sha256_file(path: str | Path) -> str:
    """sha256 of a file, read in 1 MiB chunks (volumes can be large)."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(HASH_CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _file_record(path: Path, root: Path) -> dict[str, Any]:
    try:
        shown = str(path.absolute().relative_to(root.absolute()))  # not resolved: links stay as named
    except ValueError:
        shown = str(path.absolute())
    return {"path": shown, "size": path.stat().st_size, "sha256": sha256_file(path)}


def _case_paths(files: CaseFiles) -> list[Path]:
    if files.image.is_dir():  # a reference-code case folder: its slice files
        return [p for _, p in reference_npy.slice_files(files.image)]
    return [p for p in (files.image, files.mask, files.healthy) if p is not None]


def _plain(value: Any) -> Any:
    """JSON round trip: tuples become lists, so a fresh config compares equal to a stored one."""
    return json.loads(json.dumps(value))


def _config_without_split(config: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in config.items() if k not in SPLIT_KEYS}


# ----------------------------------------------------------------------------- planning


@dataclass
class _Plan:
    files: CaseFiles
    shape: tuple[int, int, int]
    first: int  # first kept slice (canonical z)
    last: int  # last kept slice, inclusive
    start: int = 0  # first row in the cache arrays

    @property
    def n_slices(self) -> int:
        return self.last - self.first + 1


def _region_labels(cfg: PreprocessConfig) -> list[int] | None:
    if cfg.source == reference_npy.SOURCE:
        return None  # the slice files' own keys say brain or liver (data/reference_npy.py)
    return cfg.region_labels if cfg.region_labels is not None else default_region_labels(cfg.source)


def _keeps_margin(cfg: PreprocessConfig) -> bool:
    """CT with a labelled organ (LiTS): keep only the slices around the organ."""
    return intensity_mode(cfg) == "range" and bool(_region_labels(cfg))


def _kept_range(region_any_z: np.ndarray, margin: int) -> tuple[int, int]:
    depth = len(region_any_z)
    zs = np.flatnonzero(region_any_z)
    if zs.size == 0:
        return 0, depth - 1
    return max(0, int(zs[0]) - margin), min(depth - 1, int(zs[-1]) + margin)


def _plan_cases(cases: list[CaseFiles], cfg: PreprocessConfig) -> list[_Plan]:
    """Shapes from headers and kept slices, before any array is allocated."""
    plans = []
    labels = _region_labels(cfg)
    for files in cases:
        if cfg.source == reference_npy.SOURCE:
            shape = reference_npy.case_shape(files.image)
            plans.append(_Plan(files, shape, 0, shape[2] - 1))  # every slice file the reference code wrote
            continue
        shape = canonical_shape(files.image, "image")
        first, last = 0, shape[2] - 1
        if _keeps_margin(cfg) and files.mask is not None:
            mask = load_nifti(files.mask, "lesion mask").data
            if mask.shape == shape:  # a mismatch is reported by load_case with its full message
                first, last = _kept_range(np.isin(mask, labels).any(axis=(0, 1)), cfg.slice_margin)
        plans.append(_Plan(files, shape, first, last))
    if cfg.working_size is None:
        sizes = {p.shape[:2] for p in plans}
        if len(sizes) > 1:
            a, b = plans[0], next(p for p in plans if p.shape[:2] != plans[0].shape[:2])
            raise UserError(
                f"{b.files.image}: in-plane size {b.shape[0]}x{b.shape[1]} differs from {a.files.case_id}'s "
                f"{a.shape[0]}x{a.shape[1]}; set a common --working-size."
            )
        x, y = plans[0].shape[:2]
        if x % SIZE_MULTIPLE or y % SIZE_MULTIPLE:
            raise UserError(
                f"{plans[0].files.image}: in-plane size {x}x{y} is not a multiple of {SIZE_MULTIPLE}, which the networks need; set --working-size (for example 64 or 128)."
            )
    start = 0
    for plan in plans:
        plan.start = start
        start += plan.n_slices
    return plans


# ----------------------------------------------------------------------------- writing


def _summary(output_dir: Path, fingerprint: dict[str, Any], splits: dict[str, Any], status: str, seconds: float) -> dict[str, Any]:
    cases = fingerprint["cases"]
    return {
        "status": status,
        "output": str(output_dir),
        "source": fingerprint["source"],
        "cases": len(cases),
        "slices": int(sum(c["n_slices"] for c in cases.values())),
        "lesion_slices": int(fingerprint.get("n_lesion_slices", 0)),
        "train_cases": len(splits["train"]),
        "test_cases": len(splits["test"]),
        "working_size": fingerprint["working_size"],
        "cache_bytes": cache_size_bytes(output_dir),
        "seconds": round(seconds, 3),
        "warnings": list(fingerprint.get("warnings", [])),
    }


def _write_json(path: Path, data: dict[str, Any]) -> None:
    tmp = path.with_name(path.name + ".part")
    tmp.write_text(json.dumps(data, indent=2) + "\n")
    tmp.replace(path)


def _splits_for(case_ids: list[str], cfg: PreprocessConfig) -> dict[str, Any]:
    train, test = split_cases(case_ids, cfg.test_fraction, cfg.split_seed)
    return {"seed": int(cfg.split_seed), "test_fraction": float(cfg.test_fraction), "train": train, "test": test}


def _prepare_output(output_dir: Path, overwrite: bool) -> None:
    """Allow our own cache (complete or interrupted) to be rebuilt; refuse any other non-empty folder."""
    if output_dir.exists() and not (output_dir / MARKER).is_file():
        refuse_existing_output(output_dir, overwrite)
    if output_dir.exists() and not output_dir.is_dir():
        raise UserError(f"{output_dir}: output path exists and is not a folder.")
    output_dir.mkdir(parents=True, exist_ok=True)
    (output_dir / MARKER).write_text("slice cache written by `pseudohealthy preprocess`\n")


def _write_arrays(plans: list[_Plan], cfg: PreprocessConfig, output_dir: Path, working: tuple[int, int],
                  progress: bool, warn: Callable[[str], None]) -> tuple[dict[str, Any], list[SliceRow], list[str]]:
    """Second pass: fill the ``*.part.npy`` arrays case by case; returns per-case stats and rows."""
    from tqdm import tqdm

    total = sum(p.n_slices for p in plans)
    with_healthy = all(p.files.healthy is not None for p in plans)
    names = ["images", "lesions", "regions"] + (["healthy"] if with_healthy else [])
    dtypes = {"images": np.float32, "lesions": np.uint8, "regions": np.uint8, "healthy": np.float32}
    paths = {name: output_dir / f"{name}.part.npy" for name in names}
    for name in names:  # allocate (sparse on most file systems), then map one case at a time
        np.lib.format.open_memmap(paths[name], mode="w+", dtype=dtypes[name], shape=(total, *working)).flush()
    stats: dict[str, Any] = {}
    rows: list[SliceRow] = []
    warnings: list[str] = []
    bar = tqdm(plans, desc="preprocess", unit="case", disable=not progress, dynamic_ncols=True)
    for plan in bar:
        files = plan.files
        zs = list(range(plan.shape[2]))  # slice number of each stacked slice (canonical z for volumes)
        if cfg.source == reference_npy.SOURCE:
            npy_case = reference_npy.load_npy_case(files.image, cfg)
            prepared, lesion_full, zs = npy_case.prepared, npy_case.lesion, npy_case.zs
        else:
            case = load_case(files, cfg.source, cfg.lesion_labels, cfg.region_labels)
            prepared = prepare_volume(case.image.data, cfg, region=case.region)
            lesion_full = case.lesion if case.lesion is not None else np.zeros(plan.shape, bool)
        lesion = prepare_mask(lesion_full, prepared)
        keep = slice(plan.first, plan.last + 1)
        rows_here = slice(plan.start, plan.start + plan.n_slices)
        values = {"images": prepared.slices[keep], "lesions": lesion[keep], "regions": prepared.region[keep]}
        if with_healthy:
            values["healthy"] = normalise_like(case.healthy.data, prepared, cfg)[keep]  # type: ignore[union-attr]
        for name, value in values.items():
            # Mapped and unmapped per case: written pages then count as this process's memory for
            # one case only (a 259-case BraTS cache at 240x240 is about 13 GB).
            target = np.load(paths[name], mmap_mode="r+")
            target[rows_here] = value
            target.flush()
            del target
        has_lesion = lesion[keep].any(axis=(1, 2))
        lesion_z = np.asarray(zs)[np.flatnonzero(lesion_full.any(axis=(0, 1)))]
        if lesion_z.size == 0:
            warnings.append(f"{files.mask or files.image}: case {files.case_id} has no lesion voxel; its slices are kept as healthy.")
        for offset_row, z in enumerate(range(plan.first, plan.last + 1)):
            rows.append(SliceRow(plan.start + offset_row, files.case_id, zs[z], bool(has_lesion[offset_row]),
                                 float(prepared.scale[z]), float(prepared.offset[z])))
        stats[files.case_id] = {
            "shape": list(plan.shape),
            "clip": [float(prepared.clip[0]), float(prepared.clip[1])],
            "intensity": prepared.intensity,
            "slices": [zs[plan.first], zs[plan.last]],
            "n_slices": plan.n_slices,
            "rows": [plan.start, plan.start + plan.n_slices],
            "lesion_voxels": int(lesion_full.sum()),
            "lesion_slices": [int(lesion_z[0]), int(lesion_z[-1])] if lesion_z.size else None,
            "n_lesion_slices": int(has_lesion.sum()),
            "region_voxels": int(prepared.region_full.sum()) if prepared.region_full is not None else None,
            "has_healthy": files.healthy is not None,
            "grade": files.grade,
        }
        bar.set_postfix(case=files.case_id, slices=plan.n_slices, lesion=int(has_lesion.sum()))
    bar.close()
    for message in warnings:  # after the bar, which would otherwise overprint them
        warn(message)
    return stats, rows, warnings


def _write_slice_table(path: Path, rows: list[SliceRow]) -> None:
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["index", "case_id", "z", "has_lesion", "scale", "offset"])
        for r in rows:
            writer.writerow([r.index, r.case_id, r.z, int(r.has_lesion), repr(r.scale), repr(r.offset)])


def preprocess_dataset(
    input_dir: str | Path,
    output_dir: str | Path,
    cfg: PreprocessConfig,
    overwrite: bool = False,
    progress: bool = True,
    warn: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Read the raw data set once and write (or confirm) its slice cache; returns a summary dict.

    ``cfg.source`` may be ``"auto"`` (detected from the folder's layout). ``warn`` receives warnings
    such as a case without lesion (default: the ``logging`` module). The summary holds ``status``
    (``built``, ``up to date`` or ``splits updated``), ``cases``, ``slices``, ``lesion_slices``,
    ``train_cases``, ``test_cases``, ``cache_bytes`` and ``seconds``.
    """
    started = time.perf_counter()
    warn = warn or log.warning
    input_dir, output_dir = Path(input_dir), Path(output_dir)
    if cfg.source == "auto":
        cfg = dataclasses.replace(cfg, source=detect_source(input_dir))
    validate_config(cfg)
    if cfg.source == reference_npy.SOURCE:
        cases = [CaseFiles(folder.name, folder) for folder in reference_npy.find_case_folders(input_dir)]
        if cfg.intensity is None and reference_npy.image_kind(cases[0].image) == "liver":
            cfg = dataclasses.replace(cfg, intensity="range")  # recorded, so that synthesis windows CT alike
    else:
        cases = find_cases(input_dir, cfg.source, cfg.modality, cfg.grade, require_mask=True)
    if output_dir.exists() and not (output_dir / MARKER).is_file():
        refuse_existing_output(output_dir, overwrite)
    records = {c.case_id: [_file_record(p, input_dir) for p in _case_paths(c)] for c in cases}
    config = _plain(to_dict(cfg))

    previous = None
    # An up-to-date cache is kept even with ``overwrite`` (which only allows writing into a folder
    # that is not ours): re-running the demo or a script must stay fast.
    if (output_dir / MARKER).is_file() and (output_dir / FINGERPRINT).is_file():
        try:
            previous = read_fingerprint(output_dir)
        except UserError:
            previous = None  # an unreadable or older fingerprint: rebuild
    if previous is not None and {k: v["files"] for k, v in previous["cases"].items()} == records and \
            _config_without_split(previous["config"]) == _config_without_split(config):
        splits = _splits_for(list(records), cfg)
        status = "up to date"
        if previous["config"] != config:
            write_splits(output_dir / "splits.json", splits["train"], splits["test"], splits["seed"], splits["test_fraction"])
            previous["config"] = config
            _write_json(output_dir / FINGERPRINT, previous)
            write_config(cfg, output_dir / "config.yaml")
            status = "splits updated"
        return _summary(output_dir, previous, splits, status, time.perf_counter() - started)

    plans = _plan_cases(cases, cfg)
    working = (cfg.working_size, cfg.working_size) if cfg.working_size is not None else plans[0].shape[:2]
    _prepare_output(output_dir, overwrite)
    parts = [output_dir / f"{name}.part.npy" for name in ARRAYS] + [output_dir / "slices.csv.part"]
    try:
        stats, rows, warnings = _write_arrays(plans, cfg, output_dir, working, progress, warn)
        _write_slice_table(output_dir / "slices.csv.part", rows)
        # From here on the folder is briefly incomplete: the old fingerprint goes first.
        (output_dir / FINGERPRINT).unlink(missing_ok=True)
        for name in ARRAYS:
            part = output_dir / f"{name}.part.npy"
            if part.exists():
                part.replace(output_dir / f"{name}.npy")
            else:
                (output_dir / f"{name}.npy").unlink(missing_ok=True)  # no stale healthy.npy from a former build
        (output_dir / "slices.csv.part").replace(output_dir / "slices.csv")
    except BaseException:
        for part in parts:
            part.unlink(missing_ok=True)
        raise
    splits = _splits_for(list(records), cfg)
    write_splits(output_dir / "splits.json", splits["train"], splits["test"], splits["seed"], splits["test_fraction"])
    write_config(cfg, output_dir / "config.yaml")
    seconds = time.perf_counter() - started
    fingerprint = {
        "version": CACHE_VERSION,
        "package_version": _package_version(),
        "config": config,
        "source": cfg.source,
        "input": str(input_dir.resolve()),
        "working_size": [int(working[0]), int(working[1])],
        "resize_mode": cfg.resize_mode if cfg.working_size is not None else "none",
        "n_slices": len(rows),
        "n_lesion_slices": int(sum(r.has_lesion for r in rows)),
        "has_healthy": all(c["has_healthy"] for c in stats.values()),
        "seconds": round(seconds, 3),
        "created": time.strftime("%Y-%m-%dT%H:%M:%S"),
        "warnings": warnings,
        "cases": {case_id: {"files": records[case_id], **case_stats} for case_id, case_stats in stats.items()},
    }
    _write_json(output_dir / FINGERPRINT, fingerprint)  # last: its presence means the cache is complete
    return _summary(output_dir, fingerprint, splits, "built", seconds)


def _package_version() -> str:
    try:
        from importlib.metadata import version

        return version("pseudohealthy")
    except Exception:  # not installed (running from a source tree)
        return "unknown"


def cache_size_bytes(cache_dir: str | Path) -> int:
    """Bytes on disk of the cache's files (what ``du`` would count, without block rounding)."""
    return sum(os.path.getsize(p) for p in Path(cache_dir).iterdir() if p.is_file())
