"""The 3-D fill's two pulls (mean, median) under the true lesion masks, against the truth.

Usage::

    python benchmarks/volume_fill_pulls.py --data INSERTED_DATA [--subject CASE_PREFIX] [--fills biharmonic3]

``INSERTED_DATA``: a data set with true healthy volumes (``phantom --kind inserted``, the pipeline's
``<out>/inserted``, or the brain phantom). Each case's whole lesion mask (every label, as a gate that
found all of it would open) is filled by ``inference/volume_fill.py``'s ``pull_push_volume`` in input
units on the file's voxel grid and spacing, trusting every voxel of the organ outside the mask and
nothing else, once with each pull; ``--fills`` adds mask-aware fills of ``pseudohealthy fill``
(``inference/fills.py``) for comparison. Prints, per case and as the mean over cases (``evaluate``'s
weighting), the lesion error reduction ``1 - mean|out - truth| / mean|input - truth|`` over the lesion
voxels of known truth (``metrics/ground_truth.py``).
Written in session 23 (docs/quality.md): whether the median pull, which a bright ventricle or sulcus on
an opening's rim does not drag along, fills lesions better than the mean pull on other anatomies too.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch


def case_figures(case, fills: list[str]) -> dict[str, float]:
    from pseudohealthy.data.case_writer import case_region
    from pseudohealthy.data.nifti_io import canonical_voxel_size
    from pseudohealthy.inference.fills import fill_lesion
    from pseudohealthy.inference.volume_fill import PULLS, pull_push_volume
    from pseudohealthy.metrics.ground_truth import error_reduction

    image, lesion = case.image.data, np.asarray(case.lesion, bool)
    region = case_region(case)
    spacing = tuple(float(s) for s in canonical_voxel_size(case.image.affine))
    known = torch.from_numpy((region & ~lesion).astype(np.float64))
    values = torch.from_numpy(np.asarray(image, np.float64))
    figures = {}
    for pull in PULLS:
        filled = pull_push_volume(values, known, spacing, pull=pull).numpy()
        figures[f"pull_{pull}"] = error_reduction(image, np.where(lesion, filled, image), case.healthy.data, lesion)
    for kind in fills:
        figures[f"fill_{kind}"] = error_reduction(image, fill_lesion(image, lesion, region, kind), case.healthy.data, lesion)
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True, help="data set with true healthy volumes")
    parser.add_argument("--subject", default=None, help="every copy of this source case (ids starting with it)")
    parser.add_argument("--fills", default="", help="comma-separated kinds of `pseudohealthy fill` to add")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    from pseudohealthy.data.sources import detect_source, find_cases, load_case

    torch.set_num_threads(args.threads)
    fills = [k for k in args.fills.split(",") if k]
    source = detect_source(Path(args.data))
    found = [c for c in find_cases(Path(args.data), source) if args.subject is None or c.case_id.startswith(args.subject)]
    cases = [c for c in found if c.healthy is not None]
    if not cases:
        raise SystemExit(f"{args.data}: need cases with true healthy volumes (an inserted-lesion data set or a phantom)")
    per_case = {}
    for files in cases:
        figures = case_figures(load_case(files, source), fills)
        if all(np.isfinite(list(figures.values()))):
            per_case[files.case_id] = {k: round(float(v), 4) for k, v in figures.items()}
            print(json.dumps({"case": files.case_id, **per_case[files.case_id]}), flush=True)
    names = next(iter(per_case.values())).keys() if per_case else []
    mean = {name: round(float(np.mean([f[name] for f in per_case.values()])), 4) for name in names}
    print(json.dumps({"cases": len(per_case), "error_reduction_per_case": mean}))


if __name__ == "__main__":
    main()
