"""Synthetic lesions inserted into the lesion-free tissue of a real scan: tissue masks, sampling, rendering.

Everything works on the source's canonical (RAS+) arrays ``(X, Y, Z)`` in a voxel frame: the
diagonal affine ``diag(voxel sizes)`` with origin 0, so ``mm = index * voxel size`` whatever the file's
own (possibly flipped or oblique) affine. Lesion shapes come from the phantom's
:func:`sample_lesion_shape` / :func:`render_lesion`; intensities follow ``inserted_model``. Rendering
reads only the source arrays and the lesion parameters, so a case replays byte for byte.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import ndimage

from pseudohealthy.data.phantom.grid import box_around
from pseudohealthy.data.phantom.inserted_model import draw_intensity
from pseudohealthy.data.phantom.lesions import RenderedLesion, pick_centre, render_lesion, sample_lesion_shape

MIN_REFERENCE_VOXELS = 50
MIN_LESION_FILL = 0.25  # a lesion must cover this fraction of its nominal sphere (no slivers at the organ edge)
TRIES = 50


@dataclass
class SourceTissue:
    """A source scan prepared for insertion; arrays canonical ``(X, Y, Z)``."""

    image: np.ndarray  # float32, source units
    labels: np.ndarray  # int16, the source's own labels
    own_lesion: np.ndarray  # bool, the source's lesion (truth unknown there)
    tissue: np.ndarray  # bool, where inserted lesions may grow
    voxel_mm: np.ndarray  # (3,) float64, canonical voxel sizes

    @property
    def frame(self) -> np.ndarray:
        """The voxel frame's affine: ``diag(voxel_mm)``, origin at voxel 0."""
        return np.diag([*self.voxel_mm, 1.0])


def own_lesion_of(organ: str, labels: np.ndarray) -> np.ndarray:
    """Brain: every label > 0 (whole tumour); liver: tumour label 2."""
    return labels > 0 if organ == "brain" else labels == 2


def _far_from(mask: np.ndarray, voxel_mm: np.ndarray, margin_mm: float) -> np.ndarray:
    """bool: voxels more than ``margin_mm`` from ``mask`` (the distance is computed in a box around it)."""
    far = np.ones(mask.shape, bool)
    if not mask.any():
        return far
    grow = np.ceil(margin_mm / voxel_mm).astype(int) + 1
    where = np.nonzero(mask)
    box = tuple(slice(max(0, int(w.min()) - g), int(w.max()) + g + 1) for w, g in zip(where, grow))
    far[box] = ndimage.distance_transform_edt(~mask[box], sampling=voxel_mm) > margin_mm
    return far


def source_tissue(organ: str, image: np.ndarray, labels: np.ndarray, voxel_mm: np.ndarray, model: dict[str, Any]) -> SourceTissue:
    """Where lesions may go. Brain: ``image > 0`` minus CSF (smoothed intensity above ``fluid_ratio`` x the
    median of the lesion-free brain) minus the own lesion grown by ``margin_mm``; liver: label 1 likewise."""
    image = np.asarray(image, np.float32)
    labels = np.asarray(labels, np.int16)
    voxel_mm = np.asarray(voxel_mm, np.float64)
    own = own_lesion_of(organ, labels)
    far = _far_from(own, voxel_mm, float(model["margin_mm"]))
    if organ == "brain":
        brain = (image > 0) & ~own
        if brain.any():
            smooth = ndimage.gaussian_filter(image, sigma=1.0 / voxel_mm, mode="nearest")
            tissue = brain & far & (smooth < np.float32(model["fluid_ratio"]) * np.median(image[brain]))
        else:
            tissue = brain
    else:
        tissue = (labels == 1) & far
    return SourceTissue(image, labels, own, tissue, voxel_mm)


