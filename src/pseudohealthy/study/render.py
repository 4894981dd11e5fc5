"""Slice to PNG for the reader study: one fixed display window per slice, radiological orientation.

All images of a slice (input, every method's output, the annotation) share the window taken from
the input, so brightness or contrast cannot tell the methods apart, and an output equal to the input
renders to the very same pixels. PNGs carry no text chunks, so a file reveals nothing but its pixels.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from pseudohealthy.display import to_display

WINDOW_PERCENTILES = (0.5, 99.5)
LESION_RGB = (255, 40, 40)
LESION_ALPHA = 0.45


def display(slice_xy: np.ndarray) -> np.ndarray:
    """Canonical (RAS) axial slice ``(X, Y)`` to screen rows/columns in radiological convention.

    ``rot90`` puts anterior at the top; it leaves the patient's left on the viewer's left
    (canonical x grows towards the patient's right), so the columns are then flipped to show the
    patient's right on the viewer's left, as radiologists read axial images.
    """
    return to_display(slice_xy)


def slice_window(image_xy: np.ndarray, region_xy: np.ndarray | None = None,
                 percentiles: tuple[float, float] = WINDOW_PERCENTILES) -> tuple[float, float]:
    """Display window ``(low, high)`` of an input slice: percentiles of its region voxels.

    The region is the data set's organ mask where the layout has one, else the foreground
    (``image > 0``, the brain of a skull-stripped MR), else the whole slice.
    """
    image_xy = np.asarray(image_xy, dtype=np.float64)
    mask = None
    if region_xy is not None and np.any(region_xy):
        mask = np.asarray(region_xy, bool)
    elif np.any(image_xy > 0):
        mask = image_xy > 0
    values = image_xy[mask] if mask is not None else image_xy.ravel()
    low, high = (float(v) for v in np.percentile(values, percentiles))
    if not high > low:  # a flat slice: any window shows it; avoid dividing by zero
        high = low + 1.0
    return low, high


def to_gray(slice_xy: np.ndarray, window: tuple[float, float]) -> np.ndarray:
    """Window a slice to uint8 gray levels in display orientation, ``(rows, cols)``."""
    low, high = window
    scaled = (np.asarray(slice_xy, dtype=np.float64) - low) / (high - low)
    return display(np.round(np.clip(scaled, 0.0, 1.0) * 255.0).astype(np.uint8))


def annotation_rgb(image_xy: np.ndarray, lesion_xy: np.ndarray, window: tuple[float, float]) -> np.ndarray:
    """The input in gray with the lesion annotation tinted red, ``(rows, cols, 3)`` uint8."""
    gray = to_gray(image_xy, window).astype(np.float64)
    rgb = np.repeat(gray[..., None], 3, axis=2)
    mask = display(np.asarray(lesion_xy, bool))
    tint = np.asarray(LESION_RGB, dtype=np.float64)
    rgb[mask] = (1 - LESION_ALPHA) * rgb[mask] + LESION_ALPHA * tint
    return np.round(rgb).astype(np.uint8)


def write_png(pixels: np.ndarray, path: str | Path) -> Path:
    """Write gray ``(H, W)`` or RGB ``(H, W, 3)`` uint8 pixels as a PNG with no metadata."""
    path = Path(path)
    Image.fromarray(pixels).save(path, format="PNG", optimize=False)
    return path
