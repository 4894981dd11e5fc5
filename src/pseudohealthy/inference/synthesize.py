"""Volume in, volume out: pseudo-healthy synthesis of whole NIfTI volumes with a trained generator.

Every axial slice is preprocessed exactly as at training time (the preprocessing config travels in the
checkpoint), passed through the generator, and the *residual* ``x_p - x_s`` is brought back to the
input's grid and units. The output is ``input - residual``: wherever the generator changes nothing,
the output equals the input voxel for voxel (intensities above the training clip included), and the
background outside the brain/body region stays exactly as it was.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from pseudohealthy.config import PreprocessConfig, from_dict
from pseudohealthy.display import to_display
from pseudohealthy.data.nifti_io import Volume, is_nifti, load_nifti, save_like, strip_nifti_suffix
from pseudohealthy.data.dataset import neighbour_offsets
from pseudohealthy.data.preprocessing import prepare_volume, residual_to_input_units
from pseudohealthy.data.sources import find_cases
from pseudohealthy.errors import UserError
from pseudohealthy.device import autocast, resolve_device

log = logging.getLogger(__name__)


@dataclass
class SynthesisResult:
    """One synthesised volume, canonical orientation, input units."""

    case_id: str
    image: Volume
    synthetic: np.ndarray  # (X, Y, Z) float32, x_s
    residual: np.ndarray  # (X, Y, Z) float32, x_p - x_s
    normalised_input: np.ndarray  # (Z, H, W) working-size slices in [-1, 1], for previews
    normalised_output: np.ndarray  # (Z, H, W)


@dataclass
class VolumeGrid:
    """What a fill over the whole volume needs besides the slices: each slice's normalisation
    (normalised = ``scale`` * input units + ``offset``, both ``(Z,)``) and the voxel size along the
    working ``(Z, H, W)``; with ``model.gen_gate_adapt_keep`` the gate's logits before it adapted
    to the volume and the share of a first component the adapted gate must still open to keep it whole
    (inference/adapt.py :func:`keep_survivors`); ``pull``: the fill's pooling (inference/volume_fill.py)."""

    scale: np.ndarray
    offset: np.ndarray
    spacing: tuple[float, float, float]
    before_adapting: np.ndarray | None = None
    keep_share: float = 0.0
    pull: str = "mean"  # how the 3-D fill pools the voxels it trusts (model.gen_fill_pull)


def region_for_inference(image: np.ndarray, cfg: PreprocessConfig) -> np.ndarray | None:
    """The region where the output may differ from the input: the brain (``image > 0``) for MR.

    For CT (``range`` intensity mode) the organ mask is a label and unknown at inference, so the
    whole image may change.
    """
    mode = cfg.intensity or ("range" if cfg.source == "lits" else "percentile")
    return image > 0 if mode in ("percentile", "median") else None


def with_neighbours(volume: np.ndarray, picks: np.ndarray, context: int, background: float = -1.0) -> np.ndarray:
    """``(len(picks), 1 + 2 * context, H, W)`` float32: slice ``z`` of ``volume`` ``(Z, H, W)`` for each ``z`` in
    ``picks``, then its neighbours ``z - context .. z - 1, z + 1 .. z + context`` (a context generator's
    input); a neighbour beyond the volume's first or last slice is background, as in training, where
    a slice the cache does not hold is background."""
    volume = np.asarray(volume, dtype=np.float32)
    depth = volume.shape[0]
    offsets = [0, *neighbour_offsets(context)]
    out = np.full((len(picks), len(offsets), *volume.shape[1:]), background, np.float32)
    for channel, offset in enumerate(offsets):
        z = np.asarray(picks) + offset
        inside = (z >= 0) & (z < depth)
        out[inside, channel] = volume[z[inside]]
    return out


