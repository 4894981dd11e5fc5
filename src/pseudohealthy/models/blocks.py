"""Building blocks shared by the generator and the segmentor (SPEC section 2)."""
from __future__ import annotations

import torch
from torch import nn


def instance_norm(channels: int) -> nn.InstanceNorm2d:
    """Instance norm without affine parameters and without running statistics (CycleGAN style)."""
    return nn.InstanceNorm2d(channels, affine=False, track_running_stats=False)


GEN_NORMS = ("instance", "none")


def norm_layer(kind: str, channels: int) -> nn.Module:
    """``instance``: non-affine instance norm (paper, CycleGAN); ``none``: identity (EDSR-style blocks).

    Instance norm makes a pixel's output depend on the statistics of the whole input, so a generator
    trained on crops behaves differently on whole slices; without norm it is a plain convolution
    whose output is the same wherever the image is cut (the crop-trained recipe needs that).
    """
    if kind not in GEN_NORMS:
        raise ValueError(f"unknown norm {kind!r}; choose one of {', '.join(GEN_NORMS)}")
    return instance_norm(channels) if kind == "instance" else nn.Identity()


def conv_bias(kind: str) -> bool:
    """Conv biases are left out before a non-affine instance norm: the norm subtracts them exactly."""
    return kind != "instance"


class ResidualBlock(nn.Module):
    """Two reflect-padded 3x3 convs with a norm, plus the identity: `(B, C, H, W) -> (B, C, H, W)`."""

    def __init__(self, channels: int, norm: str = "instance") -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.ReflectionPad2d(1),
            nn.Conv2d(channels, channels, 3, bias=conv_bias(norm)),
            norm_layer(norm, channels),
            nn.ReLU(inplace=True),
            nn.ReflectionPad2d(1),
            nn.Conv2d(channels, channels, 3, bias=conv_bias(norm)),
            norm_layer(norm, channels),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


class DoubleConv(nn.Module):
    """One U-Net level: (3x3 conv, BatchNorm, ReLU) twice; keeps H and W.

    ``mid_channels`` is the first conv's width (default ``out_channels``); ``bias`` puts biases on the
    convs (the reference code has them; before BatchNorm they only shift its running mean).
    """

    def __init__(self, in_channels: int, out_channels: int, mid_channels: int | None = None, bias: bool = False) -> None:
        super().__init__()
        mid = out_channels if mid_channels is None else mid_channels
        self.body = nn.Sequential(
            nn.Conv2d(in_channels, mid, 3, padding=1, bias=bias),
            nn.BatchNorm2d(mid),
            nn.ReLU(inplace=True),
            nn.Conv2d(mid, out_channels, 3, padding=1, bias=bias),
            nn.BatchNorm2d(out_channels),
            nn.ReLU(inplace=True),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


def init_normal(module: nn.Module, std: float = 0.02) -> None:
    """Draw every conv weight from N(0, std) and zero its bias (the reference 'normal' init)."""
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
            nn.init.normal_(m.weight, 0.0, std)
            if m.bias is not None:
                nn.init.zeros_(m.bias)


def init_without_norm(module: nn.Module) -> None:
    """Init for a generator without normalisation layers: He-normal convs (variance kept through
    ReLUs; the paper's N(0, 0.02) shrinks the signal ~10x per layer when no norm rescales it) and
    the last conv of every residual block at zero, so each block starts as the identity and depth
    does not blow the signal up either."""
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
            nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
    for m in module.modules():
        if isinstance(m, ResidualBlock):
            last = [c for c in m.body if isinstance(c, nn.Conv2d)][-1]
            nn.init.zeros_(last.weight)
