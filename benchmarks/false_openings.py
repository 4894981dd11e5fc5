"""Where a method changes normal tissue: its openings outside the lesion, largest first. A diagnostic, not a test.

Usage::

    python benchmarks/false_openings.py --data DATA --outputs OUT/synthesis/gvs [--top 5] [--json FILE]

``--data``: a data set in a layout the readers know, with lesion masks (``evaluate``'s input);
``--outputs``: a method's volumes ``<case_id>.nii.gz`` in input units. A method's *opening* is where its
output differs from the input (a gated GVS changes nothing else). Per case:

- ``coverage``: share of the lesion voxels the method changed;
- ``opened_normal``: share of the normal brain (brain minus lesion) it changed;
- ``top``: its largest 3-D parts (26-connected) outside the lesion, each with its voxels, its distance in
  voxels to the nearest lesion voxel (1 = touching), the share of its voxels among the brightest tenth of
  the input's normal brain (CSF in T2), and its share of the case's squared change of normal tissue
  (what normal-tissue PSNR counts).

Written in session 24 (docs/quality.md), where it showed that most of the demo's normal-tissue change lies
in one opening per case next to the tumour, through the bright ventricle beside it.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
from scipy import ndimage

from error_budget import method_opening  # benchmarks/ is on the path when a script of it runs


def openings_of_case(image: np.ndarray, output: np.ndarray, lesion: np.ndarray, brain: np.ndarray, top: int) -> dict:
    """The per-case figures above for one volume (input, output, lesion mask and organ region of one shape)."""
    changed = method_opening(image, output)
    normal = brain & ~lesion
    outside = changed & normal
    change_sq = (output.astype(np.float64) - image) ** 2
    total_sq = float(change_sq[normal].sum())
    bright = image >= np.percentile(image[normal], 90) if normal.any() else np.zeros_like(normal)
    distance = ndimage.distance_transform_edt(~lesion) if lesion.any() else np.full(image.shape, np.inf)
    labels, count = ndimage.label(outside, structure=np.ones((3, 3, 3), bool))
    sizes = np.bincount(labels.ravel(), minlength=count + 1)[1:]
    parts = []
    for index in np.argsort(sizes)[::-1][:top]:
        part = labels == index + 1
        parts.append({"voxels": int(sizes[index]), "distance_to_lesion": float(distance[part].min()),
                      "bright_share": float(bright[part].mean()),
                      "share_of_normal_change": float(change_sq[part].sum() / total_sq) if total_sq > 0 else 0.0})
    return {"coverage": float((changed & lesion).sum() / max(1, lesion.sum())),
            "opened_normal": float(outside.sum() / max(1, normal.sum())), "parts": int(count), "top": parts}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--data", required=True, help="data set with lesion masks (the method's inputs)")
    parser.add_argument("--outputs", required=True, help="folder of the method's <case_id>.nii.gz")
    parser.add_argument("--top", type=int, default=5, help="largest openings listed per case")
    parser.add_argument("--json", help="also write the figures to this JSON file")
    args = parser.parse_args()

    from pseudohealthy.data.case_writer import case_region
    from pseudohealthy.data.nifti_io import load_nifti
    from pseudohealthy.data.sources import detect_source, find_cases, load_case

    outputs = Path(args.outputs)
    source = detect_source(args.data)
    results = {}
    for files in find_cases(args.data, source):
        path = outputs / f"{files.case_id}.nii.gz"
        if not path.is_file():
            continue
        case = load_case(files, source)  # canonical voxel order, as synthesize's outputs read back
        lesion = np.asarray(case.lesion, bool)
        figures = openings_of_case(np.asarray(case.image.data, np.float64), load_nifti(path, "method output").data,
                                   lesion, np.asarray(case_region(case), bool) | lesion, args.top)
        results[files.case_id] = figures
        print(f"{files.case_id}: coverage {figures['coverage']:.2f}, normal opened {100 * figures['opened_normal']:.1f} % "
              f"in {figures['parts']} parts")
        for part in figures["top"]:
            print(f"    {part['voxels']:7d} voxels, {part['distance_to_lesion']:4.0f} from the lesion, "
                  f"bright {part['bright_share']:.2f}, {100 * part['share_of_normal_change']:.0f} % of the normal change")
    if not results:
        raise SystemExit(f"{outputs}: no output matches a case of {args.data} with a lesion mask.")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