@torch.no_grad()
def generate_slices(generator: torch.nn.Module, slices: np.ndarray, device: torch.device, batch_size: int = 16,
                    active: np.ndarray | None = None, volume: VolumeGrid | None = None) -> np.ndarray:
    """Run the generator over ``(Z, H, W)`` float32 slices in [-1, 1]; returns ``(Z, H, W)`` float32.

    ``active`` (bool ``(Z,)``): only these slices go through the generator, the others come back as
    they are (slices without any tissue: at native resolution most of a volume's cost otherwise).
    Slices whose size the generator cannot halve often enough are padded with background and cut back.
    ``slices`` are one volume's, in order: a generator with ``context`` (``model.gen_gate_context``)
    gets each slice's neighbours from them (:func:`with_neighbours`). ``volume`` (a gated generator with
    ``fill_volume``): its gate and refinement are kept per slice and its fill is taken from the whole
    volume (inference/volume_fill.py).
    """
    out = np.array(slices, dtype=np.float32, copy=True)
    todo = np.flatnonzero(active) if active is not None else np.arange(len(slices))
    multiple = 2 ** int(getattr(generator, "downsamplings", 0))
    context = int(getattr(generator, "context", 0))
    height, width = slices.shape[1:]
    pad = ((0, 0), (0, 0), (0, (-height) % multiple), (0, (-width) % multiple))
    if volume is not None:
        logits = np.full(out.shape, -np.inf, np.float32)
        refinement = np.zeros(out.shape, np.float32) if generator.gate_refine else None
    for start in range(0, len(todo), batch_size):
        picks = todo[start : start + batch_size]
        batch = with_neighbours(slices, picks, context)
        tensor = torch.from_numpy(np.pad(batch, pad, constant_values=-1.0)).to(device)
        with autocast(device):
            if volume is None:
                out[picks] = generator(tensor).float()[:, 0, :height, :width].cpu().numpy()
                continue
            _, correction, logit = generator.gate_maps(tensor)
        logits[picks] = logit.float()[:, 0, :height, :width].cpu().numpy()
        if refinement is not None:
            refinement[picks] = torch.tanh(correction.float())[:, 0, :height, :width].cpu().numpy()
    if volume is None:
        return out
    from pseudohealthy.inference.volume_fill import compose_volume

    if volume.before_adapting is not None:
        from pseudohealthy.inference.adapt import keep_survivors

        logits = keep_survivors(volume.before_adapting, logits, volume.keep_share)

    return compose_volume(slices, logits, refinement, generator.gate_hard, volume.scale, volume.offset, volume.spacing,
                          pull=volume.pull)


def synthesize_volume(
    generator: torch.nn.Module,
    image: Volume,
    cfg: PreprocessConfig,
    device: torch.device,
    case_id: str | None = None,
    batch_size: int = 16,
    progress: bool = False,
    adapt_silent: tuple[int, int] | None = None,
) -> SynthesisResult:
    """Synthesise the pseudo-healthy version of one 3D volume (any orientation, input units). A gated
    generator with ``adapt_steps`` (``model.gen_gate_adapt_steps``) first adapts a copy of its gate to
    this volume (inference/adapt.py), with ``adapt_silent`` = ``(pixels, slices)`` as its silent margin
    (None: :class:`AdaptSettings`'s); the generator passed in is left unchanged."""
    region = region_for_inference(image.data, cfg)
    prepared = prepare_volume(image.data, cfg, region=region)
    active = prepared.region.any(axis=(1, 2)) if prepared.region is not None else None
    fill_volume = getattr(generator, "fill_volume", False)
    keep_share = float(getattr(generator, "adapt_keep", 0.0)) if fill_volume else 0.0
    first = spacing = None
    if fill_volume or getattr(generator, "adapt_steps", 0) > 0:
        from pseudohealthy.inference.volume_fill import working_spacing

        geometry = prepared.geometry
        spacing = working_spacing(image.affine, geometry.original, geometry.working, geometry.square)
    if getattr(generator, "adapt_steps", 0) > 0:
        from pseudohealthy.data.online_lesions import organ_of_source
        from pseudohealthy.inference.adapt import AdaptSettings, adapt_gate, gate_logits

        settings = AdaptSettings(steps=generator.adapt_steps, silent_growth=float(getattr(generator, "adapt_growth", 0.0)),
                                 spacing=spacing)
        if adapt_silent is not None:
            settings.silent_pixels, settings.silent_slices = adapt_silent
        if keep_share > 0:
            first = gate_logits(generator, prepared.slices, prepared.region, device, batch_size)
        generator = adapt_gate(generator, prepared.slices, prepared.region, prepared.scale, prepared.offset,
                               organ_of_source(cfg.source), settings, device, progress=progress,
                               label=f"adapt {case_id or image.path.name}", first_logits=first)
    volume = None
    if fill_volume:
        volume = VolumeGrid(prepared.scale, prepared.offset, spacing, first, keep_share, getattr(generator, "fill_pull", "mean"))
    output = generate_slices(generator, prepared.slices, device, batch_size, active, volume)
    residual_norm = prepared.slices - output
    # Background stays background: no change outside the region, at working size...
    residual_norm = np.where(prepared.region, residual_norm, 0.0).astype(np.float32)
    residual = residual_to_input_units(residual_norm, prepared).astype(np.float32)
    # ...and at full size, where interpolation may have bled over the region's edge.
    if region is not None:
        residual[~region] = 0.0
    synthetic = (image.data - residual).astype(np.float32)
    return SynthesisResult(case_id or strip_nifti_suffix(image.path.name), image, synthetic, residual, prepared.slices, prepared.slices - residual_norm)


