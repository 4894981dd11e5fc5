"""Write one volume per case of a data set in the synthesis layout (``<out>/<case_id>.nii.gz``).

Shared by the methods that need no network, only the case itself: counterfeits
(:mod:`pseudohealthy.metrics.counterfeits`) and classical fills (:mod:`pseudohealthy.inference.fills`).
Each output keeps its input's geometry (affine, header, canonical voxel order turned back) and units,
as ``pseudohealthy synthesize`` does; the run's settings go to a JSON file next to the volumes.
"""
from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np

from pseudohealthy.data.sources import Case, CaseFiles
from pseudohealthy.errors import UserError

# make(case, index, source) -> (X, Y, Z) volume in input units; index is the case's position in the data set
MakeVolume = Callable[[Case, int, str], np.ndarray]


def case_region(case: Case) -> np.ndarray:
    """The organ region of a case: its labels' region (LiTS liver) where the layout has one, else ``image > 0``."""
    return case.region if case.region is not None else case.image.data > 0


def select_cases(data: str | Path, cases: list[str] | None, source: str, modality: str) -> tuple[str, list[tuple[int, CaseFiles]]]:
    """``(source, [(index, files)])``: the cases of ``data`` (all, or ``cases`` in that order) with their
    position in the whole data set, so a subset gets the same per-case seed as the full run."""
    from pseudohealthy.data.sources import detect_source, find_cases

    source = detect_source(data) if source == "auto" else source
    indexed = list(enumerate(find_cases(data, source=source, modality=modality)))
    if cases is None:
        return source, indexed
    by_id = {files.case_id: (i, files) for i, files in indexed}
    unknown = [c for c in cases if c not in by_id]
    if unknown:
        raise UserError(f"{data}: case(s) {', '.join(unknown)} not found in this data set.")
    return source, [by_id[c] for c in cases]


def write_case_volumes(data: str | Path, output: str | Path, make: MakeVolume, settings: dict[str, Any], settings_file: str,
                       label: str, cases: list[str] | None = None, source: str = "auto", modality: str = "t2",
                       overwrite: bool = False, progress: bool = True) -> list[Path]:
    """Write ``make``'s volume of every case of ``data`` (or of ``cases``) to ``<output>/<case_id>.nii.gz``.

    ``settings`` (the caller's own) are written to ``<output>/<settings_file>`` together with the data,
    source, modality, case list and the seconds ``make`` took per case (reading and writing excluded).
    ``label`` names the progress bar. Refuses a non-empty ``output`` unless ``overwrite``.
    """
    from tqdm import tqdm

    from pseudohealthy.data.nifti_io import save_like
    from pseudohealthy.data.sources import load_case
    from pseudohealthy.errors import refuse_existing_output

    output = Path(output)
    refuse_existing_output(output, overwrite)
    source, indexed = select_cases(data, cases, source, modality)
    output.mkdir(parents=True, exist_ok=True)
    written, seconds = [], {}
    for index, files in tqdm(indexed, desc=label, unit="case", disable=not progress):
        case = load_case(files, source)
        start = time.perf_counter()
        volume = make(case, index, source)
        seconds[files.case_id] = round(time.perf_counter() - start, 4)
        written.append(save_like(volume, case.image, output / f"{files.case_id}.nii.gz"))
    record = {**settings, "data": str(data), "source": source, "modality": modality,
              "cases": [files.case_id for _, files in indexed], "seconds_per_case": seconds}
    (output / settings_file).write_text(json.dumps(record, indent=2) + "\n")
    return written
