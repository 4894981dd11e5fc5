"""One volume from input units to working-size slices in [-1, 1], and residuals back again.

Shared by the slice cache (training) and by synthesis (inference), so that both see exactly the same
slices. Axial slice ``z`` of a canonical ``(X, Y, Z)`` volume becomes ``slices[z]`` of shape ``(H, W)``,
``H`` along X and ``W`` along Y (no transpose).

Steps, in order
1. Clip intensities (``PreprocessConfig.intensity``):
   - ``percentile`` (MR; BraTS and own folders by default): clip to ``[0, V]`` with ``V`` the
     ``clip_percentile`` (99.5) percentile of the region voxels, as the paper does per volume. The
     region is ``image > 0`` (the brain for skull-stripped BraTS) unless one is given.
   - ``median`` (MR, opt-in: ``pipeline --intensity median``): clip to ``[0, 4 m]`` with ``m`` the median of
     the region voxels, so the bulk of normal tissue lands at the same place (-0.5) in every scan;
     the 99.5th percentile depends on how bright a scan's CSF and lesions are (two real T2 cases:
     normal tissue at -0.53 and -0.34 after the percentile clip). Brighter voxels are clipped.
     Measured worse than ``percentile`` on the unseen-subject benchmark (docs/decisions.md).
   - ``range`` (CT; LiTS by default, or whenever ``clip_range`` is set): clip to ``clip_range``,
     ``[-200, 250]`` HU by default. The region is given by labels (LiTS: liver), else ``image > low``.
2. Normalise (``PreprocessConfig.normalization``), always an affine map per slice,
   ``normalised = scale[z] * clipped + offset[z]``, so residuals invert exactly:
   - ``volume`` (default): one map for the whole volume, ``[low, high] -> [-1, 1]``; background
     (clipped to ``low``) is exactly -1 and every slice shares one scale.
   - ``zscore-slice`` (the reference code, SPEC section 4): z-score over region voxels, background set
     to the region's minimum, then min-max of each slice to [-1, 1]. A z-score followed by a per-slice
     min-max equals the per-slice min-max of the clipped values, so it is computed directly; the
     background stands for the region's lowest clipped intensity. A constant slice (no region) is
     -1 with the volume's scale.
   - ``reference``: the reference code's data path exactly: the upper clip is the ``clip_percentile``
     percentile of *all* voxels (its histogram counts the background too), the background is the
     z-score's 0, i.e. the region's mean clipped intensity, then each slice is min-maxed to [-1, 1]
     (so the background is a mid grey, not -1).
3. Working size (``working_size``, ``resize_mode``), a square the networks can downsample (multiple
   of 16): ``resize`` pads a non-square slice to a square with background (anatomy keeps its aspect),
   then resizes (images: linear with anti-aliasing; masks: area coverage >= 0.5); ``crop`` centre
   crops/pads. ``working_size=None`` keeps the original in-plane size.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from pseudohealthy.config import PreprocessConfig
from pseudohealthy.errors import UserError

NORMALIZATIONS = ("volume", "zscore-slice", "reference")
PER_SLICE = ("zscore-slice", "reference")  # min-max of each slice after a background fill
RESIZE_MODES = ("resize", "crop")
INTENSITY_MODES = ("percentile", "median", "range")
# median mode: the upper clip is this multiple of the region's median, so the median maps to -0.5.
MEDIAN_MULTIPLE = 4.0
DEFAULT_CT_RANGE = (-200.0, 250.0)  # HU, the paper's LiTS window
SIZE_MULTIPLE = 16  # the networks downsample up to 4 times


@dataclass
class SliceGeometry:
    """How an in-plane slice ``(X, Y)`` maps to the working size ``(H, W)`` and back.

    ``pad`` is ``((before, after), (before, after))`` added around the slice (negative in ``crop`` mode
    means cropped); ``square`` is the in-plane size after padding, before resizing.
    """

    original: tuple[int, int]
    working: tuple[int, int]
    mode: str  # "none" | "resize" | "crop"
    pad: tuple[tuple[int, int], tuple[int, int]] = ((0, 0), (0, 0))
    square: tuple[int, int] = (0, 0)


@dataclass
class PreparedVolume:
    """A volume ready for the networks, and what is needed to bring results back to input units."""

    slices: np.ndarray  # (Z, H, W) float32 in [-1, 1]
    region: np.ndarray  # (Z, H, W) bool, brain / organ at working size
    scale: np.ndarray  # (Z,) float64: normalised = scale * clipped + offset
    offset: np.ndarray  # (Z,) float64
    clip: tuple[float, float]  # (low, high) in input units
    original_shape: tuple[int, int, int]  # (X, Y, Z) canonical
    geometry: SliceGeometry = field(default=None)  # type: ignore[assignment]
    intensity: str = "percentile"
    fill: float = 0.0  # clipped value the background is set to before normalising (zscore-slice)
    region_full: np.ndarray | None = None  # (X, Y, Z) bool at input size, for normalising a partner volume


def intensity_mode(cfg: PreprocessConfig) -> str:
    """``cfg.intensity`` or the source's default: CT range windowing for LiTS or a given ``clip_range``."""
    if cfg.intensity is not None:
        return cfg.intensity
    return "range" if (cfg.source == "lits" or cfg.clip_range is not None) else "percentile"


