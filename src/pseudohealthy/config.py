"""Configuration for every run: plain dataclasses, read from and written to YAML/JSON.

One object per stage (preprocessing, networks, training) and one :class:`RunConfig` that holds the
latter two for a training run. The resolved config is written next to every output and stored in
every checkpoint, so that inference never needs a flag repeated.

Overrides on the command line use dotted keys: ``train.epochs=3 model.gen_blocks=2``.
"""
from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from pseudohealthy.errors import UserError


# The recipe `train` and `pipeline` use when none is named; docs/quality.md has the measurements.
DEFAULT_PRESET = "hybrid"


@dataclass
class PreprocessConfig:
    """How raw volumes become the slice cache (SPEC section 4). Stored in the fingerprint."""

    source: str = "brats"  # brats | lits | folder | reference-npy (the reference code's slice files)
    modality: str = "t2"  # BraTS modality suffix (t2, flair, t1, t1ce; BraTS 2023+: t2w, t2f, ...)
    grade: str | None = None  # BraTS HGG/LGG filter where the layout has it; None keeps all
    lesion_labels: list[int] | None = None  # None: source default (BraTS: all > 0, LiTS: [2], folder: [1])
    region_labels: list[int] | None = None  # None: source default (BraTS: brain = image > 0; LiTS: [1, 2])
    intensity: str | None = None  # percentile | range; None: source default (BraTS percentile, LiTS range)
    clip_percentile: float = 99.5  # upper clip for `percentile`: this percentile of region voxels
    clip_range: tuple[float, float] | None = None  # lower/upper clip for `range` (LiTS default -200, 250 HU)
    normalization: str = "volume"  # volume | zscore-slice | reference (the reference code exactly); see data/preprocessing.py
    working_size: int | None = None  # square in-plane size for training; None keeps the original
    resize_mode: str = "resize"  # resize | crop (centre crop/pad)
    slice_margin: int = 20  # LiTS/CT: keep slices from this many below to this many above the region
    test_fraction: float = 0.1  # held-out cases (paper: 25/259 BraTS, 13/131 LiTS)
    split_seed: int = 0