def noise_sigma(image: np.ndarray, tissue: np.ndarray) -> float:
    """Robust noise level (image units): median absolute in-plane second-difference response, Immerkaer-style.

    The 3x3 kernel ``[[1,-2,1],[-2,4,-2],[1,-2,1]]`` cancels linear trends; for white noise its response
    has standard deviation ``6 sigma``; the median (x 1.4826) of ``|response|`` over tissue voxels whose
    neighbours are tissue too ignores edges. 0 when there is too little tissue.
    """
    if tissue.sum() < 1000:
        return 0.0
    where = np.nonzero(tissue)
    box = tuple(slice(max(0, int(w.min()) - 1), int(w.max()) + 2) for w in where)
    kernel = np.array([[1, -2, 1], [-2, 4, -2], [1, -2, 1]], np.float32)[:, :, None]
    response = ndimage.convolve(image[box].astype(np.float32), kernel, mode="nearest")
    inner = ndimage.binary_erosion(tissue[box], structure=np.ones((3, 3, 1), bool))
    if inner.sum() < 1000:
        return 0.0
    return float(1.4826 * np.median(np.abs(response[inner])) / 6.0)


def local_reference(tissue: SourceTissue, center_mm: list[float], half_mm: float) -> float:
    """Median source intensity of the lesion-free tissue in a cube of half side ``half_mm`` around the centre."""
    box = box_around(tissue.frame, tissue.image.shape, center_mm, half_mm)
    values = tissue.image[box][tissue.tissue[box]]
    if values.size < MIN_REFERENCE_VOXELS:
        values = tissue.image[tissue.tissue]
    return float(np.median(values))


def _sample_lesion(rng: np.random.Generator, organ: str, tissue: SourceTissue, allowed: np.ndarray, candidates: np.ndarray,
                   model: dict[str, Any], sigma: float, tries: int, section: bool) -> tuple[dict[str, Any], RenderedLesion] | None:
    """Draw one lesion that fits in ``allowed``; None after ``tries`` draws that do not.

    ``section``: the grid is a training crop, one slice thick or a few (the slice and its neighbours,
    ``model.gen_gate_context``); the lesion's centre is moved off the middle slice by up to 0.8 of its
    smallest radius, so the middle slice cuts it anywhere from its equator to its tip, and the fill
    rule compares with that cut's nominal area instead of the sphere's volume.
    """
    shape = tissue.image.shape
    voxel_volume = float(np.prod(tissue.voxel_mm))
    for _ in range(tries):
        centre = pick_centre(rng, candidates, tissue.frame, shape)
        params = sample_lesion_shape(rng, centre, tuple(model["radius_mm"]), rim_probability=float(model["rim_probability"]))
        radius = params["radius_mm"]
        if section:
            height = float(rng.uniform(-0.8, 0.8)) * min(params["radii_mm"])
            params["center_mm"][2] = (shape[2] - 1) / 2 * float(tissue.voxel_mm[2]) + height
            nominal = np.pi * (radius ** 2 - height ** 2) / float(np.prod(tissue.voxel_mm[:2]))
        else:
            nominal = 4.0 / 3.0 * np.pi * radius ** 3 / voxel_volume
        params["intensity"] = draw_intensity(rng, organ, model, rim=params["rim_width"] > 0)
        params["intensity"]["noise_sigma"] = sigma if model["noise"] else 0.0
        params["intensity"]["noise_seed"] = int(rng.integers(2**31))
        params["intensity"]["core_blend_mm"] = float(model["core_blend_mm"])
        if not allowed[_voxel(centre, tissue.voxel_mm, shape)]:
            continue  # an earlier inserted lesion took this spot
        rendered = render_lesion(params, tissue.frame, shape, allowed)
        if rendered.voxels >= max(4, MIN_LESION_FILL * nominal) and (organ == "liver" or rendered.core.any()):
            half = max(float(model["reference_half_mm"]), 1.5 * radius)
            params["intensity"]["reference"] = local_reference(tissue, centre, half)
            return params, rendered
    return None


def _voxel(center_mm: list[float], voxel_mm: np.ndarray, shape: tuple[int, ...]) -> tuple[int, int, int]:
    index = np.clip(np.rint(np.asarray(center_mm) / voxel_mm), 0, np.asarray(shape) - 1).astype(int)
    return tuple(int(i) for i in index)  # type: ignore[return-value]


