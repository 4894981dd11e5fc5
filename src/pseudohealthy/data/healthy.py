"""Unpaired lesion-free slices for the baselines (VA-GAN, PHS-GAN, ANT-GAN train against them).

The pool holds the training split's slices without lesion (``slices.csv`` ``has_lesion = 0``) whose
region (brain / organ) covers at least ``min_region_ratio`` of the median region area of the training
lesion slices, so that the healthy distribution is made of slices at the same levels as the lesions,
not of the skull's top. For a batch of pathological slices, :meth:`HealthyPool.draw` samples healthy
slices from *other* training cases (unpaired: never the batch's own subjects, where another case exists).
Draws are a pure function of ``(seed, epoch, draw number within the epoch)``, so a resumed run sees
the same healthy slices as an uninterrupted one.
"""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from pseudohealthy.data.cache import open_array
from pseudohealthy.data.dataset import SliceDataset
from pseudohealthy.errors import UserError


class HealthyPool:
    """Lesion-free training slices; ``draw(case_ids)`` -> ``(images, regions)`` `(B, 1, H, W)` float32."""

    def __init__(self, cache_dir: str | Path, fraction: float = 1.0, seed: int = 0, min_region_ratio: float = 0.5) -> None:
        cache_dir = Path(cache_dir)
        free = SliceDataset(cache_dir, split="train", lesion_free=True, fraction=fraction, seed=seed)
        lesion = SliceDataset(cache_dir, split="train", lesion_only=True, fraction=fraction, seed=seed)
        regions = open_array(cache_dir, "regions")

        def area(rows: list) -> np.ndarray:
            return np.array([int(np.count_nonzero(regions[r.index])) for r in rows])

        floor = min_region_ratio * float(np.median(area(lesion.rows))) if len(lesion) else 1.0
        keep = [r for r, a in zip(free.rows, area(free.rows)) if a >= max(floor, 1.0)]
        if not keep:
            raise UserError(f"{cache_dir}: no lesion-free training slices with enough {'brain' if floor else 'region'} "
                            "for the baselines; they need healthy slices (cases or slices without lesion).")
        self.cache_dir = cache_dir
        self.rows = keep
        self.case_ids = np.array([r.case_id for r in keep])
        self.seed = int(seed)
        self.set_epoch(0)

    def __len__(self) -> int:
        return len(self.rows)

    def set_epoch(self, epoch: int) -> None:
        """Restart the draw stream of ``epoch`` (called by the loop at each epoch start)."""
        self._rng = np.random.default_rng([self.seed, int(epoch), 0x4EA1])

    def draw(self, case_ids: Sequence[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """One healthy slice per entry of ``case_ids``, each from a case not in ``case_ids`` (if any)."""
        others = np.flatnonzero(~np.isin(self.case_ids, list(case_ids)))
        candidates = others if len(others) else np.arange(len(self.rows))
        picks = self._rng.choice(candidates, size=len(case_ids), replace=len(candidates) < len(case_ids))
        images, regions = open_array(self.cache_dir, "images"), open_array(self.cache_dir, "regions")
        rows = [self.rows[int(i)].index for i in picks]
        image = torch.from_numpy(np.stack([np.asarray(images[r], dtype=np.float32) for r in rows]))[:, None]
        region = torch.from_numpy(np.stack([np.asarray(regions[r], dtype=np.float32) for r in rows]))[:, None]
        return image, region