@dataclass
class ModelConfig:
    """Network widths and depths (SPEC section 2). The paper preset is the default."""

    gen_channels: int = 64  # first generator conv width; doubles at each downsampling
    gen_blocks: int = 9  # residual blocks at the bottleneck
    gen_downsamplings: int = 2
    gen_norm: str = "instance"  # instance (paper) | none (crop-trained recipe: output independent of the cut)
    gen_zero_init: bool = False  # last conv starts at zero: the untrained generator is the identity
    gen_gate: bool = False  # G(x) = x + m * tanh(a) with a learned gate m (where to change); see models/generator.py
    gen_arch: str = "resnet"  # resnet (the paper's G) | unet (gated only: the segmentor's U-Net with 2 output maps)
    gen_gate_fill: bool = False  # with gen_gate: the gate's pixels start from a pyramid fill of the kept ones
    gen_gate_hard: bool = False  # gen_arch=unet with gate fill: gate thresholded at 0.5 (straight-through), dilated 1 px
    gen_gate_refine: bool = True  # gen_arch=unet with gate fill: add the learned refinement tanh(a) to the fill
    gen_gate_from_masks: bool = False  # gen_arch=unet: the gate learns from the lesion masks only (no gradient through the output)
    gen_gate_scale: int = 1  # gen_arch=unet: the U-Net sees the slice shrunk by this factor; its maps come back bilinearly
    gen_gate_second_look: float = 0.0  # gen_gate_scale > 1, at inference: also add small gate parts the U-Net finds at full resolution above this probability (0: off)
    gen_gate_second_look_area: int = 400  # the second look adds only its parts smaller than this many pixels (small lesions; 100 until session 12)
    gen_gate_mirror: bool = False  # gen_arch=unet: the gate also sees the slice's mirror image about its midline (brains: the other hemisphere as reference)
    gen_gate_adapt_steps: int = 0  # gen_arch=unet, at inference: before synthesising a volume the gate trains this many steps on it, with lesions pasted into its tissue (inference/adapt.py; 0: off; like the second look, other generators have no gate to adapt)
    gen_gate_adapt_keep: float = 0.0  # with gen_gate_adapt_steps and gen_fill_volume: a 3-D component of the gate's opening before adapting that the adapted gate still opens on at least this share of its voxels is opened whole (adapting shrinks half-found lesions; 0: off; inference/adapt.py keep_survivors)
    gen_gate_adapt_growth: float = 0.0  # with gen_gate_adapt_steps: the adaptation's silent region also grows each 3-D component of the gate's first opening by this share of its equivalent-sphere radius in mm (a large lesion's faint rim is not taught as normal tissue; 0: off; inference/adapt.py grow_components)
    gen_fill_volume: bool = False  # gen_arch=unet with the pull-push gate fill, at synthesis: that fill is taken from the whole volume (3-D pull-push with the training's trust of each voxel; inference/volume_fill.py) instead of slice by slice; training unchanged; ignored with a learned fill or reference-layout slices
    gen_fill_pull: str = "mean"  # gen_fill_volume: how the 3-D fill pools the voxels it trusts, mean | median (a block's median: the tissue most of it holds, not a mix with a bright ventricle on the opening's rim; inference/volume_fill.py)
    gen_gate_context: int = 0  # gen_arch=unet: the gate also sees this many neighbouring slices on each side (2.5-D; 0 = the slice alone)
    gen_fill_net: bool = False  # gen_arch=unet with gate fill: a small inpainting U-Net corrects the fill under the gate (models/learned_fill.py; taught by train.fill_weight)
    fill_net_base: int = 16  # gen_fill_net: first width of its U-Net (at gen_gate_scale)
    fill_net_depth: int = 4  # gen_fill_net: downsamplings of its U-Net (fewer: a more local view of the hole's surroundings)
    fill_net_sees_input: bool = False  # gen_fill_net: the learned fill also sees the slice itself under the hole (what shows through a lesion)
    gen_gate_shuffle: bool = False  # with gen_gate_scale > 1: the shrink is a space-to-depth rearrangement (every pixel kept), the maps come back by depth-to-space
    seg_base: int = 64  # U-Net first level width; doubles per level
    seg_depth: int = 4  # number of max-pool downsamplings
    seg_max_channels: int = 512
    seg_decoder: str = "full"  # full (decoder keeps each level's width) | halving (reference code's bilinear U-Net)
    seg_align_corners: bool = False  # bilinear upsampling grid; the reference code uses True
    seg_conv_bias: bool = False  # biases on the U-Net convs before BatchNorm (reference code: True)
    slice_layout: str = "canonical"  # canonical (RAS rows along x) | reference (slices as the reference code read BraTS)


@dataclass
class TrainConfig:
    """GVS training (SPEC section 3). Defaults are the paper's values."""

    epochs: int = 20
    batch_size: int = 8
    lr: float = 1e-3
    betas: tuple[float, float] = (0.9, 0.99)
    poly_power: float = 0.8  # lr = base * (1 - epoch / epochs) ** poly_power, after each epoch
    lambda_residual: float = 10.0  # weight of MSE(x_p, G(x_p)) in the generator loss
    seg_loss: str = "wce"  # wce (full GVS, difference-aware) | ce (basic GVS)
    wce_floor: float = 0.1  # lower bound of the difference-aware weight
    step_order: str = "seg-first"  # seg-first (paper: Step A then B) | gen-first (reference code)
    residual_region: str = "image"  # image (paper) | normal (normal tissue only)
    segmentor_eval_in_g_step: bool = False  # Step B sees S in eval mode (BatchNorm running stats), not batch stats
    lesion_fill_weight: float = 0.0  # reference code's third G term (weight 5 there): lesion -> mean normal tissue
    adversarial_weight: float = 1.0  # weight of CE(S(G(x_p)), 0) in G's loss; 0 trains no segmentor at all
    supervised_weight: float = 0.0  # L1 to the true healthy image where known (inserted lesions, phantom)
    fill_weight: float = 0.0  # L1 of the learned fill (model.gen_fill_net) to the true healthy image, in the true lesion masks where the truth is known
    fill_on_gate: bool = False  # fill_weight: the learned fill is also taught where the gate opens on normal tissue (the truth there: the slice)
    gate_weight: float = 0.0  # BCE of a gated generator's gate against the lesion mask (model.gen_gate)
    gate_dice: bool = False  # add a soft Dice term to the gate's loss (confident, whole-lesion gates)
    gate_small_lesion_area: float = 0.0  # > 0: lesion sections under this many pixels get BCE weight area/size (losses/gate.py)
    ema_decay: float = 0.0  # > 0: synthesis uses an exponential moving average of G's weights with this decay per step (0 = the last weights)
    gate_fine_every: int = 0  # > 0 (gen_gate_scale > 1): every this-many-th step the gate runs at full resolution on the crop's centre half
    crop_size: int | None = None  # train on seeded random crops of this size (native resolution); None: whole slices
    lesion_crop_probability: float = 0.7  # a crop is centred near a lesion pixel with this probability
    max_minutes: float | None = None  # time budget (budget_clock): stop with a checkpoint when spent; lr decays over it
    train_fraction: float = 1.0  # GVS(0.3) trains on 30% of the training cases
    lesion_only: bool = True  # train on lesion-containing slices only (paper)
    augment: bool = False  # seeded flips and small rotations
    augment_scale: float = 0.0  # with augment: zoom each axis by up to 1 + this (log-uniform; 0 = none): other head sizes
    augment_elastic: float = 0.0  # with augment: smooth random warp, control points moved up to this many pixels (0 = none)
    intensity_augment: bool = False  # seeded random gamma and contrast (another scanner's grey levels)
    intensity_curve: float = 0.0  # with intensity_augment: strength of a random monotone intensity curve (0 = none)
    online_lesions: float = 0.0  # share of training crops that get fresh synthetic lesions pasted (data/online_lesions.py)
    online_max_lesions: int = 2  # with online_lesions: 1 to this many per crop
    seed: int = 0
    device: str = "auto"  # auto | cpu | cuda
    amp: bool = True  # bf16 autocast on CUDA only; ignored on CPU
    num_workers: int = 0
    max_steps_per_epoch: int | None = None  # cap for quick runs and tests
    preview_slices: int = 4
    keep_checkpoints: int = 0  # newest epoch-XXX.pt files kept (last.pt always); 0 keeps every epoch's
    budget_clock: str = "wall"  # clock of max_minutes: wall (elapsed) | cpu (this process's CPU time: fair on a shared machine)


