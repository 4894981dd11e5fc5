"""The inserted-lesion model: parameter ranges per organ, per-lesion intensity draws, fit to real lesions.

Intensities are relative to the tissue around each lesion, so one model works in any scanner's units:
- brain (MR T2): ``reference`` = median of the lesion-free parenchyma near the lesion; the core is
  ``core_ratio * reference``, an enhancing rim ``rim_ratio * reference``, and the edema multiplies the
  tissue that is there by ``1 + edema * weight * (1 + edema_heterogeneity * texture)``;
- liver (CT, HU): ``reference`` = median HU of the lesion-free liver near the lesion; the lesion is
  ``reference - contrast_hu``, a necrotic core ``necrosis_hu`` darker, a rim ``rim_hu`` brighter.
The ranges (``[low, high]``, drawn uniformly per lesion; radii log-uniformly) are documented in
docs/inserted-lesions.md; the default brain ratios bracket the two real BraTS T2 cases of the project.
"""
from __future__ import annotations

import copy
from typing import Any

import numpy as np

from pseudohealthy.data.phantom.fields import uniform

ORGANS = ("brain", "liver")

DEFAULT_MODEL: dict[str, dict[str, Any]] = {
    "brain": {
        "radius_mm": [4.0, 25.0],
        "margin_mm": 5.0,  # inserted lesions keep this far from the source's own lesion
        "fluid_ratio": 2.0,  # smoothed intensity above this x the brain median = CSF: no lesion grows there
        "reference_half_mm": 20.0,  # the local reference is taken in a cube of at least this half side
        "core_ratio": [1.7, 2.9],
        "rim_ratio": [1.6, 2.6],
        "rim_probability": 0.5,
        "edema": [0.4, 1.1],
        "edema_heterogeneity": [0.1, 0.3],
        "heterogeneity": [0.05, 0.15],  # relative texture amplitude of core and rim
        "core_blend_mm": 1.0,  # Gaussian sigma of the core's soft border
        "noise": True,  # add Gaussian noise of the image's own level to the core
    },
    "liver": {
        "radius_mm": [4.0, 25.0],
        "margin_mm": 5.0,
        "reference_half_mm": 20.0,
        "contrast_hu": [20.0, 60.0],  # lesion below the local liver HU
        "necrosis_hu": [5.0, 25.0],  # a core that much darker still
        "rim_hu": [10.0, 35.0],  # an enhancing rim that much brighter than the lesion
        "rim_probability": 0.3,
        "heterogeneity_hu": [3.0, 10.0],
        "core_blend_mm": 1.0,
        "noise": True,
    },
}

# Which labels of a data set's own lesions each fitted parameter is measured on.
FIT_LABELS = {"brain": {"core_ratio": [1], "edema": [2], "rim_ratio": [3, 4]}, "liver": {"contrast_hu": [2]}}
# The least half width of a fitted range (ratio for brain, HU for liver), so one case still gives a range.
FIT_MIN_HALF_WIDTH = {"brain": 0.1, "liver": 5.0}


def default_model(organ: str) -> dict[str, Any]:
    """A fresh copy of the organ's default parameter ranges."""
    return copy.deepcopy(DEFAULT_MODEL[organ])


def draw_intensity(rng: np.random.Generator, organ: str, model: dict[str, Any], rim: bool) -> dict[str, float]:
    """One lesion's intensity parameters (plain floats, for the params JSON)."""
    if organ == "brain":
        return {
            "core_ratio": uniform(rng, *model["core_ratio"]),
            "rim_ratio": uniform(rng, *model["rim_ratio"]) if rim else 0.0,
            "edema": uniform(rng, *model["edema"]),
            "edema_heterogeneity": uniform(rng, *model["edema_heterogeneity"]),
            "heterogeneity": uniform(rng, *model["heterogeneity"]),
        }
    return {
        "contrast_hu": uniform(rng, *model["contrast_hu"]),
        "necrosis_hu": uniform(rng, *model["necrosis_hu"]),
        "rim_hu": uniform(rng, *model["rim_hu"]) if rim else 0.0,
        "heterogeneity_hu": uniform(rng, *model["heterogeneity_hu"]),
    }


def lesion_measurements(organ: str, image: np.ndarray, labels: np.ndarray, tissue: np.ndarray,
                        voxel_mm: np.ndarray, half_mm: float) -> dict[str, float]:
    """The model's quantities measured on one case's own lesions (those it has labels for).

    ``tissue``: the lesion-free tissue mask (bool); the reference is its median inside the source
    lesion's bounding box grown by ``half_mm``. Brain: ratios of label medians to it (edema as
    ``ratio - 1``); liver: ``reference - median(tumour)`` in HU.
    """
    lesion = labels > 0 if organ == "brain" else labels == 2
    if not lesion.any():
        return {}
    where = np.nonzero(lesion)
    grow = np.ceil(half_mm / voxel_mm).astype(int)
    box = tuple(slice(max(0, int(w.min()) - g), int(w.max()) + g + 1) for w, g in zip(where, grow))
    near = image[box][tissue[box]]
    if near.size < 50:
        near = image[tissue]
    if near.size == 0:
        return {}
    reference = float(np.median(near))
    out: dict[str, float] = {}
    for name, wanted in FIT_LABELS[organ].items():
        values = image[np.isin(labels, wanted)]
        if values.size == 0:
            continue
        level = float(np.median(values))
        if organ == "liver":
            out[name] = reference - level
        elif reference > 0:
            out[name] = level / reference - (1.0 if name == "edema" else 0.0)
    return out


def fit_ranges(organ: str, per_case: dict[str, dict[str, float]], model: dict[str, Any]) -> dict[str, Any]:
    """Replace the fitted parameters' ranges by ``median +- spread`` over the cases (the rest stay).

    spread = max(1.4826 * MAD over the cases, FIT_MIN_HALF_WIDTH); returns the summary for the JSON.
    """
    summary: dict[str, Any] = {}
    for name in FIT_LABELS[organ]:
        values = np.array([m[name] for m in per_case.values() if name in m], np.float64)
        if values.size == 0:
            summary[name] = {"cases": 0, "range": model[name], "fitted": False}
            continue
        centre = float(np.median(values))
        spread = max(1.4826 * float(np.median(np.abs(values - centre))), FIT_MIN_HALF_WIDTH[organ])
        low = max(centre - spread, 0.0)
        model[name] = [low, max(centre + spread, low + 1e-3)]
        summary[name] = {"cases": int(values.size), "median": centre, "spread": spread, "range": model[name], "fitted": True}
    return summary
