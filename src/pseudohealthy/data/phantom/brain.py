"""Brain phantom: a T2-like BraTS-style volume built from the MNI152 2009 tissue maps, with tumours.

Each case is a different subject: the template is scaled, rotated, shifted and smoothly deformed;
tissue contrasts, a multiplicative bias field and the Rician noise level vary. Tumours
(``lesions.py``) replace parenchyma with an edema zone (label 2) around a bright heterogeneous core
(label 1, optionally with an enhancing rim, label 4). No mass effect: outside the tumour the
pathological and the healthy volumes share anatomy, bias field and noise realisation, so they are
identical voxel for voxel.

Intensities are in "white-matter units" times ``contrast.white_matter`` (about 400-600), which puts
the brain in roughly 100..2500 like BraTS T2 exports; the background is exactly 0.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from pseudohealthy.data.phantom import mni
from pseudohealthy.data.phantom.case import PhantomCase
from pseudohealthy.data.phantom.fields import evaluate_modes, rotation_matrix, sample_modes, uniform
from pseudohealthy.data.phantom.grid import scaled_affine
from pseudohealthy.data.phantom.lesions import RenderedLesion, pick_centre, render_lesion, sample_lesion_shape

BRATS_SHAPE = (240, 240, 155)
# Like the real BraTS exports: 1 mm, x and y flipped, origin [0, 239, 0].
BRATS_AFFINE = np.array([[-1.0, 0, 0, 0], [0, -1.0, 0, 239.0], [0, 0, 1.0, 0], [0, 0, 0, 1.0]])
# Where the brain's bounding-box centre lands (mm, BraTS world): voxel (119.5, 129, 77), as in real cases.
SUBJECT_CENTER_MM = (-119.5, 110.0, 77.0)
LESION_RADIUS_MM = (4.0, 30.0)
WARP_STEP_MM = 4.0  # the deformation is evaluated on a lattice this coarse, then trilinearly upsampled


def sample_subject(rng: np.random.Generator, shape: Sequence[int]) -> dict[str, Any]:
    """Draw one subject's anatomy, contrast, bias and noise parameters (no lesions yet)."""
    template_center, _ = mni.brain_box_mm()
    iso = uniform(rng, 0.84, 0.93)  # the MNI brain is larger than the average BraTS brain
    return {
        "kind": "brain",
        "shape": [int(n) for n in shape],
        "affine": scaled_affine(BRATS_AFFINE, BRATS_SHAPE, shape).tolist(),
        "placement": {
            "template_center_mm": [float(v) for v in template_center],
            "subject_center_mm": list(SUBJECT_CENTER_MM),
            "scale": [iso * uniform(rng, 0.96, 1.04) for _ in range(3)],
            "rotation_deg": [float(np.clip(rng.normal(0.0, 4.0), -10.0, 10.0)) for _ in range(3)],
            "translation_mm": [uniform(rng, -4.0, 4.0) for _ in range(3)],
        },
        "deformation": {
            "amplitude_mm": uniform(rng, 1.5, 4.0),
            "modes": [sample_modes(rng, 6, (50.0, 110.0)) for _ in range(3)],
        },
        "contrast": {
            "white_matter": uniform(rng, 400.0, 600.0),
            "grey_matter_ratio": uniform(rng, 1.2, 1.5),
            "csf_ratio": uniform(rng, 3.0, 4.0),
        },
        "bias": {"amplitude": uniform(rng, 0.04, 0.15), "modes": sample_modes(rng, 4, (150.0, 350.0))},
        "noise": {"kind": "rician", "sigma_wm_fraction": uniform(rng, 0.02, 0.05), "seed": int(rng.integers(2**31))},
        "lesions": [],
    }


@dataclass
class BrainAnatomy:
    """The subject's healthy anatomy on the phantom grid; arrays ``(X, Y, Z)``."""

    clean: np.ndarray  # float32, noise- and bias-free T2-like intensity, 0 outside the brain
    brain: np.ndarray  # bool
    parenchyma: np.ndarray  # bool, grey + white matter dominate (where tumours may grow)
    deep_white: np.ndarray  # bool, where tumour centres are drawn
    bias: np.ndarray  # float32, multiplicative bias field
    left: np.ndarray  # bool, the subject's left hemisphere (template x < 0); tumours stay on one side

    def region(self, hemisphere: str) -> np.ndarray:
        """Where a tumour of that hemisphere may grow: parenchyma, not across the midline."""
        return self.parenchyma & (self.left if hemisphere == "left" else ~self.left)


