"""The per-epoch preview grid: layout and the signed difference colours."""
from __future__ import annotations

import numpy as np
import pytest

from pseudohealthy.training.previews import MIN_TILE, preview_image


@pytest.mark.parametrize("k,size", [(1, 32), (4, 32), (3, 200)])
def test_grid_size(k: int, size: int) -> None:
    image = np.zeros((k, size, size), np.float32)
    png = preview_image(image, image, image, title="t")
    zoom = max(1, -(-MIN_TILE // size))
    assert png.width == 72 + k * (size * zoom + 2)
    assert png.height == 16 + 4 * (size * zoom + 2)


def test_difference_row_is_red_where_intensity_was_removed() -> None:
    image = np.zeros((1, 32, 32), np.float32)
    output = image.copy()
    output[0, :16] = -0.5  # x_p - x_s = +0.5: removed -> red
    output[0, 16:] = 0.5  # added -> blue
    png = np.asarray(preview_image(image, output, np.zeros_like(image)))
    zoom = MIN_TILE // 32
    row = 2 + 2 * (32 * zoom + 2)  # top of the difference row (no title)
    tile = png[row: row + 32 * zoom, 72: 72 + 32 * zoom]
    tile = np.rot90(np.fliplr(tile), -1)  # undo the radiological display: first axis is the array's first axis again
    removed, added = tile[: 16 * zoom - 2], tile[16 * zoom + 2:]
    assert removed[..., 0].min() == 255 and removed[..., 2].max() == 0
    assert added[..., 2].min() == 255 and added[..., 0].max() == 0
