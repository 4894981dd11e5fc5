"""Networks of the GVS method: the generator G and the segmentor S (SPEC section 2).

`build_generator(cfg)`: `(B, 1, H, W)` -> `(B, 1, H, W)` with the global residual `G(x) = net(x) + x`.
`build_segmentor(cfg)`: `(B, 1, H, W)` -> logits `(B, 2, H, W)`.
H and W must be divisible by :func:`size_multiple` (`2 ** max(gen_downsamplings, seg_depth)`).

``cfg.slice_layout``: this package's slices are axial slices of the canonical (RAS) volume, rows along
x. ``reference`` networks were trained on slices as the reference code reads BraTS files (SimpleITK's
array order of the LPS-stored volume: rows along y, both axes reversed); forward hooks turn each
input into that layout and the output back (exact: the map only permutes pixels, and is its own inverse).
"""
from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch
    from torch import nn

    from pseudohealthy.config import ModelConfig


SLICE_LAYOUTS = ("canonical", "reference")


def to_reference_layout(x: torch.Tensor) -> torch.Tensor:
    """``(..., H, W)`` canonical (RAS, rows along x) <-> the reference code's BraTS layout; its own inverse."""
    return x.flip(-2, -1).transpose(-2, -1)


def _layout_in(_module: nn.Module, args: tuple) -> tuple:
    return (to_reference_layout(args[0]), *args[1:])


def _layout_out(_module: nn.Module, _args: tuple, output: torch.Tensor) -> torch.Tensor:
    return to_reference_layout(output)


def _with_layout(net: nn.Module, layout: str) -> nn.Module:
    """Hooks that present slices to ``net`` in ``layout`` (no parameters, state-dict keys unchanged)."""
    if layout not in SLICE_LAYOUTS:
        from pseudohealthy.errors import UserError

        raise UserError(f"model.slice_layout {layout!r} is unknown; choose one of {', '.join(SLICE_LAYOUTS)}.")
    if layout == "reference":
        net.register_forward_pre_hook(_layout_in)
        net.register_forward_hook(_layout_out)
    return net


GENERATOR_ARCHS = ("resnet", "unet")


