"""The gated generator's fill taken from the whole volume instead of slice by slice (synthesis only).

A gated generator (the hybrid recipe) decides per axial slice where to change (its gate) and fills
those pixels by a pull-push over the slice (models/pyramid_fill.py). A lesion is a blob in 3-D: the
tissue just above and below an opening is often closer than its in-plane rim, and a false opening
on normal tissue usually has untouched tissue in the neighbouring slices. At synthesis, when a whole
volume is at hand, :func:`compose_volume` keeps every slice's gate and refinement and replaces only
the fill by :func:`pull_push_volume`, the same pull-push over a 3-D pyramid with the same trust of
each voxel. Training is unchanged (it sees crops of single slices).

Written by hand for the reason the 2-D pull-push is (a fill with per-pixel trust, batched in torch,
that no library offers); anisotropic voxels are handled as nnU-Net pools them: an axis is halved only
while its voxel size is less than twice the finest axis', and the smoothing weighs each axis'
neighbours by ``(finest spacing / spacing)**2`` (the discrete Laplacian on that grid); on a single
slice it is the 2-D fill's pyramid and smoothing.

The pull can take each block's trust-weighted **median** instead of its mean (``pull="median"``,
``model.gen_fill_pull``): a coarse voxel then holds the tissue most of its block holds, not a mix
with the odd bright ventricle or sulcus on the opening's rim, which a mean carries deep into a large
opening. The push and its smoothing are the same. The error the benchmark scores is a mean absolute
error, whose best constant estimate is a median (docs/quality.md, session 23).
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from pseudohealthy.models.generator import dilate_one_pixel, fill_trust
from pseudohealthy.models.pyramid_fill import SMOOTH_STEPS

_EPS = 1e-6
PULLS = ("mean", "median")  # how pull_push_volume pools a block of trusted voxels


def _pool_factors(shape: tuple[int, ...], spacing: tuple[float, ...]) -> tuple[int, ...]:
    """Per axis 2 (halve) or 1 (keep): axes of one voxel stay; the others halve while their voxel size is
    below twice the finest halvable axis' (an anisotropic volume first becomes isotropic, then shrinks
    evenly)."""
    halvable = [s for n, s in zip(shape, spacing) if n > 1]
    if not halvable:
        return (1,) * len(shape)
    finest = min(halvable)
    return tuple(2 if n > 1 and s < 2.0 * finest else 1 for n, s in zip(shape, spacing))


def _smooth(filled: torch.Tensor, side_weights: tuple[float, float, float]) -> torch.Tensor:
    """One Jacobi step of the Laplace equation: a separable ``[a, 1 - 2a, a]`` mean along each axis
    (edges replicated). ``a = 1/3`` on every axis is the 3x3x3 box mean, the 2-D fill's 3x3 mean
    carried to 3-D (a one-voxel axis leaves it exactly that); a coarser axis gets a smaller ``a``."""
    for axis, side in enumerate(side_weights):
        dim = 2 + axis
        if filled.shape[dim] == 1 or side == 0.0:
            continue
        widths = [0] * 6
        widths[4 - 2 * axis : 6 - 2 * axis] = [1, 1]  # F.pad lists the last axis first
        padded = F.pad(filled, widths, mode="replicate")
        size = filled.shape[dim]
        filled = side * (padded.narrow(dim, 0, size) + padded.narrow(dim, 2, size)) + (1.0 - 2.0 * side) * filled
    return filled


def block_median(values: torch.Tensor, weight: torch.Tensor, factors: tuple[int, int, int]) -> torch.Tensor:
    """The ``weight``-weighted median of ``values`` over each block of ``factors`` voxels (``(1, 1, D, H, W)``
    in, the pooled grid out, blocks at the far edges cut short as ``avg_pool3d(ceil_mode=True)`` cuts
    them): the smallest value whose cumulative weight reaches half the block's. A block without weight
    gets some value of its own (the caller trusts it nowhere)."""
    shape = values.shape[-3:]
    pad = []
    for size, factor in zip(reversed(shape), reversed(factors)):
        pad += [0, (-size) % factor]
    values = F.pad(values, pad, mode="replicate")[0, 0]
    weight = F.pad(weight, pad, mode="constant", value=0.0)[0, 0]  # padding never counts
    (d, h, w), (fd, fh, fw) = values.shape, factors

    def blocks(volume: torch.Tensor) -> torch.Tensor:
        return volume.reshape(d // fd, fd, h // fh, fh, w // fw, fw).permute(0, 2, 4, 1, 3, 5).reshape(d // fd, h // fh, w // fw, -1)

    ordered, order = torch.sort(blocks(values), dim=-1)
    cumulative = torch.cumsum(torch.gather(blocks(weight), -1, order), dim=-1)
    middle = torch.searchsorted(cumulative.contiguous(), (0.5 * cumulative[..., -1:]).contiguous())
    return torch.gather(ordered, -1, middle.clamp(max=ordered.shape[-1] - 1))[..., 0][None, None]


def pull_push_volume(values: torch.Tensor, known: torch.Tensor, spacing: tuple[float, float, float] = (1.0, 1.0, 1.0),
                     smooth_steps: int = SMOOTH_STEPS, pull: str = "mean") -> torch.Tensor:
    """``values`` ``(D, H, W)`` with its unknown voxels (``known`` ~ 0) filled from the known ones.

    ``known`` ``(D, H, W)`` in [0, 1] is how far each voxel is trusted (voxels with 1 come back
    unchanged); ``spacing`` the voxel size along ``(D, H, W)`` in any unit. Pull: known-weighted
    means (``pull="median"``: medians, :func:`block_median`) over 2x2x2 blocks (or fewer axes,
    :func:`_pool_factors`) down to one voxel, each block trusted by its mean trust; push: from the
    coarsest level up, upsample (trilinear), blend in where a level is unknown, then ``smooth_steps``
    Jacobi steps with the known voxels held. A volume without any known voxel comes back as zeros.
    """
    if pull not in PULLS:
        raise ValueError(f"pull must be one of {PULLS}, not {pull!r}")
    weighted, weight = (values * known)[None, None], known.to(values.dtype)[None, None]
    levels = [(weighted, weight, tuple(float(s) for s in spacing))]
    while True:
        weighted, weight, step = levels[-1]
        factors = _pool_factors(tuple(weighted.shape[-3:]), step)
        if factors == (1, 1, 1):
            break
        pooled = F.avg_pool3d(weight, factors, ceil_mode=True)
        if pull == "median":  # kept as median x trust, so that the push below reads both pulls alike
            coarse = block_median(weighted / weight.clamp_min(_EPS), weight, factors) * pooled
        else:
            coarse = F.avg_pool3d(weighted, factors, ceil_mode=True)
        levels.append((coarse, pooled, tuple(s * f for s, f in zip(step, factors))))
    weighted, weight, _ = levels[-1]
    filled = weighted / weight.clamp_min(_EPS)
    for weighted, weight, step in reversed(levels[:-1]):
        coarse = F.interpolate(filled, size=weighted.shape[-3:], mode="trilinear", align_corners=False)
        trust = weight.clamp(0.0, 1.0)
        value = weighted / weight.clamp_min(_EPS)
        filled = trust * value + (1.0 - trust) * coarse
        finest = min((s for s, n in zip(step, weighted.shape[-3:]) if n > 1), default=1.0)
        sides = tuple((finest / s) ** 2 / 3.0 for s in step)
        for _ in range(smooth_steps):
            filled = trust * value + (1.0 - trust) * _smooth(filled, sides)  # type: ignore[arg-type]
    return filled[0, 0]


def compose_volume(slices: np.ndarray, gate_logits: np.ndarray, refinement: np.ndarray | None, hard: bool,
                   scale: np.ndarray, offset: np.ndarray, spacing: tuple[float, float, float],
                   pull: str = "mean") -> np.ndarray:
    """A gated generator's output ``(Z, H, W)`` for a whole volume with the fill taken in 3-D.

    ``slices`` ``(Z, H, W)``: the normalised input (what the generator saw as the slice);
    ``gate_logits`` the gate's logits per slice (``-inf`` where a slice was not run); ``refinement``
    the generator's ``tanh(a)`` or None; ``hard``: the gate is thresholded and dilated one pixel in-plane
    as in training (models/generator.py ``hard_gate``). The output is ``x + m (fill + refinement - x)``
    as the generator's own; the fill trusts each voxel as training does (``fill_trust``). ``scale`` /
    ``offset`` ``(Z,)``: each slice's normalisation (normalised = scale * input units + offset); the
    fill runs in input units, so slices normalised apart are filled as one volume.
    ``spacing``: the voxel size along ``(Z, H, W)``; ``pull``: how the fill pools (:func:`pull_push_volume`).
    """
    x = torch.from_numpy(np.asarray(slices, np.float64))
    gate = torch.sigmoid(torch.from_numpy(np.asarray(gate_logits, np.float64)))
    # The fill trusts each voxel as training's does, (1 - m)^4: the one-pixel ring a hard gate adds
    # around its opening is replaced but still trusted where the gate is sure of it, which gives
    # normal tissue the gate opened by mistake its own values back. Trusting nothing the output
    # replaces removed a little more of the lesions and kept much less normal tissue (adapted gates,
    # seeds 0 / 1: lesion error 0.792 / 0.643 against 0.789 / 0.633, normal PSNR 35.3 / 35.0 dB
    # against 36.7 / 37.0 dB; docs/quality.md, sessions 20-21; docs/decisions.md).
    mask = dilate_one_pixel((gate > 0.5).to(x.dtype)[:, None])[:, 0] if hard else gate
    trust = fill_trust(gate, x)
    if not bool((mask > 0).any()):
        return np.asarray(slices, np.float32).copy()
    per_slice = (torch.from_numpy(np.asarray(scale, np.float64))[:, None, None],
                 torch.from_numpy(np.asarray(offset, np.float64))[:, None, None])
    safe_scale = torch.where(per_slice[0].abs() > _EPS, per_slice[0], torch.ones_like(per_slice[0]))
    units = (x - per_slice[1]) / safe_scale
    filled = pull_push_volume(units, trust, spacing, pull=pull) * safe_scale + per_slice[1]
    extra = torch.from_numpy(np.asarray(refinement, np.float64)) if refinement is not None else 0.0
    return (x + mask * (filled + extra - x)).numpy().astype(np.float32)


def working_spacing(affine: np.ndarray, original: tuple[int, int], working: tuple[int, int],
                    square: tuple[int, int] | None = None) -> tuple[float, float, float]:
    """Voxel size along the working slices' ``(Z, H, W)`` for a canonical volume ``(X, Y, Z)`` read
    from a file with ``affine``: the file's voxel sizes in canonical order, the in-plane ones scaled
    by the resize from the (padded) slice ``square`` (or ``original``) to ``working``."""
    from pseudohealthy.data.nifti_io import canonical_voxel_size

    canonical = canonical_voxel_size(affine)
    source = square if square and all(square) else original
    return (float(canonical[2]), float(canonical[0] * source[0] / working[0]),
            float(canonical[1] * source[1] / working[1]))
