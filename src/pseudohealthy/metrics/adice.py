"""A-Dice (paper eq. 8): how fast a fresh segmentor learns the lesion labels on the outputs.

A segmentor trained with a high learning rate fits real lesions within a few epochs, but fits labels
that point at healthy-looking tissue only slowly (fitting false labels is slow, and a high learning
rate hampers it). So, for a method's outputs ``x_s`` and the original lesion masks ``y_t``:

1. train a fresh U-Net on the ``(x_s, y_t)`` lesion slices for ``E`` epochs, two-class cross-entropy;
2. after every epoch, the pooled Dice of its argmax prediction on those same training slices;
3. A-Dice = mean of the ``E`` Dice values. Lower means healthier.

Repeated trials (different seeds for the initial weights and the batch order) give mean +- std.

The paper names only the learning rate (0.1 instead of 1e-4). The rest was chosen by measurement on
the phantom (``docs/metrics.md``) and is the default of :class:`ADiceConfig`:

- plain SGD (no momentum) at lr 0.3, batch 8;
- a shallow U-Net (one downsampling, widths 8-16). Deeper U-Nets learn the lesion labels on the
  *true healthy* images almost as fast as on the pathological ones: with a few test volumes the
  lesion sites can be told from anatomical context alone (the phantom puts tumours in deep white
  matter, as gliomas are), which is not what A-Dice is meant to measure; a receptive field of about
  18 pixels at working size 64 sees what the lesion looks like, hardly where it is;
- the lesion logit starts at the training slices' lesion fraction (otherwise the first epochs go to
  learning that almost every pixel is background, and some trials never leave that state);
- before each Dice, BatchNorm statistics are recomputed over the training slices for the current
  weights; at a high learning rate the running averages lag the weights and the per-epoch Dice
  jumps between 0 and its true value.
"""
from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from pseudohealthy.errors import UserError
from pseudohealthy.metrics.dice import DiceMetric

OPTIMIZERS = ("sgd", "adam")


@dataclass
class ADiceConfig:
    """Settings of one A-Dice measurement (the defaults are the measured choice, docs/metrics.md)."""

    epochs: int = 20  # E of eq. 8
    trials: int = 3
    optimizer: str = "sgd"  # sgd | adam
    lr: float = 0.3  # a "high" learning rate (paper: 0.1, with an unnamed optimiser)
    momentum: float = 0.0  # sgd only
    batch_size: int = 8
    seg_base: int = 8  # U-Net first level width (the paper's full U-Net: 64)
    seg_depth: int = 1  # downsamplings (the paper's full U-Net: 4); see the module doc
    seg_max_channels: int = 16
    prior_bias: bool = True  # start the lesion logit at the training slices' lesion fraction
    precise_bn: bool = True  # recompute BatchNorm statistics on the training slices before each Dice
    seed: int = 0  # trial t uses seed + t
    device: str = "cpu"


@dataclass
class ADiceResult:
    """A-Dice of one set of slices: per trial the mean of its per-epoch Dice curve."""

    mean: float
    std: float  # population std over trials
    trials: list[float]
    curves: list[list[float]]  # (trials, epochs) pooled Dice after each epoch
    n_slices: int
    seconds_per_trial: float
    config: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def check_config(cfg: ADiceConfig) -> None:
    """Refuse settings that cannot give a measurement, one sentence each."""
    if cfg.optimizer not in OPTIMIZERS:
        raise UserError(f"A-Dice optimizer {cfg.optimizer!r} is unknown; choose one of {', '.join(OPTIMIZERS)}.")
    if cfg.epochs < 1 or cfg.trials < 1 or cfg.batch_size < 1:
        raise UserError(f"A-Dice needs at least one epoch, one trial and a batch of one (got epochs={cfg.epochs}, trials={cfg.trials}, batch_size={cfg.batch_size}).")


def _model(cfg: ADiceConfig):
    from pseudohealthy.config import ModelConfig
    from pseudohealthy.models import build_segmentor

    return build_segmentor(ModelConfig(seg_base=cfg.seg_base, seg_depth=cfg.seg_depth, seg_max_channels=cfg.seg_max_channels))


def _optimizer(cfg: ADiceConfig, params):
    import torch

    if cfg.optimizer == "sgd":
        return torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum)
    return torch.optim.Adam(params, lr=cfg.lr)


def _set_prior_bias(model, fraction: float) -> None:
    """Bias the 2-logit head so the initial lesion probability is the lesion fraction (RetinaNet's prior init).

    Without it the first steps are spent learning that almost every pixel is background.
    """
    import torch

    head = [m for m in model.modules() if isinstance(m, torch.nn.Conv2d) and m.out_channels == 2][-1]
    fraction = min(max(fraction, 1e-4), 0.5)
    with torch.no_grad():
        head.bias.zero_()
        head.bias[1] = float(np.log(fraction / (1 - fraction)))


