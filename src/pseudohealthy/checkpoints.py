"""Self-describing checkpoints: written atomically, read with `torch.load(weights_only=True)`.

A checkpoint is a dict of tensors and plain Python values only:
`format`, `format_version`, `version` (package), `method` (registry name), `epoch` (completed epochs),
the method object's state (for GVS `generator`, `segmentor`, `opt_g`, `opt_s`, `sched_g`, `sched_s`;
every method has `generator`, its synthesis network), `state_keys` (the names of that state, so that
resuming knows what must be there), `elapsed_s` (training time spent on the budget's clock), `rng`
(python, numpy, torch, cuda), `config`
(the full resolved RunConfig as a dict), `preprocess` (the slice cache's PreprocessConfig as a dict,
so that inference reproduces the training preprocessing), `intensity_stats` (mean and std of the
training slices' normalised foreground, for synthesis to flag unlike inputs) and `history` (the
per-epoch loss rows).
A run trained with `train.ema_decay` also holds `generator_ema` (the weights' moving average), which
synthesis uses instead of `generator`.
Inference needs only `generator`, `config` (whose `method` says which network to build) and `preprocess`.
Checkpoint reading lives here, below training, because synthesis and evaluation read checkpoints too.
"""
from __future__ import annotations

import os
import pickle
import random
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

import pseudohealthy
from pseudohealthy.config import RunConfig, from_dict
from pseudohealthy.errors import UserError

FORMAT = "pseudohealthy-gvs-checkpoint"
FORMAT_VERSION = 1
REQUIRED_KEYS = ("format_version", "version", "epoch", "generator", "config", "preprocess")
# What a GVS checkpoint written before `state_keys` existed needs to be resumed.
RESUME_KEYS = ("opt_g", "opt_s", "sched_g", "sched_s", "rng")


def resume_keys(payload: dict[str, Any]) -> tuple[str, ...]:
    """The keys a checkpoint must hold to be resumed: its method's state, and the random states."""
    if "state_keys" not in payload:
        return RESUME_KEYS
    return tuple(k for k in payload["state_keys"] if k not in REQUIRED_KEYS) + ("rng",)


def unwrap(module: nn.Module) -> nn.Module:
    """The plain network inside DDP (`.module`) and `torch.compile` (`._orig_mod`) wrappers."""
    while True:
        if isinstance(module, nn.parallel.DistributedDataParallel):
            module = module.module
        elif hasattr(module, "_orig_mod"):
            module = module._orig_mod
        else:
            return module