def build_generator(cfg: ModelConfig, output: str = "residual", in_channels: int = 1) -> nn.Module:
    """The ResNet encoder-decoder generator with widths and depths from ``cfg``, N(0, 0.02) init.

    ``output``: residual (GVS) | additive | image | shortcut (see models/generator.py); ``in_channels``
    > 1 (image output only) makes a network of several stacked inputs, e.g. image and lesion map.
    ``cfg.gen_gate`` applies to the residual form only, ``cfg.gen_zero_init`` to the forms that add to
    the input (a zero last conv makes them the identity; an image output would start blank).
    """
    from pseudohealthy.errors import UserError
    from pseudohealthy.models.generator import GatedUNetGenerator, ResnetGenerator

    if cfg.gen_arch not in GENERATOR_ARCHS:
        raise UserError(f"model.gen_arch {cfg.gen_arch!r} is unknown; choose one of {', '.join(GENERATOR_ARCHS)}.")
    if cfg.gen_arch == "unet":
        if not (cfg.gen_gate and output == "residual" and in_channels == 1):
            raise UserError("model.gen_arch=unet is the gated GVS generator: it needs model.gen_gate=true.")
        if cfg.gen_gate_scale < 1:
            raise UserError(f"model.gen_gate_scale={cfg.gen_gate_scale} must be a positive integer (1: the gate sees the full slice).")
        if not 0.0 <= cfg.gen_gate_second_look < 1.0 or cfg.gen_gate_second_look_area < 1:
            raise UserError(f"model.gen_gate_second_look={cfg.gen_gate_second_look} must be in [0, 1) (0: off) and "
                            f"model.gen_gate_second_look_area={cfg.gen_gate_second_look_area} at least 1 pixel.")
        if cfg.gen_gate_second_look > 0 and cfg.gen_gate_shuffle:
            raise UserError("model.gen_gate_second_look needs the area shrink (model.gen_gate_shuffle=false): a "
                            "space-to-depth U-Net cannot look at the slice at full resolution.")
        if cfg.gen_gate_mirror and (cfg.gen_gate_shuffle or cfg.slice_layout != "canonical"):
            raise UserError("model.gen_gate_mirror needs canonical slices (model.slice_layout=canonical) and the area "
                            "shrink (model.gen_gate_shuffle=false).")
        if cfg.gen_gate_context < 0 or (cfg.gen_gate_context and (cfg.gen_gate_mirror or cfg.gen_gate_shuffle)):
            raise UserError(f"model.gen_gate_context={cfg.gen_gate_context} must be 0 (the slice alone) or a positive number "
                            "of neighbouring slices, and does not combine with model.gen_gate_mirror or model.gen_gate_shuffle.")
        if cfg.gen_gate_adapt_steps < 0 or (cfg.gen_gate_adapt_steps and cfg.slice_layout != "canonical"):
            raise UserError(f"model.gen_gate_adapt_steps={cfg.gen_gate_adapt_steps} must be 0 (off) or a positive number of "
                            "steps, and adapting the gate needs canonical slices (model.slice_layout=canonical).")
        if not 0.0 <= cfg.gen_gate_adapt_keep <= 1.0:
            raise UserError(f"model.gen_gate_adapt_keep={cfg.gen_gate_adapt_keep} must be a share between 0 (off) and 1.")
        if cfg.gen_gate_adapt_growth < 0:
            raise UserError(f"model.gen_gate_adapt_growth={cfg.gen_gate_adapt_growth} must be 0 (off) or a positive share of a "
                            "component's radius.")
        from pseudohealthy.inference.volume_fill import PULLS

        if cfg.gen_fill_pull not in PULLS:
            raise UserError(f"model.gen_fill_pull={cfg.gen_fill_pull!r} must be one of {', '.join(PULLS)}.")
        # the volume fill replaces the pull-push fill: like the adaptation for generators without this gate, the
        # setting is ignored where there is no such fill to replace (no fill, a learned fill, reference-layout slices)
        volume_fill_possible = cfg.gen_gate_fill and not cfg.gen_fill_net and cfg.slice_layout == "canonical"
        from pseudohealthy.models.segmentor import UNet

        learned_fill = None
        if cfg.fill_net_sees_input and not cfg.gen_fill_net:
            raise UserError("model.fill_net_sees_input is a setting of the learned fill: it needs model.gen_fill_net=true.")
        if cfg.gen_fill_net:
            if not cfg.gen_gate_fill or cfg.fill_net_base < 1 or cfg.fill_net_depth < 1:
                raise UserError(f"model.gen_fill_net corrects the gate's fill: it needs model.gen_gate_fill=true, "
                                f"model.fill_net_base >= 1 (not {cfg.fill_net_base}) and model.fill_net_depth >= 1 "
                                f"(not {cfg.fill_net_depth}).")
            from pseudohealthy.models.learned_fill import LearnedFill

            learned_fill = LearnedFill(UNet(base=cfg.fill_net_base, depth=cfg.fill_net_depth, max_channels=8 * cfg.fill_net_base,
                                            in_channels=3 if cfg.fill_net_sees_input else 2, classes=1, decoder="halving"),
                                       scale=cfg.gen_gate_scale, sees_input=cfg.fill_net_sees_input)
        # space-to-depth: the scale x scale pixels of each cell are the net's channels, in and out
        cells = cfg.gen_gate_scale ** 2 if cfg.gen_gate_shuffle else 1
        unet = UNet(base=cfg.seg_base, depth=cfg.seg_depth, max_channels=cfg.seg_max_channels, decoder=cfg.seg_decoder,
                    align_corners=cfg.seg_align_corners, bias=cfg.seg_conv_bias,
                    in_channels=2 if cfg.gen_gate_mirror else cells + 2 * cfg.gen_gate_context, classes=2 * cells)
        generator = GatedUNetGenerator(unet, fill=cfg.gen_gate_fill, hard=cfg.gen_gate_hard,
                                       refine=cfg.gen_gate_refine, scale=cfg.gen_gate_scale,
                                       gate_from_masks=cfg.gen_gate_from_masks,
                                       shuffle=cfg.gen_gate_shuffle,
                                       second_look=cfg.gen_gate_second_look,
                                       second_look_area=cfg.gen_gate_second_look_area,
                                       mirror=cfg.gen_gate_mirror, context=cfg.gen_gate_context,
                                       learned_fill=learned_fill, adapt_steps=cfg.gen_gate_adapt_steps,
                                       adapt_keep=cfg.gen_gate_adapt_keep, adapt_growth=cfg.gen_gate_adapt_growth,
                                       fill_volume=cfg.gen_fill_volume and volume_fill_possible, fill_pull=cfg.gen_fill_pull)
        generator.volume_fill_possible = volume_fill_possible  # read by synthesis (synthesize.set_fill_volume)
        return _with_layout(generator, cfg.slice_layout)
    if cfg.gen_fill_net:
        raise UserError("model.gen_fill_net: the learned fill belongs to the gated U-Net generator (model.gen_arch=unet).")
    if cfg.gen_gate_context:
        raise UserError(f"model.gen_gate_context={cfg.gen_gate_context}: neighbouring slices are seen by the gated U-Net "
                        "generator only (model.gen_arch=unet).")
    net = ResnetGenerator(channels=cfg.gen_channels, blocks=cfg.gen_blocks, downsamplings=cfg.gen_downsamplings,
                          norm=cfg.gen_norm, zero_init=cfg.gen_zero_init and output in ("residual", "additive"),
                          gate=cfg.gen_gate and output == "residual", in_channels=in_channels, output=output, out_channels=1,
                          gate_fill=cfg.gen_gate and cfg.gen_gate_fill and output == "residual")
    return _with_layout(net, cfg.slice_layout)


