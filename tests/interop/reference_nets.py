"""Test-only stand-ins for the reference code's two networks, written for these tests.

They reproduce the reference code's module layout and state-dict key names (facts read from the
public GVS repository: a CycleGAN-style ResNet generator with conv biases before a non-affine
instance norm, and a bilinear U-Net with biased convs and `[skip, upsampled]` concatenation), so
that a checkpoint saved from them has the reference format: ``{"reconstucter": ..., "segmenter": ...}``.
"""
from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn


def _norm(channels: int) -> nn.InstanceNorm2d:
    return nn.InstanceNorm2d(channels, affine=False, track_running_stats=False)


class RefResBlock(nn.Module):
    """Keys ``conv_block.1.*`` and ``conv_block.5.*``."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.conv_block = nn.Sequential(
            nn.ReflectionPad2d(1), nn.Conv2d(dim, dim, 3, bias=True), _norm(dim), nn.ReLU(True),
            nn.ReflectionPad2d(1), nn.Conv2d(dim, dim, 3, bias=True), _norm(dim),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv_block(x)


class RefGenerator(nn.Module):
    """Keys ``model.<index>.*``; 1 -> 1 channel, ``ngf`` filters, ``n_blocks`` residual blocks, tanh + input."""

    def __init__(self, ngf: int = 64, n_blocks: int = 9) -> None:
        super().__init__()
        layers: list[nn.Module] = [nn.ReflectionPad2d(3), nn.Conv2d(1, ngf, 7, bias=True), _norm(ngf), nn.ReLU(True)]
        for k in (1, 2):
            layers += [nn.Conv2d(ngf * k, ngf * 2 * k, 3, stride=2, padding=1, bias=True), _norm(ngf * 2 * k), nn.ReLU(True)]
        layers += [RefResBlock(ngf * 4) for _ in range(n_blocks)]
        for k in (4, 2):
            layers += [nn.ConvTranspose2d(ngf * k, ngf * k // 2, 3, stride=2, padding=1, output_padding=1, bias=True),
                       _norm(ngf * k // 2), nn.ReLU(True)]
        layers += [nn.ReflectionPad2d(3), nn.Conv2d(ngf, 1, 7), nn.Tanh()]
        self.model = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x) + x


class RefDoubleConv(nn.Module):
    """Keys ``double_conv.{0,3}`` (biased convs) and ``double_conv.{1,4}`` (BatchNorm)."""

    def __init__(self, cin: int, cout: int, mid: int | None = None) -> None:
        super().__init__()
        mid = mid or cout
        self.double_conv = nn.Sequential(
            nn.Conv2d(cin, mid, 3, padding=1), nn.BatchNorm2d(mid), nn.ReLU(True),
            nn.Conv2d(mid, cout, 3, padding=1), nn.BatchNorm2d(cout), nn.ReLU(True),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.double_conv(x)


class RefDown(nn.Module):
    """Keys ``maxpool_conv.1.double_conv.*``."""

    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.maxpool_conv = nn.Sequential(nn.MaxPool2d(2), RefDoubleConv(cin, cout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.maxpool_conv(x)


class RefUp(nn.Module):
    """Bilinear x2 (align_corners=True), pad to the skip, ``cat([skip, up])``; keys ``conv.double_conv.*``."""

    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.up = nn.Upsample(scale_factor=2, mode="bilinear", align_corners=True)
        self.conv = RefDoubleConv(cin, cout, cin // 2)

    def forward(self, low: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        low = self.up(low)
        dy, dx = skip.shape[2] - low.shape[2], skip.shape[3] - low.shape[3]
        low = F.pad(low, [dx // 2, dx - dx // 2, dy // 2, dy - dy // 2])
        return self.conv(torch.cat([skip, low], dim=1))


class RefOut(nn.Module):
    def __init__(self, cin: int, classes: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(cin, classes, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)


class RefSegmenter(nn.Module):
    """Keys ``inc``, ``down1..4``, ``up1..4``, ``outc``; base width ``b`` (reference: 64)."""

    def __init__(self, b: int = 64, classes: int = 2) -> None:
        super().__init__()
        self.inc = RefDoubleConv(1, b)
        self.down1, self.down2, self.down3 = RefDown(b, 2 * b), RefDown(2 * b, 4 * b), RefDown(4 * b, 8 * b)
        self.down4 = RefDown(8 * b, 8 * b)  # 16 b // 2 with bilinear upsampling
        self.up1, self.up2 = RefUp(16 * b, 4 * b), RefUp(8 * b, 2 * b)
        self.up3, self.up4 = RefUp(4 * b, b), RefUp(2 * b, b)
        self.outc = RefOut(b, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x1 = self.inc(x)
        x2 = self.down1(x1)
        x3 = self.down2(x2)
        x4 = self.down3(x3)
        x = self.up1(self.down4(x4), x4)
        return self.outc(self.up4(self.up3(self.up2(x, x3), x2), x1))


def randomise(module: nn.Module, seed: int) -> nn.Module:
    """Random weights, biases and BatchNorm statistics (non-zero biases, so dropping one would show)."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, tensor in module.state_dict().items():
            if name.endswith("num_batches_tracked"):
                tensor.fill_(7)
            elif name.endswith("running_var"):
                tensor.copy_(torch.rand(tensor.shape, generator=gen) + 0.5)
            elif tensor.is_floating_point():
                scale = 0.5 if tensor.ndim == 1 else 1.0 / max(1, tensor[0].numel()) ** 0.5
                tensor.copy_(torch.randn(tensor.shape, generator=gen) * scale)
    return module


def save_reference_checkpoint(path: Path, ngf: int = 64, n_blocks: int = 9, base: int = 64, seed: int = 0,
                              with_optimisers: bool = True) -> tuple[RefGenerator, RefSegmenter]:
    """Random reference networks saved as the reference code's periodic checkpoint dict; returns them (eval)."""
    generator = randomise(RefGenerator(ngf, n_blocks), seed).eval()
    segmenter = randomise(RefSegmenter(base), seed + 1).eval()
    payload: dict = {"reconstucter": generator.state_dict(), "segmenter": segmenter.state_dict()}
    if with_optimisers:  # what its training loop also stores every 5 epochs
        for key, net in (("R", generator), ("S", segmenter)):
            optimiser = torch.optim.Adam(net.parameters(), lr=1e-3, betas=(0.9, 0.99))
            scheduler = torch.optim.lr_scheduler.StepLR(optimiser, step_size=8)
            payload[f"optimizer_{key}"] = optimiser.state_dict()
            payload[f"scheduler_{key}"] = scheduler.state_dict()
        payload["epoch"] = 4
    torch.save(payload, path)
    return generator, segmenter
