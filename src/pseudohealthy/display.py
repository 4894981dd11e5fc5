"""How every picture of this project shows an axial slice: radiological convention.

Arrays are canonical (RAS+): axis 0 grows towards the patient's right, axis 1 towards anterior.
``np.rot90`` puts anterior at the top but leaves the patient's right on the viewer's right
(neurological); the columns are then flipped so the patient's right is on the viewer's left, as
radiologists read axial images. Previews, reports and the reader study all use this one function.
"""
from __future__ import annotations

import numpy as np


def to_display(slice_xy: np.ndarray) -> np.ndarray:
    """Canonical axial slice ``(X, Y)`` (or a stack ``(X, Y, ...)``) to screen ``(rows, cols, ...)``."""
    return np.ascontiguousarray(np.fliplr(np.rot90(np.asarray(slice_xy))))
