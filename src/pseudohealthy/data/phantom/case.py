"""What a phantom generator returns for one case."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np


@dataclass
class PhantomCase:
    """One synthetic case, arrays in on-disk voxel order ``(X, Y, Z)`` of ``affine``.

    ``image`` and ``healthy`` are int16 (brain: T2-like, background exactly 0; liver: HU) and equal
    voxel for voxel wherever ``labels`` marks no lesion; ``labels`` is uint8 (BraTS 0/1/2/4 or LiTS 0/1/2).
    """

    image: np.ndarray
    healthy: np.ndarray
    labels: np.ndarray
    affine: np.ndarray
    params: dict[str, Any] = field(default_factory=dict)

    @property
    def lesion(self) -> np.ndarray:
        """bool ``(X, Y, Z)``: voxels where pathological and healthy volumes may differ."""
        return self.labels == 2 if self.params.get("kind") == "liver" else self.labels > 0
