"""The GVS generator: a CycleGAN-style ResNet encoder-decoder with a global residual (SPEC section 2).

`G(x) = tanh(net(x)) + x`: the network predicts a bounded correction that is added to the input, so
an untrained (or zero) correction leaves the image unchanged and identity is the easy default.
"""
from __future__ import annotations

import torch
from torch import nn

from pseudohealthy.models.blocks import ResidualBlock, init_normal, instance_norm


class ResnetGenerator(nn.Module):
    """`(B, 1, H, W)` float32 in [-1, 1] -> `(B, 1, H, W)` = input + tanh correction (so in [-2, 2]).

    H and W must be divisible by `2 ** downsamplings`.
    """

    def __init__(self, channels: int = 64, blocks: int = 9, downsamplings: int = 2, in_channels: int = 1) -> None:
        super().__init__()
        self.downsamplings = downsamplings
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
        layers += [nn.ReflectionPad2d(3), nn.Conv2d(width, in_channels, 7), nn.Tanh()]
        self.net = nn.Sequential(*layers)
        init_normal(self)

    @property
    def last_conv(self) -> nn.Conv2d:
        """The final 7x7 conv (zeroing it makes G the identity)."""
        return self.net[-2]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x) + x
