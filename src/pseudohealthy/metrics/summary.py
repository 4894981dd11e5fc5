"""Summaries over cases: mean, spread and count of each metric, undefined values left out."""
from __future__ import annotations

import numpy as np


def summarise(per_case: dict[str, dict[str, float]]) -> dict[str, dict[str, float]]:
    """Mean, std (population) and count over cases of each metric, ignoring NaN (undefined) values.

    An infinite value (PSNR of an unchanged volume) makes the mean infinite, which is the truth.
    """
    names: list[str] = []
    for values in per_case.values():
        names += [n for n in values if n not in names]
    out: dict[str, dict[str, float]] = {}
    for name in names:
        vals = np.array([v[name] for v in per_case.values() if name in v and v[name] is not None], dtype=np.float64)
        vals = vals[~np.isnan(vals)]
        if vals.size == 0:
            out[name] = {"mean": float("nan"), "std": float("nan"), "n": 0}
            continue
        with np.errstate(invalid="ignore"):
            std = float(vals.std()) if np.isfinite(vals).all() else float("nan")
        out[name] = {"mean": float(vals.mean()), "std": std, "n": int(vals.size)}
    return out
