"""The baselines' critic / discriminator: a PatchGAN-style stack of strided 4x4 convolutions.

Used as the WGAN-GP critic of VA-GAN and PHS-GAN (``norm="none"``: a gradient penalty is computed per
sample, so no normalisation couples the samples of a batch) and as the PatchGAN discriminator of
ANT-GAN (``norm="instance"``, as in CycleGAN).
"""
from __future__ import annotations

import torch
from torch import nn

from pseudohealthy.models.blocks import init_normal, instance_norm

NORMS = ("none", "instance")


class PatchCritic(nn.Module):
    """`(B, in_channels, H, W)` -> `(B, 1, H / 2**layers - 2, W / 2**layers - 2)` unbounded scores.

    ``layers`` stride-2 convs (width doubling, capped at 8x), one stride-1 conv, a 1-channel head;
    LeakyReLU 0.2 throughout (PatchGAN's design at any depth).
    """

    def __init__(self, channels: int = 64, layers: int = 3, norm: str = "none", in_channels: int = 1) -> None:
        super().__init__()
        if norm not in NORMS:
            raise ValueError(f"norm {norm!r} is unknown; choose one of {', '.join(NORMS)}")

        def block(c_in: int, c_out: int, stride: int, normalise: bool) -> list[nn.Module]:
            norm_layer = [instance_norm(c_out)] if normalise and norm == "instance" else []
            return [nn.Conv2d(c_in, c_out, 4, stride=stride, padding=1), *norm_layer, nn.LeakyReLU(0.2, inplace=True)]

        width = channels
        body = block(in_channels, width, 2, normalise=False)
        for i in range(1, layers):
            nxt = channels * min(2**i, 8)
            body += block(width, nxt, 2, normalise=True)
            width = nxt
        nxt = channels * min(2**layers, 8)
        body += block(width, nxt, 1, normalise=True)
        body.append(nn.Conv2d(nxt, 1, 4, stride=1, padding=1))
        self.net = nn.Sequential(*body)
        init_normal(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)
