"""Segmentor generalisation (Fig. 8a): Dice of a segmentor on pathological slices, from arrays and from a checkpoint."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from pseudohealthy.metrics.segmentor_generalisation import checkpoint_generalisation, segmentor_dice


class Threshold(torch.nn.Module):
    def forward(self, x):
        return torch.cat([torch.zeros_like(x), x - 0.5], dim=1)


def test_segmentor_dice_per_slice():
    images = np.full((2, 8, 8), -1.0, np.float32)
    lesions = np.zeros((2, 8, 8), bool)
    lesions[:, 2:4, 2:4] = True  # 4 px each
    images[0][lesions[0]] = 1.0  # found exactly
    images[1, 2:4, 2:6] = 1.0  # found plus 4 false positives: Dice 8 / 12
    out = segmentor_dice(Threshold(), images, lesions)
    np.testing.assert_allclose(out["per_sample"], [1.0, 2 / 3])
    assert out["mean"] == pytest.approx(5 / 6) and out["pooled"] == pytest.approx(16 / 20)


def test_checkpoint_generalisation_reads_a_gvs_checkpoint(tiny_brats, tmp_path):
    import pseudohealthy
    from pseudohealthy.config import PRESETS, ModelConfig, PreprocessConfig, RunConfig, from_dict, to_dict
    from pseudohealthy.data.sources import find_cases, load_case
    from pseudohealthy.models import build_generator, build_segmentor
    from pseudohealthy.training.checkpoint import FORMAT, FORMAT_VERSION

    model = from_dict(ModelConfig, PRESETS["tiny"]["model"])
    torch.manual_seed(0)
    payload = {
        "format": FORMAT, "format_version": FORMAT_VERSION, "version": pseudohealthy.__version__, "epoch": 1,
        "generator": build_generator(model).state_dict(), "segmentor": build_segmentor(model).state_dict(),
        "config": to_dict(RunConfig(model=model)), "preprocess": to_dict(PreprocessConfig(working_size=32)),
    }
    path = tmp_path / "last.pt"
    torch.save(payload, path)
    cases = [load_case(f, "brats") for f in find_cases(tiny_brats)[:2]]
    out = checkpoint_generalisation(path, cases)
    assert out["working_size"] == 32
    assert out["n"] == sum(int(c.lesion.any(axis=(0, 1)).sum()) for c in cases)  # one value per lesion slice
    assert 0.0 <= out["mean"] <= 1.0 and len(out["per_sample"]) == out["n"]
