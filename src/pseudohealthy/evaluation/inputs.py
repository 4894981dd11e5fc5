"""What an evaluation reads: the data set's cases, the methods' output folders, and their checks.

A method is ``NAME=DIR`` (a folder with one ``<case_id>.nii.gz`` per case, the layout of
``pseudohealthy synthesize``) or ``NAME=@original`` (the pathological inputs themselves, the paper's
"original images" row) or ``NAME=@healthy`` (the true healthy volumes of a data set that has them, such
as the phantom, or those of ``--healthy DIR``). The special ones write no files.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from pseudohealthy.config import PreprocessConfig
from pseudohealthy.data.nifti_io import Volume, load_nifti
from pseudohealthy.data.sources import Case, CaseFiles, detect_source, find_cases, load_case
from pseudohealthy.errors import UserError

ORIGINAL = "@original"
HEALTHY = "@healthy"
SPECIALS = (ORIGINAL, HEALTHY)


@dataclass
class MethodSpec:
    """One compared method: a folder of outputs, or one of the special sources."""

    name: str
    path: Path | None = None  # folder of <case_id>.nii.gz
    special: str | None = None  # ORIGINAL | HEALTHY
    available: list[str] = field(default_factory=list)  # evaluated cases this method has
    missing: list[str] = field(default_factory=list)  # evaluated cases it lacks

    @property
    def source(self) -> str:
        return self.special if self.special else str(self.path)


def parse_method(text: str) -> MethodSpec:
    """``NAME=DIR``, ``NAME=@original`` or ``NAME=@healthy`` -> :class:`MethodSpec`."""
    if "=" not in text:
        raise UserError(f"--method {text!r}: expected NAME=DIR, NAME=@original or NAME=@healthy.")
    name, where = (part.strip() for part in text.split("=", 1))
    if not name or not where:
        raise UserError(f"--method {text!r}: both the name and the folder are needed (NAME=DIR).")
    if where.startswith("@"):
        if where not in SPECIALS:
            raise UserError(f"--method {text!r}: {where} is unknown; the special sources are {', '.join(SPECIALS)}.")
        return MethodSpec(name, None, where)
    path = Path(where)
    if not path.is_dir():
        raise UserError(f"{path}: output folder of method {name} not found.")
    return MethodSpec(name, path)


def parse_methods(texts: list[str]) -> list[MethodSpec]:
    """Parse every ``--method``; names must be unique."""
    if not texts:
        raise UserError("no method to evaluate; pass at least one --method NAME=DIR.")
    specs = [parse_method(t) for t in texts]
    names = [s.name for s in specs]
    doubled = sorted({n for n in names if names.count(n) > 1})
    if doubled:
        raise UserError(f"method name(s) {', '.join(doubled)} given more than once; each --method needs its own name.")
    return specs


def parse_cases(text: str | None) -> list[str] | None:
    """``--cases``: None (all), a comma-separated list of case ids, or a ``splits.json`` (its test cases)."""
    if text is None or not str(text).strip():
        return None
    path = Path(text)
    if path.suffix == ".json" or path.is_file():
        if not path.is_file():
            raise UserError(f"{path}: splits file not found.")
        try:
            splits = json.loads(path.read_text())
            test = splits["test"]
        except (json.JSONDecodeError, KeyError, TypeError):
            raise UserError(f"{path}: not a splits.json with a 'test' list of case ids.") from None
        if not isinstance(test, list) or not test:
            raise UserError(f"{path}: its 'test' list of case ids is empty.")
        return [str(c) for c in test]
    return [c.strip() for c in str(text).split(",") if c.strip()]


def resolve_cases(data: str | Path, cases: list[str] | None, source: str = "auto", modality: str = "t2") -> tuple[str, list[CaseFiles], list[CaseFiles]]:
    """``(source, evaluated, others)``: the cases of ``data`` to evaluate (all, or ``cases``) and the rest."""
    source = detect_source(data) if source == "auto" else source
    found = find_cases(data, source=source, modality=modality)
    if cases is None:
        return source, found, []
    by_id = {c.case_id: c for c in found}
    unknown = [c for c in cases if c not in by_id]
    if unknown:
        raise UserError(f"{data}: case(s) {', '.join(unknown)} not found in this data set.")
    chosen = set(cases)
    return source, [by_id[c] for c in cases], [c for c in found if c.case_id not in chosen]


def output_file(folder: Path, case_id: str) -> Path | None:
    """The method's volume for ``case_id``: ``<folder>/<case_id>.nii.gz`` (or ``.nii``), else None."""
    for suffix in (".nii.gz", ".nii"):
        candidate = folder / f"{case_id}{suffix}"
        if candidate.is_file():
            return candidate
    return None


