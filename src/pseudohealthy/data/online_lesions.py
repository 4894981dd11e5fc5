"""Synthetic lesions pasted into training crops on the fly (``train.online_lesions``).

The inserted-lesion data sets (``phantom --kind inserted``) give a fixed set of lesions; a gate
trained on a few dozen of them learns those lesions, in those places, of that subject. Here every
training crop may get fresh ones instead, drawn anywhere in its lesion-free tissue, so the lesions a
network sees are never the same twice. The lesion model is the inserted lesions' own (shape from
:func:`sample_lesion_shape` / :func:`render_lesion`, intensities from ``inserted_model``, rendered by
:func:`render_inserted`, drawn by :func:`sample_lesions` in its ``section`` mode), applied to a crop
seen as a one-slice volume: the ellipsoid is cut at a random height, so a crop shows anything from a
lesion's equator to its tip.

Units: the crop is taken back to the input's (clipped) units through its slice's ``scale`` and
``offset`` (``normalised = scale * clipped + offset``), where the model's ratios and HU offsets are
defined, and back to the normalised scale after. Pixels count as 1 mm (BraTS's and most MR's
native grid; the recipe that uses this trains at native resolution). The lesion mask grows where a
lesion is pasted; the true healthy slice, where there is one, is unchanged (the tissue under a new
lesion is exactly the crop before pasting).
"""
from __future__ import annotations

from typing import Any

import numpy as np

from pseudohealthy.data.phantom.inserted_model import default_model
from pseudohealthy.data.phantom.inserted_render import render_inserted, sample_lesions, source_tissue

TRIES = 8  # draws per lesion before giving up (fewer than a volume's: this runs for every training crop)
MIN_TISSUE_PIXELS = 200  # a crop with less lesion-free tissue gets no lesion


def organ_of_source(source: str) -> str:
    """The lesion model for a cache's layout: LiTS CT is liver, everything else is brain MR."""
    return "liver" if source == "lits" else "brain"


def paste_lesions(rng: np.random.Generator, image: np.ndarray, lesion: np.ndarray, region: np.ndarray,
                  scale: float, offset: float, organ: str, max_lesions: int,
                  model: dict[str, Any] | None = None) -> tuple[np.ndarray, np.ndarray, int]:
    """Paste 1..``max_lesions`` new lesions into a normalised crop ``(H, W)``, or into a stack ``(K, H, W)``
    of a crop and its neighbouring slices (``model.gen_gate_context``; K odd, 1 mm apart like the
    pixels): there each lesion is one 3-D lesion centred near the middle slice, cut by every slice.

    Returns the new image (float32, clipped to [-1, 1]), the new lesion mask (the input's dtype), both
    of the input's shape, and how many lesions were pasted (0 when the crop's tissue holds none).
    """
    model = default_model(organ) if model is None else model
    stack = image.ndim == 3
    # the lesion model's volumes are (X, Y, Z): a crop is (H, W, 1), a stack (H, W, K)
    as_volume = (lambda a: np.moveaxis(a, 0, -1)) if stack else (lambda a: a[:, :, None])
    source = as_volume(((image.astype(np.float64) - offset) / scale).astype(np.float32))
    if organ == "brain":
        # brain = image > 0 in source_tissue: the background must be at or below 0 in these units
        source = np.where(as_volume(region) > 0, np.maximum(source, np.float32(1e-3)), np.float32(0.0))
        labels = (as_volume(lesion) > 0).astype(np.int16)
    else:
        labels = as_volume(np.where(lesion > 0, 2, np.where(region > 0, 1, 0)).astype(np.int16))
    voxel_mm = np.ones(3)
    tissue = source_tissue(organ, source, labels, voxel_mm, model)
    if np.count_nonzero(tissue.tissue[:, :, tissue.tissue.shape[2] // 2]) < MIN_TISSUE_PIXELS:
        return image, lesion, 0
    lesions, rendered = sample_lesions(rng, organ, tissue, model, max_lesions, tries=TRIES, section=True)
    if not lesions:
        return image, lesion, 0
    pasted, new_labels = render_inserted(organ, tissue, lesions, rendered)
    as_image = (lambda a: np.moveaxis(a, -1, 0)) if stack else (lambda a: a[:, :, 0])
    new = as_image(new_labels != labels)  # painted pixels: all in the tissue, so inside the region
    # only the new lesions' pixels take the rendered values: the round trip through the input's units
    # is not exact in float, and the rest of the crop must stay the crop
    values = np.clip(as_image(pasted).astype(np.float64) * scale + offset, -1.0, 1.0).astype(np.float32)
    out = np.where(new, values, image).astype(np.float32)
    grown = np.where(new, 1, lesion).astype(lesion.dtype)
    return out, grown, len(lesions)