@dataclass
class VAGANConfig:
    """VA-GAN (Baumgartner et al., CVPR 2018): additive map, WGAN-GP critic, L1 on the map."""

    lr: float = 1e-3
    betas: tuple[float, float] = (0.0, 0.9)
    critic_steps: int = 5  # critic updates per generator update
    gp_weight: float = 10.0
    map_l1_weight: float = 100.0  # weight of mean |M| (their code)


@dataclass
class PHSGANConfig:
    """PHS-GAN (Xia et al., MIDL 2020 / MedIA): generator, segmentor, reconstructor, WGAN-GP critics.

    ``weights``: their code's six loss weights, in its order: adversarial on the pseudo-healthy image,
    segmentation (Dice) of the input's lesion, cycle 1 reconstruction (L1), adversarial on the
    synthetic pathological image, cycle 2 healthy reconstruction (L1), cycle 2 mask reconstruction (L1).
    """

    lr: float = 1e-5
    betas: tuple[float, float] = (0.5, 0.999)
    critic_steps: int = 5
    gp_weight: float = 10.0
    weights: tuple[float, float, float, float, float, float] = (2.0, 10.0, 20.0, 1.0, 10.0, 10.0)


@dataclass
class ANTGANConfig:
    """ANT-GAN (Sun et al., 2020): CycleGAN with a shortcut abnormal->normal generator and mask-guided losses."""

    lr: float = 2e-4
    betas: tuple[float, float] = (0.5, 0.999)
    cycle_weight: float = 10.0  # L1 cycle consistency, both directions (CycleGAN)
    normal_l2_weight: float = 10.0  # L2 between input and output on normal (non-lesion) pixels


@dataclass
class RunConfig:
    """Everything a training run needs; saved as ``config.yaml`` in the run folder and in checkpoints."""

    data: str = ""  # slice cache folder written by `pseudohealthy preprocess`
    preset: str = DEFAULT_PRESET
    method: str = "gvs"  # gvs | vagan | phsgan | antgan (pseudohealthy.methods); synthesis reads it back
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    vagan: VAGANConfig = field(default_factory=VAGANConfig)  # read only when method is vagan
    phsgan: PHSGANConfig = field(default_factory=PHSGANConfig)
    antgan: ANTGANConfig = field(default_factory=ANTGANConfig)


