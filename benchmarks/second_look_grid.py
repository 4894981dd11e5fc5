"""Which second look finds fresh lesions? A grid of inference settings on lesions pasted for the test.

Usage::

    python benchmarks/second_look_grid.py CHECKPOINT [CHECKPOINT ...] --data DATA --case CASE_ID \
        [--slices 96] [--seed 0] [--areas 0,100,400,5000] [--threshold 0.9]

Fresh synthetic lesions of the inserted-lesion model (``data/online_lesions.py``, as training draws
them, seeded by ``--seed``) are pasted into ``--slices`` whole slices of one case (its own lesion
excluded; the slice before pasting is the truth), so the settings are chosen on lesions that neither
the training nor the benchmark's inserted copies hold. For each checkpoint and each second-look area
(0 = no second look) it prints, over the pasted lesions' pixels: the share of their error
``|x - truth|`` under the hard gate (pooled, and the mean over lesions), the share of lesions found
(half their pixels under the gate), and the share of normal tissue (lesion-free brain) under the
gate. Written in session 11 (docs/quality.md): session 10 chose the 100-pixel area on such a grid,
and one checkpoint's benchmark figures are no ground to change it.
"""
from __future__ import annotations

import argparse
import json

import numpy as np
import torch


def pasted_slices(case, pcfg, count: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """``(pasted, truth, new_lesion, normal)`` arrays ``(N, H, W)`` of ``count`` slices of ``case``."""
    from pseudohealthy.data.online_lesions import organ_of_source, paste_lesions
    from pseudohealthy.data.phantom.inserted_model import default_model
    from pseudohealthy.data.preprocessing import prepare_mask, prepare_volume
    from pseudohealthy.inference.synthesize import region_for_inference

    prep = prepare_volume(case.image.data, pcfg, region=region_for_inference(case.image.data, pcfg))
    own = prepare_mask(case.lesion, prep) > 0 if case.lesion is not None else np.zeros(prep.slices.shape, bool)
    organ = organ_of_source(pcfg.source)
    model = default_model(organ)
    rng = np.random.default_rng(seed)
    tissue = prep.region.sum(axis=(1, 2))
    candidates = np.flatnonzero(tissue > 0.25 * tissue.max())
    out = ([], [], [], [])
    for z in rng.permutation(candidates):
        if len(out[0]) == count:
            break
        image, lesion = prep.slices[z].astype(np.float32), own[z].astype(np.uint8)
        pasted, grown, n = paste_lesions(rng, image, lesion, prep.region[z].astype(np.uint8), float(prep.scale[z]),
                                         float(prep.offset[z]), organ, 3, model)
        if n == 0:
            continue
        new = (grown > 0) & ~own[z]
        for array, value in zip(out, (pasted, image, new, prep.region[z] & ~(grown > 0))):
            array.append(value)
    return tuple(np.stack(a) for a in out)  # type: ignore[return-value]


def grid_figures(generator, pasted, truth, new, normal, area: int, batch_size: int = 8) -> dict[str, float]:
    from scipy import ndimage

    if area == 0:
        generator.second_look = 0.0
    generator.second_look_area = max(area, 1)
    gates = []
    with torch.no_grad():
        for start in range(0, len(pasted), batch_size):
            x = torch.from_numpy(pasted[start:start + batch_size][:, None])
            _, logit = generator(x, return_gate=True)
            # the hard gate as the recipe applies it: > 0.5, dilated one pixel
            gates.append(torch.nn.functional.max_pool2d((logit > 0).float(), 3, 1, 1)[:, 0].numpy() > 0)
    gate = np.concatenate(gates)
    error = np.abs(pasted - truth)
    per_lesion, found = [], []
    for k in range(len(pasted)):
        labels, n = ndimage.label(new[k])
        for i in range(1, n + 1):
            part = labels == i
            per_lesion.append(float(error[k][part & gate[k]].sum() / max(error[k][part].sum(), 1e-12)))
            found.append(float((part & gate[k]).sum() >= 0.5 * part.sum()))
    return {"error_under_gate_pooled": float(error[new & gate].sum() / error[new].sum()),
            "error_under_gate_per_lesion": float(np.mean(per_lesion)), "found": float(np.mean(found)),
            "lesions": len(per_lesion), "normal_under_gate": float((gate & normal).sum() / normal.sum())}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("checkpoints", nargs="+")
    parser.add_argument("--data", required=True)
    parser.add_argument("--case", required=True)
    parser.add_argument("--slices", type=int, default=96)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--areas", default="0,100,400,5000", help="second-look areas to try (0: no second look)")
    parser.add_argument("--threshold", type=float, default=None, help="second-look probability (default: the checkpoint's)")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    from pathlib import Path

    from pseudohealthy.checkpoints import load_generator
    from pseudohealthy.config import PreprocessConfig, from_dict
    from pseudohealthy.data.sources import detect_source, find_cases, load_case

    torch.set_num_threads(args.threads)
    source = detect_source(Path(args.data))
    found = [c for c in find_cases(Path(args.data), source) if c.case_id == args.case]
    if not found:
        raise SystemExit(f"{args.data}: no case {args.case!r}")
    case = load_case(found[0], source)
    arrays = None
    for checkpoint in args.checkpoints:
        generator, _, extra = load_generator(checkpoint, "cpu")
        generator.eval()
        if arrays is None:
            arrays = pasted_slices(case, from_dict(PreprocessConfig, extra), args.slices, args.seed)
        threshold = generator.second_look if args.threshold is None else args.threshold
        for area in (int(a) for a in args.areas.split(",")):
            generator.second_look = threshold
            figures = grid_figures(generator, *arrays, area=area)
            print(json.dumps({"checkpoint": checkpoint, "case": args.case, "area": area, "threshold": threshold,
                              **{k: round(v, 4) if isinstance(v, float) else v for k, v in figures.items()}}), flush=True)


if __name__ == "__main__":
    main()
