"""Liver CT phantom (LiTS-like): a procedural abdomen in Hounsfield units with hypodense liver lesions.

The scene is built from simple shapes with random sizes, positions and densities: an elliptic body
with subcutaneous fat and a muscle wall, a textured abdominal cavity, lungs above a domed
diaphragm, heart, spine with vertebral bodies and discs, aorta and inferior vena cava, spleen,
kidneys, gallbladder, and a two-lobed liver with contrast-filled vessels. Vessels are the
intersection of the zero sets of two smooth random fields (two random surfaces meet along
random curves), which gives a tubular, branching-looking network without tracing any tree.

Lesions (``lesions.py``) are darker than the liver (hypodense, as metastases in portal venous phase),
heterogeneous, sometimes with a necrotic centre or an enhancing rim; all are label 2 and lie in the
liver. Outside the lesions the pathological and healthy volumes share every voxel, noise included.
"""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from pseudohealthy.data.phantom.case import PhantomCase
from pseudohealthy.data.phantom.fields import evaluate_modes_smooth, sample_modes, uniform
from pseudohealthy.data.phantom.grid import box_around, world_axes
from pseudohealthy.data.phantom.lesions import RenderedLesion, pick_centre, render_lesion, sample_lesion_shape

LITS_SHAPE = (512, 512, 64)
FIELD_OF_VIEW_MM = (400.0, 400.0, 320.0)
LESION_RADIUS_MM = (4.0, 35.0)
AIR_HU, MIN_HU, MAX_HU = -1000.0, -1024, 3071


def lits_affine(shape: Sequence[int]) -> np.ndarray:
    """Axis-aligned affine (x, y flipped as in DICOM-derived NIfTI) centred on the world origin."""
    step = np.array(FIELD_OF_VIEW_MM) / np.asarray(shape, np.float64) * np.array([-1.0, -1.0, 1.0])
    affine = np.eye(4)
    affine[:3, :3] = np.diag(step)
    affine[:3, 3] = -step * (np.asarray(shape, np.float64) - 1) / 2.0
    return affine


def _ellipsoid_params(rng: np.random.Generator, centre: Sequence[tuple[float, float]], semi: Sequence[tuple[float, float]]) -> dict[str, Any]:
    return {"center_mm": [uniform(rng, *c) for c in centre], "semi_mm": [uniform(rng, *s) for s in semi]}


