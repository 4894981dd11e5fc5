"""The "Healthiness" of Xia et al. (2020), the metric A-Dice replaces (SPEC section 6).

A reference segmentor is trained once on pathological training slices (real lesions, ordinary
learning rate). Run on a method's outputs and on the pathological inputs of the same slices, it
predicts some number of lesion pixels on each; pooled over all slices,

    h = 1 - (lesion pixels predicted on all x_s) / (lesion pixels predicted on all x_p)

so 1 means no lesion left to find, 0 as much as in the input; it can be negative. The paper's
criticism (Fig. 5a, Fig. 6): the number depends on the reference segmentor, and artefacts unlike
anything it saw (counterfeits) may go unnoticed. Training is seeded and its result cached in a file
keyed by the training slices and every setting, so repeated evaluations reuse one segmentor.
"""
from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from pseudohealthy.errors import UserError
from pseudohealthy.metrics.dice import DiceMetric
from pseudohealthy.metrics.segmentor_generalisation import predict_lesion


@dataclass
class HealthinessConfig:
    """How the reference segmentor is trained (Adam at an ordinary learning rate, lesion slices)."""

    epochs: int = 10
    lr: float = 1e-3
    batch_size: int = 8
    seg_base: int = 8
    seg_depth: int = 4
    seg_max_channels: int = 64
    seed: int = 0
    device: str = "cpu"


def default_cache_dir() -> Path:
    """``$XDG_CACHE_HOME/pseudohealthy/healthiness`` (``~/.cache/...``); the CLI can pass another folder."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "pseudohealthy" / "healthiness"


def cache_key(images: np.ndarray, lesions: np.ndarray, cfg: HealthinessConfig) -> str:
    """Hex digest over the training slices' bytes, every setting and the package version."""
    import pseudohealthy

    digest = hashlib.sha256()
    digest.update(np.ascontiguousarray(images, np.float32).tobytes())
    digest.update(np.packbits(np.asarray(lesions, bool)).tobytes())
    digest.update(json.dumps({"config": asdict(cfg), "shape": list(images.shape), "version": pseudohealthy.__version__},
                             sort_keys=True).encode())
    return digest.hexdigest()


def train_reference_segmentor(images: np.ndarray, lesions: np.ndarray, cfg: HealthinessConfig, progress: bool = False):
    """Train a U-Net on pathological slices ``(N, H, W)`` (float32 in [-1, 1], bool lesions); eval mode."""
    import torch
    import torch.nn.functional as F
    from tqdm import tqdm

    from pseudohealthy.config import ModelConfig
    from pseudohealthy.models import build_segmentor

    if len(images) == 0:
        raise UserError("the Healthiness reference segmentor has no pathological slices to train on.")
    device = torch.device(cfg.device)
    torch.manual_seed(cfg.seed)
    model = build_segmentor(ModelConfig(seg_base=cfg.seg_base, seg_depth=cfg.seg_depth, seg_max_channels=cfg.seg_max_channels)).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    x = torch.from_numpy(np.ascontiguousarray(images, np.float32))[:, None].to(device)
    y = torch.from_numpy(np.ascontiguousarray(lesions, bool)).long().to(device)
    order_rng = torch.Generator().manual_seed(cfg.seed)
    model.train()
    for _ in tqdm(range(cfg.epochs), desc="Healthiness reference segmentor", unit="epoch", disable=not progress, leave=False):
        order = torch.randperm(len(x), generator=order_rng).to(device)
        for start in range(0, len(x), cfg.batch_size):
            batch = order[start : start + cfg.batch_size]
            if len(batch) < 2 and len(x) >= 2:
                continue  # BatchNorm needs two samples
            loss = F.cross_entropy(model(x[batch]), y[batch])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
    return model.eval()


def reference_segmentor(images: np.ndarray, lesions: np.ndarray, cfg: HealthinessConfig | None = None,
                        cache_dir: str | Path | None = None, progress: bool = False) -> tuple[Any, Path, bool]:
    """The reference segmentor for these training slices: loaded from the cache or trained and cached.

    Returns ``(segmentor, cache_file, reused)``.
    """
    import torch

    from pseudohealthy.config import ModelConfig
    from pseudohealthy.models import build_segmentor

    cfg = cfg or HealthinessConfig()
    folder = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    path = folder / f"reference-segmentor-{cache_key(images, lesions, cfg)[:24]}.pt"
    if path.is_file():
        try:
            payload = torch.load(path, map_location="cpu", weights_only=True)
            model = build_segmentor(ModelConfig(seg_base=cfg.seg_base, seg_depth=cfg.seg_depth, seg_max_channels=cfg.seg_max_channels))
            model.load_state_dict(payload["segmentor"])
            return model.to(cfg.device).eval(), path, True
        except Exception:  # noqa: BLE001 - a broken cache entry is retrained, never trusted
            pass
    model = train_reference_segmentor(images, lesions, cfg, progress)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + f".tmp-{os.getpid()}")
        torch.save({"segmentor": {k: v.cpu() for k, v in model.state_dict().items()}, "config": asdict(cfg),
                    "n_slices": int(len(images))}, tmp)
        os.replace(tmp, path)
    except OSError as exc:
        raise UserError(f"{folder}: cannot write the Healthiness segmentor cache here ({exc.strerror or exc}); pass another cache folder.") from None
    return model, path, False


def healthiness(synthetic_count: int, pathological_count: int) -> float:
    """``1 - synthetic_count / pathological_count``; NaN when nothing is predicted on the inputs."""
    if pathological_count <= 0:
        return float("nan")
    return float(1.0 - synthetic_count / pathological_count)


class HealthinessMetric:
    """Cumulative Healthiness for one method: ``update`` with matching ``x_s`` / ``x_p`` slices, then ``aggregate``."""

    def __init__(self, segmentor: Any, device: str = "cpu") -> None:
        self.segmentor = segmentor
        self.device = device
        self.reset()

    def reset(self) -> None:
        self.synthetic = 0
        self.pathological = 0
        self._reference = DiceMetric()

    def update(self, synthetic: np.ndarray, pathological: np.ndarray, lesions: np.ndarray | None = None) -> None:
        """Add slices ``(N, H, W)`` of outputs and of their inputs (same slices, normalised alike).

        ``lesions`` (bool ``(N, H, W)``), when given, also scores the reference segmentor itself on the
        inputs (its pooled Dice), so a report can show how much the number can be trusted.
        """
        self.synthetic += int(predict_lesion(self.segmentor, synthetic, self.device).sum())
        on_inputs = predict_lesion(self.segmentor, pathological, self.device)
        self.pathological += int(on_inputs.sum())
        if lesions is not None:
            self._reference.update(on_inputs, lesions)

    def aggregate(self) -> dict[str, Any]:
        scored = self._reference.aggregate()
        return {"healthiness": healthiness(self.synthetic, self.pathological),
                "predicted_synthetic": self.synthetic, "predicted_pathological": self.pathological,
                "reference_dice_on_inputs": scored["pooled"] if scored["n"] else None}
