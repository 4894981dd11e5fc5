"""The GVS segmentor: a U-Net with BatchNorm, bilinear upsampling and two output logits (SPEC section 2).

Two decoder layouts (``ModelConfig.seg_decoder``):
- ``full`` (this package's paper preset): decoder level ``i`` keeps its encoder width ``w[i]``.
- ``halving`` (the reference code's bilinear U-Net, 17.3M parameters): decoder level ``i`` takes
  ``in = up + w[i]`` channels, its first conv halves them (``in // 2``) and it outputs the next level's
  width ``w[i - 1]`` (``w[0]`` at the top), so the upsampled part and the skip always match in width.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from pseudohealthy.errors import UserError
from pseudohealthy.models.blocks import DoubleConv

SEG_DECODERS = ("full", "halving")


def unet_widths(base: int, depth: int, max_channels: int) -> list[int]:
    """Channel width of each level, top to bottom: base doubling per level, capped (paper: 64-128-256-512-512)."""
    return [min(base * 2**level, max_channels) for level in range(depth + 1)]


def decoder_widths(widths: list[int], decoder: str) -> list[tuple[int, int, int]]:
    """``(in, mid, out)`` channels of each decoder block, bottom (level depth - 1) to top (level 0)."""
    if decoder not in SEG_DECODERS:
        raise UserError(f"model.seg_decoder {decoder!r} is unknown; choose one of {', '.join(SEG_DECODERS)}.")
    blocks = []
    below = widths[-1]  # channels coming up from the level below
    for level in reversed(range(len(widths) - 1)):
        width_in = below + widths[level]
        if decoder == "full":
            mid = out = widths[level]
        else:
            mid, out = width_in // 2, widths[max(level - 1, 0)]
        blocks.append((width_in, mid, out))
        below = out
    return blocks


class UNet(nn.Module):
    """`(B, 1, H, W)` -> logits `(B, 2, H, W)` (class 1 = lesion); H and W divisible by `2 ** depth`.

    The upsampled features come first in each decoder block's input, then the skip.
    ``align_corners`` selects the bilinear upsampling's grid (the reference code: True).
    """

    def __init__(self, base: int = 64, depth: int = 4, max_channels: int = 512, in_channels: int = 1,
                 classes: int = 2, decoder: str = "full", align_corners: bool = False, bias: bool = False) -> None:
        super().__init__()
        self.depth = depth
        self.align_corners = align_corners
        widths = unet_widths(base, depth, max_channels)
        self.down = nn.ModuleList([DoubleConv(in_channels, widths[0], bias=bias)])
        self.down.extend(DoubleConv(widths[i - 1], widths[i], bias=bias) for i in range(1, depth + 1))
        self.up = nn.ModuleList(DoubleConv(i, o, mid, bias=bias) for i, mid, o in decoder_widths(widths, decoder))
        self.head = nn.Conv2d(widths[0], classes, 1)  # both layouts end at the top level's width

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
            x = F.interpolate(x, size=skip.shape[-2:], mode="bilinear", align_corners=self.align_corners)
            x = block(torch.cat([x, skip], dim=1))
        return self.head(x)
