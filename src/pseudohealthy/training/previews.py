"""Per-epoch preview PNG: rows input, output, difference map, lesion mask over a few fixed slices.

Drawn with numpy and Pillow (no matplotlib figure per epoch: that would cost more than a tiny epoch).
Slices are shown in the radiological convention (`pseudohealthy.display.to_display`).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from pseudohealthy.display import to_display

ROW_LABELS = ("input", "output", "x_p - x_s", "mask")
MIN_TILE = 128  # upscale small slices (nearest) so a 32x32 preview is still readable


def _gray(a: np.ndarray, low: float, high: float) -> np.ndarray:
    g = np.clip((a - low) / (high - low), 0.0, 1.0) * 255.0
    return np.repeat(g[..., None], 3, axis=-1).astype(np.uint8)


def _signed(d: np.ndarray, scale: float) -> np.ndarray:
    """Difference in red (x_p brighter than x_s: intensity removed) and blue (added), on black."""
    v = np.clip(d / scale, -1.0, 1.0)
    rgb = np.zeros(d.shape + (3,), np.float32)
    rgb[..., 0] = np.clip(v, 0, 1)
    rgb[..., 2] = np.clip(-v, 0, 1)
    return (rgb * 255).astype(np.uint8)


def preview_image(image: np.ndarray, output: np.ndarray, lesion: np.ndarray, title: str = "") -> Image.Image:
    """Compose the grid. Inputs `(K, H, W)`: image and output on the [-1, 1] scale, lesion in {0, 1}."""
    diff = image - output
    scale = max(float(np.abs(diff).max()), 1e-6)
    rows = [[_gray(s, -1, 1) for s in image], [_gray(s, -1, 1) for s in output],
            [_signed(s, scale) for s in diff], [_gray(s, 0, 1) for s in lesion]]
    h, w = to_display(image[0]).shape
    zoom = max(1, int(np.ceil(MIN_TILE / max(h, w))))
    th, tw, gap, left, top = h * zoom, w * zoom, 2, 72, 16 if title else 2
    canvas = Image.new("RGB", (left + len(image) * (tw + gap), top + len(rows) * (th + gap)), "black")
    draw = ImageDraw.Draw(canvas)
    if title:
        draw.text((4, 2), title, fill="white")
    for r, (label, tiles) in enumerate(zip(ROW_LABELS, rows)):
        y = top + r * (th + gap)
        draw.text((4, y + th // 2 - 5), label, fill="white")
        for c, tile in enumerate(tiles):
            tile = to_display(tile).repeat(zoom, axis=0).repeat(zoom, axis=1)
            canvas.paste(Image.fromarray(np.ascontiguousarray(tile)), (left + c * (tw + gap), y))
    if scale:
        draw.text((4, top + 2 * (th + gap) + th - 12), f"+-{scale:.2f}", fill="gray")
    return canvas


def save_preview(path: str | Path, image: np.ndarray, output: np.ndarray, lesion: np.ndarray, title: str = "") -> Path:
    """Write the preview grid as PNG (see :func:`preview_image`)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    preview_image(image, output, lesion, title).save(path)
    return path
