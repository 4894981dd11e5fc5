"""Where a method's remaining lesion error sits: lesion voxels it left untouched, or voxels it changed
but filled worse than a classical fill would have. A diagnostic, not a test.

Usage::

    python benchmarks/error_budget.py --data OUT/inserted --outputs OUT/synthesis/gvs [--subject BL-PREP-0001]

``--data``: an inserted-lesion data set (true healthy volumes beside the cases); ``--outputs``: a
method's volumes ``<case_id>.nii.gz`` in input units (``synthesize``'s output). The method's *opening*
is where its output differs from the input (a gated GVS changes nothing else). Per case, over the
inserted voxels of known truth, as fractions of the input's lesion error ``sum|x_p - x_h|``:

- ``missed``: the error on lesion voxels the method left unchanged (what a better gate would find);
- ``method``: the method's lesion error reduction (``evaluate``'s ``error_reduction``);
- ``<fill>_own``: the error reduction when the method's own opening is refilled by ``pull_push`` (the
  hybrid recipe's fill, ``models/pyramid_fill.py``, trusting every tissue pixel outside the opening)
  or ``biharmonic`` (the yardstick, ``inference/fills.py``): which fill the same gate should use;
- ``<fill>_union``: the same under the opening joined with the true mask (every lesion voxel covered,
  the opening's extra voxels kept): what perfect coverage with this gate's shape would give;
- ``<fill>_true`` / ``<fill>_true_dilated``: under the true mask, exact and grown one pixel (the hard
  gate's dilation): the fill's own ceiling;
- with ``--volume``, ``volume_own`` / ``volume_union`` / ``volume_true``: the same three holes filled by the
  default's 3-D fill (``inference/volume_fill.py pull_push_volume``, session 20) on the file's voxel grid,
  trusting every organ voxel outside the hole and nothing in it (the default trusts its opening's border
  softly, so ``method`` and ``volume_own`` differ by that).

Slices are axial (``array[:, :, z]``), as the fills work. Written in session 17 (docs/quality.md).
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

FILLS = ("pull_push", "biharmonic")


def _fill(kind: str, image: np.ndarray, hole: np.ndarray, tissue: np.ndarray) -> np.ndarray:
    """One axial slice with ``hole`` filled by ``kind`` from the tissue outside it (float64)."""
    if not (hole & tissue).any():
        return image
    if kind == "biharmonic":
        from pseudohealthy.inference.fills import fill_slice

        return fill_slice(image, hole, tissue & ~hole, "biharmonic")
    import torch

    from pseudohealthy.models.pyramid_fill import pyramid_fill

    known = torch.from_numpy((tissue & ~hole).astype(np.float64))[None, None]
    return pyramid_fill(torch.from_numpy(image)[None, None], known)[0, 0].numpy()


def method_opening(x_p: np.ndarray, x_s: np.ndarray) -> np.ndarray:
    """Where a method's output differs from its input (bool, the input's shape): its *opening*."""
    return np.abs(np.asarray(x_s, np.float64) - x_p) > 1e-6 * max(float(np.abs(x_p).max()), 1.0)


def case_budget(x_p: np.ndarray, x_s: np.ndarray, x_h: np.ndarray, lesion: np.ndarray,
                tissue: np.ndarray, spacing: tuple[float, float, float] | None = None) -> dict[str, float]:
    """The figures of the module docstring for one case (volumes ``(X, Y, Z)``, input units; ``tissue``:
    the organ region the fills take their context from, as ``pseudohealthy fill`` uses it; ``spacing``:
    the voxel size, which also adds the 3-D fill's ``volume_*`` figures)."""
    from scipy.ndimage import binary_dilation

    known = lesion & np.isfinite(x_h)
    opened = method_opening(x_p, x_s)
    before = float(np.abs(x_p - x_h)[known].sum())
    figures = {"missed": float(np.abs(x_p - x_h)[known & ~opened].sum()) / before,
               "method": 1.0 - float(np.abs(x_s - x_h)[known].sum()) / before}
    left: dict[str, float] = {}
    for z in np.flatnonzero(known.any(axis=(0, 1))):
        image, truth, scored = x_p[:, :, z].astype(np.float64), x_h[:, :, z], known[:, :, z]
        holes = {"own": opened[:, :, z], "union": opened[:, :, z] | lesion[:, :, z], "true": lesion[:, :, z],
                 "true_dilated": binary_dilation(lesion[:, :, z])}
        for kind in FILLS:
            for name, hole in holes.items():
                out = np.where(hole & tissue[:, :, z], _fill(kind, image, hole, tissue[:, :, z]), image)
                key = f"{kind}_{name}"
                left[key] = left.get(key, 0.0) + float(np.abs(out - truth)[scored].sum())
    figures.update({key: 1.0 - value / before for key, value in left.items()})
    if spacing is not None:
        import torch

        from pseudohealthy.inference.volume_fill import pull_push_volume

        values = torch.from_numpy(x_p.astype(np.float64))
        for name, hole in {"own": opened, "union": opened | lesion, "true": lesion}.items():
            filled = pull_push_volume(values, torch.from_numpy((tissue & ~hole).astype(np.float64)), spacing).numpy()
            out = np.where(hole & tissue, filled, x_p)
            figures[f"volume_{name}"] = 1.0 - float(np.abs(out - x_h)[known].sum()) / before
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", required=True, help="an inserted-lesion data set (with true healthy volumes)")
    parser.add_argument("--outputs", required=True, help="a method's output folder (<case_id>.nii.gz)")
    parser.add_argument("--subject", default=None, help="only the copies of this source case (ids starting with it)")
    parser.add_argument("--volume", action="store_true", help="also the 3-D fill of the default (inference/volume_fill.py) "
                        "under each hole, trusting nothing inside it: volume_own / volume_union / volume_true")
    args = parser.parse_args()
    from pseudohealthy.data.case_writer import case_region
    from pseudohealthy.data.nifti_io import canonical_voxel_size, load_nifti
    from pseudohealthy.data.sources import detect_source, find_cases, load_case

    source = detect_source(args.data)
    files = [f for f in find_cases(args.data, source) if args.subject is None or f.case_id.startswith(args.subject)]
    rows = {}
    for files_of_case in files:
        output = Path(args.outputs) / f"{files_of_case.case_id}.nii.gz"
        if not output.is_file():
            continue
        case = load_case(files_of_case, source)
        if case.healthy is None:
            raise SystemExit(f"{args.data}: case {files_of_case.case_id} has no true healthy volume")
        x_s = load_nifti(output, "method output").data  # canonical voxel order, as the case's volumes
        rows[files_of_case.case_id] = case_budget(np.asarray(case.image.data, np.float32), x_s,
                                                  np.asarray(case.healthy.data, np.float32), np.asarray(case.lesion, bool),
                                                  np.asarray(case_region(case), bool),
                                                  tuple(canonical_voxel_size(case.image.affine)) if args.volume else None)
        print(json.dumps({"case": files_of_case.case_id, **{k: round(v, 3) for k, v in rows[files_of_case.case_id].items()}}),
              flush=True)
    if not rows:
        raise SystemExit(f"{args.outputs}: no output volume of a case of {args.data}")
    keys = next(iter(rows.values())).keys()
    print(json.dumps({"case": "mean", **{k: round(float(np.mean([r[k] for r in rows.values()])), 3) for k in keys}}))


if __name__ == "__main__":
    main()
