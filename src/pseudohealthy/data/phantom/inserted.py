"""``pseudohealthy phantom --kind inserted``: real scans with synthetic lesions, written with their truth.

Each source case (BraTS or LiTS layout) gives ``copies`` cases in the same layout: the source image with
1..``max_lesions`` synthetic lesions inserted into its lesion-free tissue, the labels (the source's own
kept as they are, inserted ones painted: brain 1 core / 2 edema / 4 rim, liver 2), and the true healthy
volume: the source image, NaN inside the source's own lesions (truth unknown there). Volumes keep the
source's affine, header, orientation and units. Every number drawn goes to ``<case>_params.json``;
:func:`replay_inserted_case` renders the same arrays from it.
"""
from __future__ import annotations

import time
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from nibabel.orientations import inv_ornt_aff, io_orientation

from pseudohealthy.data.nifti_io import Volume, load_nifti, save_like
from pseudohealthy.data.phantom.inserted_model import default_model, fit_ranges, lesion_measurements
from pseudohealthy.data.phantom.inserted_render import (
    SourceTissue,
    healthy_of,
    render_inserted,
    sample_lesions,
    source_tissue,
)
from pseudohealthy.data.sources import CaseFiles, detect_source, find_cases, load_case
from pseudohealthy.errors import UserError, refuse_existing_output

ORGAN_OF_LAYOUT = {"brats": "brain", "lits": "liver"}
STREAM = 7  # separates these random streams from the built-in phantom's


@dataclass
class InsertedCase:
    """One inserted-lesion case, canonical arrays ``(X, Y, Z)`` in their on-disk dtypes."""

    image: np.ndarray  # the source's dtype (or float32 where it was scaled integers)
    labels: np.ndarray  # the source segmentation's dtype
    healthy: np.ndarray  # float32, NaN inside the source's own lesions
    params: dict[str, Any]
    image_ref: Volume  # the source volumes whose affine and header the outputs take
    seg_ref: Volume


def _voxel_mm(volume: Volume) -> np.ndarray:
    """Voxel sizes (mm) along the canonical axes."""
    ornt = io_orientation(volume.affine)
    sizes = np.zeros(3)
    for axis in range(3):
        sizes[int(ornt[axis, 0])] = float(np.linalg.norm(volume.affine[:3, axis]))
    return sizes


def _canonical_affine(volume: Volume) -> np.ndarray:
    """Canonical voxel index -> world mm (for the human-readable lesion positions in the params)."""
    ornt = io_orientation(volume.affine)
    disk_shape = [0, 0, 0]
    for axis in range(3):
        disk_shape[axis] = volume.data.shape[int(ornt[axis, 0])]
    return volume.affine @ inv_ornt_aff(ornt, disk_shape)


def _image_dtype(volume: Volume) -> np.dtype:
    """The source's on-disk type, unless it stores scaled integers (then float32)."""
    dtype = volume.header.get_data_dtype()
    slope, inter = volume.header.get_slope_inter()
    if np.issubdtype(dtype, np.floating):
        return np.dtype(dtype)
    if np.issubdtype(dtype, np.integer) and slope in (None, 1.0) and inter in (None, 0.0):
        return np.dtype(dtype)
    return np.dtype(np.float32)


def _as_dtype(array: np.ndarray, dtype: np.dtype) -> np.ndarray:
    if np.issubdtype(dtype, np.integer):
        info = np.iinfo(dtype)
        return np.clip(np.rint(array), info.min, info.max).astype(dtype)
    return array.astype(dtype)


@dataclass
class LoadedSource:
    files: CaseFiles
    image: Volume
    seg: Volume
    tissue: SourceTissue


def load_source(files: CaseFiles, layout: str, model: dict[str, Any]) -> LoadedSource:
    """Read one source case with the package's reader, and the tissue where lesions may go."""
    case = load_case(files, layout)
    assert files.mask is not None
    seg = load_nifti(files.mask, "lesion mask")
    tissue = source_tissue(ORGAN_OF_LAYOUT[layout], case.image.data, seg.data, _voxel_mm(case.image), model)
    return LoadedSource(files, case.image, seg, tissue)


def _no_room(files: CaseFiles, organ: str, model: dict[str, Any]) -> UserError:
    where = ("brain (image > 0) outside CSF" if organ == "brain" else "liver (label 1)") + f" more than {model['margin_mm']:g} mm from the own lesion"
    return UserError(f"{files.image}: no lesion-free tissue can hold an inserted lesion (looked in the {where}).")