def intensity_warning(result: SynthesisResult, stats: dict | None) -> str | None:
    """A sentence when the input's normalised intensities are far from the training data's, else None.

    ``stats`` (stored in the checkpoint) holds the mean and std of normalised region pixels of the
    training slices; an input whose region mean is more than 3 training stds away is flagged.
    """
    if not stats or "region_mean" not in stats:
        return None
    values = result.normalised_input[result.normalised_input > -1.0 + 1e-6]
    if values.size == 0:
        return f"{result.image.path}: the volume is empty after preprocessing (no voxel above background)."
    mean = float(values.mean())
    limit = 3.0 * max(float(stats.get("region_std", 0.0)), 1e-3)
    if abs(mean - float(stats["region_mean"])) > limit:
        return (
            f"{result.image.path}: intensities look unlike the training data (normalised mean {mean:.2f}, "
            f"training {float(stats['region_mean']):.2f} +- {float(stats['region_std']):.2f}); check the modality and units."
        )
    return None


def list_inputs(path: Path, cfg: PreprocessConfig) -> list[tuple[str, Path]]:
    """``(case_id, image path)`` for one NIfTI file, a case folder, or a data set folder."""
    if path.is_file():
        if not is_nifti(path):
            raise UserError(f"{path}: not a NIfTI file (.nii or .nii.gz).")
        return [(strip_nifti_suffix(path.name), path)]
    if not path.exists():
        raise UserError(f"{path}: input not found.")
    source = cfg.source if cfg.source in ("brats", "lits", "folder") else "auto"
    try:
        cases = find_cases(path, source=source, modality=cfg.modality, require_mask=False)
    except UserError:
        cases = find_cases(path, source="auto", modality=cfg.modality, require_mask=False)
    return [(c.case_id, c.image) for c in cases]


