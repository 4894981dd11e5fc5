"""How well a gated checkpoint finds and removes *inserted* lesions of held-out cases (a diagnostic,
not a test): quick, in the working space, without writing volumes or training A-Dice segmentors.

    .venv/bin/python benchmarks/gate_generalisation.py RUN/checkpoints/last.pt --data OUT/inserted \
        --cases BL-PREP-0001-ins00,BL-PREP-0001-ins01
    .venv/bin/python benchmarks/gate_generalisation.py A.pt B.pt --data OUT/inserted --subject BL-PREP-0001

Only the voxels whose truth is known count as lesion for the recall and the error reduction (an
inserted data set marks the source's own lesion with NaN in the true healthy volume); the source's
own lesion is left out of the normal tissue as well. Figures per checkpoint, pooled over every
lesion slice of the cases:

- ``recall``: inserted-lesion pixels under the gate (sigmoid > ``--threshold``);
- ``error_recall``: the same, weighted by ``|x_p - x_h|`` (the share of the lesion *error* the gate
  covers: a ceiling on the error reduction a perfect fill could reach with this gate);
- ``error_reduction``: ``1 - sum|G(x_p) - x_h| / sum|x_p - x_h|`` on the working scale ([-1, 1]),
  pooled over the cases' voxels; ``error_reduction_per_case``: the same per case, averaged over the
  cases, the quantity `evaluate` reports in input units at full size (close, not equal), in which a
  small lesion weighs as much as a large one;
- ``gate_on_normal``: share of normal-tissue pixels under the gate; ``normal_psnr``: PSNR of
  ``G(x_p)`` against ``x_p`` on normal tissue, peak-to-peak 2.

``--oracle`` puts every true lesion mask (dilated a pixel, as the hard gate is) in place of the gate:
the error reduction then measures what the checkpoint puts under a perfect gate (its fill, and its
learned refinement or learned fill where it has one), apart from how well its gate finds the lesions.

Written after a diagnostic of session 4 counted the training subject's own (memorised) tumour as
lesion and read the truth in the on-disk voxel order against a canonical image: both inflated the
recall it reported. Prints one JSON object per checkpoint.
"""
from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch


def gate_figures(checkpoint: str, cases: list, threshold: float, batch_size: int = 8, oracle: bool = False,
                 averaged: bool = True) -> dict[str, float]:
    from pseudohealthy.checkpoints import load_generator
    from pseudohealthy.config import PreprocessConfig, from_dict
    from pseudohealthy.data.preprocessing import normalise_like, prepare_mask, prepare_volume
    from pseudohealthy.inference.synthesize import region_for_inference, with_neighbours
    from pseudohealthy.models.generator import gated_output

    generator, _, extra = load_generator(checkpoint, "cpu", averaged=averaged)
    generator.eval()
    pcfg = from_dict(PreprocessConfig, extra)
    sums = dict(lesion=0, found=0, error=0.0, error_found=0.0, error_left=0.0, normal=0, normal_gate=0, normal_se=0.0)
    per_case = []
    for case in cases:
        case_error, case_left = sums["error"], sums["error_left"]
        prep = prepare_volume(case.image.data, pcfg, region=region_for_inference(case.image.data, pcfg))
        every = prepare_mask(case.lesion, prep) > 0
        truth = normalise_like(case.healthy.data, prep, pcfg)
        known = every & np.isfinite(truth)
        rows = np.flatnonzero(known.any(axis=(1, 2)))
        for start in range(0, rows.size, batch_size):
            z = rows[start:start + batch_size]
            x = torch.from_numpy(with_neighbours(prep.slices, z, int(getattr(generator, "context", 0))))
            with torch.no_grad():
                if oracle:  # the true lesion mask as the gate: what the fill (and refinement) make of a perfect gate
                    correction, _ = generator.maps(generator.net_input(x)[1])
                    logit = torch.from_numpy(np.where(every[z], 30.0, -30.0).astype(np.float32))[:, None]
                    out = gated_output(x[:, :1], correction, logit, generator.gate_fill, generator.gate_hard, generator.gate_refine,
                                       learned_fill=getattr(generator, "learned_fill", None))
                else:
                    out, logit = generator(x, return_gate=True)
            out = out[:, 0].numpy()
            gate = (torch.sigmoid(logit)[:, 0] > threshold).numpy() & prep.region[z]
            inputs, target, lesion = prep.slices[z], truth[z], known[z]
            error = np.abs(inputs - target)
            sums["lesion"] += int(lesion.sum())
            sums["found"] += int((gate & lesion).sum())
            sums["error"] += float(error[lesion].sum())
            sums["error_found"] += float(error[gate & lesion].sum())
            sums["error_left"] += float(np.abs(out - target)[lesion].sum())
            normal = prep.region[z] & ~every[z]
            sums["normal"] += int(normal.sum())
            sums["normal_gate"] += int((gate & normal).sum())
            sums["normal_se"] += float(((out - inputs)[normal] ** 2).sum())
        case_error, case_left = sums["error"] - case_error, sums["error_left"] - case_left
        if case_error > 0:
            per_case.append(1.0 - case_left / case_error)
    if sums["lesion"] == 0:
        raise SystemExit("no inserted lesion voxel of known truth in these cases")
    mse = sums["normal_se"] / max(sums["normal"], 1)
    return {
        "recall": sums["found"] / sums["lesion"],
        "error_recall": sums["error_found"] / sums["error"],
        "error_reduction": 1.0 - sums["error_left"] / sums["error"],
        "error_reduction_per_case": float(np.mean(per_case)),
        "gate_on_normal": sums["normal_gate"] / max(sums["normal"], 1),
        "normal_psnr": float(10 * np.log10(4.0 / mse)) if mse > 0 else float("inf"),
        "lesion_pixels": sums["lesion"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("checkpoints", nargs="+")
    parser.add_argument("--data", required=True, help="an inserted-lesion data set (with true healthy volumes)")
    parser.add_argument("--cases", default=None, help="comma-separated case ids")
    parser.add_argument("--subject", default=None, help="every copy of this source case (ids starting with it)")
    parser.add_argument("--threshold", type=float, default=0.5)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--oracle", action="store_true",
                        help="use every true lesion mask as the gate (gated U-Net checkpoints): the fill's share of the gap")
    parser.add_argument("--last-weights", action="store_true",
                        help="a run trained with train.ema_decay: score its last weights, not their moving average")
    args = parser.parse_args()
    from pseudohealthy.data.sources import detect_source, find_cases, load_case

    torch.set_num_threads(args.threads)
    source = detect_source(args.data)
    files = find_cases(args.data, source)
    if args.cases:
        wanted = set(args.cases.split(","))
        files = [f for f in files if f.case_id in wanted]
    if args.subject:
        files = [f for f in files if f.case_id.startswith(args.subject)]
    cases = [load_case(f, source) for f in files]
    if not cases or any(c.healthy is None for c in cases):
        raise SystemExit(f"{args.data}: need cases with true healthy volumes (an inserted-lesion data set)")
    for checkpoint in args.checkpoints:
        start = time.perf_counter()
        figures = gate_figures(checkpoint, cases, args.threshold, oracle=args.oracle, averaged=not args.last_weights)
        figures = {k: round(v, 4) if isinstance(v, float) else v for k, v in figures.items()}
        print(json.dumps({"checkpoint": checkpoint, "weights": "last" if args.last_weights else "averaged",
                          "cases": len(cases), "threshold": args.threshold, **figures,
                          "seconds": round(time.perf_counter() - start, 1)}), flush=True)


if __name__ == "__main__":
    main()
