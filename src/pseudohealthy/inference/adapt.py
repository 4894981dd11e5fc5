"""Test-time adaptation of a gated generator's gate to the one volume it is about to synthesise
(``model.gen_gate_adapt_steps``; ``synthesize --adapt-steps``).

Why: a gate trained on a few subjects opens, on an anatomy it has never seen, on structures that
look unlike anything in its training set (a ventricle pressed by a tumour, CSF at the brain's edge,
the small brain cap of a top slice): confident false positives, filled over, that cost normal tissue
(docs/quality.md, session 15). The volume to be synthesised is itself the best sample of its own
anatomy. So, before synthesising it, a copy of the gate trains for a few steps on crops of this very
volume, with fresh synthetic lesions pasted into its tissue (the training's online lesions,
:func:`pseudohealthy.data.online_lesions.paste_lesions`) as the only positives:

- where the trained gate opens on the volume at first (its lesions, or false positives: nobody
  knows which), carried :data:`IGNORE_SLICES` slices up and down and grown by :data:`IGNORE_DILATION`
  pixels (:func:`silent_region`), the loss is silent, so the volume's own lesions are never taught as
  normal tissue, and no lesion is pasted there;
- everywhere else the volume is taught as normal tissue, and the pasted lesions as lesions.

What the copy learns about this anatomy carries over to the silent parts: a false positive on a
ventricle closes because the rest of that ventricle was taught as normal, while a lesion, unlike
any normal tissue of the volume, stays open. BatchNorm runs in training mode, so its statistics also
move to this volume's. No lesion mask is used: the only input is the image. The loss is the
training's gate loss (BCE + soft Dice, losses/gate.py), over the pixels that are not silent.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from pseudohealthy.data.online_lesions import paste_lesions
from pseudohealthy.device import autocast
from pseudohealthy.losses.gate import gate_loss

IGNORE_DILATION = 2  # pixels the initially open gate is grown by (in-plane) before the loss goes silent there
IGNORE_SLICES = 0  # ...and slices (up and down): a lesion found in one slice goes on in its neighbours
MIN_TISSUE = 0.02  # slices with less than this share of tissue pixels are not drawn for crops


@dataclass
class AdaptSettings:
    """How the gate adapts to one volume. ``steps`` 0 switches adaptation off. The learning rate is a
    tenth of the recipe's (a trained gate fine-tuned: measured at 100 steps, 3e-4 opened it on more
    normal tissue than 1e-4, 29.0 against 31.0 dB; docs/quality.md, session 16); ``crop`` is the
    hybrid recipe's training crop (the whole slice when the slices are smaller); ``max_lesions``
    pasted per crop, as in training; ``silent_pixels`` / ``silent_slices``: how far the silent region
    reaches beyond the gate's first opening (:func:`silent_region`; wider keeps more of a half-found
    lesion from being taught as normal tissue, and leaves more false positives open: measured in
    docs/quality.md, session 18). ``silent_growth`` (0: off) also grows each 3-D component of the first
    opening by that share of its own equivalent-sphere radius, in millimetres on the volume's voxel
    ``spacing`` ``(Z, H, W)`` (:func:`grow_components`)."""

    steps: int = 0
    lr: float = 1e-4
    batch_size: int = 8
    crop: int = 128
    max_lesions: int = 2
    seed: int = 0
    silent_pixels: int = IGNORE_DILATION
    silent_slices: int = IGNORE_SLICES
    silent_growth: float = 0.0
    spacing: tuple[float, float, float] = (1.0, 1.0, 1.0)


def gate_open(generator: nn.Module, slices: np.ndarray, region: np.ndarray, device: torch.device,
              batch_size: int = 16) -> np.ndarray:
    """Where ``generator``'s gate opens on a volume's ``(Z, H, W)`` slices (bool, inside ``region``),
    as synthesis runs it (eval mode, second look included)."""
    return (gate_logits(generator, slices, region, device, batch_size) > 0) & region


def gate_logits(generator: nn.Module, slices: np.ndarray, region: np.ndarray, device: torch.device,
                batch_size: int = 16) -> np.ndarray:
    """``generator``'s gate logits on a volume's ``(Z, H, W)`` slices (float32; ``-inf`` on slices
    without ``region``), as synthesis runs it (eval mode, second look included)."""
    from pseudohealthy.inference.synthesize import with_neighbours

    logits = np.full(slices.shape, -np.inf, dtype=np.float32)
    context = int(getattr(generator, "context", 0))
    todo = np.flatnonzero(region.any(axis=(1, 2)))
    was_training = generator.training
    generator.eval()
    with torch.no_grad():
        for start in range(0, len(todo), batch_size):
            picks = todo[start:start + batch_size]
            x = torch.from_numpy(with_neighbours(slices, picks, context)).to(device)
            with autocast(device):
                _, _, logit = generator.gate_maps(x)  # the gate alone: forward would also fill every slice
            logits[picks] = logit.float()[:, 0].cpu().numpy()
    generator.train(was_training)
    return logits


def _crop_batch(rng: np.random.Generator, slices: np.ndarray, region: np.ndarray, silent: np.ndarray,
                scale: np.ndarray, offset: np.ndarray, organ: str, settings: AdaptSettings, context: int,
                candidates: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(images, targets, weights)``: ``(B, 1 + 2 context, c, c)`` crops of the volume around a random
    tissue pixel, flipped left-right half of the time, with fresh lesions pasted outside ``silent``;
    the targets are the pasted lesions of the middle slice, the weights 0 where the loss is silent."""
    from pseudohealthy.inference.synthesize import with_neighbours

    # with_neighbours would convert a non-float32 volume for every crop; adapt_gate passes float32
    # arrays, for which these are views, not copies
    slices, region, silent = (np.asarray(a, dtype=np.float32) for a in (slices, region, silent))
    height, width = slices.shape[1:]
    size_h, size_w = min(settings.crop, height), min(settings.crop, width)
    images, targets, weights = [], [], []
    for _ in range(settings.batch_size):
        z = int(rng.choice(candidates))
        ys, xs = np.nonzero(region[z] > 0.5)
        pick = int(rng.integers(len(ys)))
        top = int(np.clip(ys[pick] - size_h // 2, 0, height - size_h))
        left = int(np.clip(xs[pick] - size_w // 2, 0, width - size_w))
        window = (slice(None), slice(top, top + size_h), slice(left, left + size_w))
        stacks = [with_neighbours(a, np.array([z]), context, background=value)[0][window]
                  for a, value in ((slices, -1.0), (region, 0.0), (silent, 0.0))]
        if rng.random() < 0.5:
            stacks = [a[..., ::-1] for a in stacks]
        image, tissue, quiet = (np.ascontiguousarray(a) for a in stacks)
        quiet = quiet > 0.5
        image = image if context else image[0]
        shape_of = (lambda a: a) if context else (lambda a: a[0])
        pasted, grown, _ = paste_lesions(rng, image, shape_of(quiet).astype(np.uint8), shape_of(tissue > 0.5),
                                         float(scale[z]), float(offset[z]), organ, settings.max_lesions)
        middle = grown[context] if context else grown
        new = (middle > 0) & ~quiet[context]
        images.append(pasted if context else pasted[None])
        targets.append(new[None].astype(np.float32))
        weights.append((~(quiet[context] & ~new))[None].astype(np.float32))
    return np.stack(images), np.stack(targets), np.stack(weights)


def masked_gate_loss(logit: torch.Tensor, target: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """The gate loss of training (BCE + soft Dice, losses/gate.py) over the pixels of weight 1 only."""
    return gate_loss(logit, target, dice=True, valid=weight)


def adapt_gate(generator: nn.Module, slices: np.ndarray, region: np.ndarray, scale: np.ndarray, offset: np.ndarray,
               organ: str, settings: AdaptSettings, device: torch.device, progress: bool = False,
               label: str = "adapt", first_logits: np.ndarray | None = None) -> nn.Module:
    """A copy of the gated ``generator`` whose gate has trained ``settings.steps`` steps on this volume
    (module docstring); ``generator`` itself is left as it was. ``slices`` ``(Z, H, W)`` in [-1, 1],
    ``region`` its tissue, ``scale`` / ``offset`` per slice (``normalised = scale * clipped + offset``,
    data/preprocessing.py), ``organ`` the lesion model (``brain`` or ``liver``); ``first_logits``:
    :func:`gate_logits` of ``generator`` on this volume, where the caller has them already."""
    from tqdm.auto import tqdm

    adapted = copy.deepcopy(generator)
    if settings.steps <= 0:
        return adapted.eval()
    if first_logits is None:
        opened = gate_open(adapted, slices, region, device)
    else:
        opened = (first_logits > 0) & region
    silent = silent_region(opened, settings.silent_pixels, settings.silent_slices)
    if settings.silent_growth > 0:
        silent |= grow_components(opened, settings.silent_growth, settings.spacing)
    silent = silent.astype(np.float32)
    slices, tissue = np.asarray(slices, dtype=np.float32), region.astype(np.float32)
    candidates = np.flatnonzero(region.mean(axis=(1, 2)) >= MIN_TISSUE)
    if candidates.size == 0:
        return adapted.eval()
    rng = np.random.default_rng(settings.seed)
    context = int(getattr(adapted, "context", 0))
    optimizer = torch.optim.Adam(adapted.net.parameters(), lr=settings.lr, betas=(0.9, 0.99))
    adapted.train()
    bar = tqdm(range(settings.steps), desc=label, unit="step", disable=not progress, leave=False)
    for _ in bar:
        images, targets, weights = (torch.from_numpy(a).to(device) for a in _crop_batch(
            rng, slices, tissue, silent, scale, offset, organ, settings, context, candidates))
        with autocast(device):
            _, logit = adapted.maps(adapted.net_input(images)[1])
        loss = masked_gate_loss(logit.float(), targets, weights)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        bar.set_postfix(loss=f"{loss.item():.3f}")
    return adapted.eval()


def silent_region(opened: np.ndarray, pixels: int, slices: int) -> np.ndarray:
    """Where the adaptation's loss is silent: the gate's first opening ``(Z, H, W)`` carried to the
    ``slices`` slices above and below, then grown by ``pixels`` in-plane (4-connected steps)."""
    from scipy import ndimage

    out = np.asarray(opened, dtype=bool).copy()
    for shift in range(1, slices + 1):
        out[shift:] |= opened[:-shift]
        out[:-shift] |= opened[shift:]
    if pixels <= 0 or not out.any():
        return out
    in_plane = ndimage.generate_binary_structure(3, 1)
    in_plane[0] = in_plane[2] = False
    return ndimage.binary_dilation(out, in_plane, iterations=pixels)


def grow_components(opened: np.ndarray, share: float, spacing: tuple[float, float, float]) -> np.ndarray:
    """Every 3-D component of ``opened`` ``(Z, H, W)`` (26-connected) grown by ``share`` of its
    equivalent-sphere radius ``(3 V / 4 pi)^(1/3)``, volume and distance in millimetres on voxels of
    ``spacing`` ``(Z, H, W)``; a component whose margin is under one voxel stays as it is.

    Why: the adaptation teaches everything outside its silent region as normal tissue. A large lesion
    the gate first found in part has a faint rim (edema) many millimetres wide, which a margin of a
    few pixels leaves to be taught as normal; the copy then generalises that to the lesion's opened
    interior and closes most of it (a real tumour of ~105,000 voxels: 0.71 opened before adapting,
    0.21 after; docs/quality.md, sessions 21-22). A margin that grows with the component keeps such a
    lesion silent, while the small openings most false positives are get about a voxel.

    Written by hand: a margin per component is no morphology a library offers. Each component's
    distance transform runs in its bounding box grown by its margin, so the cost follows the
    components, not the volume."""
    from scipy import ndimage

    opened = np.asarray(opened, dtype=bool)
    grown = opened.copy()
    if share <= 0 or not opened.any():
        return grown
    step = np.asarray(spacing, dtype=np.float64)
    labels, count = ndimage.label(opened, structure=np.ones((3, 3, 3), dtype=bool))
    sizes = ndimage.sum_labels(np.ones(opened.shape, dtype=np.float32), labels, np.arange(1, count + 1))
    margins = share * (3.0 * sizes * float(np.prod(step)) / (4.0 * np.pi)) ** (1.0 / 3.0)
    for index, box in enumerate(ndimage.find_objects(labels)):
        margin = float(margins[index])
        if box is None or margin < float(step.min()):
            continue
        reach = np.ceil(margin / step).astype(int)
        outer = tuple(slice(max(b.start - r, 0), min(b.stop + r, n)) for b, r, n in zip(box, reach, opened.shape))
        inside = labels[outer] == index + 1
        grown[outer] |= ndimage.distance_transform_edt(~inside, sampling=step) <= margin
    return grown


def keep_survivors(first: np.ndarray, adapted: np.ndarray, share: float) -> np.ndarray:
    """The adapted gate's logits ``(Z, H, W)`` with every 3-D component of the first opening
    (``first > 0``, 26-connected) that the adapted gate still opens on at least ``share`` of its voxels
    opened whole again (there the larger of the two logits).

    Why: adapting teaches the volume as normal tissue everywhere outside the first opening's silent
    margin, so a lesion the gate found only in part (its faint edges and tips missed) shrinks further,
    while a false opening on normal tissue closes altogether (docs/quality.md, sessions 17-18). A
    component that survives adapting is taken for a lesion and kept as first found; one that mostly
    closes stays as the adapted gate has it."""
    from scipy import ndimage

    labels, count = ndimage.label(first > 0, structure=np.ones((3, 3, 3), dtype=bool))
    if count == 0:
        return adapted
    index = np.arange(1, count + 1)
    size = ndimage.sum_labels(np.ones(first.shape, dtype=np.float32), labels, index)
    still_open = ndimage.sum_labels((adapted > 0).astype(np.float32), labels, index)
    kept = np.concatenate([[False], still_open >= share * size])
    return np.where(kept[labels], np.maximum(first, adapted), adapted).astype(adapted.dtype)
