"""The hybrid recipe's parts: gated identity start, supervised term with unknown truth, crops,
learning on a cache with truth, and the wall-clock budget (stop, lr decay over it, resume)."""
from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
import torch

from pseudohealthy.config import resolve_run_config
from pseudohealthy.errors import UserError
from pseudohealthy.losses.residual import supervised_l1
from pseudohealthy.models import build_generator

TINY_HYBRID = ["model.gen_channels=8", "model.gen_blocks=2", "model.seg_base=8", "model.seg_depth=3",
               "model.seg_max_channels=32", "train.crop_size=16", "train.batch_size=4", "train.device=cpu"]


@pytest.fixture(scope="module")
def truth_cache(tmp_path_factory) -> Path:
    """A 4-case brain phantom (true healthy volumes) cached at its native 48x48."""
    from pseudohealthy.config import PreprocessConfig
    from pseudohealthy.data.cache import preprocess_dataset
    from pseudohealthy.data.phantom import generate_phantom

    root = tmp_path_factory.mktemp("hybrid")
    generate_phantom(root / "phantom", cases=4, seed=3, shape=(48, 48, 24), progress=False)
    preprocess_dataset(root / "phantom", root / "cache", PreprocessConfig(source="brats", test_fraction=0.25), progress=False)
    return root / "cache"


def test_gated_generator_starts_as_the_identity_and_its_gate_is_returned():
    cfg = resolve_run_config(preset="hybrid", overrides=TINY_HYBRID)
    generator = build_generator(cfg.model)
    x = torch.rand(2, 1, 32, 32) * 2 - 1
    out, gate = generator(x, return_gate=True)
    assert torch.equal(out, x)
    assert gate.shape == x.shape
    torch.testing.assert_close(torch.sigmoid(gate), torch.full_like(gate, 0.5))


def test_supervised_l1_scores_known_truth_only_and_keeps_gradients_finite():
    x_s = torch.zeros(1, 1, 2, 2, requires_grad=True)
    truth = torch.tensor([[[[1.0, float("nan")], [0.5, 0.0]]]])
    lesion = torch.tensor([[[[1.0, 1.0], [0.0, 0.0]]]])
    normal, inside = supervised_l1(x_s, truth, lesion)
    assert normal.item() == pytest.approx(0.25)  # (|0 - 0.5| + |0 - 0|) / 2
    assert inside.item() == pytest.approx(1.0)  # the NaN lesion pixel is not scored
    (normal + inside).backward()
    assert torch.isfinite(x_s.grad).all() and x_s.grad[0, 0, 0, 1] == 0


def test_crops_are_seeded_by_epoch_and_find_the_lesion(truth_cache):
    from pseudohealthy.data.dataset import SliceDataset

    ds = SliceDataset(truth_cache, split="train", lesion_only=True, crop_size=16, lesion_crop_probability=1.0,
                      with_healthy=True)
    image, lesion, region, _, _, healthy = ds[0]
    assert image.shape == lesion.shape == healthy.shape == (1, 16, 16)
    assert all(ds[i][1].sum() > 0 for i in range(len(ds)))  # every crop holds lesion pixels
    again = ds[0][0]
    ds.set_epoch(1)
    moved = [not torch.equal(ds[i][0], SliceDataset(truth_cache, split="train", lesion_only=True, crop_size=16,
                                                  lesion_crop_probability=1.0)[i][0]) for i in range(len(ds))]
    assert torch.equal(again, image) and any(moved)


def test_a_cache_without_truth_is_refused_with_one_sentence(tiny_cache):
    from pseudohealthy.training.loop import train

    cfg = resolve_run_config(preset="hybrid", overrides=TINY_HYBRID, data=str(tiny_cache))
    with pytest.raises(UserError, match="no true healthy images"):
        train(cfg, tiny_cache.parent / "refused-run", progress=False)


def test_hybrid_training_heals_and_the_budget_stops_it_with_a_checkpoint(truth_cache, tmp_path):
    from pseudohealthy.training.checkpoint import read_checkpoint
    from pseudohealthy.training.loop import train

    cfg = resolve_run_config(preset="hybrid", data=str(truth_cache),
                             overrides=TINY_HYBRID + ["train.epochs=1000", "train.max_minutes=0.15", "train.lr=2e-3"])
    last = train(cfg, tmp_path / "run", progress=False)
    rows = list(csv.DictReader(open(tmp_path / "run" / "losses.csv")))
    assert 2 <= len(rows) < 1000  # stopped by the budget, not by the epoch cap
    sup = [float(r["loss_sup"]) for r in rows]
    assert np.mean(sup[-2:]) < 0.8 * sup[0]  # the supervised error fell
    lrs = [float(r["lr_g"]) for r in rows]
    assert lrs[-1] < lrs[0] <= 2e-3  # the schedule decays over the budget
    payload = read_checkpoint(last)
    assert payload["elapsed_s"] >= 0.15 * 60 * 0.99
    # Resuming a run whose budget is spent adds nothing.
    again = train(cfg, tmp_path / "run", resume=True, progress=False)
    assert read_checkpoint(again)["epoch"] == payload["epoch"]