def validate_config(cfg: PreprocessConfig) -> None:
    """Refuse inconsistent preprocessing parameters with one clear sentence each."""
    if cfg.normalization not in NORMALIZATIONS:
        raise UserError(f"normalization {cfg.normalization!r} is unknown; choose one of {', '.join(NORMALIZATIONS)}.")
    if cfg.resize_mode not in RESIZE_MODES:
        raise UserError(f"resize_mode {cfg.resize_mode!r} is unknown; choose one of {', '.join(RESIZE_MODES)}.")
    if cfg.intensity is not None and cfg.intensity not in INTENSITY_MODES:
        raise UserError(f"intensity {cfg.intensity!r} is unknown; choose one of {', '.join(INTENSITY_MODES)}.")
    if cfg.working_size is not None:
        if not isinstance(cfg.working_size, int) or cfg.working_size < SIZE_MULTIPLE or cfg.working_size % SIZE_MULTIPLE:
            raise UserError(
                f"working_size {cfg.working_size!r} must be a positive multiple of {SIZE_MULTIPLE} (the networks downsample it), for example 64 or 128."
            )
    if not 0.0 < float(cfg.clip_percentile) <= 100.0:
        raise UserError(f"clip_percentile {cfg.clip_percentile!r} must lie in (0, 100].")
    if cfg.clip_range is not None and (len(cfg.clip_range) != 2 or not float(cfg.clip_range[0]) < float(cfg.clip_range[1])):
        raise UserError(f"clip_range {cfg.clip_range!r} must be two numbers [low, high] with low < high.")
    if not 0.0 <= float(cfg.test_fraction) < 1.0:
        raise UserError(f"test_fraction {cfg.test_fraction!r} must lie in [0, 1).")
    if int(cfg.slice_margin) < 0:
        raise UserError(f"slice_margin {cfg.slice_margin!r} must be 0 or more.")


# ----------------------------------------------------------------------------- geometry


