"""Dice overlap between binary masks, per sample and pooled.

Used by A-Dice (Dice of a fresh segmentor on its own training slices), by the segmentor
generalisation study (paper Fig. 8a) and by tests. Masks are boolean (or 0/1) arrays of any shape;
the first axis of a batch is the sample axis.
"""
from __future__ import annotations

from typing import Any

import numpy as np


def _as_bool(mask: Any) -> np.ndarray:
    """NumPy bool array from a NumPy array or a torch tensor (moved to the CPU)."""
    if hasattr(mask, "detach"):
        mask = mask.detach().cpu().numpy()
    return np.asarray(mask).astype(bool, copy=False)


def dice_score(pred: Any, target: Any, empty: float = 1.0) -> float:
    """Dice ``2 |P & T| / (|P| + |T|)`` of two same-shape masks, pooled over all their voxels.

    ``empty`` is returned when both masks are empty (nothing to find, nothing found).
    """
    p, t = _as_bool(pred), _as_bool(target)
    if p.shape != t.shape:
        raise ValueError(f"prediction shape {p.shape} differs from target shape {t.shape}")
    total = int(p.sum()) + int(t.sum())
    if total == 0:
        return float(empty)
    return 2.0 * int(np.logical_and(p, t).sum()) / total


def dice_per_sample(pred: Any, target: Any, empty: float = 1.0) -> np.ndarray:
    """Dice of each sample of a batch ``(N, ...)``; float64 ``(N,)``."""
    p, t = _as_bool(pred), _as_bool(target)
    if p.shape != t.shape:
        raise ValueError(f"prediction shape {p.shape} differs from target shape {t.shape}")
    axes = tuple(range(1, p.ndim))
    inter = np.logical_and(p, t).sum(axis=axes).astype(np.float64)
    total = p.sum(axis=axes).astype(np.float64) + t.sum(axis=axes)
    out = np.full(p.shape[0], float(empty))
    nonzero = total > 0
    out[nonzero] = 2.0 * inter[nonzero] / total[nonzero]
    return out


class DiceMetric:
    """Cumulative Dice (MONAI style): ``update`` per batch, then ``aggregate``, then ``reset``.

    Keeps both the pooled Dice (all voxels of all batches together, what A-Dice uses: one number
    per epoch that small, nearly empty slices cannot swing) and the per-sample values (their mean and
    spread, what Fig. 8a plots).
    """

    def __init__(self, empty: float = 1.0) -> None:
        self.empty = empty
        self.reset()

    def reset(self) -> None:
        self._inter = 0
        self._total = 0
        self._per_sample: list[np.ndarray] = []

    def update(self, pred: Any, target: Any) -> None:
        """Add a batch of masks ``(N, ...)``."""
        p, t = _as_bool(pred), _as_bool(target)
        self._inter += int(np.logical_and(p, t).sum())
        self._total += int(p.sum()) + int(t.sum())
        self._per_sample.append(dice_per_sample(p, t, self.empty))

    def aggregate(self) -> dict[str, Any]:
        """``{"pooled", "mean", "std", "n", "per_sample"}``; std is the population std over samples."""
        per = np.concatenate(self._per_sample) if self._per_sample else np.zeros(0)
        pooled = 2.0 * self._inter / self._total if self._total else float(self.empty)
        return {
            "pooled": float(pooled),
            "mean": float(per.mean()) if per.size else float("nan"),
            "std": float(per.std()) if per.size else float("nan"),
            "n": int(per.size),
            "per_sample": per.tolist(),
        }
