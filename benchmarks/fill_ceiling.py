"""How far can a segment-and-fill generator get with a perfect gate? Fills under the true lesion mask.

Usage::

    python benchmarks/fill_ceiling.py --data INSERTED_DATA --cache CACHE [--subject CASE_PREFIX]

``INSERTED_DATA``: a data set with true healthy volumes (``phantom --kind inserted`` or the pipeline's
``<out>/inserted``); ``CACHE``: a slice cache made from it, whose preprocessing settings say how the
volumes are scaled (the working space the ``hybrid`` recipe trains and fills in). On every slice
with an inserted lesion of known truth it puts, into the true lesion mask (every lesion label, real
tumour included, as a perfect gate would open):

- ``pull_push``: the ``hybrid`` recipe's fill (``models/pyramid_fill.py``) under the mask as its hard
  gate opens it (dilated one pixel; the fill's sources are the pixels outside the undilated mask, so
  inside the lesion it equals the fill under the exact mask);
- ``biharmonic`` / ``biharmonic_dilated``: the ``fill-biharmonic`` yardstick (``inference/fills.py``,
  context from normal tissue only) under the exact mask, as ``evaluate`` scores it, and dilated;
- ``pull_push_plus_half`` / ``_quarter``: the pull-push fill plus the *perfect* correction of its
  error brought down to half / a quarter of the resolution and back (area down, bilinear up): the
  best any learned smooth correction at the gate's resolution could add to the fill.

Prints, per case and as the mean over cases (``evaluate``'s weighting), the lesion error reduction
``1 - sum|out - truth| / sum|input - truth|`` over the inserted voxels of known truth.
Written in session 9 (docs/quality.md): it shows how much of issue 9's gap a better gate alone can
close (none: a perfect gate with this fill is level with biharmonic) and what a better fill could add.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch

METHODS = ("pull_push", "biharmonic", "biharmonic_dilated", "pull_push_plus_half", "pull_push_plus_quarter")


def _smooth_part(values: np.ndarray, factor: int) -> np.ndarray:
    t = torch.from_numpy(values.astype(np.float32))[None, None]
    small = torch.nn.functional.interpolate(t, scale_factor=1.0 / factor, mode="area")
    return torch.nn.functional.interpolate(small, size=values.shape, mode="bilinear", align_corners=False)[0, 0].numpy()


def slice_fills(x: np.ndarray, lesion: np.ndarray, region: np.ndarray, truth: np.ndarray) -> dict[str, np.ndarray]:
    """Every method's output for one working-space slice ``x`` (truth used only by the ceilings)."""
    from scipy import ndimage

    from pseudohealthy.inference.fills import fill_slice
    from pseudohealthy.models.generator import gated_output

    dilated = ndimage.binary_dilation(lesion)
    xt = torch.from_numpy(x.astype(np.float32))[None, None]
    logit = torch.from_numpy(np.where(lesion, 30.0, -30.0).astype(np.float32))[None, None]
    pull_push = gated_output(xt, torch.zeros_like(xt), logit, fill=True, hard=True, refine=False)[0, 0].numpy()
    out = {"pull_push": pull_push}
    for name, mask in (("biharmonic", lesion), ("biharmonic_dilated", dilated)):
        out[name] = np.where(mask, fill_slice(x.astype(np.float64), mask, region & ~mask, "biharmonic"), x)
    error = np.where(dilated & np.isfinite(truth), truth - pull_push, 0.0)
    for name, factor in (("pull_push_plus_half", 2), ("pull_push_plus_quarter", 4)):
        out[name] = np.where(dilated, pull_push + _smooth_part(error, factor), x)
    return out


def case_figures(case, pcfg) -> dict[str, float]:
    from pseudohealthy.data.preprocessing import normalise_like, prepare_mask, prepare_volume
    from pseudohealthy.inference.synthesize import region_for_inference

    prep = prepare_volume(case.image.data, pcfg, region=region_for_inference(case.image.data, pcfg))
    every = prepare_mask(case.lesion, prep) > 0
    truth = normalise_like(case.healthy.data, prep, pcfg)
    known = every & np.isfinite(truth)
    left = dict.fromkeys(METHODS, 0.0)
    before = 0.0
    for z in np.flatnonzero(known.any(axis=(1, 2))):
        x, k = prep.slices[z].astype(np.float64), known[z]
        outputs = slice_fills(x, every[z], prep.region[z], truth[z])
        before += float(np.abs(x - truth[z])[k].sum())
        for name in METHODS:
            left[name] += float(np.abs(outputs[name] - truth[z])[k].sum())
    return {name: 1.0 - left[name] / before for name in METHODS} if before > 0 else {}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True, help="data set with true healthy volumes")
    parser.add_argument("--cache", required=True, help="a slice cache of it (its preprocessing settings are used)")
    parser.add_argument("--subject", default=None, help="every copy of this source case (ids starting with it)")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    from pseudohealthy.config import PreprocessConfig, from_dict
    from pseudohealthy.data.cache import read_fingerprint
    from pseudohealthy.data.sources import detect_source, find_cases, load_case

    torch.set_num_threads(args.threads)
    pcfg = from_dict(PreprocessConfig, read_fingerprint(Path(args.cache))["config"])
    source = detect_source(Path(args.data))
    found = [c for c in find_cases(Path(args.data), source) if args.subject is None or c.case_id.startswith(args.subject)]
    cases = [load_case(c, source) for c in found if c.healthy is not None]
    if not cases:
        raise SystemExit(f"{args.data}: need cases with true healthy volumes (an inserted-lesion data set)")
    per_case = {}
    for case in cases:
        figures = case_figures(case, pcfg)
        if figures:
            per_case[case.case_id] = {k: round(v, 4) for k, v in figures.items()}
            print(json.dumps({"case": case.case_id, **per_case[case.case_id]}), flush=True)
    mean = {name: round(float(np.mean([f[name] for f in per_case.values()])), 4) for name in METHODS}
    print(json.dumps({"cases": len(per_case), "error_reduction_per_case": mean}))


if __name__ == "__main__":
    main()