def sample_scene(rng: np.random.Generator, shape: Sequence[int]) -> dict[str, Any]:
    """Draw one subject's abdomen (every size, position and density), no lesions yet."""
    body_y = uniform(rng, -15.0, 5.0)
    semi_y = uniform(rng, 95.0, 125.0)
    z_liver = uniform(rng, -20.0, 30.0)
    spine = {"center_mm": [uniform(rng, -5.0, 5.0), body_y - semi_y * uniform(rng, 0.45, 0.55)], "radius_mm": uniform(rng, 15.0, 20.0)}
    right_lobe = _ellipsoid_params(rng, [(-70.0, -50.0), (-15.0, 10.0), (z_liver, z_liver)], [(65.0, 85.0), (70.0, 90.0), (65.0, 85.0)])
    liver_hu = uniform(rng, 80.0, 125.0)
    return {
        "kind": "liver",
        "shape": [int(n) for n in shape],
        "affine": lits_affine(shape).tolist(),
        "body": {
            "center_y_mm": body_y,
            "semi_mm": [uniform(rng, 135.0, 170.0), semi_y],
            "taper": uniform(rng, -0.08, 0.08),  # relative change of the cross-section per 160 mm in z
            "outline": [[uniform(rng, -0.03, 0.03), uniform(rng, 0.0, 2 * np.pi)] for _ in range(3)],  # cos(k theta) terms, k = 2..4
            "fat_mm": uniform(rng, 8.0, 30.0),
            "muscle_mm": uniform(rng, 6.0, 14.0),
            "fat_hu": uniform(rng, -115.0, -85.0),
            "muscle_hu": uniform(rng, 35.0, 60.0),
        },
        "cavity": {"hu": uniform(rng, -40.0, 10.0), "texture_hu": uniform(rng, 15.0, 35.0), "modes": sample_modes(rng, 24, (12.0, 60.0))},
        "lungs": {"dome_mm": z_liver + right_lobe["semi_mm"][2] - uniform(rng, 0.0, 10.0), "hu": uniform(rng, -880.0, -820.0)},
        "heart": {**_ellipsoid_params(rng, [(10.0, 30.0), (20.0, 40.0), (z_liver + 110.0, z_liver + 130.0)], [(55.0, 70.0), (45.0, 60.0), (40.0, 50.0)]), "hu": uniform(rng, 90.0, 150.0)},
        "spine": {**spine, "cancellous_hu": uniform(rng, 150.0, 250.0), "cortex_hu": uniform(rng, 500.0, 800.0), "disc_hu": uniform(rng, 70.0, 100.0),
                  "level_mm": uniform(rng, 26.0, 32.0), "level_phase_mm": uniform(rng, 0.0, 30.0)},
        "aorta": {"offset_mm": [uniform(rng, 10.0, 25.0), spine["radius_mm"] + uniform(rng, 8.0, 14.0)], "radius_mm": uniform(rng, 9.0, 13.0), "hu": uniform(rng, 130.0, 200.0)},
        "ivc": {"offset_mm": [-uniform(rng, 20.0, 30.0), spine["radius_mm"] + uniform(rng, 12.0, 22.0)], "radius_mm": uniform(rng, 9.0, 13.0), "hu": uniform(rng, 100.0, 150.0)},
        "liver": {
            "right_lobe": right_lobe,
            "left_lobe": _ellipsoid_params(rng, [(0.0, 30.0), (25.0, 45.0), (z_liver + 15.0, z_liver + 30.0)], [(55.0, 80.0), (30.0, 45.0), (25.0, 40.0)]),
            "outline_amplitude": uniform(rng, 0.03, 0.08),
            "outline_modes": sample_modes(rng, 8, (60.0, 140.0)),
            "hu": liver_hu,
            "texture_hu": uniform(rng, 2.0, 5.0),
            "texture_modes": sample_modes(rng, 8, (10.0, 30.0)),
        },
        "vessels": {"modes": [sample_modes(rng, 8, (40.0, 80.0)) for _ in range(2)], "width": uniform(rng, 0.25, 0.4), "hu": liver_hu + uniform(rng, 30.0, 70.0)},
        "gallbladder": {**_ellipsoid_params(rng, [(right_lobe["center_mm"][0] + 20.0, right_lobe["center_mm"][0] + 35.0), (right_lobe["center_mm"][1] + 25.0, right_lobe["center_mm"][1] + 40.0), (z_liver - 45.0, z_liver - 30.0)], [(15.0, 22.0), (15.0, 25.0), (25.0, 35.0)]), "hu": uniform(rng, 0.0, 20.0)},
        "spleen": {**_ellipsoid_params(rng, [(75.0, 100.0), (-45.0, -15.0), (z_liver, z_liver + 20.0)], [(25.0, 35.0), (45.0, 60.0), (45.0, 60.0)]), "hu": uniform(rng, 100.0, 130.0)},
        "kidneys": [
            {**_ellipsoid_params(rng, [(-70.0, -55.0), (-60.0, -40.0), (z_liver - 80.0, z_liver - 60.0)], [(25.0, 32.0), (28.0, 38.0), (45.0, 55.0)]), "hu": uniform(rng, 140.0, 200.0)},
            {**_ellipsoid_params(rng, [(55.0, 70.0), (-60.0, -40.0), (z_liver - 65.0, z_liver - 45.0)], [(25.0, 32.0), (28.0, 38.0), (45.0, 55.0)]), "hu": uniform(rng, 140.0, 200.0)},
        ],
        "noise": {"kind": "gaussian", "sigma_hu": uniform(rng, 6.0, 16.0), "seed": int(rng.integers(2**31))},
        "lesions": [],
    }


def _ellipsoid(affine: np.ndarray, shape: Sequence[int], center: Sequence[float], semi: Sequence[float]) -> tuple[tuple[slice, slice, slice], np.ndarray]:
    """Box around an axis-aligned ellipsoid and its normalised radius there (float32; < 1 inside)."""
    box = box_around(affine, shape, center, float(max(semi)) + float(np.abs(np.diag(affine)[:3]).max()))
    axes = world_axes(affine, shape, box)
    rho2 = sum((((axes[a] - center[a]) / semi[a]) ** 2).reshape([-1 if i == a else 1 for i in range(3)]) for a in range(3))
    return box, np.sqrt(rho2).astype(np.float32)


def _paint_ellipsoid(image: np.ndarray, affine: np.ndarray, part: dict[str, Any], allowed: np.ndarray | None = None) -> np.ndarray:
    """Set ``part['hu']`` inside the ellipsoid (and ``allowed``); returns the full-grid bool mask painted."""
    box, rho = _ellipsoid(affine, image.shape, part["center_mm"], part["semi_mm"])
    inside = rho < 1.0
    if allowed is not None:
        inside &= allowed[box]
    image[box][inside] = part["hu"]
    mask = np.zeros(image.shape, bool)
    mask[box] = inside
    return mask