def rng_state() -> dict[str, Any]:
    """Every global random state (python, numpy, torch, CUDA) as tensors and plain values."""
    np_state = np.random.get_state()
    state: dict[str, Any] = {
        "python": random.getstate(),
        "numpy": {"key": torch.from_numpy(np_state[1].astype(np.int64)), "pos": int(np_state[2]),
                  "has_gauss": int(np_state[3]), "cached_gaussian": float(np_state[4])},
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore what :func:`rng_state` saved (CUDA states only where CUDA is available)."""
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    n = state["numpy"]
    np.random.set_state(("MT19937", n["key"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["cached_gaussian"]))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def atomic_save(payload: dict[str, Any], path: str | Path) -> Path:
    """`torch.save` to a temporary file in the same folder, fsync, then rename over ``path``.

    A reader (or a run killed mid-write) therefore only ever sees the old file or the new one.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        with open(tmp, "wb") as fh:
            torch.save(payload, fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    return path


def atomic_alias(source: Path, alias: Path) -> None:
    """Make ``alias`` (e.g. `last.pt`) the same content as ``source`` atomically: a hard link where the
    file system allows (no second copy on disk), else a copy, renamed into place."""
    tmp = alias.with_name(f".{alias.name}.tmp-{os.getpid()}")
    if tmp.exists():
        tmp.unlink()
    try:
        os.link(source, tmp)
    except OSError:
        shutil.copyfile(source, tmp)
    os.replace(tmp, alias)


def resolve_checkpoint_path(path: str | Path) -> Path:
    """Accept a checkpoint file or a run folder (then its `checkpoints/last.pt`)."""
    path = Path(path)
    if path.is_dir():
        candidate = path / "checkpoints" / "last.pt"
        if not candidate.is_file():
            raise UserError(f"{path}: folder holds no checkpoints/last.pt; pass a checkpoint file or a training run folder.")
        return candidate
    if not path.exists():
        raise UserError(f"{path}: checkpoint not found.")
    return path


def read_checkpoint(path: str | Path, for_resume: bool = False) -> dict[str, Any]:
    """Load and check a checkpoint (CPU tensors); every problem is one UserError sentence naming the file."""
    path = resolve_checkpoint_path(path)
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        if "weights only" in str(exc).lower() or "weights_only" in str(exc).lower():
            raise UserError(f"{path}: not a pseudohealthy checkpoint (it holds Python objects other than tensors and plain values).") from None
        raise UserError(f"{path}: checkpoint is corrupt or truncated ({type(exc).__name__}).") from None
    except Exception as exc:  # noqa: BLE001 - a damaged file makes the unpickler fail in many ways
        raise UserError(f"{path}: checkpoint is corrupt or truncated ({type(exc).__name__}).") from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise UserError(f"{path}: not a pseudohealthy checkpoint (no '{FORMAT}' marker); pass a file written by `pseudohealthy train`.")
    missing = [k for k in REQUIRED_KEYS + (resume_keys(payload) if for_resume else ()) if k not in payload]
    if missing:
        raise UserError(f"{path}: checkpoint from an incompatible version lacks {', '.join(missing)}.")
    theirs = str(payload["version"]).split(".")[0]
    ours = pseudohealthy.__version__.split(".")[0]
    if payload["format_version"] != FORMAT_VERSION or theirs != ours:
        raise UserError(
            f"{path}: checkpoint written by pseudohealthy {payload['version']} (format {payload['format_version']}) "
            f"cannot be read by version {pseudohealthy.__version__} (format {FORMAT_VERSION})."
        )
    return payload


def run_config_of(payload: dict[str, Any], path: str | Path) -> RunConfig:
    """The RunConfig stored in a checkpoint; unknown keys (a newer writer) are a UserError."""
    try:
        return from_dict(RunConfig, payload["config"], where="config")
    except UserError as exc:
        raise UserError(f"{path}: checkpoint config is incompatible with this version ({exc}).") from None


def _load_weights(module: nn.Module, state: dict[str, Any], path: Path, name: str) -> None:
    try:
        module.load_state_dict(state)
    except RuntimeError as exc:
        first = str(exc).splitlines()[0] if str(exc) else "shape or key mismatch"
        raise UserError(f"{path}: {name} weights do not fit the network its config describes ({first}).") from None


def load_generator(path: str | Path, device: str | torch.device = "cpu",
                   averaged: bool = True) -> tuple[nn.Module, RunConfig, dict[str, Any]]:
    """The trained generator (the synthesis network of the run's method) in eval mode on ``device``,
    its RunConfig and the preprocessing config dict.

    ``path``: a checkpoint file or a training run folder. ``averaged``: a run trained with
    ``train.ema_decay`` synthesises with its weights' moving average (`generator_ema`); False loads
    the last weights instead (to compare the two).
    """
    from pseudohealthy.methods import build_synthesis_generator

    path = resolve_checkpoint_path(path)
    payload = read_checkpoint(path)
    run_config = run_config_of(payload, path)
    try:
        generator = build_synthesis_generator(run_config)
    except UserError as exc:
        raise UserError(f"{path}: {exc}") from None
    key = "generator_ema" if averaged and "generator_ema" in payload else "generator"
    _load_weights(generator, payload[key], path, "generator")
    return generator.to(device).eval(), run_config, dict(payload["preprocess"])


def load_segmentor(path: str | Path, device: str | torch.device = "cpu") -> tuple[nn.Module, RunConfig]:
    """The trained segmentor in eval mode on ``device`` and its RunConfig."""
    from pseudohealthy.models import build_segmentor

    path = resolve_checkpoint_path(path)
    payload = read_checkpoint(path)
    run_config = run_config_of(payload, path)
    if "segmentor" not in payload:
        raise UserError(f"{path}: a {run_config.method} checkpoint holds no segmentor; pass a GVS checkpoint.")
    segmentor = build_segmentor(run_config.model)
    _load_weights(segmentor, payload["segmentor"], path, "segmentor")
    return segmentor.to(device).eval(), run_config
