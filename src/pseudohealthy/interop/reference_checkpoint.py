"""Checkpoints of the paper's reference code -> a run folder of this package (`reference` preset).

A reference checkpoint is a ``torch.save``d dict with the two networks' state dicts under
``reconstucter`` (sic) and ``segmenter``, and, when written by its training loop, optimiser and
scheduler states and ``epoch``. Only the two state dicts are read.

Key mapping (exact, no retraining):
- generator: ``model.<i>.*`` -> ``net.<i>.*`` and ``conv_block`` -> ``body``; the layer indices are the
  same. The reference convs before instance norm carry biases; the norm has no affine parameters and
  subtracts each channel's mean, so a constant per-channel bias is cancelled exactly: they are dropped.
- segmentor: ``inc`` -> ``down.0``, ``down<k>.maxpool_conv.1`` -> ``down.<k>``, ``up<k>.conv`` ->
  ``up.<k-1>``, ``double_conv`` -> ``body``, ``outc.conv`` -> ``head``. The reference concatenates
  ``[skip, upsampled]``, this package ``[upsampled, skip]``: the input channels of each decoder block's
  first conv are reordered to match.
"""
from __future__ import annotations

import pickle
import re
from pathlib import Path
from typing import Any

import torch
from torch import nn

from pseudohealthy.config import PreprocessConfig, RunConfig, resolve_run_config, to_dict, write_config
from pseudohealthy.errors import UserError, refuse_existing_output

REFERENCE_KEYS = ("reconstucter", "segmenter")  # the reference code's spelling
PRESET = "reference"


def reference_preprocess(working_size: int | None = None) -> PreprocessConfig:
    """The reference code's data path: BraTS T2, its clip, z-score and per-slice min-max (``reference``)."""
    return PreprocessConfig(source="brats", modality="t2", normalization="reference", working_size=working_size)


def load_reference_payload(path: Path) -> dict[str, Any]:
    """``torch.load(weights_only=True)`` of a reference checkpoint; anything else is one UserError sentence."""
    if not path.is_file():
        raise UserError(f"{path}: checkpoint file not found.")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        # torch wraps every unpickling failure in one message; a refused class is named in it.
        refused = re.search(r"GLOBAL (\S+) was not an allowed global", str(exc))
        if refused or "Unsupported global" in str(exc):
            what = refused.group(1) if refused else "a Python object"
            raise UserError(
                f"{path}: holds {what}, not only tensors and plain values, so it is not loaded "
                "(reference checkpoints are read with torch.load(weights_only=True))."
            ) from None
        raise UserError(f"{path}: not a readable PyTorch checkpoint (not a pickle torch can read safely).") from None
    except Exception as exc:  # noqa: BLE001 - a foreign or damaged file makes the unpickler fail in many ways
        raise UserError(f"{path}: not a readable PyTorch checkpoint ({type(exc).__name__}).") from None
    if not isinstance(payload, dict):
        raise UserError(f"{path}: not a reference GVS checkpoint (expected a dict with keys {', '.join(REFERENCE_KEYS)}).")
    for key in REFERENCE_KEYS:
        if key not in payload:
            raise UserError(f"{path}: not a reference GVS checkpoint (missing key {key!r}).")
        if not isinstance(payload[key], dict) or not all(isinstance(v, torch.Tensor) for v in payload[key].values()):
            raise UserError(f"{path}: not a reference GVS checkpoint ({key!r} is not a state dict of tensors).")
    return payload


def _generator_name(ref: str) -> str:
    return re.sub(r"^model\.", "net.", ref).replace(".conv_block.", ".body.")


def _segmentor_name(ref: str) -> str:
    name = re.sub(r"^inc\.", "down.0.", ref)
    name = re.sub(r"^down(\d)\.maxpool_conv\.1\.", r"down.\1.", name)
    name = re.sub(r"^up(\d)\.conv\.", lambda m: f"up.{int(m.group(1)) - 1}.", name)
    return name.replace(".double_conv.", ".body.").replace("outc.conv.", "head.")


def _reference_name(ours: str) -> str:
    """Inverse of the two renamings: the reference code's name of one of our keys."""
    if ours.startswith("net."):
        return "model." + ours[4:].replace(".body.", ".conv_block.")
    name = re.sub(r"^down\.0\.", "inc.", ours)
    name = re.sub(r"^down\.(\d)\.", r"down\1.maxpool_conv.1.", name)
    name = re.sub(r"^up\.(\d)\.", lambda m: f"up{int(m.group(1)) + 1}.conv.", name)
    return name.replace(".body.", ".double_conv.").replace("head.", "outc.conv.")


def _norm_cancelled_biases(module: nn.Module) -> set[str]:
    """``<conv>.bias`` names for convs without bias that feed a non-affine instance norm directly."""
    names = set()
    for parent_name, parent in module.named_modules():
        if not isinstance(parent, nn.Sequential):
            continue
        children = list(parent.named_children())
        for (name, layer), (_, following) in zip(children, children[1:]):
            if isinstance(layer, (nn.Conv2d, nn.ConvTranspose2d)) and layer.bias is None and \
                    isinstance(following, nn.InstanceNorm2d) and not following.affine:
                names.add(f"{parent_name}.{name}.bias" if parent_name else f"{name}.bias")
    return names