def make_case(source: LoadedSource, layout: str, model: dict[str, Any], params: dict[str, Any], max_lesions: int) -> InsertedCase:
    """Draw the lesions of one copy (``params`` holds its seed and bookkeeping) and render the case."""
    organ = ORGAN_OF_LAYOUT[layout]
    key = [int(params["seed"]), int(params["source"]["stream"]), int(params["copy"]), STREAM]
    rng = np.random.default_rng(np.random.SeedSequence(key))
    lesions, rendered = sample_lesions(rng, organ, source.tissue, model, max_lesions)
    if not lesions:
        raise _no_room(source.files, organ, model)
    to_world = _canonical_affine(source.image)
    for lesion in lesions:
        index = np.asarray(lesion["center_mm"]) / source.tissue.voxel_mm
        lesion["center_world_mm"] = [float(v) for v in to_world[:3, :3] @ index + to_world[:3, 3]]
    params["lesions"] = lesions
    return _assemble(source, layout, params, rendered)


def _assemble(source: LoadedSource, layout: str, params: dict[str, Any], rendered=None) -> InsertedCase:
    image, labels = render_inserted(ORGAN_OF_LAYOUT[layout], source.tissue, params["lesions"], rendered)
    seg_dtype = source.seg.header.get_data_dtype()
    seg_dtype = np.dtype(seg_dtype) if np.issubdtype(seg_dtype, np.integer) else np.dtype(np.uint8)
    return InsertedCase(_as_dtype(image, _image_dtype(source.image)), labels.astype(seg_dtype), healthy_of(source.tissue),
                        params, source.image, source.seg)


def _source_record(files: CaseFiles, root: Path, stream: int) -> dict[str, Any]:
    from pseudohealthy.data.cache import sha256_file

    assert files.mask is not None
    return {
        "root": str(root.absolute()), "case_id": files.case_id, "stream": stream,
        "image": str(files.image.absolute().relative_to(root.absolute())), "image_sha256": sha256_file(files.image),
        "mask": str(files.mask.absolute().relative_to(root.absolute())), "mask_sha256": sha256_file(files.mask),
    }


def replay_inserted_case(params: dict[str, Any], source_root: str | Path | None = None) -> InsertedCase:
    """Render a case again from its params (as in ``<case>_params.json``; a path goes through
    :func:`pseudohealthy.data.phantom.replay_case`), reading the source it names (under ``source_root``
    when the source folder has moved); the arrays equal the written ones."""
    from pseudohealthy.data.cache import sha256_file

    record = params["source"]
    root = Path(source_root) if source_root is not None else Path(record["root"])
    files = CaseFiles(record["case_id"], root / record["image"], root / record["mask"])
    for key in ("image", "mask"):
        where = getattr(files, key)
        if not where.is_file():
            raise UserError(f"{where}: source file of this inserted case not found; pass the source folder.")
        if sha256_file(where) != record[f"{key}_sha256"]:
            raise UserError(f"{where}: source file differs from the one the case was made from (sha256).")
    source = load_source(files, params["layout"], params["model"])
    return _assemble(source, params["layout"], params)


def write_inserted_case(case: InsertedCase, output: Path, name: str) -> Path:
    """Write a case in its layout with the source's affine and header; returns the case folder or image."""
    from pseudohealthy.data.phantom.layout import case_paths, write_params

    paths = case_paths(case.params["layout"], output, name)
    write_params(case.params, paths["params"])
    save_like(case.image, case.image_ref, paths["image"], dtype=case.image.dtype.type)
    save_like(case.labels, case.seg_ref, paths["seg"], dtype=case.labels.dtype.type)
    save_like(case.healthy, case.image_ref, paths["healthy"], dtype=np.float32)
    return paths["entry"]


def _source_cases(source_dir: Path) -> tuple[str, list[CaseFiles]]:
    layout = detect_source(source_dir)
    if layout not in ORGAN_OF_LAYOUT:
        raise UserError(f"{source_dir}: --kind inserted reads BraTS or LiTS layouts; this folder is in the nnU-Net-style {layout} layout.")
    return layout, find_cases(source_dir, source=layout)