_HYBRID_MODEL = {"gen_channels": 32, "gen_blocks": 6, "seg_base": 32, "seg_max_channels": 256,
                 "gen_norm": "none", "gen_zero_init": True, "gen_gate": True,
                 "gen_arch": "unet", "gen_gate_fill": True, "gen_gate_hard": True, "gen_gate_refine": False,
                 "gen_gate_from_masks": True, "gen_gate_scale": 2, "gen_gate_second_look": 0.9,
                 "seg_decoder": "halving", "gen_gate_adapt_steps": 300, "gen_gate_adapt_keep": 0.5,
                 "gen_fill_volume": True}

PRESETS: dict[str, dict[str, Any]] = {
    # hybrid (default): segment and fill. The generator is a U-Net gate (at half resolution,
    # thresholded at 0.5, dilated one pixel) that says where to change, and a pull-push fill of the
    # pixels it keeps that says what to put there. The gate learns from every lesion mask (BCE +
    # Dice), real and inserted, on 128-pixel native crops with flips, rotations, zooms, smooth elastic
    # warps (other anatomies: the gate stops taking an unseen subject's displaced ventricles for
    # lesions; session 7) and random intensity curves, and from fresh synthetic lesions pasted into
    # every crop (online_lesions: a gate that never sees the same lesion twice finds those of an
    # unseen subject; docs/quality.md, session 6);
    # it needs masks only, no true healthy image. At inference the gate also looks at the slice at
    # full resolution and adds the small parts it is sure of there (gen_gate_second_look: the
    # coarse gate misses small lesions; docs/quality.md, session 10), adapts to each volume first
    # (gen_gate_adapt_steps, session 16; a lesion it found before adapting stays whole if the adapted
    # gate still finds most of it, gen_gate_adapt_keep, session 21), and what it opens is filled from
    # the whole volume (gen_fill_volume: 3-D context, session 20). The gate's U-Net has the reference
    # code's halving decoder (21% fewer FLOPs than the full one for the same lesions found: 22% more
    # steps in a time budget; docs/quality.md, session 12). No adversarial step: measured at CPU
    # budgets, the segmentor's game and the truth's gradient through the output opened the gate over
    # normal tissue, and the game cost 5x the step (docs/quality.md, session 4). The game lives on in the paper, small and reference presets and
    # in train.adversarial_weight with model.gen_gate_from_masks=false. The gen_* widths serve
    # model.gen_arch=resnet only. See README "Recipes".
    "hybrid": {
        "model": dict(_HYBRID_MODEL),
        "train": {"supervised_weight": 0.0, "gate_weight": 1.0, "adversarial_weight": 0.0, "lambda_residual": 0.0,
                  "residual_region": "normal", "crop_size": 128, "lesion_crop_probability": 0.5, "epochs": 60,
                  "augment": True, "intensity_augment": True, "intensity_curve": 0.8, "gate_dice": True,
                  "lesion_only": False, "online_lesions": 1.0, "augment_scale": 0.2, "augment_elastic": 8.0},
    },
    # paper: the full networks of SPEC section 2 and the paper's printed loss (eq. 4); meant for GPUs.
    "paper": {"model": {}, "train": {}},
    # small: CPU-sized networks (about 5 s per batch-8 step at 128x128 on 2 cores).
    "small": {
        "model": {"gen_channels": 32, "gen_blocks": 6, "seg_base": 32, "seg_max_channels": 256},
        "train": {},
    },
    # reference: exactly the networks of the paper's reference code (GVS repository, main.py): the
    # same ResNet generator and its bilinear U-Net (17.3M parameters), fed slices in its layout; its
    # training recipe where this package has the option (G before S, residual on normal tissue,
    # lesion-fill term of weight 5). `pseudohealthy import-reference` writes runs of this preset.
    "reference": {
        "model": {"seg_decoder": "halving", "seg_align_corners": True, "seg_conv_bias": True, "slice_layout": "reference"},
        "train": {"step_order": "gen-first", "residual_region": "normal", "lesion_fill_weight": 5.0},
    },
    # tiny: for tests only; trains in seconds on 32x32 slices.
    "tiny": {
        "model": {"gen_channels": 8, "gen_blocks": 2, "seg_base": 8, "seg_depth": 3, "seg_max_channels": 32},
        "train": {"epochs": 2, "batch_size": 4},
    },
}


# In-plane working size each preset is meant for (None: the data's native size, the crop recipe).
PRESET_WORKING_SIZE: dict[str, int | None] = {"hybrid": None, "paper": 128, "small": 64, "tiny": 32}