def render_anatomy(params: dict[str, Any]) -> BrainAnatomy:
    """Warp the tissue maps into the subject's space and give them T2-like contrast."""
    import torch
    import torch.nn.functional as F

    shape = tuple(params["shape"])
    affine = np.asarray(params["affine"], np.float64)
    factor = max(1, int(np.floor(np.abs(np.diag(affine)[:3]).min())))  # block-average the template to the voxel size
    maps, template_affine = mni.tissue_maps(factor)

    # Pull-back on a coarse lattice every `step` voxels (it may overhang the grid's far edge):
    # output voxel -> MNI mm -> pooled template index -> grid_sample's [-1, 1].
    step = [max(1, int(round(WARP_STEP_MM / abs(affine[a, a])))) for a in range(3)]
    count = [int(np.ceil((n - 1) / step[a])) + 1 for a, n in enumerate(shape)]
    axes = [affine[a, 3] + affine[a, a] * step[a] * np.arange(count[a], dtype=np.float64) for a in range(3)]
    place = params["placement"]
    to_template = np.diag(1.0 / np.asarray(place["scale"])) @ rotation_matrix(place["rotation_deg"]).T
    shift = np.asarray(place["subject_center_mm"]) + np.asarray(place["translation_mm"])
    deform = params["deformation"]
    index_of_mm = np.linalg.inv(template_affine)
    mm = []
    for a in range(3):
        value = sum((to_template[a, b] * (axes[b] - shift[b])).reshape([-1 if i == b else 1 for i in range(3)]) for b in range(3))
        value = value + place["template_center_mm"][a] + np.float32(deform["amplitude_mm"]) * evaluate_modes(deform["modes"][a], axes)
        mm.append(value)
    sizes = maps.shape[2:]
    normalised = []
    for a in range(3):
        index = index_of_mm[a, 0] * mm[0] + index_of_mm[a, 1] * mm[1] + index_of_mm[a, 2] * mm[2] + index_of_mm[a, 3]
        normalised.append(2.0 * index / (sizes[a] - 1) - 1.0)
    log_bias = params["bias"]["amplitude"] * evaluate_modes(params["bias"]["modes"], axes)
    # grid_sample wants (x, y, z) = (last, middle, first) input axis.
    coarse = torch.from_numpy(np.stack([normalised[2], normalised[1], normalised[0], log_bias]).astype(np.float32))

    # Only the box around the brain is warped at full resolution (about half the BraTS grid is
    # background): lattice points that see any brain, grown by two lattice cells.
    mask_coarse = F.grid_sample(maps[:, mni.MASK:], coarse[:3].permute(1, 2, 3, 0)[None], mode="bilinear", padding_mode="zeros", align_corners=True)[0, 0]
    hit = np.nonzero(mask_coarse.numpy() > 0)
    lo = [max(0, int(h.min()) - 2) if h.size else 0 for h in hit]
    hi = [min(count[a] - 1, int(hit[a].max()) + 2) if hit[a].size else count[a] - 1 for a in range(3)]
    lo = [min(lo[a], hi[a] - 1) for a in range(3)]  # at least two lattice points per axis
    sub = coarse[:, lo[0]:hi[0] + 1, lo[1]:hi[1] + 1, lo[2]:hi[2] + 1]
    dense = F.interpolate(sub[None], size=tuple((hi[a] - lo[a]) * step[a] + 1 for a in range(3)), mode="trilinear", align_corners=True)[0]
    box = tuple(slice(lo[a] * step[a], min(shape[a], hi[a] * step[a] + 1)) for a in range(3))
    dense = dense[:, : box[0].stop - box[0].start, : box[1].stop - box[1].start, : box[2].stop - box[2].start]
    grid = dense[:3].permute(1, 2, 3, 0)[None]
    warped = np.zeros((3, *shape), np.float32)
    warped[(slice(None), *box)] = F.grid_sample(maps, grid, mode="bilinear", padding_mode="zeros", align_corners=True)[0].numpy()
    bias = np.ones(shape, np.float32)
    bias[box] = np.exp(dense[3].numpy())
    midline = 2.0 * index_of_mm[0, 3] / (sizes[0] - 1) - 1.0  # template x = 0 mm on grid_sample's scale
    left = np.zeros(shape, bool)
    left[box] = dense[2].numpy() < midline

    gm, wm, mask = warped[mni.GM], warped[mni.WM], warped[mni.MASK]
    brain = mask >= 0.5
    csf = np.clip(mask - gm - wm, 0.0, 1.0)
    c = params["contrast"]
    clean = (wm + np.float32(c["grey_matter_ratio"]) * gm + np.float32(c["csf_ratio"]) * csf) / np.maximum(mask, 0.5)
    clean *= np.float32(c["white_matter"])
    clean[~brain] = 0.0
    parenchyma = brain & (gm + wm >= 0.5 * mask)
    deep_white = parenchyma & (wm >= 0.6 * mask)
    return BrainAnatomy(clean.astype(np.float32), brain, parenchyma, deep_white, bias.astype(np.float32), left)