def sample_lesions(rng: np.random.Generator, organ: str, tissue: SourceTissue, model: dict[str, Any],
                   max_lesions: int, tries: int = TRIES, section: bool = False) -> tuple[list[dict[str, Any]], list[RenderedLesion]]:
    """1 to ``max_lesions`` disjoint lesions in the tissue (fewer when no more fit; none when none fits);
    ``section`` for a one-slice grid (see :func:`_sample_lesion`)."""
    count = int(rng.integers(1, int(max_lesions) + 1))
    allowed = tissue.tissue.copy()
    candidates = np.flatnonzero(allowed)
    if candidates.size == 0:
        return [], []
    sigma = noise_sigma(tissue.image, tissue.tissue) if model["noise"] else 0.0
    lesions, rendered = [], []
    for _ in range(count):
        found = _sample_lesion(rng, organ, tissue, allowed, candidates, model, sigma, tries, section)
        if found is None:
            break
        lesions.append(found[0])
        rendered.append(found[1])
        allowed[found[1].box] &= ~found[1].whole
    return lesions, rendered


def _lesion_values(organ: str, params: dict[str, Any], lesion: RenderedLesion, tissue_box: np.ndarray,
                   voxel_mm: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Intensities (float32) and labels (int16) of one lesion on its box; valid where ``lesion.whole``.

    outer zone: brain ``t (1 + e w (1 + h_e tex))`` (edema on the tissue that is there), liver
    ``t + w (base - t)``; the inner level (core, rim) is mixed in by the core's soft border ``m``.
    """
    level = params["intensity"]
    one = np.float32(1.0)
    w, tex = lesion.weight, lesion.texture
    noise = np.random.default_rng(level["noise_seed"]).standard_normal(tissue_box.shape, dtype=np.float32) * np.float32(level["noise_sigma"])
    blend = np.clip(ndimage.gaussian_filter(lesion.core.astype(np.float32), sigma=level["core_blend_mm"] / voxel_mm), 0.0, 1.0).astype(np.float32)
    reference = np.float32(level["reference"])
    if organ == "brain":
        outer = tissue_box * (one + np.float32(level["edema"]) * w * (one + np.float32(level["edema_heterogeneity"]) * tex))
        ratio = np.where(lesion.rim, np.float32(level["rim_ratio"]), np.float32(level["core_ratio"]))
        inner = reference * ratio * (one + np.float32(level["heterogeneity"]) * tex) + noise
        values = outer + blend * (inner - outer)
        labels = np.where(lesion.core, np.where(lesion.rim, 4, 1), 2).astype(np.int16)
    else:
        base = reference - np.float32(level["contrast_hu"]) + np.float32(level["heterogeneity_hu"]) * tex + noise
        inner = np.where(lesion.rim, base + np.float32(level["rim_hu"]), base - np.float32(level["necrosis_hu"]))
        mixed = base + blend * (inner - base)
        values = tissue_box + w * (mixed - tissue_box)
        labels = np.full(tissue_box.shape, 2, np.int16)
    return values.astype(np.float32), labels


def render_inserted(organ: str, tissue: SourceTissue, lesions: list[dict[str, Any]],
                    rendered: list[RenderedLesion] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The pathological image (float32, source units) and labels (int16): the source with ``lesions`` inserted."""
    allowed = tissue.tissue.copy()
    image = tissue.image.copy()
    labels = tissue.labels.copy()
    for index, params in enumerate(lesions):
        lesion = rendered[index] if rendered is not None else render_lesion(params, tissue.frame, tissue.image.shape, allowed)
        allowed[lesion.box] &= ~lesion.whole
        values, new_labels = _lesion_values(organ, params, lesion, tissue.image[lesion.box], tissue.voxel_mm)
        image[lesion.box][lesion.whole] = values[lesion.whole]
        labels[lesion.box][lesion.whole] = new_labels[lesion.whole]
    return image, labels


def healthy_of(tissue: SourceTissue) -> np.ndarray:
    """The true healthy volume: the source itself, NaN inside its own lesion (truth unknown there)."""
    healthy = tissue.image.astype(np.float32, copy=True)
    healthy[tissue.own_lesion] = np.nan
    return healthy