def fit_model(sources: list[CaseFiles], layout: str, model: dict[str, Any], progress: bool = True) -> dict[str, Any]:
    """``--fit-intensity``: set the intensity ranges from the data set's own lesions; returns the summary."""
    from tqdm import tqdm

    organ = ORGAN_OF_LAYOUT[layout]
    per_case = {}
    for files in tqdm(sources, desc="fit intensity", unit="case", disable=not progress):
        source = load_source(files, layout, model)
        tissue = source.tissue
        measured = lesion_measurements(organ, tissue.image, tissue.labels, tissue.tissue, tissue.voxel_mm, float(model["reference_half_mm"]))
        if measured:
            per_case[files.case_id] = measured
    if not per_case:
        raise UserError(f"{sources[0].image.parent}: --fit-intensity needs cases with their own lesions, but no case of this data set has one.")
    return {"per_case": per_case, "ranges": fit_ranges(organ, per_case, model)}


def generate_inserted(
    source_dir: str | Path,
    output: str | Path,
    copies: int = 1,
    seed: int = 0,
    max_lesions: int = 3,
    fit_intensity: bool = False,
    overwrite: bool = False,
    progress: bool = True,
    copies_per_case: dict[str, int] | None = None,
) -> list[Path]:
    """Write ``copies`` inserted-lesion cases per source case to ``output`` plus ``phantom.json``.

    ``copies_per_case`` overrides ``copies`` for the source cases it names (the pipeline gives a
    training subject more copies than a test subject). Copy ``k`` of a case is the same whatever the
    number of copies: its draws depend on the case id, the seed and ``k`` only.

    Returns the case folders (BraTS) or image files (LiTS) in order. Refuses a non-empty ``output``
    unless ``overwrite``, which first deletes what an earlier phantom run wrote there.
    """
    from tqdm import tqdm

    from pseudohealthy import __version__
    from pseudohealthy.data.phantom import check_seed_and_lesions, prepare_output
    from pseudohealthy.data.phantom.layout import write_dataset_record

    source_dir, output = Path(source_dir), Path(output)
    copies_per_case = dict(copies_per_case or {})
    for count in [copies, *copies_per_case.values()]:
        if int(count) < 1:
            raise UserError(f"--copies {count}: need at least one copy per source case.")
    check_seed_and_lesions(seed, max_lesions)
    layout, sources = _source_cases(source_dir)
    if output.absolute() == source_dir.absolute():
        raise UserError(f"{output}: the output folder must differ from the source folder --from.")
    refuse_existing_output(output, overwrite)
    organ = ORGAN_OF_LAYOUT[layout]
    model = default_model(organ)
    fit = fit_model(sources, layout, model, progress) if fit_intensity else None
    prepare_output(output, overwrite)
    output.mkdir(parents=True, exist_ok=True)
    written, case_map = [], {}
    start = time.perf_counter()
    count_of = {files.case_id: int(copies_per_case.get(files.case_id, copies)) for files in sources}
    bar = tqdm(total=sum(count_of.values()), desc="phantom inserted", unit="case", disable=not progress)
    for files in sources:
        stream = zlib.crc32(files.case_id.encode())  # a case's draws depend on its id, not its place in the list
        record = _source_record(files, source_dir, stream)
        source = load_source(files, layout, model)
        for copy in range(count_of[files.case_id]):
            name = f"{files.case_id}-ins{copy:02d}" if layout == "brats" else f"volume-{len(case_map)}"
            params = {"generator": "pseudohealthy phantom --kind inserted", "version": __version__, "kind": "inserted",
                      "organ": organ, "layout": layout, "case_id": name, "seed": int(seed), "copy": copy,
                      "source": record, "voxel_mm": [float(v) for v in source.tissue.voxel_mm], "model": model}
            case = make_case(source, layout, model, params, max_lesions)
            written.append(write_inserted_case(case, output, name))
            case_map[name] = {"source": files.case_id, "copy": copy}
            bar.update(1)
            bar.set_postfix(case=name, lesions=len(case.params["lesions"]))
    bar.close()
    write_dataset_record(output, {
        "generator": "pseudohealthy phantom", "version": __version__, "kind": "inserted", "output": str(output),
        "source": str(source_dir.absolute()), "layout": layout, "organ": organ, "seed": int(seed), "copies": int(copies),
        "copies_per_case": {k: v for k, v in count_of.items() if v != int(copies)},
        "max_lesions": int(max_lesions), "fit_intensity": bool(fit_intensity), "model": model, "fit": fit,
        "case_ids": list(case_map), "case_map": case_map, "seconds_per_case": (time.perf_counter() - start) / max(len(case_map), 1),
    })
    return written