def attach_cases(specs: list[MethodSpec], evaluated: list[CaseFiles], healthy_dir: Path | None) -> None:
    """Fill each method's available/missing cases; refuse a method with no case or absent ground truth."""
    ids = [c.case_id for c in evaluated]
    for spec in specs:
        if spec.special == ORIGINAL:
            spec.available, spec.missing = list(ids), []
            continue
        if spec.special == HEALTHY:
            for files in evaluated:
                if healthy_file(files, healthy_dir) is None:
                    where = f"{healthy_dir}/{files.case_id}.nii.gz" if healthy_dir is not None else f"a true healthy volume next to {files.image.name}"
                    raise UserError(
                        f"{files.image.parent}: method {spec.name}={HEALTHY} needs the ground truth, but case {files.case_id} has none "
                        f"(looked for {where}); pass --healthy DIR or drop that method."
                    )
            spec.available, spec.missing = list(ids), []
            continue
        assert spec.path is not None
        spec.available = [i for i in ids if output_file(spec.path, i) is not None]
        spec.missing = [i for i in ids if i not in spec.available]
        if not spec.available:
            raise UserError(f"{spec.path}: output folder of method {spec.name} holds none of the {len(ids)} evaluated cases (expected files like {ids[0]}.nii.gz).")


def healthy_file(files: CaseFiles, healthy_dir: Path | None) -> Path | None:
    """Where the true healthy volume of a case is: ``--healthy DIR/<case>.nii.gz`` first, else the data set's own."""
    if healthy_dir is not None:
        return output_file(healthy_dir, files.case_id)
    return files.healthy


def load_evaluation_case(files: CaseFiles, source: str, healthy_dir: Path | None) -> Case:
    """Load a case with its lesion mask and, where there is one, its true healthy volume (checked geometry)."""
    if healthy_dir is not None:
        override = output_file(healthy_dir, files.case_id)
        files = CaseFiles(files.case_id, files.image, files.mask, override, files.grade)
    case = load_case(files, source)
    if case.lesion is None:
        raise UserError(f"{files.image}: lesion mask for case {files.case_id} is missing; evaluation needs it.")
    return case


def check_geometry(output: Volume, image: Volume, method: str) -> None:
    """Refuse an output whose shape or affine differs from its pathological input, in one sentence."""
    if output.data.shape != image.data.shape:
        raise UserError(f"{output.path}: output of method {method} has shape {output.data.shape} but the pathological image {image.path.name} has {image.data.shape}.")
    if not np.allclose(output.affine, image.affine, atol=1e-3):
        raise UserError(f"{output.path}: output of method {method} has an affine that differs from that of the pathological image {image.path.name}.")


def method_volume(spec: MethodSpec, case: Case) -> np.ndarray:
    """The method's output for ``case`` as a float32 ``(X, Y, Z)`` canonical array in input units."""
    if spec.special == ORIGINAL:
        return case.image.data.astype(np.float32, copy=False)
    if spec.special == HEALTHY:
        if case.healthy is None:
            raise UserError(f"{case.image.path}: case {case.case_id} has no true healthy volume for method {spec.name}.")
        # Where the truth is unknown (NaN), the "true healthy" method shows the input itself.
        truth = case.healthy.data.astype(np.float32, copy=False)
        return truth if np.isfinite(truth).all() else np.where(np.isfinite(truth), truth, case.image.data).astype(np.float32)
    assert spec.path is not None
    path = output_file(spec.path, case.case_id)
    if path is None:
        raise UserError(f"{spec.path}: output of method {spec.name} for case {case.case_id} not found.")
    volume = load_nifti(path, f"output of method {spec.name}")
    check_geometry(volume, case.image, spec.name)
    return volume.data


def preprocess_config(source: str, modality: str, working_size: int) -> PreprocessConfig:
    """The preprocessing the metrics' segmentors see: the source's defaults at ``working_size``."""
    return PreprocessConfig(source=source, modality=modality, working_size=working_size)