def _recalibrate_bn(model, images, chunk: int) -> None:
    """Set every BatchNorm's running statistics to their average over ``images`` for the current weights.

    With a high learning rate the running averages lag far behind the weights, so an eval-mode
    prediction would score a network that no longer exists; this makes the per-epoch Dice smooth.
    """
    import torch

    norms = [m for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    saved = [m.momentum for m in norms]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # cumulative average over the chunks below
    model.train()
    with torch.no_grad():
        for start in range(0, len(images), chunk):
            model(images[start : start + chunk])
    for m, momentum in zip(norms, saved):
        m.momentum = momentum


def _predict_dice(model, images, lesions, batch_size: int, precise_bn: bool = False) -> float:
    """Pooled Dice of the model's argmax on all slices (BatchNorm in eval mode)."""
    import torch

    metric = DiceMetric()
    if precise_bn:
        _recalibrate_bn(model, images, max(batch_size, 32))
    model.eval()
    with torch.no_grad():
        for start in range(0, len(images), max(batch_size, 32)):
            logits = model(images[start : start + max(batch_size, 32)])
            metric.update(logits.argmax(1) == 1, lesions[start : start + max(batch_size, 32)])
    model.train()
    return metric.aggregate()["pooled"]


def adice_trial(images: np.ndarray, lesions: np.ndarray, cfg: ADiceConfig, seed: int, progress: Any = None) -> list[float]:
    """One trial: train a fresh U-Net on ``images`` (float32 ``(N, H, W)`` in [-1, 1]) with ``lesions``
    (bool ``(N, H, W)``) and return the pooled training-set Dice after each epoch (``epochs`` values).

    ``progress`` (a tqdm bar or None) is advanced once per epoch.
    """
    import torch
    import torch.nn.functional as F

    device = torch.device(cfg.device)
    torch.manual_seed(seed)
    model = _model(cfg).to(device)
    if cfg.prior_bias:
        _set_prior_bias(model, float(np.mean(lesions)))
    optimizer = _optimizer(cfg, model.parameters())
    x = torch.from_numpy(np.ascontiguousarray(images, dtype=np.float32))[:, None].to(device)
    y = torch.from_numpy(np.ascontiguousarray(lesions, dtype=bool)).to(device)
    order_rng = torch.Generator().manual_seed(seed)
    curve = []
    model.train()
    for _ in range(cfg.epochs):
        order = torch.randperm(len(x), generator=order_rng).to(device)
        for start in range(0, len(x), cfg.batch_size):
            batch = order[start : start + cfg.batch_size]
            if len(batch) < 2 and len(x) >= 2:
                continue  # BatchNorm needs two samples; a last single slice waits for the next epoch
            loss = F.cross_entropy(model(x[batch]), y[batch].long())
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        curve.append(_predict_dice(model, x, y, cfg.batch_size, cfg.precise_bn))
        if progress is not None:
            progress.update(1)
    return curve


def adice(images: np.ndarray, lesions: np.ndarray, cfg: ADiceConfig | None = None, progress: bool | Any = False,
          label: str = "A-Dice") -> ADiceResult:
    """A-Dice mean +- std over ``cfg.trials`` trials on lesion slices ``images`` / ``lesions`` (see module doc).

    ``progress``: True for a tqdm bar over all epochs of all trials, or an existing bar to advance.
    """
    cfg = cfg or ADiceConfig()
    check_config(cfg)
    images = np.asarray(images, dtype=np.float32)
    lesions = np.asarray(lesions, dtype=bool)
    if images.ndim != 3 or images.shape != lesions.shape:
        raise ValueError(f"A-Dice needs (N, H, W) images and lesions of one shape, got {images.shape} and {lesions.shape}")
    if len(images) == 0:
        raise UserError("A-Dice has no lesion slices to train on; the evaluated cases hold no lesion.")
    multiple = 2**cfg.seg_depth
    if images.shape[1] % multiple or images.shape[2] % multiple:
        raise UserError(f"A-Dice slices of size {images.shape[1:]} must be multiples of {multiple} (the U-Net depth); choose another working size.")
    bar, own_bar = progress, False
    if progress is True:
        from tqdm import tqdm

        bar, own_bar = tqdm(total=cfg.trials * cfg.epochs, desc=label, unit="epoch", leave=False), True
    elif progress is False:
        bar = None
    curves, started = [], time.perf_counter()
    try:
        for trial in range(cfg.trials):
            curves.append(adice_trial(images, lesions, cfg, cfg.seed + trial, bar))
    finally:
        if own_bar:
            bar.close()
    per_trial = [float(np.mean(c)) for c in curves]
    return ADiceResult(
        mean=float(np.mean(per_trial)), std=float(np.std(per_trial)), trials=per_trial, curves=curves,
        n_slices=int(len(images)), seconds_per_trial=(time.perf_counter() - started) / cfg.trials, config=asdict(cfg),
    )


class ADiceMetric:
    """Cumulative A-Dice: ``update`` with each case's lesion slices, then ``aggregate`` trains and scores."""

    def __init__(self, cfg: ADiceConfig | None = None) -> None:
        self.cfg = cfg or ADiceConfig()
        self.reset()

    def reset(self) -> None:
        self._images: list[np.ndarray] = []
        self._lesions: list[np.ndarray] = []

    def update(self, images: np.ndarray, lesions: np.ndarray) -> None:
        """Add slices ``(N, H, W)``; slices without lesion pixels are left out (paper: lesion slices)."""
        keep = np.asarray(lesions, bool).any(axis=(1, 2))
        self._images.append(np.asarray(images, np.float32)[keep])
        self._lesions.append(np.asarray(lesions, bool)[keep])

    @property
    def n_slices(self) -> int:
        return int(sum(len(i) for i in self._images))

    def aggregate(self, progress: bool | Any = False, label: str = "A-Dice") -> ADiceResult:
        if not self._images:
            raise UserError("A-Dice has no lesion slices to train on; the evaluated cases hold no lesion.")
        return adice(np.concatenate(self._images), np.concatenate(self._lesions), self.cfg, progress, label)
