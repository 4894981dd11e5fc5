"""The method registry: method names (`gvs`, `vagan`, `phsgan`, `antgan`) to method classes.

One entry per method says where its class lives (imported only when training), which output form its
synthesis generator has (so that synthesis rebuilds it from a checkpoint without importing training
code) and what data it needs. The training loop, checkpoints, synthesis and evaluation take any
registered method through this module, never through an ``if method == ...`` chain (the idea of
pix2pix/CycleGAN's ``find_model_using_name``). A method class has the GVS method contract:
``__init__(run_config, device, distributed=False[, healthy=HealthyPool])``, ``check_options(run_config)``,
``loss_names``, ``set_input``, ``optimize_parameters``, ``synthesize``, ``step_schedulers``,
``learning_rates``, ``sync_buffers``, ``networks``, ``state_dict``, ``load_state_dict``.
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pseudohealthy.errors import UserError

if TYPE_CHECKING:
    from torch import nn

    from pseudohealthy.config import RunConfig


@dataclass(frozen=True)
class MethodEntry:
    name: str
    target: str  # "module:Class" of the method class
    generator_output: str  # output form of the synthesis generator (models/generator.py OUTPUTS)
    needs_healthy: bool  # trains against unpaired lesion-free slices
    title: str  # how tables name it (the paper's Table I)
    summary: str


METHODS: dict[str, MethodEntry] = {
    entry.name: entry
    for entry in (
        MethodEntry("gvs", "pseudohealthy.training.gvs:GVSModel", "residual", False, "GVS",
                    "generator versus segmentor (the paper): pathological slices and masks only"),
        MethodEntry("vagan", "pseudohealthy.methods.vagan:VAGANModel", "additive", True, "VA-GAN",
                    "additive map x + M, WGAN-GP critic against lesion-free slices, L1 on the map"),
        MethodEntry("phsgan", "pseudohealthy.methods.phsgan:PHSGANModel", "image", True, "PHS-GAN",
                    "pseudo-healthy generator, lesion segmentor, reconstructor (cycles), WGAN-GP critics"),
        MethodEntry("antgan", "pseudohealthy.methods.antgan:ANTGANModel", "shortcut", True, "ANT-GAN",
                    "CycleGAN with a shortcut abnormal->normal generator and mask-guided losses, PatchGAN"),
    )
}


def method_entry(name: str) -> MethodEntry:
    """The registry entry of ``name``; an unknown name is one UserError sentence."""
    if name not in METHODS:
        raise UserError(f"method {name!r} is unknown; choose one of {', '.join(METHODS)}.")
    return METHODS[name]


def method_class(name: str) -> type:
    """Import and return the method class registered as ``name``."""
    module_name, _, class_name = method_entry(name).target.partition(":")
    return getattr(importlib.import_module(module_name), class_name)


def check_run_config(run_config: RunConfig) -> None:
    """Refuse an unknown method or option value with one sentence, before any work starts."""
    t = run_config.train
    if t.epochs < 1 or t.batch_size < 1:
        raise UserError(f"train.epochs ({t.epochs}) and train.batch_size ({t.batch_size}) must be at least 1.")
    if t.max_minutes is not None and not t.max_minutes > 0:
        raise UserError(f"train.max_minutes ({t.max_minutes}) must be a positive number of minutes, or null for no budget.")
    if t.budget_clock not in BUDGET_CLOCKS:
        raise UserError(f"train.budget_clock={t.budget_clock!r} is unknown; choose one of {', '.join(BUDGET_CLOCKS)}.")
    if not 0.0 <= t.online_lesions <= 1.0 or t.online_max_lesions < 1:
        raise UserError(f"train.online_lesions ({t.online_lesions}) is the share of crops that get online lesions, in "
                        f"[0, 1], and train.online_max_lesions ({t.online_max_lesions}) at least 1.")
    if t.augment_scale < 0 or t.augment_elastic < 0:
        raise UserError(f"train.augment_scale ({t.augment_scale}) and train.augment_elastic ({t.augment_elastic}) must be "
                        "0 (off) or positive.")
    if t.ema_decay and run_config.method != "gvs":
        raise UserError(f"train.ema_decay={t.ema_decay:g} averages GVS's generator only; method {run_config.method} "
                        "does not use it (leave it at 0).")
    method_class(run_config.method).check_options(run_config)


BUDGET_CLOCKS = ("wall", "cpu")


def create_method(run_config: RunConfig, device: Any = "cpu", distributed: bool = False, healthy: Any = None) -> Any:
    """An instance of the run's method class; ``healthy`` (a :class:`~pseudohealthy.data.healthy.HealthyPool`)
    goes to methods that train against lesion-free slices."""
    cls = method_class(run_config.method)
    if method_entry(run_config.method).needs_healthy:
        if healthy is None:
            raise UserError(f"method {run_config.method} needs lesion-free training slices, and none were given.")
        return cls(run_config, device, distributed=distributed, healthy=healthy)
    return cls(run_config, device, distributed=distributed)


def build_synthesis_generator(run_config: RunConfig) -> nn.Module:
    """The network that maps a pathological slice `(B, 1, H, W)` to its pseudo-healthy version, for
    ``run_config.method``, untrained (weights come from the checkpoint's ``generator`` entry)."""
    from pseudohealthy.models import build_generator

    return build_generator(run_config.model, output=method_entry(run_config.method).generator_output)


__all__ = ["METHODS", "MethodEntry", "build_synthesis_generator", "check_run_config", "create_method", "method_class",
           "method_entry"]