def save_preview(result: SynthesisResult, path: Path) -> Path:
    """PNG: input, output and residual on the three slices with the largest residual."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    energy = np.abs(result.residual).sum(axis=(0, 1))
    order = np.argsort(energy)[::-1]
    picks = sorted(order[: min(3, len(order))].tolist())
    lo, hi = np.percentile(result.image.data[result.image.data > 0], [0.5, 99.5]) if (result.image.data > 0).any() else (0, 1)
    rmax = float(np.abs(result.residual).max()) or 1.0
    fig, axes = plt.subplots(len(picks), 3, figsize=(7.5, 2.6 * len(picks)), squeeze=False)
    for row, z in enumerate(picks):
        for col, (title, data, kw) in enumerate(
            [
                ("input x_p", result.image.data[:, :, z], dict(cmap="gray", vmin=lo, vmax=hi)),
                ("pseudo-healthy x_s", result.synthetic[:, :, z], dict(cmap="gray", vmin=lo, vmax=hi)),
                ("residual x_p - x_s", result.residual[:, :, z], dict(cmap="coolwarm", vmin=-rmax, vmax=rmax)),
            ]
        ):
            ax = axes[row, col]
            ax.imshow(to_display(data), **kw)
            ax.set_axis_off()
            ax.set_title(f"{title}, z={z}" if col == 0 else title, fontsize=8)
    fig.suptitle(result.case_id, fontsize=9)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def open_generator(checkpoint: Path, device: str = "auto") -> tuple[torch.nn.Module, PreprocessConfig, torch.device]:
    """The trained generator on the chosen device and the preprocessing it was trained with."""
    from pseudohealthy.checkpoints import load_generator

    torch_device = resolve_device(device)
    generator, _run_cfg, preprocess = load_generator(checkpoint, torch_device)
    return generator, from_dict(PreprocessConfig, preprocess, f"{checkpoint} preprocessing config"), torch_device


def set_adapt_steps(generator: torch.nn.Module, steps: int, checkpoint: Path) -> None:
    """Set how many steps a gated generator adapts to each volume, or refuse in one sentence."""
    if steps < 0:
        raise UserError(f"--adapt-steps {steps}: give 0 (off) or a positive number of steps.")
    if steps and not hasattr(generator, "adapt_steps"):
        raise UserError(f"{checkpoint}: --adapt-steps needs a gated U-Net generator (the hybrid recipe, model.gen_arch=unet); "
                        "this checkpoint's generator has no gate to adapt.")
    if hasattr(generator, "adapt_steps"):
        generator.adapt_steps = int(steps)


def set_fill_volume(generator: torch.nn.Module, volume: bool, checkpoint: Path) -> None:
    """Take the gate's fill from the whole volume (True) or slice by slice (False), or refuse in one sentence."""
    if volume and not getattr(generator, "volume_fill_possible", False):  # set by models.build_generator
        raise UserError(f"{checkpoint}: --volume-fill needs a gated U-Net generator with the pull-push fill and canonical "
                        "slices (the hybrid recipe without a learned fill); this checkpoint's generator has none.")
    if hasattr(generator, "fill_volume"):
        generator.fill_volume = bool(volume)


def set_fill_pull(generator: torch.nn.Module, pull: str, checkpoint: Path) -> None:
    """Set how the 3-D fill pools the voxels it trusts (``model.gen_fill_pull``), or refuse in one sentence."""
    from pseudohealthy.inference.volume_fill import PULLS

    if pull not in PULLS:
        raise UserError(f"--fill-pull {pull}: choose one of {', '.join(PULLS)}.")
    if pull != "mean" and not getattr(generator, "fill_volume", False):
        raise UserError(f"{checkpoint}: --fill-pull {pull} is a setting of the fill from the whole volume, which is off here "
                        "(give --volume-fill).")
    if hasattr(generator, "fill_pull"):
        generator.fill_pull = pull


def set_adapt_keep(generator: torch.nn.Module, share: float, checkpoint: Path) -> None:
    """Set the share of a first gate component the adapted gate must still open to keep it whole
    (``model.gen_gate_adapt_keep``), or refuse in one sentence."""
    if not 0.0 <= share <= 1.0:
        raise UserError(f"--adapt-keep {share}: give a share between 0 (off) and 1.")
    if share and not (getattr(generator, "adapt_steps", 0) > 0 and getattr(generator, "fill_volume", False)):
        raise UserError(f"{checkpoint}: --adapt-keep acts on a gate that adapts to each volume and is filled from the "
                        "whole volume; here the adaptation or the volume fill is off (give --adapt-steps N --volume-fill).")
    if hasattr(generator, "adapt_keep"):
        generator.adapt_keep = float(share)


def set_adapt_growth(generator: torch.nn.Module, share: float, checkpoint: Path) -> None:
    """Set the share of each first component's radius the adaptation's silent region grows it by
    (``model.gen_gate_adapt_growth``), or refuse in one sentence."""
    if share < 0:
        raise UserError(f"--adapt-silent-growth {share}: give 0 (off) or a positive share of a component's radius.")
    if share and getattr(generator, "adapt_steps", 0) <= 0:
        raise UserError(f"{checkpoint}: --adapt-silent-growth shapes the gate's adaptation, which is off here (give "
                        "--adapt-steps N, or use a checkpoint trained with model.gen_gate_adapt_steps > 0).")
    if hasattr(generator, "adapt_growth"):
        generator.adapt_growth = float(share)


