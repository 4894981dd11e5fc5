"""The GVS segmentor: a U-Net with BatchNorm, bilinear upsampling and two output logits (SPEC section 2)."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from pseudohealthy.models.blocks import DoubleConv


def unet_widths(base: int, depth: int, max_channels: int) -> list[int]:
    """Channel width of each level, top to bottom: base doubling per level, capped (paper: 64-128-256-512-512)."""
    return [min(base * 2**level, max_channels) for level in range(depth + 1)]


class UNet(nn.Module):
    """`(B, 1, H, W)` -> logits `(B, 2, H, W)` (class 1 = lesion); H and W divisible by `2 ** depth`."""

    def __init__(self, base: int = 64, depth: int = 4, max_channels: int = 512, in_channels: int = 1,
                 classes: int = 2) -> None:
        super().__init__()
        self.depth = depth
        widths = unet_widths(base, depth, max_channels)
        self.down = nn.ModuleList([DoubleConv(in_channels, widths[0])])
        self.down.extend(DoubleConv(widths[i - 1], widths[i]) for i in range(1, depth + 1))
        # Decoder level i takes the upsampled level i+1 output concatenated with the level-i skip.
        self.up = nn.ModuleList(DoubleConv(widths[i + 1] + widths[i], widths[i]) for i in reversed(range(depth)))
        self.head = nn.Conv2d(widths[0], classes, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skips = []
        for level, block in enumerate(self.down):
            if level > 0:
                x = F.max_pool2d(x, 2)
            x = block(x)
            skips.append(x)
        x = skips.pop()
        for block in self.up:
            skip = skips.pop()
            x = F.interpolate(x, size=skip.shape[-2:], mode="bilinear", align_corners=False)
            x = block(torch.cat([x, skip], dim=1))
        return self.head(x)
