"""Segmentor generalisation (paper Fig. 8a): Dice of a trained GVS segmentor on pathological slices.

Basic GVS trains its segmentor on synthetic images whose lesion is (partly) gone, so it may learn to
segment *where the generator changed something* rather than *lesions*; the difference-aware loss is
meant to keep it a real lesion segmentor. Scoring the segmentor of a GVS checkpoint on the original
pathological test slices measures that: per-slice Dice (slices with lesion), mean and spread.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from pseudohealthy.metrics.dice import DiceMetric


def predict_lesion(segmentor: Any, images: np.ndarray, device: str = "cpu", batch_size: int = 32) -> np.ndarray:
    """Argmax lesion prediction of ``segmentor`` (logits ``(B, 2, H, W)``) on ``images`` ``(N, H, W)``; bool ``(N, H, W)``."""
    import torch

    segmentor = segmentor.to(device).eval()
    out = np.zeros(images.shape, dtype=bool)
    with torch.no_grad():
        for start in range(0, len(images), batch_size):
            batch = torch.from_numpy(np.ascontiguousarray(images[start : start + batch_size], np.float32))[:, None].to(device)
            out[start : start + batch_size] = (segmentor(batch).argmax(1) == 1).cpu().numpy()
    return out


def segmentor_dice(segmentor: Any, images: np.ndarray, lesions: np.ndarray, device: str = "cpu") -> dict[str, Any]:
    """Per-slice Dice of ``segmentor`` on pathological ``images`` ``(N, H, W)`` in [-1, 1] against ``lesions``.

    Returns ``{"pooled", "mean", "std", "n", "per_sample"}`` (see :class:`DiceMetric`).
    """
    metric = DiceMetric()
    metric.update(predict_lesion(segmentor, images, device), lesions)
    return metric.aggregate()


def checkpoint_preprocess_config(path: str | Path):
    """The PreprocessConfig a GVS checkpoint was trained with (so its segmentor sees the same slices)."""
    from pseudohealthy.config import PreprocessConfig, from_dict
    from pseudohealthy.checkpoints import read_checkpoint

    return from_dict(PreprocessConfig, dict(read_checkpoint(path)["preprocess"]), where=f"{path}: preprocess")


def checkpoint_generalisation(checkpoint: str | Path, cases: list[Any], device: str = "cpu") -> dict[str, Any]:
    """Dice of the segmentor of ``checkpoint`` on the lesion slices of ``cases`` (loaded ``Case`` objects).

    Slices are prepared with the checkpoint's own preprocessing (working size included).
    """
    from pseudohealthy.data.preprocessing import prepare_mask, prepare_volume
    from pseudohealthy.checkpoints import load_segmentor

    segmentor, _ = load_segmentor(checkpoint, device)
    cfg = checkpoint_preprocess_config(checkpoint)
    images, lesions = [], []
    for case in cases:
        prepared = prepare_volume(case.image.data, cfg, region=case.region)
        mask = prepare_mask(case.lesion, prepared)
        keep = mask.any(axis=(1, 2))
        images.append(prepared.slices[keep])
        lesions.append(mask[keep])
    result = segmentor_dice(segmentor, np.concatenate(images), np.concatenate(lesions), device)
    result["checkpoint"] = str(checkpoint)
    result["working_size"] = cfg.working_size
    return result