def make_geometry(in_plane: tuple[int, int], cfg: PreprocessConfig) -> SliceGeometry:
    """The in-plane mapping for slices of size ``in_plane`` under ``cfg``'s working size."""
    x, y = int(in_plane[0]), int(in_plane[1])
    size = cfg.working_size
    if size is None:
        return SliceGeometry((x, y), (x, y), "none", square=(x, y))
    if cfg.resize_mode == "crop":
        pads = []
        for n in (x, y):
            total = size - n  # > 0: pad, < 0: crop
            before = total // 2 if total >= 0 else -((-total) // 2)
            pads.append((before, total - before))
        return SliceGeometry((x, y), (size, size), "crop", tuple(pads), (size, size))  # type: ignore[arg-type]
    side = max(x, y)
    pads = tuple(((side - n) // 2, side - n - (side - n) // 2) for n in (x, y))
    return SliceGeometry((x, y), (size, size), "resize", pads, (side, side))  # type: ignore[arg-type]


def _pad_or_crop(stack: np.ndarray, pad: tuple[tuple[int, int], tuple[int, int]], value: float) -> np.ndarray:
    """Pad (positive) or crop (negative) the last two axes of ``(Z, A, B)``."""
    crop = tuple(slice(max(0, -b), n - max(0, -a)) for (b, a), n in zip(pad, stack.shape[1:]))
    out = stack[:, crop[0], crop[1]]
    widths = ((0, 0),) + tuple((max(0, b), max(0, a)) for b, a in pad)
    if any(w != (0, 0) for w in widths):
        out = np.pad(out, widths, mode="constant", constant_values=value)
    return out


def _resize_stack(stack: np.ndarray, size: tuple[int, int], anti_aliasing: bool) -> np.ndarray:
    """Linear in-plane resize of ``(Z, A, B)`` to ``(Z, *size)``; slices never mix (no smoothing along Z)."""
    from skimage.transform import resize

    if stack.shape[1:] == tuple(size):
        return stack.astype(np.float32, copy=False)
    out = resize(stack.astype(np.float32, copy=False), (stack.shape[0], *size), order=1, mode="edge",
                 anti_aliasing=anti_aliasing, preserve_range=True)
    return out.astype(np.float32, copy=False)


def to_working_size(stack: np.ndarray, geometry: SliceGeometry, background: float) -> np.ndarray:
    """Image slices ``(Z, X, Y)`` to ``(Z, H, W)``; padding takes the ``background`` value."""
    if geometry.mode == "none":
        return stack.astype(np.float32, copy=False)
    out = _pad_or_crop(stack, geometry.pad, background)
    if geometry.mode == "resize":
        out = _resize_stack(out, geometry.working, anti_aliasing=True)
    return out.astype(np.float32, copy=False)


def mask_to_working_size(mask: np.ndarray, geometry: SliceGeometry, keep_every_slice: bool = False) -> np.ndarray:
    """Bool masks ``(Z, X, Y)`` to ``(Z, H, W)``: a working pixel is in the mask when >= half covered.

    ``keep_every_slice`` (lesions): a slice with mask voxels never ends up empty after downsizing; its
    most covered pixels are kept, so a slice flagged as lesion always has a lesion target.
    """
    if geometry.mode == "none":
        return mask.astype(bool, copy=False)
    out = _pad_or_crop(mask.astype(np.float32), geometry.pad, 0.0)
    if geometry.mode == "resize":
        out = _resize_stack(out, geometry.working, anti_aliasing=True)
    result = out >= 0.5
    if keep_every_slice:
        had = mask.any(axis=(1, 2))
        lost = np.flatnonzero(had & ~result.any(axis=(1, 2)))
        for z in lost:
            peak = out[z].max()
            if peak > 0:
                result[z] = out[z] >= peak
    return result


def from_working_size(stack: np.ndarray, geometry: SliceGeometry) -> np.ndarray:
    """Inverse of :func:`to_working_size` for residual-like data ``(Z, H, W)`` -> ``(Z, X, Y)``.

    Upsampling is linear (a constant stays that constant); padding is removed; cropped-away parts
    get 0 (no change there).
    """
    stack = np.asarray(stack, dtype=np.float32)
    if geometry.mode == "none":
        return stack
    if geometry.mode == "resize":
        stack = _resize_stack(stack, geometry.square, anti_aliasing=False)
    inverse = tuple((-b, -a) for b, a in geometry.pad)
    return _pad_or_crop(stack, inverse, 0.0)  # type: ignore[arg-type]


# ----------------------------------------------------------------------------- intensities


def _clip_bounds(image: np.ndarray, cfg: PreprocessConfig, region: np.ndarray | None, mode: str) -> tuple[float, float]:
    if mode == "range":
        low, high = cfg.clip_range if cfg.clip_range is not None else DEFAULT_CT_RANGE
        return float(low), float(high)
    if cfg.normalization == "reference":
        high = _reference_upper_clip(image, cfg.clip_percentile)
        return 0.0, high if high > 0 else 1.0
    stats_region = region if region is not None else image > 0
    values = image[stats_region]
    values = values[values > 0]  # the lower clip is 0: only positive voxels can set the upper one
    if values.size == 0:
        return 0.0, 1.0  # an empty volume: everything is background; any positive scale will do
    if mode == "median":
        high = MEDIAN_MULTIPLE * float(np.median(values))
    else:
        high = float(np.percentile(values, cfg.clip_percentile))
    return 0.0, high if high > 0 else 1.0


def _reference_upper_clip(image: np.ndarray, percentile: float) -> float:
    """The reference code's clip: the smallest integer intensity below which more than ``percentile``%
    of *all* voxels (background included) lie, on intensities truncated to integers."""
    values = np.trunc(np.asarray(image, dtype=np.float64)).ravel()
    index = min(values.size - 1, int(np.floor(values.size * percentile / 100.0)))
    return float(np.partition(values, index)[index])


def _affine_per_slice(image: np.ndarray, region: np.ndarray, low: float, high: float, normalization: str,
                      fill: float | None = None) -> tuple[np.ndarray, np.ndarray, float]:
    """``scale``, ``offset`` (Z,) float64 and the background fill value (clipped units) for ``(X, Y, Z)``.

    ``fill`` overrides the per-slice modes' background value (input units).
    """
    depth = image.shape[2]
    volume_scale = 2.0 / (high - low)
    if normalization == "volume":
        return np.full(depth, volume_scale), np.full(depth, -1.0 - low * volume_scale), low
    # Per slice: the background takes the region's minimum (zscore-slice) or mean (reference, the
    # z-score's 0), then each slice is min-maxed.
    if fill is not None:
        fill = float(np.clip(fill, low, high))
    elif not region.any():
        fill = low
    elif normalization == "reference":
        fill = float(np.clip(image[region], low, high).mean())
    else:
        fill = float(np.clip(image[region].min(), low, high))
    scale = np.empty(depth)
    offset = np.empty(depth)
    for z in range(depth):
        values = np.where(region[:, :, z], np.clip(image[:, :, z], low, high), fill)
        lo, hi = float(values.min()), float(values.max())
        scale[z] = 2.0 / (hi - lo) if hi - lo > 1e-6 * (high - low) else volume_scale
        offset[z] = -1.0 - lo * scale[z]
    return scale, offset, fill


def _normalise(image: np.ndarray, prepared: PreparedVolume, region: np.ndarray, normalization: str) -> np.ndarray:
    """Clip and apply the per-slice affine map; ``(X, Y, Z)`` -> ``(Z, X, Y)`` float32 in [-1, 1].

    float32 and in place: a LiTS volume (512 x 512 x 900) is close to 1 GB per float32 copy.
    """
    low, high = prepared.clip
    out = np.clip(image, low, high).astype(np.float32, copy=False)
    if normalization in PER_SLICE:
        out[~region] = prepared.fill
    # scale * x + offset written as scale * (x - floor) - 1, so the slice's lowest value lands on
    # exactly -1 in float32 (background stays exactly -1, also for CT's negative lower clip).
    floor = (-1.0 - prepared.offset) / prepared.scale
    out -= floor[None, None, :].astype(np.float32)
    out *= prepared.scale[None, None, :].astype(np.float32)
    out -= 1.0
    # Rounding may leave a hair outside [-1, 1]; a partner volume (healthy) may lie outside the
    # pathological slice's min-max; the networks' range is [-1, 1] either way.
    np.clip(out, -1.0, 1.0, out=out)
    return np.moveaxis(out, 2, 0)


def prepare_volume(image: np.ndarray, cfg: PreprocessConfig, region: np.ndarray | None = None) -> PreparedVolume:
    """Clip, normalise and bring to working size one canonical volume ``(X, Y, Z)`` in input units.

    ``region`` (bool ``(X, Y, Z)``) is the brain/organ: it sets the percentile (percentile mode) and
    the z-score statistics; None takes ``image > low clip`` (``image > 0`` for MR).
    Returns slices ``(Z, H, W)`` float32 in [-1, 1] with their per-slice affine map.
    """
    validate_config(cfg)
    image = np.asarray(image)
    if image.ndim != 3:
        raise UserError(f"expected a 3D volume (X, Y, Z), got shape {image.shape}.")
    mode = intensity_mode(cfg)
    low, high = _clip_bounds(image, cfg, region, mode)
    if region is None:
        region = image > low
    return prepare_clipped_volume(image, cfg, region, (low, high), mode)


def prepare_clipped_volume(image: np.ndarray, cfg: PreprocessConfig, region: np.ndarray, clip: tuple[float, float],
                           mode: str, fill: float | None = None) -> PreparedVolume:
    """:func:`prepare_volume` with the clip bounds ``(low, high)`` already chosen (input units).

    For data that arrive already clipped (the reference code's slice files): ``mode`` is recorded as
    the intensity mode; the region (bool ``(X, Y, Z)``) is required; ``fill`` (input units) overrides
    the background value of the per-slice normalisations.
    """
    low, high = float(clip[0]), float(clip[1])
    region = np.asarray(region, dtype=bool)
    if region.shape != image.shape:
        raise UserError(f"region mask shape {region.shape} differs from image shape {image.shape}.")
    scale, offset, fill = _affine_per_slice(image, region, low, high, cfg.normalization, fill)
    geometry = make_geometry(image.shape[:2], cfg)
    prepared = PreparedVolume(
        slices=np.empty(0, np.float32), region=np.empty(0, bool), scale=scale, offset=offset, clip=(low, high),
        original_shape=tuple(int(s) for s in image.shape), geometry=geometry, intensity=mode, fill=fill,  # type: ignore[arg-type]
        region_full=region,
    )
    normalised = _normalise(image, prepared, region, cfg.normalization)
    prepared.slices = np.clip(to_working_size(normalised, geometry, background=-1.0), -1.0, 1.0)
    prepared.region = mask_to_working_size(np.moveaxis(region, 2, 0), geometry)
    return prepared


def normalise_like(image: np.ndarray, prepared: PreparedVolume, cfg: PreprocessConfig) -> np.ndarray:
    """A partner volume ``(X, Y, Z)`` (the true healthy image) with ``prepared``'s own clip and maps.

    The result ``(Z, H, W)`` is directly comparable with ``prepared.slices``; values are clipped to [-1, 1].
    NaN voxels (a true healthy volume's "truth unknown") stay NaN: every working pixel that any of them
    touches is NaN, and they never leak into other slices.
    """
    image = np.asarray(image)
    if image.shape != prepared.original_shape:
        raise UserError(f"volume shape {image.shape} differs from the prepared volume's {prepared.original_shape}.")
    unknown = np.isnan(image)
    if unknown.any():  # resize a finite stand-in, then put NaN back wherever an unknown voxel reached
        image = np.where(unknown, np.float32(prepared.clip[0]), image)
    region = prepared.region_full if prepared.region_full is not None else image > prepared.clip[0]
    normalised = _normalise(image, prepared, region, cfg.normalization)
    out = np.clip(to_working_size(normalised, prepared.geometry, background=-1.0), -1.0, 1.0)
    if unknown.any():
        reached = to_working_size(np.moveaxis(unknown, 2, 0).astype(np.float32), prepared.geometry, background=0.0)
        out[reached > 1e-6] = np.nan
    return out


def prepare_mask(mask: np.ndarray, prepared: PreparedVolume, keep_every_slice: bool = True) -> np.ndarray:
    """A bool mask ``(X, Y, Z)`` (lesion) at working size ``(Z, H, W)``; see :func:`mask_to_working_size`."""
    mask = np.asarray(mask, dtype=bool)
    if mask.shape != prepared.original_shape:
        raise UserError(f"mask shape {mask.shape} differs from the prepared volume's {prepared.original_shape}.")
    return mask_to_working_size(np.moveaxis(mask, 2, 0), prepared.geometry, keep_every_slice)


def residual_to_input_units(residual: np.ndarray, prepared: PreparedVolume) -> np.ndarray:
    """A normalised-scale residual ``(Z, H, W)`` at working size -> ``(X, Y, Z)`` float32 in input units.

    Undoes the working size (linear upsampling, padding removed) and divides each slice by its scale;
    the offset cancels in a difference. Zero stays exactly zero.
    """
    residual = np.asarray(residual, dtype=np.float32)
    depth = prepared.original_shape[2]
    if residual.shape != (depth, *prepared.geometry.working):
        raise UserError(f"residual shape {residual.shape} differs from the prepared slices' {(depth, *prepared.geometry.working)}.")
    full = from_working_size(residual, prepared.geometry) / prepared.scale[:, None, None]
    return np.ascontiguousarray(np.moveaxis(full, 0, 2)).astype(np.float32)


def to_input_units(slices: np.ndarray, prepared: PreparedVolume) -> np.ndarray:
    """Normalised slices ``(Z, H, W)`` -> clipped input units ``(X, Y, Z)`` (inverse of the affine map).

    Values clipped away at preprocessing are not recovered; for outputs prefer
    ``input - residual_to_input_units(...)``, which keeps every unchanged voxel as it was.
    """
    slices = np.asarray(slices, dtype=np.float32)
    centred = slices - prepared.offset[:, None, None].astype(np.float32)
    full = from_working_size(centred, prepared.geometry)
    if prepared.geometry.mode == "crop":
        # Cropped-away borders came back as 0 (a residual's "no change"); here they are background (-1).
        outside = from_working_size(np.ones_like(centred), prepared.geometry) == 0
        full = np.where(outside, (-1.0 - prepared.offset)[:, None, None], full)
    out = full / prepared.scale[:, None, None]
    return np.ascontiguousarray(np.moveaxis(out, 0, 2)).astype(np.float32)
