"""Seeded slice augmentation: random flips, small rotations and (optionally) anisotropic scaling and a
smooth elastic deformation, applied alike to image and masks.

Random-then-deterministic (as in TorchIO): :func:`sample_augmentation` draws the parameters from a
generator, :func:`apply_augmentation` applies them without any randomness, so a transform can be
logged and replayed. :func:`augmentation_rng` seeds one generator per ``(seed, epoch, index)``, so
a training run replays exactly whatever the order or the number of data loader workers.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from scipy import ndimage


@dataclass(frozen=True)
class AugmentParams:
    """One sampled transform. ``flip_h`` mirrors the H axis (canonical X: left-right)."""

    flip_h: bool = False
    flip_w: bool = False
    angle: float = 0.0  # degrees, in-plane rotation about the slice centre
    scale: tuple[float, float] = (1.0, 1.0)  # zoom along H and W about the slice centre (> 1 enlarges)
    # elastic: displacements (pixels) of an n x n control grid, one flattened tuple per axis (2, n * n),
    # spread over the slice by cubic interpolation; () for none
    elastic: tuple = ()


ELASTIC_SPACING = 40  # pixels between the elastic deformation's control points (a smooth, organ-scale warp)


def augmentation_rng(seed: int, epoch: int, index: int) -> np.random.Generator:
    """An independent generator for one item of one epoch."""
    return np.random.default_rng([int(seed), int(epoch), int(index)])


def sample_augmentation(rng: np.random.Generator, max_angle: float = 10.0, p_flip_h: float = 0.5, p_flip_w: float = 0.0,
                        max_scale: float = 0.0, elastic: float = 0.0, size: int = 240) -> AugmentParams:
    """Draw a transform: left-right flip with ``p_flip_h`` (brains are nearly symmetric), an
    anterior-posterior flip with ``p_flip_w`` (off by default: anatomy has no such symmetry), a
    rotation uniform in ``[-max_angle, max_angle]`` degrees and, with ``max_scale`` > 0, a zoom per
    axis drawn log-uniformly in ``[1 / (1 + max_scale), 1 + max_scale]``: another head's size and
    shape, so a model trained on few subjects sees more than their anatomy (nnU-Net scales by
    0.7-1.4). The zoom is drawn after the rotation, so runs without it replay as before.
    ``elastic`` > 0: a smooth random warp whose control points, every ``ELASTIC_SPACING`` pixels of a
    ``size``-pixel slice, move by up to this many pixels along each axis (uniform; the cubic spline
    through them overshoots by up to ~60% between them): ventricles,
    sulci and organs of other shapes, e.g. pushed by a mass, than the training subjects'
    (as nnU-Net's and SynthSeg's elastic augmentation). Drawn last."""
    flip_h = bool(rng.random() < p_flip_h)
    flip_w = bool(rng.random() < p_flip_w)
    angle = float(rng.uniform(-max_angle, max_angle)) if max_angle > 0 else 0.0
    scale = (1.0, 1.0)
    if max_scale > 0:
        bound = np.log1p(max_scale)
        zoom = np.exp(rng.uniform(-bound, bound, size=2))
        scale = (float(zoom[0]), float(zoom[1]))
    warp: tuple = ()
    if elastic > 0:
        points = int(np.ceil(size / ELASTIC_SPACING)) + 1
        warp = tuple(map(tuple, rng.uniform(-elastic, elastic, size=(2, points * points)).tolist()))
    return AugmentParams(flip_h, flip_w, angle, scale, warp)


@lru_cache(maxsize=16)
def _spread(points: int, size: int) -> np.ndarray:
    """``(size, points)`` weights of a cubic spread of ``points`` control values over ``size`` pixels
    (scipy's zoom of each unit vector: the 2-D spread of a control grid ``G`` is ``A @ G @ B.T``,
    ~100x faster than zooming the grid itself at every draw)."""
    return ndimage.zoom(np.eye(points), (size / points, 1.0), order=3, grid_mode=True, mode="nearest")


def _rotation_zoom(params: AugmentParams, shape: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
    """The 2x2 matrix ``R(-angle) / zoom`` and the slice centre: output pixel p reads input
    centre + matrix (p - centre) (scipy's affine_transform maps output to input)."""
    theta = np.deg2rad(params.angle)
    rotate = np.array([[np.cos(theta), np.sin(theta)], [-np.sin(theta), np.cos(theta)]])
    return rotate @ np.diag(1.0 / np.asarray(params.scale)), (np.asarray(shape, dtype=np.float64) - 1.0) / 2.0


def _sampling_coordinates(params: AugmentParams, shape: tuple[int, int],
                          window: tuple[int, int, int, int] | None = None) -> np.ndarray:
    """Where each output pixel reads the input, ``(2, H, W)``: centre + R(-angle) (p - centre) / zoom
    + the elastic displacement at p. ``window`` ``(top, left, height, width)``: only the output pixels
    of that window (the same values as the whole slice's there)."""
    top, left, height, width = (0, 0, *shape) if window is None else window
    matrix, centre = _rotation_zoom(params, shape)
    grid = np.indices((height, width), dtype=np.float64).reshape(2, -1)
    grid += np.array([[top], [left]], dtype=np.float64) - centre[:, None]
    coords = (matrix @ grid + centre[:, None]).reshape(2, height, width)
    if params.elastic:
        control = np.asarray(params.elastic, dtype=np.float64)
        points = int(round(np.sqrt(control.shape[1])))
        rows = _spread(points, shape[0])[top:top + height]
        cols = _spread(points, shape[1])[left:left + width]
        for axis in range(2):
            coords[axis] += rows @ control[axis].reshape(points, points) @ cols.T
    return coords


def flip_slice(params: AugmentParams, slice_: np.ndarray) -> np.ndarray:
    """The transform's flips alone (a view): the slice the rest of the transform reads from."""
    out = slice_
    if params.flip_h:
        out = out[::-1, :]
    if params.flip_w:
        out = out[:, ::-1]
    return out


def warped_position(params: AugmentParams, shape: tuple[int, int], point: tuple[float, float]) -> np.ndarray:
    """Where the rotation and zoom of ``params`` move pixel ``point`` of the flipped slice (its output
    position; the elastic part, a few pixels, left out): to place a training crop around a lesion
    before warping."""
    matrix, centre = _rotation_zoom(params, shape)
    return centre + np.linalg.solve(matrix, np.asarray(point, dtype=np.float64) - centre)


def _transform(slice_: np.ndarray, params: AugmentParams, order: int, fill: float,
               coords: np.ndarray | None = None) -> np.ndarray:
    out = flip_slice(params, slice_)
    if params.elastic or coords is not None:
        # rotation, zoom and warp in one resampling (coordinates shared by the image and its masks;
        # given for a window of the output)
        coords = _sampling_coordinates(params, out.shape) if coords is None else coords
        out = ndimage.map_coordinates(out, coords, order=order, mode="constant", cval=fill)
    elif params.scale != (1.0, 1.0):
        # rotation and zoom in one resampling about the slice centre
        matrix, centre = _rotation_zoom(params, out.shape)
        out = ndimage.affine_transform(out, matrix, offset=centre - matrix @ centre, order=order, mode="constant",
                                       cval=fill)
    elif params.angle != 0.0:
        out = ndimage.rotate(out, params.angle, reshape=False, order=order, mode="constant", cval=fill)
    return np.ascontiguousarray(out)


def apply_augmentation(params: AugmentParams, image: np.ndarray, *masks: np.ndarray, background: float = -1.0,
                       window: tuple[int, int, int, int] | None = None) -> tuple[np.ndarray, ...]:
    """Apply ``params`` to an image ``(H, W)`` (linear, corners filled with ``background``) and to any
    masks ``(H, W)`` (nearest neighbour, so they stay binary and aligned with the image).

    ``window`` ``(top, left, height, width)``: only that window of the output, resampled on its own
    (the whole slice's output cut to the window, up to rounding): a 128-pixel training crop of a
    240-pixel slice costs a third of the whole slice's warp."""
    coords = _sampling_coordinates(params, image.shape, window) if params.elastic or window is not None else None
    out_image = np.clip(_transform(image, params, order=1, fill=background, coords=coords), -1.0, 1.0).astype(np.float32)
    out_masks = tuple(_transform(m, params, order=0, fill=0, coords=coords).astype(m.dtype, copy=False) for m in masks)
    return (out_image, *out_masks)


@dataclass(frozen=True)
class IntensityParams:
    """One sampled intensity transform on the normalised scale: ``u -> min(contrast * u ** gamma, 1)``
    with ``u = (x + 1) / 2`` in [0, 1], so the background (-1) stays background."""

    gamma: float = 1.0
    contrast: float = 1.0
    # then a monotone curve through (k / K, curve[k]), k = 0..K, with curve[0] = 0 and curve[-1] = 1
    # (empty: none); it reorders no grey levels but changes the contrast between tissues.
    curve: tuple[float, ...] = ()


CURVE_KNOTS = 6  # the random curve's segments on [0, 1]


def sample_intensity(rng: np.random.Generator, gamma: tuple[float, float] = (0.6, 1.6),
                     contrast: tuple[float, float] = (0.85, 1.15), curve_strength: float = 0.0) -> IntensityParams:
    """Draw a gamma log-uniformly and a contrast factor uniformly: another scanner's or sequence's
    tissue contrast, so that a model trained on few subjects does not learn one scanner's grey levels.

    ``curve_strength`` > 0 adds a random monotone intensity curve (as contrast randomisation in
    SynthSeg, much milder): the identity blended, with a weight drawn from [0, curve_strength], with a
    curve of Dirichlet-distributed increments, so that e.g. the CSF/white-matter ratio of T2 varies
    between ~3 and ~4 as it does between scanners. The random draws for gamma and contrast come first,
    so runs without a curve replay as before.
    """
    params = IntensityParams(float(np.exp(rng.uniform(*np.log(gamma)))), float(rng.uniform(*contrast)))
    if curve_strength <= 0:
        return params
    weight = rng.uniform(0.0, curve_strength)
    random_curve = np.concatenate([[0.0], np.cumsum(rng.dirichlet(np.full(CURVE_KNOTS, 2.0)))])
    curve = (1.0 - weight) * np.linspace(0.0, 1.0, CURVE_KNOTS + 1) + weight * random_curve
    curve[-1] = 1.0
    return IntensityParams(params.gamma, params.contrast, tuple(float(v) for v in curve))


def apply_intensity(params: IntensityParams, image: np.ndarray) -> np.ndarray:
    """Apply ``params`` to a normalised slice ``(H, W)`` in [-1, 1]; NaN (unknown truth) stays NaN.

    Monotone and pixel-wise: applied alike to a pathological slice and its true healthy slice, the
    pair stays a consistent (input, target) pair.
    """
    unit = np.clip((image + 1.0) / 2.0, 0.0, 1.0)
    unit = np.minimum(params.contrast * unit ** params.gamma, 1.0)
    if params.curve:
        unit = np.interp(unit, np.linspace(0.0, 1.0, len(params.curve)), params.curve)
    return (2.0 * unit - 1.0).astype(np.float32)