def to_dict(obj: Any) -> Any:
    """Dataclass (nested) to plain dicts/lists, tuples turned into lists (YAML/JSON friendly)."""
    if dataclasses.is_dataclass(obj):
        return {f.name: to_dict(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, (list, tuple)):
        return [to_dict(v) for v in obj]
    if isinstance(obj, dict):
        return {k: to_dict(v) for k, v in obj.items()}
    return obj


def from_dict(cls: type, values: dict[str, Any], where: str = "config") -> Any:
    """Build dataclass ``cls`` from a (nested) dict, refusing unknown keys with a clear message."""
    if not isinstance(values, dict):
        raise UserError(f"{where}: expected a mapping, got {type(values).__name__}.")
    known = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - set(known))
    if unknown:
        raise UserError(f"{where}: unknown key(s) {', '.join(unknown)}; known keys are {', '.join(known)}.")
    kwargs = {}
    defaults = cls()
    for name, value in values.items():
        current = getattr(defaults, name)
        if dataclasses.is_dataclass(current):
            kwargs[name] = from_dict(type(current), value, f"{where}.{name}")
        elif isinstance(current, tuple) and isinstance(value, list):
            kwargs[name] = tuple(value)
        elif name == "clip_range" and isinstance(value, list):
            kwargs[name] = tuple(value)
        else:
            kwargs[name] = value
    return cls(**kwargs)


def _parse_value(text: str) -> Any:
    """Parse an override's value as YAML (numbers, booleans, null, lists), else keep the string."""
    try:
        value = yaml.safe_load(text)
    except yaml.YAMLError:
        return text
    if isinstance(value, str):
        try:  # YAML 1.1 reads "2e-3" (no dot) as a string; a user means the number
            return float(value)
        except ValueError:
            return value
    return value


def apply_overrides(values: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Apply ``a.b=value`` overrides to a nested dict (in place) and return it."""
    for item in overrides:
        if "=" not in item:
            raise UserError(f"override {item!r}: expected key=value, for example train.epochs=3.")
        key, text = item.split("=", 1)
        parts = key.strip().split(".")
        node = values
        for part in parts[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise UserError(f"override {item!r}: {part} is not a section.")
        node[parts[-1]] = _parse_value(text)
    return values


def deep_update(base: dict[str, Any], update: dict[str, Any]) -> dict[str, Any]:
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(base.get(key), dict):
            deep_update(base[key], value)
        else:
            base[key] = value
    return base


def read_mapping(path: str | Path) -> dict[str, Any]:
    """Read a YAML or JSON file into a dict, with a clear error for a missing or malformed file."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: config file not found.")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise UserError(f"{path}: not valid YAML/JSON ({str(exc).splitlines()[0]}).") from None
    if not isinstance(data, dict):
        raise UserError(f"{path}: expected a mapping at the top level.")
    return data


def write_config(obj: Any, path: str | Path) -> None:
    """Write a config (dataclass or dict) as YAML (``.yaml``/``.yml``) or JSON (anything else)."""
    path = Path(path)
    data = to_dict(obj)
    if path.suffix in (".yaml", ".yml"):
        path.write_text(yaml.safe_dump(data, sort_keys=False))
    else:
        path.write_text(json.dumps(data, indent=2) + "\n")


def resolve_run_config(
    config_file: str | Path | None = None,
    preset: str | None = None,
    overrides: list[str] | None = None,
    data: str | None = None,
) -> RunConfig:
    """Preset, then config file, then ``key=value`` overrides, then explicit arguments win."""
    values: dict[str, Any] = {}
    if config_file is not None:
        values = read_mapping(config_file)
    chosen = preset or values.get("preset") or DEFAULT_PRESET
    if chosen not in PRESETS:
        raise UserError(f"preset {chosen!r} is unknown; choose one of {', '.join(PRESETS)}.")
    merged = deep_update(json.loads(json.dumps(PRESETS[chosen])), values)
    merged["preset"] = chosen
    apply_overrides(merged, list(overrides or []))
    if data is not None:
        merged["data"] = str(data)
    return from_dict(RunConfig, merged)


def resolve_preprocess_config(
    config_file: str | Path | None = None, overrides: list[str] | None = None, **explicit: Any
) -> PreprocessConfig:
    values: dict[str, Any] = read_mapping(config_file) if config_file is not None else {}
    apply_overrides(values, list(overrides or []))
    values.update({k: v for k, v in explicit.items() if v is not None})
    return from_dict(PreprocessConfig, values)
