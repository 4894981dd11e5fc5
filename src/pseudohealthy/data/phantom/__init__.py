"""The built-in phantom: synthetic pathological volumes with their true healthy volumes.

``brain``: T2-like BraTS-style volumes on real anatomy (the MNI152 2009 tissue maps shipped with
nilearn), each case a different subject, with irregular tumours (edema, core, optional rim).
``liver``: procedural abdominal CT in HU (LiTS-style) with vessels and hypodense lesions.
Outside the lesion mask the pathological and healthy volumes are identical voxel for voxel, so the
lesion region itself can be scored against ground truth.

Random-then-deterministic: every case's parameters are drawn from ``(seed, case index)`` and
written to ``<case>_params.json``; :func:`replay_case` renders the same arrays from that file.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from pseudohealthy.data.phantom.case import PhantomCase
from pseudohealthy.errors import UserError, refuse_existing_output

KINDS = ("brain", "liver")
MIN_SIZE = 16
__all__ = ["KINDS", "PhantomCase", "default_shape", "generate_case", "generate_phantom", "parse_shape", "replay_case"]


def default_shape(kind: str) -> tuple[int, int, int]:
    """BraTS 240x240x155 at 1 mm for the brain; LiTS-like 512x512x64 (0.78 x 0.78 x 5 mm) for the liver."""
    from pseudohealthy.data.phantom.brain import BRATS_SHAPE
    from pseudohealthy.data.phantom.liver import LITS_SHAPE

    return {"brain": BRATS_SHAPE, "liver": LITS_SHAPE}[_check_kind(kind)]


def _check_kind(kind: str) -> str:
    if kind not in KINDS:
        raise UserError(f"phantom kind {kind!r} is unknown; choose one of {', '.join(KINDS)}, or inserted (with --from DATA_DIR).")
    return kind


def parse_shape(text: str) -> tuple[int, int, int]:
    """``"64,64,40"`` -> ``(64, 64, 40)``; a clear error for anything else."""
    parts = [p.strip() for p in str(text).replace("x", ",").split(",")]
    try:
        shape = tuple(int(p) for p in parts)
    except ValueError:
        shape = ()
    if len(shape) != 3 or min(shape) < MIN_SIZE:
        raise UserError(f"--shape {text!r}: expected three integers of at least {MIN_SIZE}, such as 64,64,40.")
    return shape  # type: ignore[return-value]


def case_rng(seed: int, index: int, kind: str) -> np.random.Generator:
    """The random stream of one case: depends on (seed, index, kind) only, not on how many cases are made."""
    return np.random.default_rng(np.random.SeedSequence([int(seed), int(index), KINDS.index(kind)]))


def generate_case(kind: str, seed: int, index: int, shape: Sequence[int] | None = None, max_lesions: int = 3) -> PhantomCase:
    """One case in memory (nothing written); same arguments, same arrays."""
    from pseudohealthy import __version__

    shape = tuple(int(n) for n in shape) if shape is not None else default_shape(kind)
    rng = case_rng(seed, index, _check_kind(kind))
    try:
        if kind == "brain":
            from pseudohealthy.data.phantom.brain import generate_brain_case

            case = generate_brain_case(rng, shape, (1, max_lesions))
        else:
            from pseudohealthy.data.phantom.liver import generate_liver_case

            case = generate_liver_case(rng, shape, (1, max_lesions))
    except RuntimeError as exc:  # lesion placement failed: the grid is too coarse to hold a lesion
        raise UserError(f"--shape {','.join(map(str, shape))}: too coarse for a {kind} phantom ({exc}); use a finer shape.") from None
    case.params.update({"version": __version__, "seed": int(seed), "index": int(index)})
    return case


def replay_case(params: dict[str, Any] | str | Path, source_root: str | Path | None = None) -> Any:
    """Render a case again from its params (a dict or a ``*_params.json`` path); arrays equal the written ones.

    Built-in kinds give a :class:`PhantomCase`; ``kind: inserted`` gives an ``InsertedCase``, read from
    the source scan the params name (under ``source_root`` when that folder has moved).
    """
    if not isinstance(params, dict):
        path = Path(params)
        try:
            params = json.loads(path.read_text())
        except (OSError, ValueError) as exc:
            raise UserError(f"{path}: cannot read phantom parameters ({exc}).") from None
    if params.get("kind") == "inserted":
        from pseudohealthy.data.phantom.inserted import replay_inserted_case

        return replay_inserted_case(params, source_root)
    kind = _check_kind(params.get("kind", ""))
    if kind == "brain":
        from pseudohealthy.data.phantom.brain import replay_brain_case

        return replay_brain_case(params)
    from pseudohealthy.data.phantom.liver import replay_liver_case

    return replay_liver_case(params)


def check_seed_and_lesions(seed: int, max_lesions: int) -> None:
    """Refuse a negative seed or a lesion count outside 1..10, in one sentence."""
    if int(seed) < 0:
        raise UserError(f"--seed {seed}: the seed must be a non-negative integer.")
    if not 1 <= int(max_lesions) <= 10:
        raise UserError(f"--max-lesions {max_lesions}: choose between 1 and 10 lesions per case.")


def prepare_output(output: Path, overwrite: bool) -> None:
    """Refuse a non-empty ``output`` unless ``overwrite``; then delete what an earlier phantom wrote there."""
    from pseudohealthy.data.phantom.layout import remove_previous

    refuse_existing_output(output, overwrite)
    if output.exists() and not output.is_dir():
        raise UserError(f"{output}: exists and is not a folder.")
    remove_previous(output)


def generate_phantom(
    output: Path,
    cases: int,
    seed: int,
    kind: str = "brain",
    shape: tuple[int, int, int] | None = None,
    overwrite: bool = False,
    progress: bool = True,
    max_lesions: int = 3,
) -> list[Path]:
    """Write ``cases`` phantom cases to ``output`` (BraTS layout for brain, LiTS for liver) plus ``phantom.json``.

    Returns the case folders (brain) or image files (liver) in order. Refuses a non-empty
    ``output`` unless ``overwrite``, which first deletes what an earlier phantom run wrote there.
    """
    from tqdm import tqdm

    from pseudohealthy import __version__
    from pseudohealthy.data.phantom.layout import case_id, write_case, write_dataset_record

    output = Path(output)
    _check_kind(kind)
    if int(cases) < 1:
        raise UserError(f"--cases {cases}: need at least one case.")
    check_seed_and_lesions(seed, max_lesions)
    if shape is not None:
        shape = parse_shape(",".join(str(n) for n in shape))
    prepare_output(output, overwrite)
    output.mkdir(parents=True, exist_ok=True)
    resolved_shape = list(shape or default_shape(kind))
    written, names = [], []
    bar = tqdm(range(int(cases)), desc=f"phantom {kind}", unit="case", disable=not progress)
    for index in bar:
        case = generate_case(kind, seed, index, resolved_shape, max_lesions)
        name = case_id(kind, index)
        case.params["case_id"] = name
        written.append(write_case(case, output, name))
        names.append(name)
        voxel_ml = float(np.prod(np.abs(np.diag(case.affine)[:3]))) / 1000.0
        bar.set_postfix(lesions=len(case.params["lesions"]), lesion_ml=f"{case.lesion.sum() * voxel_ml:.1f}")
    # The command's arguments at the top level (readers compare them to decide whether to regenerate).
    write_dataset_record(output, {
        "generator": "pseudohealthy phantom",
        "version": __version__,
        "output": str(output),
        "cases": int(cases),
        "seed": int(seed),
        "kind": kind,
        "shape": resolved_shape,
        "max_lesions": int(max_lesions),
        "layout": "brats" if kind == "brain" else "lits",
        "case_ids": names,
    })
    return written