def render_anatomy(params: dict[str, Any]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The healthy abdomen: noise-free HU float32 ``(X, Y, Z)``, the liver mask and the vessel mask (bool)."""
    shape = tuple(params["shape"])
    affine = np.asarray(params["affine"], np.float64)
    x, y, z = world_axes(affine, shape)
    step_mm = 4.0 * float(np.abs(np.diag(affine)[:2]).min()) + 2.0  # texture lattice, well below the wavelengths
    image = np.full(shape, AIR_HU, np.float32)

    # Body: elliptic cross-section with a lobulated outline, tapering along z; fat, then muscle, then the cavity.
    body = params["body"]
    dx, dy = x[:, None], (y - body["center_y_mm"])[None, :]
    theta = np.arctan2(dy / body["semi_mm"][1], dx / body["semi_mm"][0])
    outline = 1.0 + sum(a * np.cos((k + 2) * theta + phase) for k, (a, phase) in enumerate(body["outline"]))
    scale = (1.0 + body["taper"] * z / 160.0)[None, None, :]

    def inside_shell(inset_mm: float) -> np.ndarray:
        rho = np.sqrt((dx / (body["semi_mm"][0] - inset_mm)) ** 2 + (dy / (body["semi_mm"][1] - inset_mm)) ** 2) / outline
        return rho.astype(np.float32)[:, :, None] < scale

    skin = inside_shell(0.0)
    below_fat = inside_shell(body["fat_mm"])
    cavity = inside_shell(body["fat_mm"] + body["muscle_mm"])
    image[skin] = body["fat_hu"]
    image[below_fat] = body["muscle_hu"]
    c = params["cavity"]
    texture = evaluate_modes_smooth(c["modes"], (x, y, z), step_mm)
    image[cavity] = (c["hu"] + c["texture_hu"] * np.clip(texture, -2.0, 2.0))[cavity]

    # Lungs above a dome-shaped diaphragm (lower at the sides and the back), heart on top of it.
    lungs = params["lungs"]
    dome = lungs["dome_mm"] - 25.0 * (x[:, None] / body["semi_mm"][0]) ** 2 - 10.0 * np.clip(-dy / body["semi_mm"][1], 0.0, None)
    thorax = cavity & (z[None, None, :] > dome[:, :, None])
    image[thorax] = lungs["hu"]
    _paint_ellipsoid(image, affine, params["heart"], allowed=thorax)

    for kidney in params["kidneys"]:
        _paint_ellipsoid(image, affine, kidney, allowed=cavity & ~thorax)
    _paint_ellipsoid(image, affine, params["spleen"], allowed=cavity & ~thorax)

    # Liver: union of two lobes with a perturbed outline, inside the cavity and below the diaphragm.
    lv = params["liver"]
    box_r, rho_r = _ellipsoid(affine, shape, lv["right_lobe"]["center_mm"], lv["right_lobe"]["semi_mm"])
    box_l, rho_l = _ellipsoid(affine, shape, lv["left_lobe"]["center_mm"], lv["left_lobe"]["semi_mm"])
    rho = np.full(shape, np.inf, np.float32)
    rho[box_r] = rho_r
    rho[box_l] = np.minimum(rho[box_l], rho_l)
    box = tuple(slice(min(a.start, b.start), max(a.stop, b.stop)) for a, b in zip(box_r, box_l))
    box_axes = world_axes(affine, shape, box)
    rho_box = rho[box] + lv["outline_amplitude"] * evaluate_modes_smooth(lv["outline_modes"], box_axes, step_mm)
    liver = np.zeros(shape, bool)
    liver[box] = (rho_box < 1.0) & cavity[box] & ~thorax[box]
    liver_texture = evaluate_modes_smooth(lv["texture_modes"], box_axes, step_mm)
    image[box] = np.where(liver[box], lv["hu"] + lv["texture_hu"] * liver_texture, image[box])
    v = params["vessels"]
    field_a = evaluate_modes_smooth(v["modes"][0], box_axes, step_mm)
    field_b = evaluate_modes_smooth(v["modes"][1], box_axes, step_mm)
    vessels = np.zeros(shape, bool)
    vessels[box] = liver[box] & (np.abs(field_a) < v["width"]) & (np.abs(field_b) < v["width"])
    image[vessels] = v["hu"]
    gallbladder = _paint_ellipsoid(image, affine, params["gallbladder"], allowed=cavity & ~thorax)
    liver &= ~gallbladder
    vessels &= liver

    # Spine (vertebral bodies with a cortical ring, discs every level), aorta and IVC: columns along z.
    sp = params["spine"]
    sx, sy = sp["center_mm"]
    r_spine = np.sqrt((x[:, None] - sx) ** 2 + (y[None, :] - sy) ** 2)
    disc = np.abs(((z - sp["level_phase_mm"]) % sp["level_mm"]) - sp["level_mm"] / 2.0) > sp["level_mm"] / 2.0 - 4.0
    vertebra = np.where(r_spine > sp["radius_mm"] - 3.0, sp["cortex_hu"], sp["cancellous_hu"]).astype(np.float32)
    column = np.where(disc[None, None, :], np.float32(sp["disc_hu"]), vertebra[:, :, None])
    in_spine = np.broadcast_to((r_spine < sp["radius_mm"])[:, :, None], shape) & skin
    image[in_spine] = column[in_spine]
    below_heart = (z < params["heart"]["center_mm"][2])[None, None, :]
    for vessel in (params["aorta"], params["ivc"]):
        vx, vy = sx + vessel["offset_mm"][0], sy + vessel["offset_mm"][1]
        disk = (x[:, None] - vx) ** 2 + (y[None, :] - vy) ** 2 < vessel["radius_mm"] ** 2
        tube = disk[:, :, None] & cavity & below_heart
        image[tube] = vessel["hu"]
        liver &= ~tube
        vessels &= ~tube
    return image, liver, vessels


def sample_lesion(rng: np.random.Generator, liver: np.ndarray, vessels: np.ndarray, affine: np.ndarray, tries: int = 50) -> tuple[dict[str, Any], RenderedLesion]:
    """Draw one hypodense lesion centred in liver parenchyma; redraw until it covers a few voxels."""
    candidates = np.flatnonzero(liver & ~vessels)
    if candidates.size == 0:
        raise RuntimeError(f"the liver of this phantom case has no voxel on a {liver.shape} grid")
    for _ in range(tries):
        params = sample_lesion_shape(rng, pick_centre(rng, candidates, affine, liver.shape), LESION_RADIUS_MM, rim_probability=0.3)
        params["intensity"] = {  # HU relative to the liver's
            "contrast_hu": uniform(rng, 30.0, 75.0),
            "necrosis_hu": uniform(rng, 5.0, 25.0),  # the core is darker still
            "rim_hu": uniform(rng, 10.0, 35.0),  # an enhancing rim is brighter than the lesion
            "heterogeneity_hu": uniform(rng, 4.0, 15.0),
        }
        rendered = render_lesion(params, affine, liver.shape, liver)
        if rendered.voxels >= 4:
            return params, rendered
    raise RuntimeError(f"could not place a liver lesion on a {liver.shape} grid after {tries} draws")


def render_case(params: dict[str, Any], anatomy: tuple[np.ndarray, np.ndarray, np.ndarray], rendered: list[RenderedLesion] | None = None) -> PhantomCase:
    """Insert the lesions (darker wins where they overlap), then add one noise realisation to both volumes."""
    clean, liver, _ = anatomy
    affine = np.asarray(params["affine"], np.float64)
    shape = clean.shape
    if rendered is None:
        rendered = [render_lesion(p, affine, shape, liver) for p in params["lesions"]]
    liver_hu = np.float32(params["liver"]["hu"])
    pathological = clean.copy()
    labels = liver.astype(np.uint8)
    for lesion_params, lesion in zip(params["lesions"], rendered):
        level = lesion_params["intensity"]
        box = lesion.box
        base = liver_hu - np.float32(level["contrast_hu"]) + np.float32(level["heterogeneity_hu"]) * lesion.texture
        core = np.where(lesion.rim, base + np.float32(level["rim_hu"]), base - np.float32(level["necrosis_hu"]))
        value = np.where(lesion.core, core, base)
        healthy_box = clean[box]
        target = healthy_box + lesion.weight * (value - healthy_box)
        current = pathological[box]
        pathological[box] = np.where(lesion.whole, np.minimum(current, target), current)
        labels[box][lesion.whole] = 2
    noise = params["noise"]
    rng = np.random.default_rng(noise["seed"])
    realisation = rng.standard_normal(shape, dtype=np.float32) * np.float32(noise["sigma_hu"])
    image, healthy = (np.clip(np.rint(v + realisation), MIN_HU, MAX_HU).astype(np.int16) for v in (pathological, clean))
    return PhantomCase(image=image, healthy=healthy, labels=labels, affine=affine, params=params)


def generate_liver_case(rng: np.random.Generator, shape: Sequence[int], lesions: tuple[int, int] = (1, 3)) -> PhantomCase:
    """Sample and render one liver case (random-then-deterministic: the params replay it)."""
    params = sample_scene(rng, shape)
    anatomy = render_anatomy(params)
    affine = np.asarray(params["affine"], np.float64)
    rendered = []
    for _ in range(int(rng.integers(lesions[0], lesions[1] + 1))):
        lesion_params, lesion = sample_lesion(rng, anatomy[1], anatomy[2], affine)
        params["lesions"].append(lesion_params)
        rendered.append(lesion)
    return render_case(params, anatomy, rendered)


def replay_liver_case(params: dict[str, Any]) -> PhantomCase:
    """Render a liver case from its params (as written to ``volume-<n>_params.json``)."""
    return render_case(params, render_anatomy(params))