def _match(path: Path, what: str, mapped: dict[str, tuple[str, torch.Tensor]], target: nn.Module,
           droppable: set[str]) -> dict[str, torch.Tensor]:
    """Our state dict from ``mapped`` (our name -> (reference name, tensor)); the first misfit is a UserError."""
    ours = target.state_dict()
    for name, (ref, _) in mapped.items():
        if name not in ours and name not in droppable:
            raise UserError(f"{path}: {what} key {ref!r} has no counterpart in the reference networks (not a checkpoint of the reference code's networks).")
    state = {}
    for name, tensor in ours.items():
        if name not in mapped:
            raise UserError(f"{path}: {what} lacks key {_reference_name(name)!r} of the reference networks.")
        ref, value = mapped[name]
        if tuple(value.shape) != tuple(tensor.shape):
            raise UserError(f"{path}: {what} key {ref!r} has shape {list(value.shape)}, the reference networks need {list(tensor.shape)}.")
        state[name] = value.to(tensor.dtype)
    return state


def convert_generator(path: Path, reference: dict[str, torch.Tensor], generator: nn.Module) -> tuple[dict[str, torch.Tensor], int]:
    """The reference ``reconstucter`` state dict for our generator, and how many biases were dropped."""
    mapped = {_generator_name(k): (k, v) for k, v in reference.items()}
    droppable = _norm_cancelled_biases(generator)
    state = _match(path, "generator", mapped, generator, droppable)
    return state, sum(1 for name in mapped if name in droppable)


def convert_segmentor(path: Path, reference: dict[str, torch.Tensor], segmentor: nn.Module) -> dict[str, torch.Tensor]:
    """The reference ``segmenter`` state dict for our U-Net (decoder inputs reordered to [upsampled, skip])."""
    mapped = {_segmentor_name(k): (k, v) for k, v in reference.items()}
    state = _match(path, "segmentor", mapped, segmentor, set())
    skips = [block.body[3].out_channels for block in segmentor.down][:-1][::-1]  # skip width per decoder block
    for index, skip in enumerate(skips):
        name = f"up.{index}.body.0.weight"
        weight = state[name]  # (out, skip + up, 3, 3) in the reference's order
        state[name] = torch.cat([weight[:, skip:], weight[:, :skip]], dim=1).contiguous()
    return state


def import_reference_checkpoint(checkpoint: Path, output: Path, overwrite: bool = False,
                                working_size: int | None = None) -> dict[str, Any]:
    """Write ``output/config.yaml``, ``checkpoints/last.pt``, ``preprocess.json`` and ``import.json``.

    Returns the import summary (also ``import.json``): source file and sha256, reference epoch,
    parameter counts and the number of norm-cancelled biases dropped.
    """
    import json

    import pseudohealthy
    from pseudohealthy.data.cache import sha256_file
    from pseudohealthy.data.preprocessing import validate_config
    from pseudohealthy.models import build_generator, build_segmentor, count_parameters
    from pseudohealthy.checkpoints import FORMAT, FORMAT_VERSION, atomic_save, read_checkpoint

    checkpoint, output = Path(checkpoint), Path(output)
    payload = load_reference_payload(checkpoint)
    preprocess = reference_preprocess(working_size)
    validate_config(preprocess)
    run_config: RunConfig = resolve_run_config(preset=PRESET)
    generator, segmentor = build_generator(run_config.model), build_segmentor(run_config.model)
    gen_state, dropped = convert_generator(checkpoint, payload["reconstucter"], generator)
    seg_state = convert_segmentor(checkpoint, payload["segmenter"], segmentor)
    generator.load_state_dict(gen_state)
    segmentor.load_state_dict(seg_state)

    refuse_existing_output(output, overwrite)
    (output / "checkpoints").mkdir(parents=True, exist_ok=True)
    epoch = payload.get("epoch")
    summary = {
        "source_checkpoint": str(checkpoint.resolve()),
        "source_sha256": sha256_file(checkpoint),
        "reference_epoch": int(epoch) if isinstance(epoch, int) else None,
        "preset": PRESET,
        "generator_parameters": count_parameters(generator),
        "segmentor_parameters": count_parameters(segmentor),
        "dropped_norm_cancelled_biases": dropped,
        "package_version": pseudohealthy.__version__,
    }
    atomic_save({
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "version": pseudohealthy.__version__,
        "epoch": 0,  # completed epochs of *this* package's training; the reference's is in import.json
        "generator": generator.state_dict(),
        "segmentor": segmentor.state_dict(),
        "config": to_dict(run_config),
        "preprocess": to_dict(preprocess),
        "history": [],
        "imported_from": {k: v for k, v in summary.items() if v is not None},
    }, output / "checkpoints" / "last.pt")
    read_checkpoint(output / "checkpoints" / "last.pt")  # what synthesize/enhance/evaluate will read
    write_config(run_config, output / "config.yaml")
    (output / "preprocess.json").write_text(json.dumps(to_dict(preprocess), indent=2) + "\n")
    (output / "import.json").write_text(json.dumps(summary, indent=2) + "\n")
    return summary
