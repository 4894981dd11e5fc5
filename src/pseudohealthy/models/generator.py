"""The GVS generator: a CycleGAN-style ResNet encoder-decoder with a global residual (SPEC section 2).

`G(x) = tanh(net(x)) + x`: the network predicts a bounded correction that is added to the input, so
an untrained (or zero) correction leaves the image unchanged and identity is the easy default.
The baselines reuse the same encoder-decoder with another output form (``output``):
``residual`` (GVS) `tanh(net(x)) + x`; ``additive`` (VA-GAN) `net(x) + x`, an unbounded map;
``image`` (PHS-GAN, CycleGAN) `tanh(net(x))`; ``shortcut`` (ANT-GAN) `tanh(net(x) + x)`.
"""
from __future__ import annotations

import torch
from torch import nn

from pseudohealthy.models.blocks import ResidualBlock, init_normal, instance_norm

OUTPUTS = ("residual", "additive", "image", "shortcut")


class ResnetGenerator(nn.Module):
    """`(B, 1, H, W)` float32 in [-1, 1] -> `(B, 1, H, W)` = input + tanh correction (so in [-2, 2]).

    H and W must be divisible by `2 ** downsamplings`.
    """

    def __init__(self, channels: int = 64, blocks: int = 9, downsamplings: int = 2, in_channels: int = 1,
                 output: str = "residual", out_channels: int | None = None) -> None:
        super().__init__()
        if output not in OUTPUTS:
            raise ValueError(f"output {output!r} is unknown; choose one of {', '.join(OUTPUTS)}")
        out_channels = in_channels if out_channels is None else out_channels
        if output != "image" and out_channels != in_channels:
            raise ValueError("an output added to the input needs as many output channels as input channels")
        self.downsamplings = downsamplings
        self.output = output
        layers: list[nn.Module] = [
            nn.ReflectionPad2d(3),
            nn.Conv2d(in_channels, channels, 7, bias=False),
            instance_norm(channels),
            nn.ReLU(inplace=True),
        ]
        width = channels
        for _ in range(downsamplings):
            layers += [
                nn.Conv2d(width, width * 2, 3, stride=2, padding=1, bias=False),
                instance_norm(width * 2),
                nn.ReLU(inplace=True),
            ]
            width *= 2
        layers += [ResidualBlock(width) for _ in range(blocks)]
        for _ in range(downsamplings):
            # output_padding=1 makes each transposed conv exactly double H and W.
            layers += [
                nn.ConvTranspose2d(width, width // 2, 3, stride=2, padding=1, output_padding=1, bias=False),
                instance_norm(width // 2),
                nn.ReLU(inplace=True),
            ]
            width //= 2
        # additive and shortcut apply no tanh inside the net (Identity keeps the layer indices).
        final = nn.Tanh() if output in ("residual", "image") else nn.Identity()
        layers += [nn.ReflectionPad2d(3), nn.Conv2d(width, out_channels, 7), final]
        self.net = nn.Sequential(*layers)
        init_normal(self)

    @property
    def last_conv(self) -> nn.Conv2d:
        """The final 7x7 conv (zeroing it makes G the identity)."""
        return self.net[-2]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.output == "image":
            return self.net(x)
        if self.output == "shortcut":
            return torch.tanh(self.net(x) + x)
        return self.net(x) + x
