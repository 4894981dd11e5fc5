"""The U-Net segmentor: two logits, widths, BatchNorm, bilinear upsampling."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from pseudohealthy.config import ModelConfig
from pseudohealthy.models import build_segmentor, count_parameters
from pseudohealthy.models.segmentor import unet_widths


@pytest.mark.parametrize("base,depth,size", [(8, 3, 32), (4, 4, 48), (8, 2, 20)])
def test_segmentor_gives_two_logits_per_pixel(base: int, depth: int, size: int) -> None:
    s = build_segmentor(ModelConfig(seg_base=base, seg_depth=depth, seg_max_channels=64))
    out = s(torch.rand(3, 1, size, size))
    assert out.shape == (3, 2, size, size)


def test_paper_widths_and_layers() -> None:
    assert unet_widths(64, 4, 512) == [64, 128, 256, 512, 512]
    assert unet_widths(8, 3, 32) == [8, 16, 32, 32]
    s = build_segmentor(ModelConfig())
    assert sum(isinstance(m, nn.BatchNorm2d) for m in s.modules()) == 2 * (5 + 4)
    assert s.head.out_channels == 2 and s.head.kernel_size == (1, 1)
    assert 15e6 < count_parameters(s) < 25e6


def test_segmentor_is_trainable_on_a_blob() -> None:
    """A few Adam steps on one image learn its blob: the logits are wired to the right pixels."""
    torch.manual_seed(0)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny convs: more threads only add contention
    s = build_segmentor(ModelConfig(seg_base=4, seg_depth=2, seg_max_channels=8))
    x = torch.zeros(2, 1, 16, 16)
    x[:, :, 4:9, 5:11] = 1
    y = (x[:, 0] > 0).long()
    opt = torch.optim.Adam(s.parameters(), lr=3e-2)
    for _ in range(20):
        loss = nn.functional.cross_entropy(s(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        pred = s(x).argmax(1)
    torch.set_num_threads(threads)
    assert (pred == y).float().mean() > 0.97