def sample_tumour(rng: np.random.Generator, anatomy: BrainAnatomy, affine: np.ndarray, tries: int = 50) -> tuple[dict[str, Any], RenderedLesion]:
    """Draw one tumour centred in deep white matter; redraw until it covers a few voxels of parenchyma."""
    shape = anatomy.brain.shape
    candidates = np.flatnonzero(anatomy.deep_white)
    if candidates.size == 0:
        candidates = np.flatnonzero(anatomy.parenchyma)
    for _ in range(tries):
        centre = pick_centre(rng, candidates, affine, shape)
        params = sample_lesion_shape(rng, centre, LESION_RADIUS_MM)
        params["hemisphere"] = "left" if anatomy.left[_voxel_of(affine, centre, shape)] else "right"
        params["intensity"] = {  # in white-matter units, before bias and noise
            "edema": uniform(rng, 1.8, 2.4),
            "core": uniform(rng, 2.3, 3.0),
            "rim": uniform(rng, 1.7, 2.1),
            "heterogeneity": uniform(rng, 0.06, 0.18),
        }
        rendered = render_lesion(params, affine, shape, anatomy.region(params["hemisphere"]))
        if rendered.voxels >= 4 and rendered.core.any():
            return params, rendered
    raise RuntimeError(f"could not place a tumour on a {shape} grid after {tries} draws")


def _voxel_of(affine: np.ndarray, point_mm: Sequence[float], shape: Sequence[int]) -> tuple[int, int, int]:
    index = np.rint(np.linalg.solve(affine[:3, :3], np.asarray(point_mm) - affine[:3, 3]))
    return tuple(int(v) for v in np.clip(index, 0, np.asarray(shape) - 1))  # type: ignore[return-value]


def render_case(params: dict[str, Any], anatomy: BrainAnatomy, rendered: list[RenderedLesion] | None = None) -> PhantomCase:
    """Insert the tumours, then apply the same bias field and noise to the pathological and healthy volumes."""
    affine = np.asarray(params["affine"], np.float64)
    shape = anatomy.brain.shape
    if rendered is None:
        rendered = [render_lesion(p, affine, shape, anatomy.region(p["hemisphere"])) for p in params["lesions"]]
    wm_level = np.float32(params["contrast"]["white_matter"])
    pathological = anatomy.clean.copy()
    labels = np.zeros(shape, np.uint8)
    for lesion_params, lesion in zip(params["lesions"], rendered):
        level = lesion_params["intensity"]
        box = lesion.box
        healthy_box = anatomy.clean[box]
        modulation = wm_level * (1.0 + np.float32(level["heterogeneity"]) * lesion.texture)
        edema = healthy_box + lesion.weight * (np.float32(level["edema"]) * modulation - healthy_box)
        core = np.where(lesion.rim, np.float32(level["rim"]) * modulation, np.float32(level["core"]) * modulation)
        target = np.where(lesion.core, core, edema)
        current = pathological[box]
        # T2 tumour tissue is hyperintense: where tumours overlap, the brighter one shows.
        pathological[box] = np.where(lesion.whole, np.maximum(current, target), current)
        new = np.where(lesion.core, np.where(lesion.rim, 4, 1), 2).astype(np.uint8) * lesion.whole
        old = labels[box]
        labels[box] = np.where((new > 0) & ((old == 0) | ((old == 2) & (new != 2))), new, old)
    image, healthy = _acquire([pathological, anatomy.clean], anatomy, params)
    return PhantomCase(image=image, healthy=healthy, labels=labels, affine=affine, params=params)


def _acquire(volumes: list[np.ndarray], anatomy: BrainAnatomy, params: dict[str, Any]) -> list[np.ndarray]:
    """Bias field and one Rician noise realisation (on brain voxels only), shared by all ``volumes``; int16 out."""
    inside = np.flatnonzero(anatomy.brain)
    noise = params["noise"]
    sigma = np.float32(noise["sigma_wm_fraction"] * params["contrast"]["white_matter"])
    rng = np.random.default_rng(noise["seed"])
    real = rng.standard_normal(inside.size, dtype=np.float32) * sigma
    imaginary = rng.standard_normal(inside.size, dtype=np.float32) * sigma
    bias = anatomy.bias.ravel()[inside]
    out = []
    for volume in volumes:
        signal = volume.ravel()[inside] * bias
        magnitude = np.sqrt((signal + real) ** 2 + imaginary**2)
        result = np.zeros(anatomy.brain.shape, np.int16)
        # At least 1 inside the brain, so that "brain = image > 0" holds for readers.
        result.ravel()[inside] = np.clip(np.rint(magnitude), 1, np.iinfo(np.int16).max).astype(np.int16)
        out.append(result)
    return out


def generate_brain_case(rng: np.random.Generator, shape: Sequence[int], lesions: tuple[int, int] = (1, 3)) -> PhantomCase:
    """Sample and render one brain case (random-then-deterministic: the params replay it)."""
    params = sample_subject(rng, shape)
    anatomy = render_anatomy(params)
    affine = np.asarray(params["affine"], np.float64)
    rendered = []
    for _ in range(int(rng.integers(lesions[0], lesions[1] + 1))):
        lesion_params, lesion = sample_tumour(rng, anatomy, affine)
        params["lesions"].append(lesion_params)
        rendered.append(lesion)
    return render_case(params, anatomy, rendered)


def replay_brain_case(params: dict[str, Any]) -> PhantomCase:
    """Render a brain case from its params (as written to ``<case>_params.json``)."""
    return render_case(params, render_anatomy(params))