def adapt_silent_margin(generator: torch.nn.Module, given: tuple[int | None, int | None],
                        checkpoint: Path) -> tuple[int, int] | None:
    """The adaptation's silent margin ``(pixels, slices)`` from ``--adapt-silent-pixels`` /
    ``--adapt-silent-slices`` (None where neither is given), or a one-sentence refusal."""
    from pseudohealthy.inference.adapt import AdaptSettings

    if given == (None, None):
        return None
    for value, flag in zip(given, ("--adapt-silent-pixels", "--adapt-silent-slices")):
        if value is not None and value < 0:
            raise UserError(f"{flag} {value}: give 0 or a positive number.")
    if getattr(generator, "adapt_steps", 0) <= 0:
        raise UserError(f"{checkpoint}: --adapt-silent-pixels / --adapt-silent-slices shape the gate's adaptation, which is off "
                        "here (give --adapt-steps N, or use a checkpoint trained with model.gen_gate_adapt_steps > 0).")
    default = AdaptSettings()
    return (default.silent_pixels if given[0] is None else int(given[0]),
            default.silent_slices if given[1] is None else int(given[1]))


def run_synthesis(
    checkpoint: Path,
    input_path: Path | list[tuple[str, Path]],
    output: Path,
    device: str = "auto",
    overwrite: bool = False,
    progress: bool = True,
    batch_size: int = 16,
    adapt_steps: int | None = None,
    adapt_silent: tuple[int | None, int | None] = (None, None),
    volume_fill: bool | None = None,
    adapt_keep: float | None = None,
    adapt_growth: float | None = None,
    fill_pull: str | None = None,
) -> list[Path]:
    """Synthesise every volume under ``input_path`` and write ``<case>.nii.gz``, ``<case>_residual.nii.gz``,
    ``<case>.png`` into ``output``; returns the synthetic volumes' paths. ``input_path`` may also be a
    list of ``(case_id, image path)``. ``adapt_steps`` replaces the checkpoint's
    ``model.gen_gate_adapt_steps`` (None keeps it; 0 switches the adaptation off); ``adapt_silent``
    ``(pixels, slices)`` replaces the adaptation's silent margin (inference/adapt.py; None keeps its default);
    ``volume_fill`` replaces the checkpoint's ``model.gen_fill_volume`` and ``adapt_keep`` its
    ``model.gen_gate_adapt_keep``, ``adapt_growth`` its ``model.gen_gate_adapt_growth`` and ``fill_pull`` its
    ``model.gen_fill_pull`` (None keeps them)."""
    from tqdm.auto import tqdm

    from pseudohealthy.errors import refuse_existing_output
    from pseudohealthy.checkpoints import read_checkpoint

    generator, cfg, torch_device = open_generator(checkpoint, device)
    if adapt_steps is not None:
        set_adapt_steps(generator, adapt_steps, checkpoint)
    silent = adapt_silent_margin(generator, adapt_silent, checkpoint)
    if volume_fill is not None:
        set_fill_volume(generator, volume_fill, checkpoint)
    if adapt_keep is not None:
        set_adapt_keep(generator, adapt_keep, checkpoint)
    if adapt_growth is not None:
        set_adapt_growth(generator, adapt_growth, checkpoint)
    if fill_pull is not None:
        set_fill_pull(generator, fill_pull, checkpoint)
    stats = read_checkpoint(checkpoint).get("intensity_stats")
    inputs = list(input_path) if isinstance(input_path, list) else list_inputs(Path(input_path), cfg)
    refuse_existing_output(output, overwrite)
    output.mkdir(parents=True, exist_ok=True)
    written = []
    bar = tqdm(inputs, desc="synthesize", unit="volume", disable=not progress)
    for case_id, image_path in bar:
        bar.set_postfix_str(case_id)
        image = load_nifti(image_path, "image")
        result = synthesize_volume(generator, image, cfg, torch_device, case_id, batch_size, progress=progress,
                                   adapt_silent=silent)
        warning = intensity_warning(result, stats)
        if warning:
            log.warning(warning)
            from pseudohealthy.cli.common import warn

            warn(warning)
        written.append(save_like(result.synthetic, image, output / f"{case_id}.nii.gz"))
        save_like(result.residual, image, output / f"{case_id}_residual.nii.gz")
        save_preview(result, output / f"{case_id}.png")
    return written
