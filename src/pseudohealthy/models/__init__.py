"""Networks of the GVS method: the generator G and the segmentor S (SPEC section 2).

`build_generator(cfg)`: `(B, 1, H, W)` -> `(B, 1, H, W)` with the global residual `G(x) = net(x) + x`.
`build_segmentor(cfg)`: `(B, 1, H, W)` -> logits `(B, 2, H, W)`.
H and W must be divisible by :func:`size_multiple` (`2 ** max(gen_downsamplings, seg_depth)`).
"""
from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from torch import nn

    from pseudohealthy.config import ModelConfig


def build_generator(cfg: ModelConfig, output: str = "residual", in_channels: int = 1) -> nn.Module:
    """The ResNet encoder-decoder generator with widths and depths from ``cfg``, N(0, 0.02) init.

    ``output``: residual (GVS) | additive | image | shortcut (see models/generator.py); ``in_channels``
    > 1 (image output only) makes a network of several stacked inputs, e.g. image and lesion map.
    ``cfg.gen_gate`` applies to the residual form only, ``cfg.gen_zero_init`` to the forms that add to
    the input (a zero last conv makes them the identity; an image output would start blank).
    """
    from pseudohealthy.models.generator import ResnetGenerator

    return ResnetGenerator(channels=cfg.gen_channels, blocks=cfg.gen_blocks, downsamplings=cfg.gen_downsamplings,
                           norm=cfg.gen_norm, zero_init=cfg.gen_zero_init and output in ("residual", "additive"),
                           gate=cfg.gen_gate and output == "residual", in_channels=in_channels, output=output, out_channels=1)


def build_critic(cfg: ModelConfig, norm: str = "none") -> nn.Module:
    """A PatchGAN-style critic / discriminator ``(B, 1, H, W)`` -> scores ``(B, 1, h, w)``, first width
    ``cfg.gen_channels`` (the generator's, so that the baselines stay the size of GVS)."""
    from pseudohealthy.models.critic import PatchCritic

    return PatchCritic(channels=cfg.gen_channels, layers=cfg.gen_downsamplings + 1, norm=norm)


def build_segmentor(cfg: ModelConfig) -> nn.Module:
    """The U-Net segmentor (BatchNorm, bilinear upsampling, 2 logits) with widths from ``cfg``."""
    from pseudohealthy.models.segmentor import UNet

    return UNet(base=cfg.seg_base, depth=cfg.seg_depth, max_channels=cfg.seg_max_channels)


def size_multiple(cfg: ModelConfig) -> int:
    """Slice height and width must be multiples of this for both networks to keep the size."""
    return 2 ** max(cfg.gen_downsamplings, cfg.seg_depth)


def count_parameters(module: nn.Module, trainable_only: bool = True) -> int:
    """Number of (trainable) parameters of ``module``."""
    return sum(p.numel() for p in module.parameters() if p.requires_grad or not trainable_only)


__all__ = ["build_critic", "build_generator", "build_segmentor", "count_parameters", "size_multiple"]