def build_critic(cfg: ModelConfig, norm: str = "none") -> nn.Module:
    """A PatchGAN-style critic / discriminator ``(B, 1, H, W)`` -> scores ``(B, 1, h, w)``, first width
    ``cfg.gen_channels`` (the generator's, so that the baselines stay the size of GVS)."""
    from pseudohealthy.models.critic import PatchCritic

    return PatchCritic(channels=cfg.gen_channels, layers=cfg.gen_downsamplings + 1, norm=norm)


def build_segmentor(cfg: ModelConfig) -> nn.Module:
    """The U-Net segmentor (BatchNorm, bilinear upsampling, 2 logits) with widths and layout from ``cfg``."""
    from pseudohealthy.models.segmentor import UNet

    net = UNet(base=cfg.seg_base, depth=cfg.seg_depth, max_channels=cfg.seg_max_channels, decoder=cfg.seg_decoder,
               align_corners=cfg.seg_align_corners, bias=cfg.seg_conv_bias)
    return _with_layout(net, cfg.slice_layout)


def gate_context(cfg: ModelConfig) -> int:
    """Neighbouring slices on each side that the generator's input carries (``model.gen_gate_context``;
    the gated U-Net only)."""
    return int(cfg.gen_gate_context) if cfg.gen_gate and cfg.gen_arch == "unet" else 0


def size_multiple(cfg: ModelConfig) -> int:
    """Slice height and width must be multiples of this for both networks to keep the size."""
    return 2 ** max(cfg.gen_downsamplings, cfg.seg_depth)


def count_parameters(module: nn.Module, trainable_only: bool = True) -> int:
    """Number of (trainable) parameters of ``module``."""
    return sum(p.numel() for p in module.parameters() if p.requires_grad or not trainable_only)


__all__ = ["build_critic", "build_generator", "build_segmentor", "count_parameters", "size_multiple", "to_reference_layout"]
